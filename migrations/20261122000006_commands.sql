-- Downlink commands with delivery tracking (README, "Fleet: commands").
CREATE TABLE commands (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Sent to the robot as both `id` and `command_id`; robots answer with it.
    command_id      text NOT NULL UNIQUE,
    -- NULL for a broadcast.
    robot_id        text,
    command         text NOT NULL,
    topic           text NOT NULL,
    payload         jsonb NOT NULL,
    sent_at         timestamptz NOT NULL DEFAULT now(),
    status          text NOT NULL DEFAULT 'sent'
                    CHECK (status IN ('sent', 'acknowledged', 'failed', 'expired')),
    response        jsonb,
    responded_at    timestamptz
);
CREATE INDEX commands_robot ON commands (robot_id, sent_at DESC);
CREATE INDEX commands_waiting ON commands (sent_at) WHERE status = 'sent';
