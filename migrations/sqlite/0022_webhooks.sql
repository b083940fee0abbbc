-- Webhook push of the replication feeds (issue 11, point 2; owned by store/src/webhooks.rs). Not a read model:
-- the signing secret and the push cursor are state of their own, never rebuilt from the log.

-- A business system's webhook signing secret, sealed under the master key (base64 of MasterKey::seal_secret),
-- written in the transaction of its `BusinessSystemWebhookSecretIssued` event.
CREATE TABLE webhook_secrets (
    business_id  TEXT NOT NULL PRIMARY KEY,
    sealed       TEXT NOT NULL,
    issued_at    TEXT NOT NULL
);

-- Per business system: the last item its webhook acknowledged with a 2xx (the push cursor), the failures since,
-- when the next attempt may be made (unix ms), and the lease of the node pushing it (so two nodes never push the
-- same system at once: a node takes the row with a conditional UPDATE while the lease has run out, on both
-- backends).
CREATE TABLE webhook_pushes (
    business_id    TEXT NOT NULL PRIMARY KEY,
    cursor         TEXT,
    failures       BIGINT NOT NULL DEFAULT 0,
    next_attempt   BIGINT NOT NULL DEFAULT 0,
    leased_by      TEXT,
    leased_until   BIGINT NOT NULL DEFAULT 0
);
