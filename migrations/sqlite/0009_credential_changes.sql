-- Instances keep what client authentication reads in memory
-- (src/service/credential_cache.rs). SQLite has no notifications, so every
-- change to it bumps one counter, by triggers, inside the statement (so the
-- transaction) that makes the change; the server polls the counter (after
-- `PRAGMA data_version` says the file changed at all) and forgets what it
-- holds when the counter moved. Whoever writes is covered: the server, the
-- CLI, or an UPDATE typed into sqlite3.
--
-- Only the columns client authentication reads fire (see `key_auth_select!`
-- in src/storage/keys.rs): pushes, "last used" writes, webhook marks and
-- sign-in counters do not move the counter.

CREATE TABLE credential_changes (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    version  BIGINT NOT NULL
);
INSERT INTO credential_changes (id, version) VALUES (1, 0);

CREATE TRIGGER api_keys_credentials_inserted AFTER INSERT ON api_keys
BEGIN
    UPDATE credential_changes SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER api_keys_credentials_changed
    AFTER UPDATE OF
        id, tenant_id, owner_id, client_id, secret_digest, scopes, token_ttl_seconds,
        expires_at, revoked_at, disabled_at, allowed_sources,
        rate_limit_requests, rate_limit_per_seconds, rate_limit_burst
    ON api_keys
BEGIN
    UPDATE credential_changes SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER api_keys_credentials_deleted AFTER DELETE ON api_keys
BEGIN
    UPDATE credential_changes SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER users_credentials_changed
    AFTER UPDATE OF id, tenant_id, role, permissions, status ON users
BEGIN
    UPDATE credential_changes SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER users_credentials_deleted AFTER DELETE ON users
BEGIN
    UPDATE credential_changes SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER tenants_credentials_changed
    AFTER UPDATE OF
        id, default_rate_limit_requests, default_rate_limit_per_seconds,
        default_rate_limit_burst
    ON tenants
BEGIN
    UPDATE credential_changes SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER tenants_credentials_deleted AFTER DELETE ON tenants
BEGIN
    UPDATE credential_changes SET version = version + 1 WHERE id = 1;
END;
