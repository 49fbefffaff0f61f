//! Integration tests: real PostgreSQL, real MQTT clients, the embedded rmqtt broker and
//! Mosquitto, all on loopback and free ports, one fresh database per test. One test
//! binary (modules below) so the harness is compiled once.
#![allow(clippy::unwrap_used)]

mod helpers;

mod alerts;
mod alerts_api;
mod api_input;
mod audit;
mod bench;
mod broker_policy;
mod commands;
mod console;
mod database_faults;
mod day;
mod delivery;
mod embedded;
mod embedded_auth;
mod emergency_stop;
mod external;
mod fleet;
mod goauth;
mod lifecycle;
mod logs_api;
mod metrics;
mod openapi;
mod overview;
mod packaging;
mod partitions;
mod rollups;
mod scale;
mod schemathesis;
mod scripts;
mod storage;
mod systemd;
mod tls;
mod tonypi_robot;
mod workers;
