-- RFC 7523 private_key_jwt client authentication (issue 16).
--
-- A key may hold public keys (JWKs: ES256, EdDSA, RS256) besides, or
-- instead of, its secret. Each is identified by its RFC 7638 thumbprint, so
-- one key is registered once per API key however its JWK is spelled; `kid`
-- (optional) picks it out of an assertion's header. Only public members are
-- stored (src/tokens/jwk.rs refuses private and symmetric keys).
CREATE TABLE client_public_keys (
    key_id      TEXT NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    thumbprint  TEXT NOT NULL,
    kid         TEXT,
    alg         TEXT NOT NULL,
    jwk         TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    CONSTRAINT client_public_keys_unique PRIMARY KEY (key_id, thumbprint)
);
-- A kid names one key of a client, so an assertion's header picks one.
CREATE UNIQUE INDEX client_public_keys_kid_unique ON client_public_keys (key_id, kid)
    WHERE kid IS NOT NULL;

-- Assertions used already (RFC 7523 §3 item 7: a `jti` is used once). Shared
-- by every instance on the database: the first INSERT wins, the others
-- find the row. The jti is stored as a SHA-256 digest (fixed size whatever
-- the client sent). Rows past `expires_at` (the assertion's `exp` plus the
-- leeway) are useless, since the assertion is refused as expired anyway,
-- and are swept.
CREATE TABLE client_assertion_jtis (
    client_id   TEXT NOT NULL,
    jti_digest  TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    CONSTRAINT client_assertion_jtis_unique PRIMARY KEY (client_id, jti_digest)
);
CREATE INDEX client_assertion_jtis_by_expiry ON client_assertion_jtis (expires_at);

-- 0 for a key created without a secret: it authenticates only with its
-- public keys. Its `secret_digest` is then the digest of a secret generated
-- and thrown away at once, so no secret can match it.
ALTER TABLE api_keys ADD COLUMN secret_enabled BIGINT NOT NULL DEFAULT 1;

-- The credential cache (migration 0009) hears of every change to what
-- client authentication reads; a key's public keys are part of that.
CREATE TRIGGER client_public_keys_inserted AFTER INSERT ON client_public_keys
BEGIN
    UPDATE credential_changes SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER client_public_keys_changed AFTER UPDATE ON client_public_keys
BEGIN
    UPDATE credential_changes SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER client_public_keys_deleted AFTER DELETE ON client_public_keys
BEGIN
    UPDATE credential_changes SET version = version + 1 WHERE id = 1;
END;
