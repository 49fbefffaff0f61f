-- Commands a robot must confirm (README, "Fleet: commands"): an emergency stop is
-- `unconfirmed` when its robot has not confirmed it by `confirm_by`, and a broadcast stop
-- has one row per robot that was online when it was sent, all sharing the command id
-- the robots answer with.
ALTER TABLE commands DROP CONSTRAINT commands_command_id_key;
CREATE UNIQUE INDEX commands_target ON commands (command_id, (COALESCE(robot_id, '')));

ALTER TABLE commands DROP CONSTRAINT commands_status_check;
ALTER TABLE commands ADD CONSTRAINT commands_status_check
    CHECK (status IN ('sent', 'acknowledged', 'failed', 'expired', 'unconfirmed'));

-- When the robot's confirmation is due; NULL for commands that simply expire.
ALTER TABLE commands ADD COLUMN confirm_by timestamptz;
-- True for the rows of a broadcast (one per robot expected to answer).
ALTER TABLE commands ADD COLUMN broadcast boolean NOT NULL DEFAULT false;

CREATE INDEX commands_confirming ON commands (confirm_by)
    WHERE status = 'sent' AND confirm_by IS NOT NULL;
