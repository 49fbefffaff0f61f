-- The audit trail (README, "Audit trail"): who changed what, from which address. One
-- row per change, written in the change's own transaction, so an edit never commits
-- without its row. Kept for good: retention does not touch it.
CREATE TABLE audit (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ts          timestamptz NOT NULL DEFAULT now(),
    -- A console user's name, `admin-token`, `unauthenticated` (an open API) or the
    -- operating-system user of a CLI subcommand.
    actor       text NOT NULL,
    actor_kind  text NOT NULL CHECK (actor_kind IN ('user', 'token', 'open', 'cli')),
    -- The HTTP request's peer address (a proxy's, behind one); NULL for the CLI.
    address     inet,
    -- e.g. `emergency_stop`, `alert.acknowledge`, `robot.update` (audit.rs lists them).
    action      text NOT NULL,
    -- A robot id, `broadcast`, an alert or threshold id, a user name; NULL for
    -- changes without one (`logs.clear`).
    target      text,
    details     jsonb NOT NULL DEFAULT '{}',
    command_id  text
);
CREATE INDEX audit_ts ON audit (ts DESC, id DESC);
CREATE INDEX audit_actor ON audit (actor, ts DESC);
CREATE INDEX audit_target ON audit (target, ts DESC);

-- Who sent each command, and from where (the same as its audit row).
ALTER TABLE commands ADD COLUMN requested_by text, ADD COLUMN requested_from inet;
