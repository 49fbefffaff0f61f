#!/bin/sh
# The recommended TonyPi policy, for either go-auth backend and the embedded broker.
# Every robot logs in with its robot id as username. Run once against fleetsink's
# database (FLEETSINK__DATABASE__URL or --config); then add each robot:
#   fleetsink user add tonypi_07            # prompts for its password
set -e
fs="${FLEETSINK:-fleetsink}"
# A robot writes its own topics (status, sensors, servos, job, logs, vision, scan: the
# robot id is the last level) and the two whose robot id is in the payload (fleetsink
# checks that id against the username in embedded mode, README "MQTT security").
"$fs" acl add --all 'tonypi/+/%u' --access write
"$fs" acl add --all tonypi/battery --access write
"$fs" acl add --all tonypi/location --access write
"$fs" acl add --all tonypi/commands/response --access write
"$fs" acl add --all tonypi/emergency_stop/response --access write
# It reads (and subscribes to) its own command topics and the broadcasts.
"$fs" acl add --all 'tonypi/commands/%u' --access read
"$fs" acl add --all 'tonypi/emergency_stop/%u' --access read
"$fs" acl add --all tonypi/commands/broadcast --access read
"$fs" acl add --all tonypi/emergency_stop/broadcast --access read
# fleetsink itself (external mode) and operators: superusers.
echo "now: $fs user add fleetsink --superuser   (and set mqtt.external.username/password)"
