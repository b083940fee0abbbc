-- cardap as the OpenID Connect provider of business systems (業務ログイン認証, 手引き II 3(3)).
-- A business system's client secret: only its SHA-256 (the secret is 256 random bits, shown once), written with
-- the `BusinessSystemLoginSecretIssued` event in one transaction.
CREATE TABLE login_client_secrets (
    business_id TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    issued_at TEXT NOT NULL
);

-- Authorization codes: only their SHA-256; single use (`used`), a minute long, bound to the business system, the
-- redirect URI and the PKCE challenge. Purged once expired.
CREATE TABLE login_codes (
    code_hash TEXT PRIMARY KEY,
    business_id TEXT NOT NULL,
    operator_key TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    nonce TEXT,
    method TEXT NOT NULL,
    auth_time BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX login_codes_by_expiry ON login_codes (expires_at);
