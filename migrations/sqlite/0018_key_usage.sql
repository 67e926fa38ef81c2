-- Usage per key and hour, added to by every instance's periodic flush
-- (`count = count + excluded.count`), kept `usage_retention_days`. `hour`
-- is the Unix time the hour starts at; `outcome` is `tokens_issued`,
-- `direct_uses`, `sigv4_uses`, `token_uses` or `refused:<reason>`. Kept in
-- step with migrations/postgres/0018_key_usage.sql.

CREATE TABLE key_usage (
    key_id     TEXT NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    tenant_id  TEXT NOT NULL,
    hour       BIGINT NOT NULL,
    outcome    TEXT NOT NULL,
    count      BIGINT NOT NULL,
    PRIMARY KEY (key_id, hour, outcome)
);
CREATE INDEX key_usage_by_tenant ON key_usage (tenant_id, hour);
CREATE INDEX key_usage_by_hour ON key_usage (hour);

-- The busiest minute of each hour, as the busiest instance saw it.
CREATE TABLE key_usage_peaks (
    key_id      TEXT NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    tenant_id   TEXT NOT NULL,
    hour        BIGINT NOT NULL,
    per_minute  BIGINT NOT NULL,
    PRIMARY KEY (key_id, hour)
);
CREATE INDEX key_usage_peaks_by_tenant ON key_usage_peaks (tenant_id, hour);
CREATE INDEX key_usage_peaks_by_hour ON key_usage_peaks (hour);

-- The first few distinct addresses each instance saw a key used from, per hour.
CREATE TABLE key_usage_addresses (
    key_id     TEXT NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    tenant_id  TEXT NOT NULL,
    hour       BIGINT NOT NULL,
    address    TEXT NOT NULL,
    PRIMARY KEY (key_id, hour, address)
);
CREATE INDEX key_usage_addresses_by_tenant ON key_usage_addresses (tenant_id, hour);
CREATE INDEX key_usage_addresses_by_hour ON key_usage_addresses (hour);
