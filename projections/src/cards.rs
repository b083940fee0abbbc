//! Cards (マイナンバーカード as cardap holds them, 手引き I 1.1–1.2): each card's resident, カード運用状態, local
//! area and installed APs with their 標準ID, and per municipality how many live cards carry each AP.
//!
//! Owns `rm_cards`, `rm_card_aps` and `rm_ap_counts`. An AP count is the number of cards of the municipality
//! that are not abolished and have the AP installed: an install adds one, a removal or the card's abolition
//! takes one off. An abolished card keeps its AP rows (what it carried), it just no longer counts, until the
//! card is registered again (released, it moved with its holder): then its row is the new registration's, in
//! its new municipality. Every query is confined to one municipality.

use async_trait::async_trait;
use cardap_domain::card::{Card, CardEvent, CardStatus, StandardId};
use cardap_domain::resident::{CardFid, ResidentId};
use cardap_domain::{Aggregate, BusinessId, MunicipalityCode};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};

use crate::ProjectionError;
use crate::typed::{Recorded, View};

/// Builds `rm_cards`, `rm_card_aps` and `rm_ap_counts`.
#[derive(Debug)]
pub struct CardRegister;

pub const NAME: &str = "cards";

#[async_trait]
impl View for CardRegister {
    type Event = CardEvent;
    const NAME: &'static str = NAME;
    const STREAM_TYPES: &'static [&'static str] = &[Card::STREAM_TYPE];
    const TABLES: &'static [&'static str] = &["rm_ap_counts", "rm_card_aps", "rm_cards"];

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        decoded: CardEvent,
        recorded: &Recorded<'_>,
    ) -> Result<(), ProjectionError> {
        let version = recorded.version();
        let at = recorded.at();
        let fid = recorded.key().to_owned();
        let db = ProjectionError::from_sqlx;
        match decoded {
            CardEvent::Registered { fid, municipality, resident_id } => {
                // A card registered again once abolished (released: its holder moved) starts afresh; the old
                // registration, abolished, counted no more and leaves nothing behind here (its events remain).
                for sql in ["DELETE FROM rm_card_aps WHERE fid = $1", "DELETE FROM rm_cards WHERE fid = $1"] {
                    sqlx::query(sql).bind(fid.as_str().to_owned()).execute(&mut *conn).await.map_err(db)?;
                }
                sqlx::query(
                    "INSERT INTO rm_cards (fid, municipality, resident_id, status, local_area, version, registered_at, \
                     updated_at) VALUES ($1, $2, $3, 'in_use', 0, $4, $5, $5)",
                )
                .bind(fid.as_str().to_owned())
                .bind(municipality.as_str().to_owned())
                .bind(resident_id.to_string())
                .bind(version)
                .bind(at)
                .execute(&mut *conn)
                .await
                .map_err(db)?;
            }
            CardEvent::LocalAreaCreated => {
                sqlx::query("UPDATE rm_cards SET local_area = 1, version = $1, updated_at = $2 WHERE fid = $3")
                    .bind(version)
                    .bind(at)
                    .bind(fid)
                    .execute(&mut *conn)
                    .await
                    .map_err(db)?;
            }
            CardEvent::ApInstalled { business_id, standard_id, .. } => {
                sqlx::query(
                    "INSERT INTO rm_card_aps (fid, business_id, standard_id, installed_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(fid.clone())
                .bind(business_id.as_str().to_owned())
                .bind(standard_id.map(String::from))
                .bind(at.clone())
                .execute(&mut *conn)
                .await
                .map_err(db)?;
                sqlx::query(
                    "INSERT INTO rm_ap_counts (municipality, business_id, cards) \
                     SELECT municipality, $2, 1 FROM rm_cards WHERE fid = $1 AND status <> 'abolished' \
                     ON CONFLICT (municipality, business_id) DO UPDATE SET cards = rm_ap_counts.cards + 1",
                )
                .bind(fid.clone())
                .bind(business_id.as_str().to_owned())
                .execute(&mut *conn)
                .await
                .map_err(db)?;
                touch(conn, version, at, fid).await?;
            }
            CardEvent::ApRemoved { business_id } => {
                sqlx::query("DELETE FROM rm_card_aps WHERE fid = $1 AND business_id = $2")
                    .bind(fid.clone())
                    .bind(business_id.as_str().to_owned())
                    .execute(&mut *conn)
                    .await
                    .map_err(db)?;
                sqlx::query(
                    "UPDATE rm_ap_counts SET cards = cards - 1 WHERE business_id = $2 AND municipality = \
                     (SELECT municipality FROM rm_cards WHERE fid = $1 AND status <> 'abolished')",
                )
                .bind(fid.clone())
                .bind(business_id.as_str().to_owned())
                .execute(&mut *conn)
                .await
                .map_err(db)?;
                touch(conn, version, at, fid).await?;
            }
            CardEvent::Abolished => {
                // Before the status changes: the subquery counts only a card that was still live.
                sqlx::query(
                    "UPDATE rm_ap_counts SET cards = cards - 1 \
                     WHERE municipality = (SELECT municipality FROM rm_cards WHERE fid = $1 AND status <> 'abolished') \
                     AND business_id IN (SELECT business_id FROM rm_card_aps WHERE fid = $1)",
                )
                .bind(fid.clone())
                .execute(&mut *conn)
                .await
                .map_err(db)?;
                set_status(conn, CardStatus::Abolished, version, at, fid).await?;
            }
            CardEvent::Suspended => set_status(conn, CardStatus::Suspended, version, at, fid).await?,
            CardEvent::Resumed => set_status(conn, CardStatus::InUse, version, at, fid).await?,
        }
        Ok(())
    }
}

async fn touch(conn: &mut AnyConnection, version: i64, at: String, fid: String) -> Result<(), ProjectionError> {
    sqlx::query("UPDATE rm_cards SET version = $1, updated_at = $2 WHERE fid = $3")
        .bind(version)
        .bind(at)
        .bind(fid)
        .execute(conn)
        .await
        .map_err(ProjectionError::from_sqlx)?;
    Ok(())
}

async fn set_status(
    conn: &mut AnyConnection,
    status: CardStatus,
    version: i64,
    at: String,
    fid: String,
) -> Result<(), ProjectionError> {
    sqlx::query("UPDATE rm_cards SET status = $1, version = $2, updated_at = $3 WHERE fid = $4")
        .bind(status.as_str())
        .bind(version)
        .bind(at)
        .bind(fid)
        .execute(conn)
        .await
        .map_err(ProjectionError::from_sqlx)?;
    Ok(())
}

/// An AP installed on a card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CardApRow {
    pub business_id: BusinessId,
    /// The library AP's 標準ID; `None` for every other AP.
    pub standard_id: Option<StandardId>,
}

/// A card as the screens and the API show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CardRow {
    pub fid: CardFid,
    pub municipality: MunicipalityCode,
    pub resident_id: ResidentId,
    pub status: CardStatus,
    /// 地域住民向け領域 created.
    pub local_area: bool,
    /// In business-id order. An abolished card lists what it carried.
    pub aps: Vec<CardApRow>,
    /// The stream version: the resource's ETag.
    pub version: i64,
    pub registered_at: String,
    pub updated_at: String,
}

const SELECT: &str = "SELECT c.fid, c.municipality, c.resident_id, c.status, c.local_area, c.version, \
     c.registered_at, c.updated_at, a.business_id, a.standard_id \
     FROM rm_cards c LEFT JOIN rm_card_aps a ON a.fid = c.fid";

/// The card `fid` if it belongs to `municipality`.
pub async fn get(
    pool: &AnyPool,
    municipality: &MunicipalityCode,
    fid: &CardFid,
) -> Result<Option<CardRow>, ProjectionError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE c.municipality = $1 AND c.fid = $2 ORDER BY a.business_id"
    )))
    .bind(municipality.as_str().to_owned())
    .bind(fid.as_str().to_owned())
    .fetch_all(pool)
    .await
    .map_err(ProjectionError::from_sqlx)?;
    Ok(cards(&rows)?.into_iter().next())
}

/// The cards of a resident (any status), oldest first.
pub async fn of_resident(
    pool: &AnyPool,
    municipality: &MunicipalityCode,
    resident: &ResidentId,
) -> Result<Vec<CardRow>, ProjectionError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE c.municipality = $1 AND c.resident_id = $2 ORDER BY c.registered_at, c.fid, a.business_id"
    )))
    .bind(municipality.as_str().to_owned())
    .bind(resident.to_string())
    .fetch_all(pool)
    .await
    .map_err(ProjectionError::from_sqlx)?;
    cards(&rows)
}

/// How many cards of `municipality` that are not abolished carry each AP, in business-id order; APs no such
/// card carries are left out.
pub async fn ap_counts(
    pool: &AnyPool,
    municipality: &MunicipalityCode,
) -> Result<Vec<(BusinessId, u64)>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT business_id, cards FROM rm_ap_counts WHERE municipality = $1 AND cards > 0 ORDER BY business_id",
    )
    .bind(municipality.as_str().to_owned())
    .fetch_all(pool)
    .await
    .map_err(ProjectionError::from_sqlx)?;
    rows.iter()
        .map(|r| {
            let id: String = r.try_get("business_id").map_err(ProjectionError::Database)?;
            let cards: i64 = r.try_get("cards").map_err(ProjectionError::Database)?;
            Ok((
                BusinessId::parse(&id).map_err(|e| bad("rm_ap_counts.business_id", &e))?,
                u64::try_from(cards).map_err(|e| bad("rm_ap_counts.cards", &e))?,
            ))
        })
        .collect()
}

fn bad(what: &str, e: &dyn std::fmt::Display) -> ProjectionError {
    ProjectionError::Database(sqlx::Error::Decode(format!("{what}: {e}").into()))
}

/// Folds the joined rows (one per AP, or one with NULL AP columns) into cards, keeping their order.
fn cards(rows: &[AnyRow]) -> Result<Vec<CardRow>, ProjectionError> {
    let get = ProjectionError::Database;
    let mut out: Vec<CardRow> = Vec::new();
    for r in rows {
        let fid: String = r.try_get("fid").map_err(get)?;
        if out.last().is_none_or(|c| c.fid.as_str() != fid) {
            let municipality: String = r.try_get("municipality").map_err(get)?;
            let resident: String = r.try_get("resident_id").map_err(get)?;
            let status: String = r.try_get("status").map_err(get)?;
            out.push(CardRow {
                fid: CardFid::parse(&fid).map_err(|e| bad("rm_cards.fid", &e))?,
                municipality: MunicipalityCode::parse(&municipality).map_err(|e| bad("rm_cards.municipality", &e))?,
                resident_id: ResidentId::parse(&resident).map_err(|e| bad("rm_cards.resident_id", &e))?,
                status: match status.as_str() {
                    "in_use" => CardStatus::InUse,
                    "suspended" => CardStatus::Suspended,
                    "abolished" => CardStatus::Abolished,
                    other => return Err(bad("rm_cards.status", &other)),
                },
                local_area: r.try_get::<i64, _>("local_area").map_err(get)? != 0,
                aps: Vec::new(),
                version: r.try_get("version").map_err(get)?,
                registered_at: r.try_get("registered_at").map_err(get)?,
                updated_at: r.try_get("updated_at").map_err(get)?,
            });
        }
        let business_id: Option<String> = r.try_get("business_id").map_err(get)?;
        let standard_id: Option<String> = r.try_get("standard_id").map_err(get)?;
        if let (Some(card), Some(id)) = (out.last_mut(), business_id) {
            card.aps.push(CardApRow {
                business_id: BusinessId::parse(&id).map_err(|e| bad("rm_card_aps.business_id", &e))?,
                standard_id: standard_id
                    .map(|s| StandardId::parse(&s))
                    .transpose()
                    .map_err(|e| bad("rm_card_aps.standard_id", &e))?,
            });
        }
    }
    Ok(out)
}
