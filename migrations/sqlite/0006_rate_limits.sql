-- Per-key rate limits for the report and webhook APIs: a key's own rate,
-- and its company's default for keys without one. A rate is three columns,
-- all set or all NULL (no rate): so many requests per so many seconds, up
-- to `burst` of them at once. Kept in step with
-- migrations/postgres/0006_rate_limits.sql.

ALTER TABLE api_keys ADD COLUMN rate_limit_requests BIGINT;
ALTER TABLE api_keys ADD COLUMN rate_limit_per_seconds BIGINT;
ALTER TABLE api_keys ADD COLUMN rate_limit_burst BIGINT;

ALTER TABLE tenants ADD COLUMN default_rate_limit_requests BIGINT;
ALTER TABLE tenants ADD COLUMN default_rate_limit_per_seconds BIGINT;
ALTER TABLE tenants ADD COLUMN default_rate_limit_burst BIGINT;
