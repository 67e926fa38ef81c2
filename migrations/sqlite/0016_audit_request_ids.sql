-- Audit rows name the request that wrote them (its X-Request-Id), so an
-- event can be found from a log line and the other way round. Kept in step
-- with migrations/postgres/0016_audit_request_ids.sql.

ALTER TABLE audit_events ADD COLUMN request_id TEXT;
