-- Signed outbound webhooks: endpoints a company registers, and a durable
-- outbox. An event row and one delivery row per interested endpoint are
-- written in the same transaction as the change that caused them; workers
-- (any instance) claim due deliveries with a lease and record each attempt.

CREATE TABLE webhook_endpoints (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- Who registered it: their marked key signs its deliveries, and a
    -- member's endpoint hears only of their own keys and records.
    owner_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    url           TEXT NOT NULL,
    description   TEXT,
    -- Space-separated event types.
    events        TEXT NOT NULL,
    -- Space-separated collections for record.created; NULL: every one.
    collections   TEXT,
    status        TEXT NOT NULL DEFAULT 'enabled' CHECK (status IN ('enabled', 'disabled')),
    disabled_reason TEXT,
    -- Since when every attempt has failed; NULL while it succeeds.
    failing_since BIGINT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX webhook_endpoints_by_tenant ON webhook_endpoints (tenant_id);

CREATE TABLE webhook_events (
    -- `msg_…`: the webhook-id header, the same on every retry.
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    event_type  TEXT NOT NULL,
    -- The JSON body sent: ids only, never a secret.
    payload     TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE webhook_deliveries (
    id              TEXT PRIMARY KEY,
    event_id        TEXT NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
    endpoint_id     TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    -- A worker holds the delivery until then; after it (a crashed worker),
    -- any instance may take it again.
    leased_until    BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, created_at);

CREATE TABLE webhook_attempts (
    id               TEXT PRIMARY KEY,
    delivery_id      TEXT NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    endpoint_id      TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    attempted_at     BIGINT NOT NULL,
    -- NULL when no answer came (refused, timed out, blocked target).
    status_code      BIGINT,
    latency_ms       BIGINT NOT NULL,
    -- The first 1 KiB of the answer.
    response_excerpt TEXT,
    error            TEXT
);
CREATE INDEX webhook_attempts_by_endpoint ON webhook_attempts (endpoint_id, attempted_at);

-- When a key lost the webhook-signing mark: deliveries carry its signature
-- too for `webhook_signature_overlap_seconds` after, so receivers can switch.
ALTER TABLE api_keys ADD COLUMN webhook_unmarked_at BIGINT;

-- When `key.expiring` was announced for the key's current expiry (once).
ALTER TABLE api_keys ADD COLUMN expiry_announced_at BIGINT;
