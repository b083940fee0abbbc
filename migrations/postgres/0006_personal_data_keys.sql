-- Crypto-shredding: one data key per subject (the stream id whose events carry the subject's `personal` data).
-- The key is stored only wrapped (AES-256-GCM under the master key from configuration, AAD = subject, stored as
-- nonce || ciphertext). Destroying it sets wrapped_key to NULL for good: the subject's sealed personal data in
-- every copy of the events becomes unreadable, and the subject is never given a new key. Owned by the `store`
-- crate (vault.rs). The row with subject '__master_key_check__' is the canary that tells a wrong master key.

CREATE TABLE personal_data_keys (
    subject      TEXT        PRIMARY KEY,
    wrapped_key  BYTEA,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    destroyed_at TIMESTAMPTZ,
    CONSTRAINT personal_data_keys_destroyed_has_no_key CHECK ((wrapped_key IS NULL) = (destroyed_at IS NOT NULL))
);
