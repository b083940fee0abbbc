-- Read models of resident service registration (owned by the `projections` crate: residents.rs, cards.rs,
-- local_settings.rs, registry.rs). Like every read model they can be dropped and rebuilt from the event log.
-- Every query filters by municipality first; every index starts with it.
-- Personal columns are NULL once the subject's data key was destroyed (erased = 1); ids, links and status stay.
-- Booleans are BIGINT 0/1 (sqlx Any has no SQLite boolean). Times are RFC 3339 text (UTC).

-- 利用者. kana_search is kana family || given without separator (no spaces), '' once erased. SQLite's BINARY
-- collation compares UTF-8 bytes, i.e. code points: the prefix range (kana_search >= p AND kana_search <
-- p || U+10FFFF) and the keyset order are those of PostgreSQL's "C" collation.
CREATE TABLE rm_residents (
    municipality  TEXT   NOT NULL,
    resident_id   TEXT   PRIMARY KEY,
    kana_family   TEXT,
    kana_given    TEXT,
    kana_search   TEXT   NOT NULL,
    kanji_family  TEXT,
    kanji_given   TEXT,
    birth_date    TEXT,             -- EYYMMDD
    sex           TEXT,             -- ISO 5218 digit
    postal_code   TEXT,
    address1      TEXT,
    address2      TEXT,
    phone         TEXT,
    email         TEXT,
    occupation    TEXT,
    custom_fields TEXT,             -- JSON object {field key: value}
    registry_key  TEXT,
    moved_out     BIGINT NOT NULL,  -- 0/1
    active_fid    TEXT,
    erased        BIGINT NOT NULL,  -- 0/1
    version       BIGINT NOT NULL,  -- stream version = ETag
    registered_at TEXT   NOT NULL,
    updated_at    TEXT   NOT NULL
);
-- Kana prefix search and the default listing, in keyset order.
CREATE INDEX rm_residents_by_kana ON rm_residents (municipality, kana_search, resident_id);
-- Birth date search, already in keyset order within one date.
CREATE INDEX rm_residents_by_birth_date ON rm_residents (municipality, birth_date, kana_search, resident_id);

-- Cards (FID unique nationwide) and their APs. rm_card_aps keeps the APs of an abolished card as they were.
CREATE TABLE rm_cards (
    fid           TEXT   PRIMARY KEY,
    municipality  TEXT   NOT NULL,
    resident_id   TEXT   NOT NULL,
    status        TEXT   NOT NULL,  -- in_use / suspended / abolished
    local_area    BIGINT NOT NULL,  -- 0/1
    version       BIGINT NOT NULL,
    registered_at TEXT   NOT NULL,
    updated_at    TEXT   NOT NULL
);
CREATE INDEX rm_cards_by_resident ON rm_cards (municipality, resident_id);

CREATE TABLE rm_card_aps (
    fid          TEXT NOT NULL,
    business_id  TEXT NOT NULL,
    standard_id  TEXT,              -- 標準ID, library AP only
    installed_at TEXT NOT NULL,
    PRIMARY KEY (fid, business_id)
);

-- How many non-abolished cards of a municipality carry each AP.
CREATE TABLE rm_ap_counts (
    municipality TEXT   NOT NULL,
    business_id  TEXT   NOT NULL,
    cards        BIGINT NOT NULL,
    PRIMARY KEY (municipality, business_id)
);

-- 市町村設定 for resident services. custom_fields: the definitions as the event stores them (JSON array);
-- catalog and presets: space-separated business ids.
CREATE TABLE rm_local_settings (
    municipality  TEXT   PRIMARY KEY,
    custom_fields TEXT   NOT NULL,
    catalog       TEXT   NOT NULL,
    presets       TEXT   NOT NULL,
    version       BIGINT NOT NULL
);

-- The imported resident registry (既存住基). name and kana are whole names with a full-width space.
CREATE TABLE rm_registry_entries (
    municipality TEXT   NOT NULL,
    registry_key TEXT   NOT NULL,
    name         TEXT,
    kana         TEXT,
    birth_date   TEXT,              -- EYYMMDD
    sex          TEXT,
    postal_code  TEXT,
    address      TEXT,
    erased       BIGINT NOT NULL,   -- 0/1
    version      BIGINT NOT NULL,
    PRIMARY KEY (municipality, registry_key)
);
-- Lookup by the facts read from a card (birth date first, then name and sex among the few of that day).
CREATE INDEX rm_registry_entries_by_birth_date ON rm_registry_entries (municipality, birth_date);
