-- The tamper-evident chain over the event log (projections/src/audit.rs): one row per event in the global order,
-- each hash = SHA-256(previous hash || the event's canonical bytes). `cardap audit verify` recomputes it.
CREATE TABLE audit_chain (
    seq             BIGINT PRIMARY KEY,
    event_id        TEXT   NOT NULL,
    transaction_id  BIGINT NOT NULL,
    global_position BIGINT NOT NULL,
    hash            TEXT   NOT NULL
);
