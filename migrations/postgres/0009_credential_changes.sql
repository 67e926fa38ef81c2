-- Instances keep what client authentication reads in memory
-- (src/service/credential_cache.rs), so every change to it is announced on
-- the channel `keyport_credentials`. The announcement is made by triggers,
-- inside the statement (so the transaction) that makes the change:
-- PostgreSQL delivers it on commit to every listening instance, and never
-- for a transaction rolled back. Whoever writes is covered: an instance, the
-- CLI, or an UPDATE typed into psql.
--
-- Payloads: a key's client ID; `user:<id>` (its keys' owner); `tenant:<id>`
-- (their company); `*` (a table emptied: forget everything).
--
-- Only the columns client authentication reads fire (see `key_auth_select!`
-- in src/storage/keys.rs): "last used" writes, webhook marks and sign-in
-- counters do not flush anyone's cache.

CREATE FUNCTION keyport_key_credentials_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM pg_notify('keyport_credentials', OLD.client_id);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        -- On INSERT: an instance may remember this client ID as unknown.
        PERFORM pg_notify('keyport_credentials', NEW.client_id);
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION keyport_owner_credentials_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('keyport_credentials', 'user:' || OLD.id);
    RETURN NULL;
END $$;

CREATE FUNCTION keyport_tenant_credentials_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('keyport_credentials', 'tenant:' || OLD.id);
    RETURN NULL;
END $$;

CREATE FUNCTION keyport_all_credentials_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('keyport_credentials', '*');
    RETURN NULL;
END $$;

CREATE TRIGGER api_keys_credentials_changed
    AFTER INSERT OR DELETE OR UPDATE OF
        id, tenant_id, owner_id, client_id, secret_digest, scopes, token_ttl_seconds,
        expires_at, revoked_at, disabled_at, allowed_sources,
        rate_limit_requests, rate_limit_per_seconds, rate_limit_burst
    ON api_keys FOR EACH ROW EXECUTE FUNCTION keyport_key_credentials_changed();

CREATE TRIGGER users_credentials_changed
    AFTER DELETE OR UPDATE OF id, tenant_id, role, permissions, status
    ON users FOR EACH ROW EXECUTE FUNCTION keyport_owner_credentials_changed();

CREATE TRIGGER tenants_credentials_changed
    AFTER DELETE OR UPDATE OF
        id, default_rate_limit_requests, default_rate_limit_per_seconds,
        default_rate_limit_burst
    ON tenants FOR EACH ROW EXECUTE FUNCTION keyport_tenant_credentials_changed();

CREATE TRIGGER api_keys_truncated AFTER TRUNCATE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION keyport_all_credentials_changed();
CREATE TRIGGER users_truncated AFTER TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION keyport_all_credentials_changed();
CREATE TRIGGER tenants_truncated AFTER TRUNCATE ON tenants
    FOR EACH STATEMENT EXECUTE FUNCTION keyport_all_credentials_changed();
