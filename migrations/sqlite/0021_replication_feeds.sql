-- The replication feeds of the business systems (issue 11, point 2; owned by projections/src/feeds.rs). Like every
-- read model they can be dropped and rebuilt from the event log; an item's place is its source event's place in
-- the log, so a rebuild gives every item the same id again. No personal data: ids, codes, statuses and the
-- places of events only — an item's content is built when it is delivered, from the (sealed) event log.
-- Booleans are BIGINT 0/1 (sqlx Any has no SQLite boolean).

-- The projection's own view of cards and shared use, at the position it has reached (other read models have
-- their own checkpoints, so it keeps what it decides on).
CREATE TABLE feed_cards (
    fid          TEXT NOT NULL PRIMARY KEY,
    resident_id  TEXT NOT NULL,
    municipality TEXT NOT NULL,
    status       TEXT NOT NULL   -- in_use / suspended / abolished
);
CREATE INDEX feed_cards_by_resident ON feed_cards (resident_id);
CREATE INDEX feed_cards_by_municipality ON feed_cards (municipality);

CREATE TABLE feed_card_aps (
    fid         TEXT NOT NULL,
    business_id TEXT NOT NULL,
    PRIMARY KEY (fid, business_id)
);

CREATE TABLE feed_permits (
    business_id  TEXT NOT NULL,
    municipality TEXT NOT NULL,
    PRIMARY KEY (business_id, municipality)
);

-- Every resident a business system's feed ever carried: entitled now (1), or no longer (0: his AP was removed or
-- his card abolished, or shared use withdrawn). fid: the card carrying its AP when he was last entitled.
CREATE TABLE feed_members (
    business_id  TEXT   NOT NULL,
    resident_id  TEXT   NOT NULL,
    municipality TEXT   NOT NULL,
    fid          TEXT   NOT NULL,
    entitled     BIGINT NOT NULL,
    PRIMARY KEY (business_id, resident_id)
);
CREATE INDEX feed_members_by_resident ON feed_members (resident_id);

-- The items, per business system, in the order of the log: (tx, position) is the source event's checkpoint
-- (transaction_id, global_position), ord numbers the items one event gives one system (a permit of shared use
-- brings several residents at once). kind: registered, changed, card_suspended, card_resumed, card_abolished,
-- ap_removed, moved_out, erased.
CREATE TABLE feed_items (
    business_id  TEXT   NOT NULL,
    tx           BIGINT NOT NULL,
    position     BIGINT NOT NULL,
    ord          BIGINT NOT NULL,
    kind         TEXT   NOT NULL,
    municipality TEXT   NOT NULL,
    resident_id  TEXT   NOT NULL,
    fid          TEXT,
    event_id     TEXT   NOT NULL,
    PRIMARY KEY (business_id, tx, position, ord)
);
