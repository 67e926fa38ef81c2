-- The SigV4 replay cache: a signed request that changes data (any method
-- but GET, HEAD, OPTIONS and TRACE) is accepted once. One row per such
-- signature accepted, keyed by SHA-256 over a purpose label, the key's id
-- and the signature's 32 bytes, in hex: the signature itself is never
-- stored, and two keys cannot collide. `expires_at` is the end of the
-- window in which the signature's X-Amz-Date is accepted (plus a minute for
-- clocks that differ between instances); past it the date alone refuses the
-- request, and the row is swept.
--
-- Inserted with ON CONFLICT DO NOTHING: a signature is new only if a row
-- was inserted, so two requests racing with one signature, at one instance
-- or two, store once.
CREATE TABLE sigv4_replays (
    id          TEXT PRIMARY KEY,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX sigv4_replays_expires_at ON sigv4_replays (expires_at);
