-- DPoP (RFC 9449, issue 16).
--
-- A key may require DPoP: its token requests without a proof are refused.
-- Client authentication reads the flag (it is in `key_auth_columns!`,
-- src/storage/keys.rs), so a change to it must move the credential-change
-- counter: the trigger of migration 0009 is re-created with the column in
-- its list.
ALTER TABLE api_keys ADD COLUMN require_dpop BIGINT NOT NULL DEFAULT 0;

DROP TRIGGER api_keys_credentials_changed;
CREATE TRIGGER api_keys_credentials_changed
    AFTER UPDATE OF
        id, tenant_id, owner_id, client_id, secret_digest, scopes, token_ttl_seconds,
        expires_at, revoked_at, disabled_at, allowed_sources,
        rate_limit_requests, rate_limit_per_seconds, rate_limit_burst, require_dpop
    ON api_keys
BEGIN
    UPDATE credential_changes SET version = version + 1 WHERE id = 1;
END;

-- The DPoP replay cache (RFC 9449 §11.1): one row per proof seen, keyed by
-- SHA-256(thumbprint of the proof's key, 0, jti) in hex, until the proof's
-- window ends. Inserted with ON CONFLICT DO NOTHING; a proof is new only if
-- a row was inserted. Rows past `expires_at` are swept every minute.
CREATE TABLE dpop_proofs (
    id          TEXT PRIMARY KEY,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX dpop_proofs_expires_at ON dpop_proofs (expires_at);
