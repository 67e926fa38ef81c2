-- Sealed storage: the signing keys' private halves are stored sealed under the
-- master key (`kpseal:v1:<key id>:<base64url>`), never in clear. Rows written
-- before this migration are sealed by the server on its first start after it,
-- in one transaction (src/storage/sealed.rs).
ALTER TABLE signing_keys RENAME COLUMN private_key_pem TO private_key_sealed;

-- The key's webhook-signing key, derived from its secret at creation
-- (HKDF-SHA256, see README "Signed webhooks") and stored only sealed. Keys
-- created before this migration have none.
ALTER TABLE api_keys ADD COLUMN webhook_key_sealed TEXT;
