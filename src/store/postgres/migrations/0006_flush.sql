-- Purser's fleet store, version 6: the flush that makes a decision durable before its
-- payment leaves.
--
-- purser_decide commits without waiting for the disk, so the hot budget rows are never
-- held through a flush; the replica sends a transaction that waits for the disk right
-- behind it, and the log is written in order. But PostgreSQL waits for the disk only
-- when the committing transaction wrote to the log: version 3's `SELECT txid_current()`
-- took a transaction id and wrote nothing, so it committed as asynchronously as the
-- decisions, and a crash within the WAL writer's delay could take back a reservation
-- whose payment had already left. purser_flush writes one small record (a transactional
-- logical message, which no table keeps) and commits waiting for the disk, even when
-- the role's synchronous_commit is off (a stronger setting, such as remote_apply, is
-- kept).

CREATE FUNCTION purser_flush() RETURNS VOID
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('synchronous_commit') = 'off' THEN
        PERFORM set_config('synchronous_commit', 'on', true);
    END IF;
    PERFORM pg_logical_emit_message(true, 'purser', 'flush');
END $$;
