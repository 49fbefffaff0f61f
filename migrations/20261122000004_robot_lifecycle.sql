-- Robot lifecycle (offline detection): when the offline sweeper marked a robot offline
-- because it went silent. NULL when the robot's status came from the robot itself. A
-- message without a payload timestamp brings back only a robot that went silent: after
-- an `offline` the robot announced, such a message may be a resend from before it.
ALTER TABLE robots ADD COLUMN silent_since timestamptz;

-- No index on last_seen for the sweeper: every batch updates last_seen, and an index on
-- it makes those updates non-HOT (new entries in every robots index), which cost 30 % of
-- embedded after-commit throughput (BENCHMARKS.md). The sweeper scans robots once per
-- tick instead: a few milliseconds for ten thousand robots.
