-- RFC 8693 token exchange with trusted external issuers: an admin trusts an
-- issuer (its tokens' `iss`, where its keys are published, and the audience
-- its tokens must address to be meant for this company), and adds rules
-- whose conditions on the token's claims pick the Keyport user the
-- exchanged token acts as, and the scopes it may carry. Nothing secret is
-- stored: the issuer's public keys are fetched and kept in memory.
CREATE TABLE trusted_issuers (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    issuer       TEXT NOT NULL,
    jwks_url     TEXT NOT NULL,
    audience     TEXT NOT NULL,
    description  TEXT NOT NULL DEFAULT '',
    created_at   BIGINT NOT NULL,
    UNIQUE (tenant_id, issuer, audience)
);

CREATE INDEX trusted_issuers_by_issuer ON trusted_issuers (issuer);

CREATE TABLE exchange_rules (
    id           TEXT PRIMARY KEY,
    issuer_id    TEXT NOT NULL REFERENCES trusted_issuers (id) ON DELETE CASCADE,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    description  TEXT NOT NULL DEFAULT '',
    -- JSON: [{"claim": "sub", "equals": "..."} | {"claim": ..., "matches": "a*"}]
    conditions   TEXT NOT NULL,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- Space-separated; the token gets these narrowed to the user's
    -- permissions at the time of each exchange.
    scopes       TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);

CREATE INDEX exchange_rules_by_issuer ON exchange_rules (issuer_id, created_at);
