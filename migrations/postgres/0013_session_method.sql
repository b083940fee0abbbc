-- How the operator proved who he was for the session: password, certificate or biometric (WebAuthn). Business
-- systems that log him in through cardap (OpenID Connect) are told which.
ALTER TABLE sessions ADD COLUMN method TEXT NOT NULL DEFAULT 'password';
