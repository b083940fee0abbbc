-- Signed heads of the audit chains (projections/src/audit/heads.rs), and the chain over the read access log
-- (projections/src/audit/reads.rs).
--
-- At intervals the sealer signs the heads of both chains — the events' (seq, hash) and the read access log's
-- (reads_seq, reads_hash) — with the audit key (kept in its own file, never here) and appends the signed head to the
-- head file as well. `cardap audit verify` checks both chains against these heads, or against the head file, with
-- the public key.
CREATE TABLE audit_heads (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    seq        BIGINT NOT NULL,
    hash       TEXT   NOT NULL,
    reads_seq  BIGINT NOT NULL,
    reads_hash TEXT   NOT NULL,
    signed_at  TEXT   NOT NULL,
    key_id     TEXT   NOT NULL,
    signature  TEXT   NOT NULL,
    CONSTRAINT audit_heads_once UNIQUE (seq, reads_seq)
);

-- The read access log in the order its rows committed: like the event log, a row's transaction id orders it, and
-- the sealer takes only rows of transactions older than the oldest one still running, so a row that commits late
-- is sealed late, never skipped.
ALTER TABLE read_access_log ADD COLUMN transaction_id XID8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX read_access_log_order ON read_access_log (transaction_id, seq);

-- One link per read access log row: hash = SHA-256(previous hash || the row's canonical bytes).
CREATE TABLE read_access_chain (
    seq            BIGINT PRIMARY KEY,
    log_seq        BIGINT NOT NULL,
    transaction_id BIGINT NOT NULL,
    hash           TEXT   NOT NULL
);
