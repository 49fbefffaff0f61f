-- Every change to MQTT users or ACL rules — through fleetsink, another instance or a
-- manual SQL edit — notifies channel `fleetsink_auth`; each daemon then reloads its
-- in-process cache (src/auth/store.rs).
CREATE FUNCTION fleetsink_auth_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('fleetsink_auth', TG_TABLE_NAME);
    RETURN NULL;
END $$;

CREATE TRIGGER mqtt_users_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON mqtt_users
    FOR EACH STATEMENT EXECUTE FUNCTION fleetsink_auth_changed();
CREATE TRIGGER mqtt_acls_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON mqtt_acls
    FOR EACH STATEMENT EXECUTE FUNCTION fleetsink_auth_changed();
