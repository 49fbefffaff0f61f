-- TonyPi's alerts (README, "Fleet: alerts"): the alerts fleetsink raises and the ones
-- operators create share one table with TonyPi's fields, and the thresholds move from
-- columns of `robots` into TonyPi's `alert_thresholds`, the one store both the alerts
-- API and robots-db edit and the evaluation reads.

-- alerts: TonyPi's names and fields. fleetsink's own threshold alerts are the rows with
-- source = 'fleetsink' (a manual alert may not claim that source); only they keep the
-- evaluation's columns meaningful (count, first/last triggered, last_reading_at) and
-- only they stay one open alert per robot and metric.
ALTER TABLE alerts RENAME COLUMN metric TO alert_type;
ALTER TABLE alerts RENAME COLUMN level TO severity;
ALTER TABLE alerts DROP CONSTRAINT alerts_level_check;
ALTER TABLE alerts
    ADD CONSTRAINT alerts_severity_check CHECK (severity IN ('critical', 'warning', 'info')),
    ALTER COLUMN robot_id DROP NOT NULL,
    ALTER COLUMN value DROP NOT NULL,
    ALTER COLUMN threshold DROP NOT NULL,
    ALTER COLUMN first_triggered SET DEFAULT now(),
    ALTER COLUMN last_triggered SET DEFAULT now(),
    ALTER COLUMN last_reading_at DROP NOT NULL,
    ADD COLUMN title text,
    ADD COLUMN message text,
    ADD COLUMN source text,
    ADD COLUMN details jsonb;

-- The title and message the evaluator writes (crate::alerts::title, ::message: TonyPi's
-- wording; a float prints as PostgreSQL and Rust both print it, shortest form).
UPDATE alerts SET
    source = 'fleetsink',
    title = CASE alert_type
        WHEN 'cpu' THEN 'High CPU Usage on '
        WHEN 'memory' THEN 'High Memory Usage on '
        WHEN 'temperature' THEN 'High Temperature on '
        WHEN 'battery' THEN 'Low Battery on '
        WHEN 'servo_temp' THEN 'Servo Overheating on '
        WHEN 'servo_voltage' THEN 'Low Servo Voltage on '
        ELSE alert_type || ' alert on '
    END || robot_id,
    message = CASE alert_type
        WHEN 'cpu' THEN 'CPU usage is at ' || round(value::numeric, 1) || '% (threshold: ' || threshold || '%)'
        WHEN 'memory' THEN 'Memory usage is at ' || round(value::numeric, 1) || '% (threshold: ' || threshold || '%)'
        WHEN 'temperature' THEN 'Temperature is ' || round(value::numeric, 1) || '°C (threshold: ' || threshold || '°C)'
        WHEN 'battery' THEN 'Battery level is at ' || round(value::numeric, 1) || '% (threshold: ' || threshold || '%)'
        WHEN 'servo_temp' THEN 'Servo temperature is ' || round(value::numeric, 1) || '°C (threshold: ' || threshold || '°C)'
        WHEN 'servo_voltage' THEN 'Servo voltage is ' || round(value::numeric, 2) || 'V (threshold: ' || threshold || 'V)'
        ELSE alert_type || ' value: ' || value || ' (threshold: ' || threshold || ')'
    END;
ALTER TABLE alerts
    ALTER COLUMN title SET NOT NULL,
    ALTER COLUMN message SET NOT NULL;

DROP INDEX alerts_one_open;
DROP INDEX alerts_robot_metric;
DROP INDEX alerts_open;
-- At most one open threshold alert per robot and metric; manual alerts are not limited.
CREATE UNIQUE INDEX alerts_one_open ON alerts (robot_id, alert_type)
    WHERE NOT resolved AND source = 'fleetsink';
-- The evaluator's "newest threshold alert of this robot and metric".
CREATE INDEX alerts_threshold_newest ON alerts (robot_id, alert_type, id DESC)
    WHERE source = 'fleetsink';
-- The Alerts page (BENCHMARKS.md, "Alerts page"): the newest in a time range (the
-- counts read the included columns without visiting the table), the open ones among
-- them, and one robot's.
CREATE INDEX alerts_created ON alerts (created_at DESC, id DESC)
    INCLUDE (severity, acknowledged, resolved);
CREATE INDEX alerts_unresolved_created ON alerts (created_at DESC, id DESC) WHERE NOT resolved;
CREATE INDEX alerts_robot_created ON alerts (robot_id, created_at DESC, id DESC);

-- Thresholds, fleet-wide (robot_id NULL) or per robot. The most specific row decides:
-- the robot's, else the fleet-wide one, else [alerts.thresholds]; a disabled deciding
-- row means no alerts for that metric at its scope.
CREATE TABLE alert_thresholds (
    id                  integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    robot_id            text,
    metric_type         text NOT NULL CHECK (metric_type IN
                            ('cpu', 'memory', 'temperature', 'battery', 'servo_temp', 'servo_voltage')),
    warning_threshold   double precision NOT NULL,
    critical_threshold  double precision NOT NULL,
    enabled             boolean NOT NULL DEFAULT true,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX alert_thresholds_scope ON alert_thresholds ((coalesce(robot_id, '')), metric_type);

-- The robots' own thresholds become robot rows. A robot that had only one of a pair set
-- gets the other from TonyPi's defaults (the built-in [alerts.thresholds]).
INSERT INTO alert_thresholds (robot_id, metric_type, warning_threshold, critical_threshold)
SELECT r.robot_id, m.metric, coalesce(m.warning, m.default_warning), coalesce(m.critical, m.default_critical)
FROM robots r
CROSS JOIN LATERAL (VALUES
    ('cpu', r.cpu_threshold_warning, r.cpu_threshold_critical, 70.0, 90.0),
    ('memory', r.memory_threshold_warning, r.memory_threshold_critical, 75.0, 90.0),
    ('temperature', r.temp_threshold_warning, r.temp_threshold_critical, 60.0, 75.0),
    ('battery', r.battery_threshold_low, r.battery_threshold_critical, 30.0, 15.0),
    ('servo_temp', r.servo_temp_threshold_warning, r.servo_temp_threshold_critical, 50.0, 70.0),
    ('servo_voltage', r.servo_voltage_threshold_low, r.servo_voltage_threshold_critical, 5.5, 5.0)
) AS m(metric, warning, critical, default_warning, default_critical)
WHERE m.warning IS NOT NULL OR m.critical IS NOT NULL;

-- Warning comes before critical: above it for the metrics where low values are bad,
-- below it for the others. NOT VALID: rows migrated above are kept as they were set;
-- every new or changed row is checked.
ALTER TABLE alert_thresholds ADD CONSTRAINT alert_thresholds_order CHECK (
    CASE WHEN metric_type IN ('battery', 'servo_voltage')
         THEN warning_threshold >= critical_threshold
         ELSE warning_threshold <= critical_threshold END) NOT VALID;

ALTER TABLE robots
    DROP COLUMN cpu_threshold_warning,
    DROP COLUMN cpu_threshold_critical,
    DROP COLUMN memory_threshold_warning,
    DROP COLUMN memory_threshold_critical,
    DROP COLUMN temp_threshold_warning,
    DROP COLUMN temp_threshold_critical,
    DROP COLUMN battery_threshold_low,
    DROP COLUMN battery_threshold_critical,
    DROP COLUMN servo_temp_threshold_warning,
    DROP COLUMN servo_temp_threshold_critical,
    DROP COLUMN servo_voltage_threshold_low,
    DROP COLUMN servo_voltage_threshold_critical;
