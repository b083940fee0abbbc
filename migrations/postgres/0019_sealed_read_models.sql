-- No personal data in clear at rest (issue 12, point 7): the resident register and the imported registry keep
-- their personal fields as one sealed column (AES-256-GCM under the subject's own data key, the key of his events;
-- AAD = table and row key) and are searched through keyed blind indexes (HMAC-SHA-256 under a search key derived
-- from the master key, 16 bytes; see projections/src/sealing.rs). Ids, links and status stay in clear.
-- Both tables are dropped and rebuilt from the event log at start (their checkpoints are deleted).

DROP TABLE rm_residents;
CREATE TABLE rm_residents (
    municipality  TEXT   NOT NULL,
    resident_id   TEXT COLLATE "C" PRIMARY KEY,
    personal      BYTEA,            -- sealed JSON of his personal data; NULL once erased
    registry_key  TEXT,
    moved_out     BIGINT NOT NULL,  -- 0/1
    active_fid    TEXT,
    erased        BIGINT NOT NULL,  -- 0/1
    version       BIGINT NOT NULL,  -- stream version = ETag
    registered_at TEXT   NOT NULL,
    updated_at    TEXT   NOT NULL
);
-- The listing without conditions, in keyset order.
CREATE INDEX rm_residents_by_municipality ON rm_residents (municipality, resident_id);

-- Blind index of the resident register: one row per (token, resident); tokens of every prefix of the kana name
-- (family || given, no spaces) and of the birth date, each tied to the municipality. Search = one token's range,
-- in resident-id order.
CREATE TABLE rm_resident_tokens (
    token       BYTEA  NOT NULL,
    resident_id TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (token, resident_id)
);
-- Rewriting or deleting a resident's tokens.
CREATE INDEX rm_resident_tokens_by_resident ON rm_resident_tokens (resident_id);
DELETE FROM projection_checkpoints WHERE name = 'residents';

DROP TABLE rm_registry_entries;
CREATE TABLE rm_registry_entries (
    municipality TEXT   NOT NULL,
    registry_key TEXT   NOT NULL,
    facts        BYTEA,              -- sealed JSON of the entry's facts; NULL once erased
    birth_token  BYTEA,              -- blind index of (municipality, birth date); NULL once erased
    erased       BIGINT NOT NULL,   -- 0/1
    version      BIGINT NOT NULL,
    PRIMARY KEY (municipality, registry_key)
);
-- Lookup by the facts read from a card: the few entries of that birth date, opened and compared in memory.
CREATE INDEX rm_registry_entries_by_birth_token ON rm_registry_entries (birth_token);
DELETE FROM projection_checkpoints WHERE name = 'registry';
