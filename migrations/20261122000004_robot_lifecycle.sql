-- Robot lifecycle (offline detection): when the offline sweeper marked a robot offline
-- because it went silent. NULL when the robot's status came from the robot itself. A
-- message without a payload timestamp brings back only a robot that went silent: after
-- an `offline` the robot announced, such a message may be a resend from before it.
ALTER TABLE robots ADD COLUMN silent_since timestamptz;

-- The sweeper's question, "which active robots not yet offline were last seen before
-- the cutoff", without scanning the whole fleet.
CREATE INDEX robots_sweep ON robots (last_seen) WHERE status <> 'offline' AND is_active;
