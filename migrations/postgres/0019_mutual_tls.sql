-- Mutual-TLS client authentication (RFC 8705 §2).
--
-- `tls_client_auth`: what a `tls_client_auth` key's certificate must show,
-- `subject_dn:<DN>` or one `san_dns:` / `san_uri:` / `san_ip:` /
-- `san_email:` name (the certificate must also chain to tls_client_ca_file).
-- `tls_client_certificates`: the `x5t#S256` thumbprints (space-separated,
-- at most 5) of the certificates a `self_signed_tls_client_auth` key
-- accepts. NULL: the key does not authenticate that way.
--
-- Client authentication reads both (they are in `key_auth_columns!`,
-- src/storage/keys.rs), so a change to either must reach every instance's
-- credential cache: the trigger is re-created with them in its list.
ALTER TABLE api_keys ADD COLUMN tls_client_auth TEXT;
ALTER TABLE api_keys ADD COLUMN tls_client_certificates TEXT;

DROP TRIGGER api_keys_credentials_changed ON api_keys;
CREATE TRIGGER api_keys_credentials_changed
    AFTER INSERT OR DELETE OR UPDATE OF
        id, tenant_id, owner_id, client_id, secret_digest, scopes, token_ttl_seconds,
        expires_at, revoked_at, disabled_at, allowed_sources,
        rate_limit_requests, rate_limit_per_seconds, rate_limit_burst, require_dpop,
        tls_client_auth, tls_client_certificates
    ON api_keys FOR EACH ROW EXECUTE FUNCTION keyport_key_credentials_changed();
