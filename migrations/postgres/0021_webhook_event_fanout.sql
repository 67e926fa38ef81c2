-- A webhook event names the endpoints that heard it when it was queued
-- (their ids, space-separated) until the delivery worker writes their
-- deliveries, in one transaction with clearing it. A push then writes one
-- outbox row beside its records, not also a delivery per endpoint with its
-- key and two indexes. Events from before this keep NULL: their deliveries
-- were written with them. Only the events still to fan out are indexed.
-- Kept in step with migrations/sqlite/0021_webhook_event_fanout.sql.

ALTER TABLE webhook_events ADD COLUMN pending_endpoints TEXT;
CREATE INDEX webhook_events_to_fan_out ON webhook_events (created_at)
    WHERE pending_endpoints IS NOT NULL;
