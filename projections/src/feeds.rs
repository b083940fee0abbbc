//! The replication feeds' index (利用者情報の連携, 手引き I 1.1(4), II 1–3): for every business system, which events
//! of the log concern a resident it is entitled to, in the log's order — the items of its feed, without their
//! content.
//!
//! Owns `feed_cards`, `feed_card_aps`, `feed_permits`, `feed_members` and `feed_items` (migration 0021) and the
//! queries the feed reads them with. Holds no personal data: an item names its kind, the resident, his card and
//! the source event; `commands::feeds` builds its content from the sealed event log when it is delivered.
//!
//! **Entitlement is decided at each event's position**, from this projection's own state at that point of the log
//! (the runner applies events in the store's safe order, so a late-committing transaction is applied when it
//! becomes visible, never skipped): resident R is *entitled* to business system B when one of R's cards that is
//! not abolished carries B's AP (カードAP搭載) and B permits the card's municipality (共同利用). Per event:
//! - an event that makes R entitled (the AP installed; the municipality permitted while his card has the AP) gives
//!   B a `registered` item: the first item of a newly entitled resident, delivered as a full snapshot of the fields
//!   B may see as they stood at that position;
//! - while entitled: `changed` (his fields), `card_suspended`, `card_resumed`; the event that ends it on his side
//!   gives `ap_removed` or `card_abolished`, the last item until he is entitled again;
//! - a withdrawal of shared use or the system's retirement ends it without an item: nothing of that municipality
//!   (or system) follows;
//! - a library system that linked a 標準ID gets `standard_id_replaced` when a reissued card's new 標準ID replaces
//!   it, whatever municipality the card is of: the link, not shared use, entitles it (`crate::library_links`);
//! - `moved_out` and `erased` are also given to a system whose feed carried him before, when his entitlement ended
//!   on his side (his card must be abolished before either can happen) and the municipality is still permitted:
//!   they carry no personal data and tell the system to drop what it keeps of him.
//!
//! The certificate issuance system (`01`) also learns each municipality it serves (1.2, issue 11 point 3): an
//! `issuance_service` item, about no resident, when a municipality permitted to use `01` sets its issuance service
//! (`MunicipalityIssuanceServiceSet`), and when a municipality becomes permitted to use `01` — numbered after that
//! permit's residents, so the ids of the items a permit gave before are unchanged — so that a reader from the start
//! always learns a municipality's service with its first residents or before them. Its content is the service as it
//! stood at that place (the defaults until set), built at delivery like every item's. No other system gets one.
//!
//! Items are written by one runner transaction at a time (the checkpoint row is locked), in checkpoint order, so a
//! reader paging by `(tx, position, ord)` never sees a later item before an earlier one.

use async_trait::async_trait;
use cardap_domain::business_system::{BusinessSystem, BusinessSystemEvent};
use cardap_domain::card::{Card, CardEvent};
use cardap_domain::issuance_service::{IssuanceService, IssuanceServiceEvent};
use cardap_domain::library_link::LibraryLink;
use cardap_domain::resident::{Resident, ResidentEvent};
use cardap_domain::{Aggregate, BusinessId, DomainEvent};
use cardap_store::{Checkpoint, RecordedEvent};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};

use crate::{Projection, ProjectionError, library_links};

pub const NAME: &str = "feeds";

const STREAM_TYPES: &[&str] = &[
    Resident::STREAM_TYPE,
    Card::STREAM_TYPE,
    BusinessSystem::STREAM_TYPE,
    LibraryLink::STREAM_TYPE,
    IssuanceService::STREAM_TYPE,
];

/// What an item says happened (the feed's `type`).
pub mod kind {
    pub const REGISTERED: &str = "registered";
    pub const CHANGED: &str = "changed";
    pub const CARD_SUSPENDED: &str = "card_suspended";
    pub const CARD_RESUMED: &str = "card_resumed";
    pub const CARD_ABOLISHED: &str = "card_abolished";
    pub const AP_REMOVED: &str = "ap_removed";
    pub const MOVED_OUT: &str = "moved_out";
    pub const ERASED: &str = "erased";
    /// To a library system that linked a 標準ID: the card was reissued and this new 標準ID replaces it
    /// (`crate::library_links`).
    pub const STANDARD_ID_REPLACED: &str = "standard_id_replaced";
    /// To the certificate issuance system (`01`): a municipality's issuance service (certificates, hours, closed
    /// periods), about no resident.
    pub const ISSUANCE_SERVICE: &str = "issuance_service";
    /// Every kind, as documented.
    pub const ALL: [&str; 10] = [
        REGISTERED,
        CHANGED,
        CARD_SUSPENDED,
        CARD_RESUMED,
        CARD_ABOLISHED,
        AP_REMOVED,
        MOVED_OUT,
        ERASED,
        STANDARD_ID_REPLACED,
        ISSUANCE_SERVICE,
    ];
}

/// Builds the feeds' index.
#[derive(Debug)]
pub struct FeedIndex;

/// An item's place in its feed: its source event's checkpoint, and its number among that event's items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ItemPlace {
    pub at: Checkpoint,
    pub ord: u64,
}

/// One indexed item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemRow {
    pub place: ItemPlace,
    pub kind: String,
    pub municipality: String,
    /// Empty for an item about no resident (`issuance_service`).
    pub resident_id: String,
    /// The card carrying the system's AP (when the item is about a card, or the resident has one).
    pub fid: Option<String>,
    /// The source event.
    pub event_id: String,
}

fn db(e: sqlx::Error) -> ProjectionError {
    ProjectionError::from_sqlx(e)
}

fn to_i64(v: u64) -> i64 {
    // Checkpoints come from the store's BIGINT columns; ords are small.
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// The business systems `resident` is entitled to now (as far as this projection has got), with the card carrying
/// each AP and its municipality, in business-ID order.
async fn entitled(conn: &mut AnyConnection, resident: &str) -> Result<Vec<(String, String, String)>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT a.business_id, c.fid, c.municipality FROM feed_cards c \
         JOIN feed_card_aps a ON a.fid = c.fid \
         JOIN feed_permits p ON p.business_id = a.business_id AND p.municipality = c.municipality \
         WHERE c.resident_id = $1 AND c.status <> 'abolished' ORDER BY a.business_id, c.fid",
    )
    .bind(resident.to_owned())
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    let mut out: Vec<(String, String, String)> = Vec::with_capacity(rows.len());
    for row in rows {
        let business: String = row.try_get(0).map_err(db)?;
        if out.last().is_some_and(|(b, _, _)| *b == business) {
            continue;
        }
        out.push((business, row.try_get(1).map_err(db)?, row.try_get(2).map_err(db)?));
    }
    Ok(out)
}

/// One item to write.
struct NewItem<'a> {
    business: &'a str,
    ord: u64,
    kind: &'static str,
    municipality: &'a str,
    resident: &'a str,
    fid: Option<&'a str>,
}

async fn insert_item(
    conn: &mut AnyConnection,
    event: &RecordedEvent,
    item: NewItem<'_>,
) -> Result<(), ProjectionError> {
    // A rebuild, or a second node applying the same batch after a crash, writes the same key: keep the first.
    sqlx::query(
        "INSERT INTO feed_items (business_id, tx, position, ord, kind, municipality, resident_id, fid, event_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (business_id, tx, position, ord) DO NOTHING",
    )
    .bind(item.business.to_owned())
    .bind(to_i64(event.checkpoint.transaction))
    .bind(to_i64(event.checkpoint.position))
    .bind(to_i64(item.ord))
    .bind(item.kind)
    .bind(item.municipality.to_owned())
    .bind(item.resident.to_owned())
    .bind(item.fid.map(str::to_owned))
    .bind(event.event_id.to_string())
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    Ok(())
}

async fn set_member(
    conn: &mut AnyConnection,
    business: &str,
    resident: &str,
    municipality: &str,
    fid: &str,
    entitled: bool,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "INSERT INTO feed_members (business_id, resident_id, municipality, fid, entitled) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (business_id, resident_id) DO UPDATE SET municipality = $3, fid = $4, entitled = $5",
    )
    .bind(business.to_owned())
    .bind(resident.to_owned())
    .bind(municipality.to_owned())
    .bind(fid.to_owned())
    .bind(i64::from(entitled))
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    Ok(())
}

/// An `issuance_service` item of `municipality` (about no resident).
fn issuance_service_item<'a>(business: &'a str, ord: u64, municipality: &'a str) -> NewItem<'a> {
    NewItem { business, ord, kind: kind::ISSUANCE_SERVICE, municipality, resident: "", fid: None }
}

/// The resident a card is registered to now (as far as this projection has got), with its municipality.
async fn card_holder(conn: &mut AnyConnection, fid: &str) -> Result<Option<(String, String)>, ProjectionError> {
    let row = sqlx::query("SELECT resident_id, municipality FROM feed_cards WHERE fid = $1")
        .bind(fid.to_owned())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?;
    row.map(|r| Ok((r.try_get(0).map_err(db)?, r.try_get(1).map_err(db)?))).transpose()
}

impl FeedIndex {
    async fn apply_card(
        &self,
        conn: &mut AnyConnection,
        event: &RecordedEvent,
        decoded: CardEvent,
    ) -> Result<(), ProjectionError> {
        let fid = event.stream_id.key().to_owned();
        if let CardEvent::Registered { fid: card, municipality, resident_id } = &decoded {
            // A card registered again once abolished starts afresh (nothing of the old registration counts).
            sqlx::query("DELETE FROM feed_card_aps WHERE fid = $1")
                .bind(card.as_str().to_owned())
                .execute(&mut *conn)
                .await
                .map_err(db)?;
            sqlx::query(
                "INSERT INTO feed_cards (fid, resident_id, municipality, status) VALUES ($1, $2, $3, 'in_use') \
                 ON CONFLICT (fid) DO UPDATE SET resident_id = $2, municipality = $3, status = 'in_use'",
            )
            .bind(card.as_str().to_owned())
            .bind(resident_id.to_string())
            .bind(municipality.as_str().to_owned())
            .execute(&mut *conn)
            .await
            .map_err(db)?;
            // No AP yet: nobody is entitled by a registration alone.
            return Ok(());
        }
        let Some((resident, holder_municipality)) = card_holder(conn, &fid).await? else {
            return Err(ProjectionError::event(NAME, event, "an event of a card that was never registered"));
        };
        let before = entitled(conn, &resident).await?;
        let change: Option<(&str, Option<&str>)> = match &decoded {
            CardEvent::ApInstalled { business_id, .. } => {
                sqlx::query(
                    "INSERT INTO feed_card_aps (fid, business_id) VALUES ($1, $2) \
                     ON CONFLICT (fid, business_id) DO NOTHING",
                )
                .bind(fid.clone())
                .bind(business_id.as_str().to_owned())
                .execute(&mut *conn)
                .await
                .map_err(db)?;
                None
            }
            CardEvent::ApRemoved { business_id } => {
                sqlx::query("DELETE FROM feed_card_aps WHERE fid = $1 AND business_id = $2")
                    .bind(fid.clone())
                    .bind(business_id.as_str().to_owned())
                    .execute(&mut *conn)
                    .await
                    .map_err(db)?;
                None
            }
            CardEvent::Suspended => Some(("suspended", Some(kind::CARD_SUSPENDED))),
            CardEvent::Resumed => Some(("in_use", Some(kind::CARD_RESUMED))),
            CardEvent::Abolished => Some(("abolished", None)),
            CardEvent::LocalAreaCreated | CardEvent::Registered { .. } => None,
        };
        if let Some((status, _)) = change {
            sqlx::query("UPDATE feed_cards SET status = $1 WHERE fid = $2")
                .bind(status)
                .bind(fid.clone())
                .execute(&mut *conn)
                .await
                .map_err(db)?;
        }
        let after = entitled(conn, &resident).await?;
        for (business, card, municipality) in &after {
            let was = before.iter().any(|(b, _, _)| b == business);
            let kind = match (&decoded, was) {
                (_, false) => Some(kind::REGISTERED),
                // Only the card that carries the system's AP concerns it.
                (CardEvent::Suspended | CardEvent::Resumed, true) if *card == fid => change.and_then(|(_, k)| k),
                _ => None,
            };
            if let Some(kind) = kind {
                let item = NewItem { business, ord: 0, kind, municipality, resident: &resident, fid: Some(card) };
                insert_item(conn, event, item).await?;
                set_member(conn, business, &resident, municipality, card, true).await?;
            }
        }
        for (business, card, municipality) in &before {
            if after.iter().any(|(b, _, _)| b == business) {
                continue;
            }
            let kind = match &decoded {
                CardEvent::ApRemoved { .. } => kind::AP_REMOVED,
                _ => kind::CARD_ABOLISHED,
            };
            let item = NewItem { business, ord: 0, kind, municipality, resident: &resident, fid: Some(card) };
            insert_item(conn, event, item).await?;
            set_member(conn, business, &resident, municipality, card, false).await?;
        }
        library_links::apply_card(conn, event, &decoded, &fid, &resident, &holder_municipality).await
    }

    async fn apply_business_system(
        &self,
        conn: &mut AnyConnection,
        event: &RecordedEvent,
        decoded: BusinessSystemEvent,
    ) -> Result<(), ProjectionError> {
        let business = event.stream_id.key().to_owned();
        match decoded {
            BusinessSystemEvent::MunicipalityPermitted { municipality } => {
                let code = municipality.as_str().to_owned();
                sqlx::query(
                    "INSERT INTO feed_permits (business_id, municipality) VALUES ($1, $2) \
                     ON CONFLICT (business_id, municipality) DO NOTHING",
                )
                .bind(business.clone())
                .bind(code.clone())
                .execute(&mut *conn)
                .await
                .map_err(db)?;
                // Every resident of the municipality whose live card carries the AP is entitled from here on.
                let rows = sqlx::query(
                    "SELECT c.resident_id, min(c.fid) FROM feed_cards c \
                     JOIN feed_card_aps a ON a.fid = c.fid AND a.business_id = $1 \
                     WHERE c.municipality = $2 AND c.status <> 'abolished' \
                     GROUP BY c.resident_id ORDER BY c.resident_id",
                )
                .bind(business.clone())
                .bind(code.clone())
                .fetch_all(&mut *conn)
                .await
                .map_err(db)?;
                for (ord, row) in (0u64..).zip(&rows) {
                    let resident: String = row.try_get(0).map_err(db)?;
                    let fid: String = row.try_get(1).map_err(db)?;
                    let item = NewItem {
                        business: &business,
                        ord,
                        kind: kind::REGISTERED,
                        municipality: &code,
                        resident: &resident,
                        fid: Some(&fid),
                    };
                    insert_item(conn, event, item).await?;
                    set_member(conn, &business, &resident, &code, &fid, true).await?;
                }
                // The issuance server learns the municipality's service with its residents (after them: the ids of
                // the items a permit gave before the service was delivered stay the same).
                if business == BusinessId::CERTIFICATE_ISSUANCE.as_str() {
                    let ord = u64::try_from(rows.len()).unwrap_or(u64::MAX);
                    insert_item(conn, event, issuance_service_item(&business, ord, &code)).await?;
                }
            }
            BusinessSystemEvent::MunicipalityWithdrawn { municipality } => {
                for sql in [
                    "DELETE FROM feed_permits WHERE business_id = $1 AND municipality = $2",
                    "UPDATE feed_members SET entitled = 0 WHERE business_id = $1 AND municipality = $2",
                ] {
                    sqlx::query(sql)
                        .bind(business.clone())
                        .bind(municipality.as_str().to_owned())
                        .execute(&mut *conn)
                        .await
                        .map_err(db)?;
                }
            }
            BusinessSystemEvent::Retired => {
                for sql in [
                    "DELETE FROM feed_permits WHERE business_id = $1",
                    "UPDATE feed_members SET entitled = 0 WHERE business_id = $1",
                ] {
                    sqlx::query(sql).bind(business.clone()).execute(&mut *conn).await.map_err(db)?;
                }
            }
            // The field list applies at delivery; the rest does not change who is entitled.
            BusinessSystemEvent::Registered { .. }
            | BusinessSystemEvent::Updated { .. }
            | BusinessSystemEvent::LoginConfigured { .. }
            | BusinessSystemEvent::LoginSecretIssued { .. }
            | BusinessSystemEvent::FeedFieldsSet { .. }
            | BusinessSystemEvent::WebhookSet { .. }
            | BusinessSystemEvent::WebhookRemoved
            | BusinessSystemEvent::WebhookSecretIssued { .. } => {}
        }
        Ok(())
    }

    /// A municipality's issuance service set: an item for the certificate issuance system while it serves the
    /// municipality.
    async fn apply_issuance_service(
        &self,
        conn: &mut AnyConnection,
        event: &RecordedEvent,
        decoded: IssuanceServiceEvent,
    ) -> Result<(), ProjectionError> {
        let IssuanceServiceEvent::Set { .. } = decoded;
        let code = event.stream_id.key().to_owned();
        let business = BusinessId::CERTIFICATE_ISSUANCE.as_str();
        let permitted = sqlx::query("SELECT 1 FROM feed_permits WHERE business_id = $1 AND municipality = $2")
            .bind(business.to_owned())
            .bind(code.clone())
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?;
        if permitted.is_some() {
            insert_item(conn, event, issuance_service_item(business, 0, &code)).await?;
        }
        Ok(())
    }

    async fn apply_resident(
        &self,
        conn: &mut AnyConnection,
        event: &RecordedEvent,
        decoded: ResidentEvent,
    ) -> Result<(), ProjectionError> {
        let resident = event.stream_id.key().to_owned();
        let (kind, only_entitled) = match decoded {
            ResidentEvent::FieldsChanged { .. } => (kind::CHANGED, true),
            ResidentEvent::MovedOut => (kind::MOVED_OUT, false),
            ResidentEvent::Erased { .. } => (kind::ERASED, false),
            ResidentEvent::Registered { .. }
            | ResidentEvent::CardAttached { .. }
            | ResidentEvent::CardDetached { .. } => return Ok(()),
        };
        // Systems whose feed carries him now, or carried him and still serve his municipality.
        let rows = sqlx::query(
            "SELECT m.business_id, m.municipality, m.fid FROM feed_members m \
             JOIN feed_permits p ON p.business_id = m.business_id AND p.municipality = m.municipality \
             WHERE m.resident_id = $1 AND (m.entitled = 1 OR $2 = 0) ORDER BY m.business_id",
        )
        .bind(resident.clone())
        .bind(i64::from(only_entitled))
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
        for row in rows {
            let business: String = row.try_get(0).map_err(db)?;
            let municipality: String = row.try_get(1).map_err(db)?;
            let fid: String = row.try_get(2).map_err(db)?;
            let item = NewItem {
                business: &business,
                ord: 0,
                kind,
                municipality: &municipality,
                resident: &resident,
                fid: Some(&fid),
            };
            insert_item(conn, event, item).await?;
        }
        Ok(())
    }
}

fn decode<E: DomainEvent>(event: &RecordedEvent) -> Result<E, ProjectionError> {
    event.decode().map_err(|e| ProjectionError::event(NAME, event, e))
}

#[async_trait]
impl Projection for FeedIndex {
    fn name(&self) -> &'static str {
        NAME
    }

    fn stream_types(&self) -> Option<&'static [&'static str]> {
        Some(STREAM_TYPES)
    }

    async fn apply(&self, conn: &mut AnyConnection, event: &RecordedEvent) -> Result<(), ProjectionError> {
        match event.stream_type.as_str() {
            t if t == Card::STREAM_TYPE => self.apply_card(conn, event, decode(event)?).await,
            t if t == BusinessSystem::STREAM_TYPE => self.apply_business_system(conn, event, decode(event)?).await,
            t if t == Resident::STREAM_TYPE => self.apply_resident(conn, event, decode(event)?).await,
            t if t == LibraryLink::STREAM_TYPE => library_links::apply_link(conn, &decode(event)?).await,
            t if t == IssuanceService::STREAM_TYPE => self.apply_issuance_service(conn, event, decode(event)?).await,
            _ => Ok(()),
        }
    }

    fn tables(&self) -> &'static [&'static str] {
        TABLES
    }
}

/// The index's tables, the library links' among them.
const TABLES: &[&str] = &[
    "feed_items",
    "feed_members",
    "feed_permits",
    "feed_card_aps",
    "feed_cards",
    "feed_standard_id_replacements",
    "feed_library_links",
    "feed_standard_ids",
];

// ---- the queries of the feed ----

fn item_row(row: &AnyRow) -> Result<ItemRow, ProjectionError> {
    Ok(ItemRow {
        place: ItemPlace {
            at: Checkpoint {
                transaction: to_u64(row.try_get("tx").map_err(db)?),
                position: to_u64(row.try_get("position").map_err(db)?),
            },
            ord: to_u64(row.try_get("ord").map_err(db)?),
        },
        kind: row.try_get("kind").map_err(db)?,
        municipality: row.try_get("municipality").map_err(db)?,
        resident_id: row.try_get("resident_id").map_err(db)?,
        fid: row.try_get("fid").map_err(db)?,
        event_id: row.try_get("event_id").map_err(db)?,
    })
}

/// Up to `limit` items of `business`'s feed after `after` (`None`: from its start), in order.
pub async fn items_after(
    pool: &AnyPool,
    business: &str,
    after: Option<ItemPlace>,
    limit: usize,
) -> Result<Vec<ItemRow>, ProjectionError> {
    let after = after.unwrap_or(ItemPlace { at: Checkpoint::START, ord: 0 });
    // Before the start: (0, 0, -1) so that nothing at (0, 0) is skipped (none exists; the log starts at 1).
    let ord = if after == (ItemPlace { at: Checkpoint::START, ord: 0 }) { -1 } else { to_i64(after.ord) };
    let rows = sqlx::query(
        "SELECT tx, position, ord, kind, municipality, resident_id, fid, event_id FROM feed_items \
         WHERE business_id = $1 AND (tx, position, ord) > ($2, $3, $4) ORDER BY tx, position, ord LIMIT $5",
    )
    .bind(business.to_owned())
    .bind(to_i64(after.at.transaction))
    .bind(to_i64(after.at.position))
    .bind(ord)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await
    .map_err(db)?;
    rows.iter().map(item_row).collect()
}

/// Whether `business`'s feed has an item at `place` (a cursor names one it delivered).
pub async fn item_exists(pool: &AnyPool, business: &str, place: ItemPlace) -> Result<bool, ProjectionError> {
    let row = sqlx::query("SELECT 1 FROM feed_items WHERE business_id = $1 AND tx = $2 AND position = $3 AND ord = $4")
        .bind(business.to_owned())
        .bind(to_i64(place.at.transaction))
        .bind(to_i64(place.at.position))
        .bind(to_i64(place.ord))
        .fetch_optional(pool)
        .await
        .map_err(db)?;
    Ok(row.is_some())
}

/// How far the index has got (its stored checkpoint; `START` before its first run or after a reset).
pub async fn reached(pool: &AnyPool) -> Result<Checkpoint, ProjectionError> {
    let row = sqlx::query("SELECT transaction_id, position FROM projection_checkpoints WHERE name = $1")
        .bind(NAME)
        .fetch_optional(pool)
        .await
        .map_err(db)?;
    row.map(|r| {
        Ok(Checkpoint {
            transaction: to_u64(r.try_get("transaction_id").map_err(db)?),
            position: to_u64(r.try_get("position").map_err(db)?),
        })
    })
    .transpose()
    .map(Option::unwrap_or_default)
}
