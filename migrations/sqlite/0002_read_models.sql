-- Read models (owned by the `projections` crate) and authentication state (owned by `api`).
-- Read models can be dropped and rebuilt from the event log at any time (`cardap projections rebuild`).

CREATE TABLE projection_checkpoints (
    name           TEXT PRIMARY KEY,
    transaction_id BIGINT NOT NULL,
    position       BIGINT NOT NULL,
    updated_at     TEXT   NOT NULL
);

-- The municipality list (全国地方公共団体コード, name, kind, display order).
CREATE TABLE rm_municipalities (
    code          TEXT    PRIMARY KEY,
    name          TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    display_order BIGINT  NOT NULL,
    abolished     BIGINT  NOT NULL, -- 0/1: sqlx Any has no SQLite boolean
    version       BIGINT  NOT NULL,
    registered_at TEXT    NOT NULL,
    updated_at    TEXT    NOT NULL
);
CREATE INDEX rm_municipalities_order ON rm_municipalities (display_order, code);

-- Operators as login sees them. municipality is '' for the system administrator.
CREATE TABLE rm_operators (
    operator_key TEXT    PRIMARY KEY,
    municipality TEXT    NOT NULL,
    operator_id  TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    roles        TEXT    NOT NULL,
    version      BIGINT  NOT NULL,
    CONSTRAINT rm_operators_login_key UNIQUE (municipality, operator_id)
);

-- Password hashes (Argon2id PHC strings). Never in events, never exported.
CREATE TABLE credentials (
    operator_key  TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    changed_at    TEXT NOT NULL
);

-- Sessions: only the SHA-256 of the token is stored. Times are Unix seconds.
CREATE TABLE sessions (
    token_hash   TEXT    PRIMARY KEY,
    operator_key TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL,
    last_seen_at BIGINT  NOT NULL,
    expires_at   BIGINT  NOT NULL,
    ended        BIGINT  NOT NULL  -- 0/1
);
CREATE INDEX sessions_by_operator ON sessions (operator_key);
