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
--
-- A logged table, unlike dpop_proofs (migration 0010): a replayed write
-- stores its records again, so the rows must survive a crash and reach
-- standbys. The insert commits with synchronous_commit = off: the write
-- the signature authorises commits after it, and flushing that commit
-- flushes this row too (see src/storage/sigv4.rs).
CREATE TABLE sigv4_replays (
    id          TEXT PRIMARY KEY,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX sigv4_replays_expires_at ON sigv4_replays (expires_at);
