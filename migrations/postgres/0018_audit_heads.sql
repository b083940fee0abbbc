-- Signed heads of the audit chain (projections/src/audit/heads.rs): at intervals the sealer signs the chain's last
-- link with the audit key (kept in its own file, never here) and appends the head to the head file as well.
-- `cardap audit verify` checks the chain against these heads, or against the head file, with the public key.
CREATE TABLE audit_heads (
    seq       BIGINT PRIMARY KEY,
    hash      TEXT   NOT NULL,
    signed_at TEXT   NOT NULL,
    key_id    TEXT   NOT NULL,
    signature TEXT   NOT NULL
);
