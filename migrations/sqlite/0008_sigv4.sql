-- AWS Signature Version 4 (issue 14): a key created with SigV4 allowed keeps
-- its secret, sealed under the master key (`kpseal:v1:…`, bound to this
-- table, column and row), because verifying a SigV4 signature needs the
-- secret itself, not its digest. NULL for every other key, which keeps only
-- `secret_digest`. Listed in src/storage/sealed.rs, so master-key rotation
-- re-seals it.
ALTER TABLE api_keys ADD COLUMN sigv4_secret_sealed TEXT;
