-- Key controls: disable and enable, roll with a grace period, a
-- source-address allow-list, a description and labels, and where and how a
-- key was last used. Kept in step with migrations/postgres/0004_key_controls.sql.

-- Set while the key is disabled: refused like a revoked key, but reversible.
ALTER TABLE api_keys ADD COLUMN disabled_at BIGINT;
ALTER TABLE api_keys ADD COLUMN disabled_by TEXT;
-- The client ID of the key this one was rolled to (it then expires at the
-- end of the grace period); set once.
ALTER TABLE api_keys ADD COLUMN rolled_to TEXT;
ALTER TABLE api_keys ADD COLUMN description TEXT;
-- A JSON object of label names to values, e.g. {"env":"prod"}; NULL: none.
ALTER TABLE api_keys ADD COLUMN labels TEXT;
-- Space-separated CIDR ranges the key may be used from; NULL: anywhere.
ALTER TABLE api_keys ADD COLUMN allowed_sources TEXT;
-- Where the key was last used from, and how: 'token' or 'direct'.
ALTER TABLE api_keys ADD COLUMN last_used_from TEXT;
ALTER TABLE api_keys ADD COLUMN last_used_kind TEXT;
