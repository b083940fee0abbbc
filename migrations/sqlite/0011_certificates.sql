-- The internal CA (issue 10). `ca_keys`: the CA's private keys, each sealed under the master key (AES-256-GCM,
-- AAD = its name, base64 of nonce || ciphertext || tag), written by the `StoreCaKey` companion in the transaction
-- of `CaCreated`; never in clear. `rm_certificates` (owned by `projections`): every issued certificate, for
-- lookups and for the CRL.
CREATE TABLE ca_keys (
    name       TEXT PRIMARY KEY, -- 'issuing' or 'root'
    sealed_key TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE rm_certificates (
    serial          TEXT   PRIMARY KEY, -- lower-case hex
    kind            TEXT   NOT NULL,    -- operator | business-server | tls
    holder          TEXT   NOT NULL,    -- business ID, '<municipality or system>:<operator ID>', endpoint name
    subject         TEXT   NOT NULL,
    not_before      BIGINT NOT NULL,    -- Unix seconds
    not_after       BIGINT NOT NULL,
    der             TEXT   NOT NULL,    -- base64
    revoked_at      BIGINT,
    revoked_reason  TEXT,
    version         BIGINT NOT NULL
);
CREATE INDEX rm_certificates_holder ON rm_certificates (kind, holder, not_before);
CREATE INDEX rm_certificates_revoked ON rm_certificates (revoked_at);
