-- The credential change feed. Migration 0009's triggers announced each
-- change with NOTIFY alone, so an instance that missed one (a connection
-- lost, a heartbeat late under load) could not tell what it missed and had
-- to read the database for every request until it listened again. Now each
-- change is also appended to `credential_change_log` under a sequence
-- number, and NOTIFY carries `<seq>:<payload>`: an instance in doubt asks
-- once for "every change after N" (src/storage/notify.rs) instead.
--
-- The sequence number is given at commit, by a deferred constraint trigger
-- that bumps `credential_change_seq` (one row): the row lock is held from
-- then until the commit ends, so numbers are handed out in commit order,
-- with no gaps (a transaction rolled back gives its number back), and a
-- reader that sees N has seen every change numbered below N. Taken only at
-- commit, after every row lock the transaction takes, that lock cannot be
-- part of a deadlock; it serialises only the commits of credential changes,
-- which are rare.
--
-- Rows older than an hour are pruned by the instances; one that asks for
-- changes after a pruned number is told so (fewer rows than numbers) and
-- forgets everything instead.

CREATE TABLE credential_change_log (
    id          BIGSERIAL PRIMARY KEY,
    -- NULL until the transaction that wrote the row commits.
    seq         BIGINT UNIQUE,
    payload     TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX credential_change_log_by_age ON credential_change_log (created_at);

CREATE TABLE credential_change_seq (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL
);
INSERT INTO credential_change_seq (id, seq) VALUES (1, 0);

CREATE FUNCTION keyport_log_credential_change(change TEXT) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO credential_change_log (payload, created_at)
    VALUES ($1, floor(extract(epoch FROM clock_timestamp()))::bigint);
$$;

CREATE FUNCTION keyport_sequence_credential_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    next BIGINT;
BEGIN
    UPDATE credential_change_seq SET seq = seq + 1 WHERE id = 1 RETURNING seq INTO next;
    UPDATE credential_change_log SET seq = next WHERE id = NEW.id;
    PERFORM pg_notify('keyport_credentials', next::text || ':' || NEW.payload);
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER credential_change_log_sequenced
    AFTER INSERT ON credential_change_log
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION keyport_sequence_credential_change();

-- Migration 0009's functions, logging instead of notifying (the triggers
-- that call them stay as they were).
CREATE OR REPLACE FUNCTION keyport_key_credentials_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM keyport_log_credential_change(OLD.client_id);
    END IF;
    IF TG_OP = 'INSERT'
        OR (TG_OP = 'UPDATE' AND NEW.client_id IS DISTINCT FROM OLD.client_id) THEN
        -- On INSERT: an instance may remember this client ID as unknown.
        PERFORM keyport_log_credential_change(NEW.client_id);
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION keyport_owner_credentials_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM keyport_log_credential_change('user:' || OLD.id);
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION keyport_tenant_credentials_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM keyport_log_credential_change('tenant:' || OLD.id);
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION keyport_all_credentials_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM keyport_log_credential_change('*');
    RETURN NULL;
END $$;

-- Migration 0011's, for a key's public keys.
CREATE OR REPLACE FUNCTION keyport_client_public_keys_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    changed_client_id TEXT;
BEGIN
    SELECT client_id INTO changed_client_id FROM api_keys
        WHERE id = CASE WHEN TG_OP = 'DELETE' THEN OLD.key_id ELSE NEW.key_id END;
    IF changed_client_id IS NOT NULL THEN
        PERFORM keyport_log_credential_change(changed_client_id);
    END IF;
    RETURN NULL;
END $$;
