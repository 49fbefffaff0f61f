-- The payload time of the status a robot's row holds. A status message older than it
-- (a resend after a reconnect, a gateway replaying its buffer) no longer overwrites a
-- newer status or logs a change that did not happen.
ALTER TABLE robots ADD COLUMN status_at timestamptz;
