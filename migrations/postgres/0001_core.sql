-- Keyport core schema. Times are Unix seconds (BIGINT); ids are TEXT (UUID v7,
-- or the key's client ID); scopes are space-separated. Kept in step with
-- migrations/sqlite/0001_core.sql.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    CONSTRAINT tenants_name_unique UNIQUE (name)
);

CREATE TABLE users (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    email        TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    permissions  TEXT NOT NULL,
    status       TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    CONSTRAINT users_email_unique UNIQUE (email)
);
CREATE INDEX users_by_tenant ON users (tenant_id);

CREATE TABLE api_keys (
    id                 TEXT PRIMARY KEY,
    tenant_id          TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    owner_id           TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id          TEXT NOT NULL,
    secret_digest      TEXT NOT NULL,
    name               TEXT NOT NULL,
    scopes             TEXT,
    token_ttl_seconds  BIGINT,
    expires_at         BIGINT,
    last_used_at       BIGINT,
    revoked_at         BIGINT,
    revoked_by         TEXT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    CONSTRAINT api_keys_client_id_unique UNIQUE (client_id),
    CONSTRAINT api_keys_secret_digest_unique UNIQUE (secret_digest)
);
CREATE INDEX api_keys_by_owner ON api_keys (owner_id);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id);

CREATE TABLE signing_keys (
    kid              TEXT PRIMARY KEY,
    algorithm        TEXT NOT NULL,
    private_key_pem  TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('next', 'active', 'retired')),
    created_at       BIGINT NOT NULL,
    retired_at       BIGINT,
    updated_at       BIGINT NOT NULL
);

CREATE TABLE records (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    collection       TEXT NOT NULL,
    owner_id         TEXT NOT NULL,
    client_id        TEXT NOT NULL,
    body             TEXT NOT NULL,
    created_at       BIGINT NOT NULL
);
CREATE INDEX records_by_collection ON records (tenant_id, collection, id);
CREATE INDEX records_by_owner ON records (tenant_id, collection, owner_id, id);

CREATE TABLE idempotency_keys (
    tenant_id       TEXT NOT NULL,
    owner_id        TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_digest  TEXT NOT NULL,
    response        TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, owner_id, idempotency_key)
);
