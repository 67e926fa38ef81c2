-- Key lifecycle: passwords and sign-in locks, sessions, the webhook-signing
-- mark, revoked access tokens and the audit trail. Kept in step with
-- migrations/sqlite/0002_lifecycle.sql.

ALTER TABLE users ADD COLUMN password_hash TEXT;
ALTER TABLE users ADD COLUMN failed_sign_ins BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN first_failed_at BIGINT;
ALTER TABLE users ADD COLUMN locked_until BIGINT;

ALTER TABLE tenants ADD COLUMN api_only_users BIGINT NOT NULL DEFAULT 0;

ALTER TABLE api_keys ADD COLUMN signs_webhooks BIGINT NOT NULL DEFAULT 0;

CREATE TABLE sessions (
    token_digest  TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (user_id);

CREATE TABLE revoked_tokens (
    jti         TEXT PRIMARY KEY,
    expires_at  BIGINT NOT NULL,
    revoked_at  BIGINT NOT NULL
);
CREATE INDEX revoked_tokens_by_expiry ON revoked_tokens (expires_at);

CREATE TABLE audit_events (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT,
    actor           TEXT NOT NULL,
    action          TEXT NOT NULL,
    target          TEXT,
    source_address  TEXT,
    detail          TEXT,
    created_at      BIGINT NOT NULL
);
CREATE INDEX audit_events_by_tenant ON audit_events (tenant_id, id);
