-- Console users: the people who sign in to the TonyPi web UI (README, "Console users
-- and roles"). Not MQTT users (mqtt_users). TonyPi's `users` table shape: a text id
-- (a UUID), unique username and email, a password hash (argon2id; bcrypt hashes copied
-- from TonyPi verify too), a role and an active flag.
CREATE TABLE console_users (
    id              text PRIMARY KEY DEFAULT gen_random_uuid()::text,
    username        text NOT NULL UNIQUE CHECK (length(username) BETWEEN 1 AND 50),
    email           text NOT NULL UNIQUE CHECK (length(email) BETWEEN 3 AND 100),
    password_hash   text NOT NULL,
    role            text NOT NULL DEFAULT 'viewer' CHECK (role IN ('admin', 'operator', 'viewer')),
    is_active       boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz
);

-- Every change notifies `fleetsink_console`; each daemon reloads its in-process copy,
-- so a deactivated or demoted user loses access at once, on every instance.
CREATE FUNCTION fleetsink_console_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('fleetsink_console', TG_TABLE_NAME);
    RETURN NULL;
END $$;

CREATE TRIGGER console_users_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON console_users
    FOR EACH STATEMENT EXECUTE FUNCTION fleetsink_console_changed();
