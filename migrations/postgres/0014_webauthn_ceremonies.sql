-- Biometric login (生体認証, WebAuthn): the ceremonies in progress, a registration or a login begun on one node and
-- finished on any. The finish that uses a row deletes it in the same statement, so each challenge is answered at
-- most once; a row past expires_at (Unix seconds) is refused and purged. The payload is the relying party's state
-- of the ceremony (its challenge and the public keys it accepts, who began it): nothing secret.
CREATE TABLE webauthn_ceremonies (
    id         TEXT   PRIMARY KEY,
    kind       TEXT   NOT NULL, -- 'registration' or 'login'
    payload    TEXT   NOT NULL, -- JSON
    expires_at BIGINT NOT NULL
);
CREATE INDEX webauthn_ceremonies_by_expiry ON webauthn_ceremonies (expires_at);
