-- Operator authentication: business systems, shared use, the full operator directory, 業務内ID, password history.
-- Read models (rm_*) are rebuilt from the event log; the operator directory gets new columns, so it is dropped
-- and its checkpoint removed: the runner rebuilds it at start-up.

DROP TABLE rm_operators;
DELETE FROM projection_checkpoints WHERE name = 'operators';

CREATE TABLE rm_operators (
    operator_key     TEXT   PRIMARY KEY,
    municipality     TEXT   NOT NULL, -- '' for the system administrator
    operator_id      TEXT   NOT NULL,
    name             TEXT   NOT NULL,
    department       TEXT,
    sex              TEXT,
    phone            TEXT,
    extension        TEXT,
    email            TEXT,
    info             TEXT,
    extra            TEXT,
    roles            TEXT   NOT NULL, -- space-separated
    business_systems TEXT   NOT NULL, -- space-separated business ids
    revoked          BIGINT NOT NULL, -- 0/1
    locked           BIGINT NOT NULL, -- 0/1
    locked_until     BIGINT,          -- Unix seconds; NULL while locked = until an administrator unlocks
    version          BIGINT NOT NULL,
    registered_at    TEXT   NOT NULL,
    updated_at       TEXT   NOT NULL,
    CONSTRAINT rm_operators_login_key UNIQUE (municipality, operator_id)
);

CREATE TABLE rm_operator_internal_ids (
    operator_key TEXT NOT NULL,
    business_id  TEXT NOT NULL,
    internal_id  TEXT NOT NULL,
    role         TEXT,
    PRIMARY KEY (operator_key, business_id)
);

CREATE TABLE rm_business_systems (
    business_id        TEXT   PRIMARY KEY,
    name               TEXT   NOT NULL,
    organization       TEXT,
    image              TEXT,
    top_url            TEXT,
    operator_admin_url TEXT,
    personalize_url    TEXT,
    phone              TEXT,
    email              TEXT,
    retired            BIGINT NOT NULL, -- 0/1
    version            BIGINT NOT NULL
);

-- 共同利用業務設定: which municipalities may use which business system.
CREATE TABLE rm_shared_use (
    business_id  TEXT NOT NULL,
    municipality TEXT NOT NULL,
    PRIMARY KEY (business_id, municipality)
);
CREATE INDEX rm_shared_use_by_municipality ON rm_shared_use (municipality);

-- The last password hashes of each operator, to refuse reuse. Never exported, never in events.
CREATE TABLE password_history (
    operator_key  TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    changed_at    TEXT NOT NULL
);
CREATE INDEX password_history_by_operator ON password_history (operator_key, changed_at);
