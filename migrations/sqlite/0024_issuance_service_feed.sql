-- The certificate issuance system's feed tells the issuance server each municipality's issuance service (issue 11,
-- point 3): an `issuance_service` item in feed_items (resident_id '' — it is about no resident — and fid NULL) at
-- every permit of business system 01 and at every change of a permitted municipality's service (its events are on
-- the `issuance_service` streams). No new table. The feeds' index (owned by projections/src/feeds.rs, with its part
-- projections/src/library_links.rs) is emptied here and rebuilt from the event log at start, so that the permits
-- made before this version give their items too; every other item comes back with the same id (its place in the
-- log), so the business systems' cursors stay valid.

DELETE FROM feed_items;
DELETE FROM feed_members;
DELETE FROM feed_permits;
DELETE FROM feed_card_aps;
DELETE FROM feed_cards;
DELETE FROM feed_standard_id_replacements;
DELETE FROM feed_library_links;
DELETE FROM feed_standard_ids;
DELETE FROM projection_checkpoints WHERE name = 'feeds';
