-- Multi-stream appends (store `append_many`) run several statements in one transaction, so the transaction may
-- already hold an xid when it reads a stream's version. If that stream's previous version was written by a
-- transaction with a *newer* xid, appending now would put the stream out of order in the global order
-- (transaction_id, global_position). This guard refuses with serialization_failure; the store retries.
CREATE FUNCTION cardap_assert_stream_order(p_stream TEXT, p_version BIGINT) RETURNS BOOLEAN
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM events
               WHERE stream_id = p_stream AND version = p_version AND transaction_id > pg_current_xact_id()) THEN
        RAISE EXCEPTION 'stream % was last written by a newer transaction', p_stream USING ERRCODE = '40001';
    END IF;
    RETURN TRUE;
END
$$;
