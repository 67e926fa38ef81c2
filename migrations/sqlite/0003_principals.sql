-- One authorisation model: audit rows say which credential acted, and new
-- users choose their password with a one-time token. Kept in step with
-- migrations/postgres/0003_principals.sql.

ALTER TABLE audit_events ADD COLUMN credential_kind TEXT;
ALTER TABLE audit_events ADD COLUMN credential_id TEXT;

CREATE TABLE set_password_tokens (
    token_digest  TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX set_password_tokens_by_user ON set_password_tokens (user_id);
