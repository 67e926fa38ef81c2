-- Whom each webhook event is about (the user whose record, key or account it
-- concerns), so the delivery worker can check, just before it sends, that
-- the endpoint's owner may still see it: a member's endpoint hears only of
-- the member's own records and keys, whatever happened since the event was
-- queued. Events queued before this column existed get it from their payload
-- (`data.owner_id`, `data.user_id`, or a test event's endpoint's owner);
-- where none is found it stays NULL, which only admins' endpoints hear.
-- Kept in step with migrations/postgres/0013_webhook_event_subjects.sql.

ALTER TABLE webhook_events ADD COLUMN subject_owner_id TEXT;

UPDATE webhook_events SET subject_owner_id = COALESCE(
    json_extract(payload, '$.data.owner_id'),
    json_extract(payload, '$.data.user_id'),
    (SELECT p.owner_id FROM webhook_endpoints p
     WHERE p.id = json_extract(webhook_events.payload, '$.data.endpoint_id'))
) WHERE json_valid(payload);
