-- Threshold alerts (README, "Fleet: alerts").
--
-- Per-robot thresholds: NULL means "the fleet-wide default from [alerts.thresholds]".
-- The four columns of the first schema had fixed defaults nobody could have set yet
-- (there was no way to edit robots); they become overrides like the new ones.
ALTER TABLE robots
    ALTER COLUMN battery_threshold_low DROP NOT NULL,
    ALTER COLUMN battery_threshold_low DROP DEFAULT,
    ALTER COLUMN battery_threshold_critical DROP NOT NULL,
    ALTER COLUMN battery_threshold_critical DROP DEFAULT,
    ALTER COLUMN temp_threshold_warning DROP NOT NULL,
    ALTER COLUMN temp_threshold_warning DROP DEFAULT,
    ALTER COLUMN temp_threshold_critical DROP NOT NULL,
    ALTER COLUMN temp_threshold_critical DROP DEFAULT,
    ADD COLUMN cpu_threshold_warning double precision,
    ADD COLUMN cpu_threshold_critical double precision,
    ADD COLUMN memory_threshold_warning double precision,
    ADD COLUMN memory_threshold_critical double precision,
    ADD COLUMN servo_temp_threshold_warning double precision,
    ADD COLUMN servo_temp_threshold_critical double precision,
    ADD COLUMN servo_voltage_threshold_low double precision,
    ADD COLUMN servo_voltage_threshold_critical double precision;
UPDATE robots SET battery_threshold_low = NULL WHERE battery_threshold_low = 20;
UPDATE robots SET battery_threshold_critical = NULL WHERE battery_threshold_critical = 10;
UPDATE robots SET temp_threshold_warning = NULL WHERE temp_threshold_warning = 70;
UPDATE robots SET temp_threshold_critical = NULL WHERE temp_threshold_critical = 80;

CREATE TABLE alerts (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    robot_id            text NOT NULL,
    -- cpu, memory, temperature, battery, servo_temp, servo_voltage (TonyPi's names)
    metric              text NOT NULL,
    level               text NOT NULL CHECK (level IN ('warning', 'critical')),
    value               double precision NOT NULL,
    threshold           double precision NOT NULL,
    first_triggered     timestamptz NOT NULL,
    last_triggered      timestamptz NOT NULL,
    count               integer NOT NULL DEFAULT 1,
    acknowledged        boolean NOT NULL DEFAULT false,
    acknowledged_by     text,
    acknowledged_at     timestamptz,
    resolved            boolean NOT NULL DEFAULT false,
    resolved_at         timestamptz,
    resolution_logged   boolean NOT NULL DEFAULT false,
    -- The newest reading applied; older readings (resends) are ignored.
    last_reading_at     timestamptz NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
-- At most one open alert per robot and metric.
CREATE UNIQUE INDEX alerts_one_open ON alerts (robot_id, metric) WHERE NOT resolved;
CREATE INDEX alerts_robot_metric ON alerts (robot_id, metric, id DESC);
CREATE INDEX alerts_open ON alerts (last_triggered DESC) WHERE NOT resolved;
