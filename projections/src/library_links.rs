//! The library links as the feeds' index follows them (図書館, 手引き II 2; issue 11, point 4): the 標準IDs handed
//! out to cards' library APs, which reissued card's 標準ID replaced which, the live links of each library system,
//! and the `standard_id_replaced` items that tell a library the new 標準ID of a card it linked.
//!
//! A part of the feeds' index (`crate::feeds::FeedIndex` calls it in the log's order, in its own transaction and
//! under its checkpoint, because it writes `feed_items`); owns `feed_standard_ids`, `feed_library_links` and
//! `feed_standard_id_replacements` (migration 0023) and the queries `commands::library` resolves with.
//!
//! **A reissue** (再交付) is what cardap can see of one: a library AP installed with a new 標準ID on a card of a
//! resident whose earlier card carrying a 標準ID was abolished (and not yet replaced). Each such old 標準ID is
//! marked `replaced_by` the new one, and every library system with a live link resolving to the old one gets one
//! `standard_id_replaced` item (`{old_standard_id, new_standard_id}`), its link then resolving to the new one —
//! the link itself (its event stream, keyed by the 標準ID it was made with) is not moved: it is *resolved through
//! the replacement*, so that no event is written on the library's behalf. A resident is the same resident within
//! one municipality (his `resident_id`); a card registered by another municipality after a move is not a reissue.
//! A library AP removed from a card in use ends its 標準ID without a successor.

use cardap_domain::BusinessId;
use cardap_domain::card::{CardEvent, StandardId};
use cardap_domain::library_link::LibraryLinkEvent;
use cardap_store::RecordedEvent;
use sqlx::{AnyConnection, AnyPool, Row};

use crate::ProjectionError;
use crate::feeds::{ItemPlace, kind};

fn db(e: sqlx::Error) -> ProjectionError {
    ProjectionError::from_sqlx(e)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Follows a card event (after the index applied it): 標準IDs handed out, ended, and replaced on a reissue. The
/// `standard_id_replaced` items are numbered from 1 per library system (0 is the card event's own item).
pub(crate) async fn apply_card(
    conn: &mut AnyConnection,
    event: &RecordedEvent,
    decoded: &CardEvent,
    fid: &str,
    resident: &str,
    municipality: &str,
) -> Result<(), ProjectionError> {
    match decoded {
        CardEvent::Abolished => set_state(conn, fid, "live", "abolished").await,
        CardEvent::ApRemoved { business_id } if *business_id == BusinessId::LIBRARY => {
            set_state(conn, fid, "live", "removed").await
        }
        CardEvent::ApInstalled { standard_id: Some(new), .. } => {
            sqlx::query(
                "INSERT INTO feed_standard_ids (standard_id, fid, resident_id, state) VALUES ($1, $2, $3, 'live') \
                 ON CONFLICT (standard_id) DO NOTHING",
            )
            .bind(new.as_str().to_owned())
            .bind(fid.to_owned())
            .bind(resident.to_owned())
            .execute(&mut *conn)
            .await
            .map_err(db)?;
            replace(conn, event, new, resident, municipality).await
        }
        _ => Ok(()),
    }
}

async fn set_state(conn: &mut AnyConnection, fid: &str, from: &str, to: &str) -> Result<(), ProjectionError> {
    sqlx::query("UPDATE feed_standard_ids SET state = $1 WHERE fid = $2 AND state = $3")
        .bind(to.to_owned())
        .bind(fid.to_owned())
        .bind(from.to_owned())
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    Ok(())
}

/// `new` replaces the resident's abolished, unreplaced 標準IDs; every library linking one of them is told.
async fn replace(
    conn: &mut AnyConnection,
    event: &RecordedEvent,
    new: &StandardId,
    resident: &str,
    municipality: &str,
) -> Result<(), ProjectionError> {
    let olds: Vec<String> = sqlx::query(
        "SELECT standard_id FROM feed_standard_ids \
         WHERE resident_id = $1 AND state = 'abolished' AND replaced_by IS NULL AND standard_id <> $2 \
         ORDER BY standard_id",
    )
    .bind(resident.to_owned())
    .bind(new.as_str().to_owned())
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?
    .iter()
    .map(|r| r.try_get(0))
    .collect::<Result<_, _>>()
    .map_err(db)?;
    let mut ords: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    for old in olds {
        sqlx::query("UPDATE feed_standard_ids SET replaced_by = $1 WHERE standard_id = $2")
            .bind(new.as_str().to_owned())
            .bind(old.clone())
            .execute(&mut *conn)
            .await
            .map_err(db)?;
        let libraries: Vec<String> = sqlx::query(
            "SELECT DISTINCT business_id FROM feed_library_links WHERE current_standard_id = $1 ORDER BY business_id",
        )
        .bind(old.clone())
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()
        .map_err(db)?;
        for business in libraries {
            let ord = ords.entry(business.clone()).or_insert(0);
            *ord += 1;
            let (tx, position) = (to_i64(event.checkpoint.transaction), to_i64(event.checkpoint.position));
            // A rebuild, or a second node applying the same batch, writes the same keys: keep the first.
            sqlx::query(
                "INSERT INTO feed_items (business_id, tx, position, ord, kind, municipality, resident_id, fid, \
                 event_id) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8) \
                 ON CONFLICT (business_id, tx, position, ord) DO NOTHING",
            )
            .bind(business.clone())
            .bind(tx)
            .bind(position)
            .bind(to_i64(*ord))
            .bind(kind::STANDARD_ID_REPLACED)
            .bind(municipality.to_owned())
            .bind(resident.to_owned())
            .bind(event.event_id.to_string())
            .execute(&mut *conn)
            .await
            .map_err(db)?;
            sqlx::query(
                "INSERT INTO feed_standard_id_replacements \
                 (business_id, tx, position, ord, old_standard_id, new_standard_id) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (business_id, tx, position, ord) DO NOTHING",
            )
            .bind(business.clone())
            .bind(tx)
            .bind(position)
            .bind(to_i64(*ord))
            .bind(old.clone())
            .bind(new.as_str().to_owned())
            .execute(&mut *conn)
            .await
            .map_err(db)?;
        }
        sqlx::query("UPDATE feed_library_links SET current_standard_id = $1 WHERE current_standard_id = $2")
            .bind(new.as_str().to_owned())
            .bind(old)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
    }
    Ok(())
}

/// Follows a link's event: a live link resolves to the 標準ID it was made with until a reissue replaces that.
pub(crate) async fn apply_link(conn: &mut AnyConnection, decoded: &LibraryLinkEvent) -> Result<(), ProjectionError> {
    match decoded {
        LibraryLinkEvent::Linked { business_id, standard_id, .. } => {
            // Linking again (another 図書ID) keeps where it resolves to.
            sqlx::query(
                "INSERT INTO feed_library_links (business_id, linked_standard_id, current_standard_id) \
                 VALUES ($1, $2, $2) ON CONFLICT (business_id, linked_standard_id) DO NOTHING",
            )
            .bind(business_id.as_str().to_owned())
            .bind(standard_id.as_str().to_owned())
            .execute(&mut *conn)
            .await
            .map_err(db)?;
        }
        LibraryLinkEvent::Unlinked { business_id, standard_id } => {
            sqlx::query("DELETE FROM feed_library_links WHERE business_id = $1 AND linked_standard_id = $2")
                .bind(business_id.as_str().to_owned())
                .bind(standard_id.as_str().to_owned())
                .execute(&mut *conn)
                .await
                .map_err(db)?;
        }
    }
    Ok(())
}

// ---- the queries of `commands::library` and of the feed ----

/// The 標準IDs `business`'s live links were made with that resolve to `standard_id` through reissues (not the
/// link made with `standard_id` itself), in order.
pub async fn linked_through(
    pool: &AnyPool,
    business: &BusinessId,
    standard_id: &StandardId,
) -> Result<Vec<String>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT linked_standard_id FROM feed_library_links \
         WHERE business_id = $1 AND current_standard_id = $2 AND linked_standard_id <> $2 \
         ORDER BY linked_standard_id",
    )
    .bind(business.as_str().to_owned())
    .bind(standard_id.as_str().to_owned())
    .fetch_all(pool)
    .await
    .map_err(db)?;
    rows.iter().map(|r| r.try_get(0).map_err(db)).collect()
}

/// What the `standard_id_replaced` item of `business` at `place` says: `(old, new)`.
pub async fn replacement(
    pool: &AnyPool,
    business: &str,
    place: ItemPlace,
) -> Result<Option<(String, String)>, ProjectionError> {
    let row = sqlx::query(
        "SELECT old_standard_id, new_standard_id FROM feed_standard_id_replacements \
         WHERE business_id = $1 AND tx = $2 AND position = $3 AND ord = $4",
    )
    .bind(business.to_owned())
    .bind(to_i64(place.at.transaction))
    .bind(to_i64(place.at.position))
    .bind(to_i64(place.ord))
    .fetch_optional(pool)
    .await
    .map_err(db)?;
    row.map(|r| Ok((r.try_get(0).map_err(db)?, r.try_get(1).map_err(db)?))).transpose()
}
