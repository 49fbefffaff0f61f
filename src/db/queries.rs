//! Read queries of the admin API that are worth testing on their own (their plans).

/// Time-bucketed statistics of some of one robot's metrics over `[from, to)`:
/// `$1` robot key (`robots.id`), `$2` from, `$3` to, `$4` bucket width, `$5` the
/// metric name ids wanted. Only the day partitions of the range are read (pruning on
/// `ts`), and only the robot's rows of them (the `(robot, ts, set_id)` index); rows are
/// narrowed to the metric sets holding a wanted name, and only the wanted values are
/// taken out of each row (by their position in its set) instead of unnesting all of
/// them: half the time on a row of 20 values (BENCHMARKS.md).
pub const METRIC_BUCKETS_SQL: &str = "\
    SELECT n.name, NULLIF(n.unit, '') AS unit, date_bin($4::interval, m.ts, 'epoch') AS bucket, \
           min(v.value) AS min, avg(v.value) AS avg, max(v.value) AS max, \
           (array_agg(v.value ORDER BY m.ts DESC))[1] AS last, count(*) AS count \
    FROM metrics m \
    JOIN metric_sets s ON s.id = m.set_id \
    CROSS JOIN LATERAL ( \
        SELECT w.id AS name_id, m.vals[array_position(s.name_ids, w.id)] AS value \
        FROM unnest($5::int4[]) AS w(id) WHERE w.id = ANY (s.name_ids)) AS v \
    JOIN metric_names n ON n.id = v.name_id \
    WHERE m.robot = $1 AND m.ts >= $2 AND m.ts < $3 \
      AND m.set_id IN (SELECT id FROM metric_sets WHERE name_ids && $5::int4[]) \
    GROUP BY n.name, n.unit, bucket ORDER BY n.name, bucket";
