-- A webhook event keeps the W3C traceparent of the request it comes from,
-- so its deliveries' spans join that request's trace (and the receiver is
-- sent it). NULL when traces were off. Kept in step with
-- migrations/postgres/0017_webhook_event_traces.sql.

ALTER TABLE webhook_events ADD COLUMN traceparent TEXT;
