-- The library link (図書館, 手引き II 2; issue 11, point 4), as the feeds' index follows it (owned by
-- projections/src/library_links.rs, a part of the feeds' index in projections/src/feeds.rs: it writes feed items).
-- Rebuilt from the event log like every read model. No personal data: 標準IDs, card FIDs, resident ids and
-- business IDs only (the 図書ID stays in the link's event stream, read from there).

-- Every 標準ID handed out to a card's library AP: state live (on a card in use or suspended), abolished (its card
-- abolished: a reissue to the same resident replaces it) or removed (the AP removed: never replaced);
-- replaced_by: the 標準ID of the reissued card that replaced it.
CREATE TABLE feed_standard_ids (
    standard_id TEXT NOT NULL PRIMARY KEY,
    fid         TEXT NOT NULL,
    resident_id TEXT NOT NULL,
    state       TEXT NOT NULL,
    replaced_by TEXT
);
CREATE INDEX feed_standard_ids_by_fid ON feed_standard_ids (fid);
CREATE INDEX feed_standard_ids_by_resident ON feed_standard_ids (resident_id);

-- Every live link: the 標準ID a library system linked (its stream's key) and the 標準ID it resolves to now (the
-- same, or the latest one that replaced it on a reissued card).
CREATE TABLE feed_library_links (
    business_id         TEXT NOT NULL,
    linked_standard_id  TEXT NOT NULL,
    current_standard_id TEXT NOT NULL,
    PRIMARY KEY (business_id, linked_standard_id)
);
CREATE INDEX feed_library_links_by_current ON feed_library_links (current_standard_id);

-- What a `standard_id_replaced` item of feed_items says (same key).
CREATE TABLE feed_standard_id_replacements (
    business_id     TEXT   NOT NULL,
    tx              BIGINT NOT NULL,
    position        BIGINT NOT NULL,
    ord             BIGINT NOT NULL,
    old_standard_id TEXT   NOT NULL,
    new_standard_id TEXT   NOT NULL,
    PRIMARY KEY (business_id, tx, position, ord)
);
