-- Signed heads of the audit chains (projections/src/audit/heads.rs), and the chain over the read access log
-- (projections/src/audit/reads.rs).
--
-- At intervals the sealer signs the heads of both chains — the events' (seq, hash) and the read access log's
-- (reads_seq, reads_hash) — with the audit key (kept in its own file, never here) and appends the signed head to the
-- head file as well. `cardap audit verify` checks both chains against these heads, or against the head file, with
-- the public key.
CREATE TABLE audit_heads (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    seq        BIGINT NOT NULL,
    hash       TEXT   NOT NULL,
    reads_seq  BIGINT NOT NULL,
    reads_hash TEXT   NOT NULL,
    signed_at  TEXT   NOT NULL,
    key_id     TEXT   NOT NULL,
    signature  TEXT   NOT NULL,
    CONSTRAINT audit_heads_once UNIQUE (seq, reads_seq)
);

-- One link per read access log row (in `seq` order: SQLite has one writer), hash = SHA-256(previous hash || the
-- row's canonical bytes). `transaction_id` is always 0 here.
CREATE TABLE read_access_chain (
    seq            BIGINT PRIMARY KEY,
    log_seq        BIGINT NOT NULL,
    transaction_id BIGINT NOT NULL,
    hash           TEXT   NOT NULL
);
