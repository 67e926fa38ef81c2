-- DPoP (RFC 9449, issue 16).
--
-- A key may require DPoP: its token requests without a proof are refused.
-- Client authentication reads the flag (it is in `key_auth_columns!`,
-- src/storage/keys.rs), so a change to it must reach every instance's
-- credential cache: the trigger of migration 0009 is re-created with the
-- column in its list.
ALTER TABLE api_keys ADD COLUMN require_dpop BIGINT NOT NULL DEFAULT 0;

DROP TRIGGER api_keys_credentials_changed ON api_keys;
CREATE TRIGGER api_keys_credentials_changed
    AFTER INSERT OR DELETE OR UPDATE OF
        id, tenant_id, owner_id, client_id, secret_digest, scopes, token_ttl_seconds,
        expires_at, revoked_at, disabled_at, allowed_sources,
        rate_limit_requests, rate_limit_per_seconds, rate_limit_burst, require_dpop
    ON api_keys FOR EACH ROW EXECUTE FUNCTION keyport_key_credentials_changed();

-- The DPoP replay cache (RFC 9449 §11.1): one row per proof seen, keyed by
-- SHA-256(thumbprint of the proof's key, 0, jti) in hex, until the proof's
-- window ends. Every instance inserts with ON CONFLICT DO NOTHING and a
-- proof is new only if a row was inserted, so a proof used at one instance
-- is refused at every other. Rows past `expires_at` are swept every minute.
--
-- UNLOGGED: the rows are written once per DPoP request and live minutes, so
-- skipping the write-ahead log saves most of the insert's cost. The price:
-- after a PostgreSQL crash (not a clean restart) the table comes back empty,
-- and it is not replicated to standbys; proofs seen in the last
-- `dpop_max_age_seconds` before a crash or fail-over could be replayed once
-- more. A replay still needs the proof and its access token together, and
-- for no longer than that window.
CREATE UNLOGGED TABLE dpop_proofs (
    id          TEXT PRIMARY KEY,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX dpop_proofs_expires_at ON dpop_proofs (expires_at);
