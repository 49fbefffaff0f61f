-- Robot settings sent through PUT /api/v1/management/robots/{id}/config (README, "Fleet:
-- the TonyPi API"): one row per robot and config type, holding every key sent so far
-- (a later update of a key wins), and the command that last published it.
CREATE TABLE robot_config (
    robot        integer NOT NULL REFERENCES robots (id) ON DELETE CASCADE,
    config_type  text NOT NULL,
    config_data  jsonb NOT NULL,
    command_id   text NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (robot, config_type)
);

-- The overview counts the commands sent today (GET /api/v1/management/system/status),
-- polled every few seconds by the TonyPi UI: a range scan instead of the whole table.
CREATE INDEX commands_sent_at ON commands (sent_at);
