//! The replication feeds (利用者情報の連携 / レプリケーション, 手引き I 1.1(4), 1.2, II 1–3): what a business system
//! reads of the residents it serves — a page, a long poll, or a follower for Server-Sent Events — and its field
//! list (データの最小化).
//!
//! Owns who reads a feed (the business system its client certificate names, the same identification as its
//! `tls_client_auth` login: `Pki::business_system_presenting`), the cursor, the items' content and the record of
//! each delivery in the read access log. Which events are items, and for whom, is the index's
//! (`cardap_projections::feeds`, where entitlement at each position is decided and documented).
//!
//! - **Only its own feed, only while in service.** A system reads `feeds/{its business ID}` and nothing else;
//!   another system's feed, a business ID never registered, and a retired system's feed are all
//!   [`FeedError::NotFound`]. The system's stream is read at every page, so a retirement or a withdrawal of shared
//!   use takes effect at once: no item of a municipality it no longer permits is delivered, whatever the index
//!   holds.
//! - **The cursor** is the id of the last item delivered, `<tx>-<position>-<ord>` (the source event's place in the
//!   log and the item's number among that event's items): stable across restarts and rebuilds of the index, and the
//!   same text as an SSE `id:` so that `Last-Event-ID` resumes. A cursor is accepted only when it names an item of
//!   this system's feed (or a place the index has not reached yet, after a rebuild, up to the log's head):
//!   anything else, another system's cursor included, is [`FeedError::InvalidCursor`].
//! - **At-least-once, in order.** Items come in the index's order, which is the log's safe order (a
//!   late-committing transaction is indexed when it commits, after what committed before it, never skipped); a
//!   client that resumes from its last cursor gets every later item once more at most.
//! - **Content at delivery, from the sealed log.** An item's `data` is built when it is delivered from the
//!   resident's and his card's events up to the item's place (opened by the sealed store), filtered by the field
//!   list as it is *now*: a change of the list applies to every item delivered after it. Nothing of the content is
//!   stored. A `registered` item carries every field of the list as the resident stood at that place (a snapshot);
//!   `changed` only the listed fields that changed (an item whose changes are all unlisted is skipped); the card
//!   items the card status; `ap_removed`, `moved_out` and `erased` no personal data. A resident erased since gives
//!   no personal data in any item.
//! - **The issuance service.** An `issuance_service` item (the certificate issuance system's only) is about no
//!   resident: its `data` is the municipality's issuance service as it stood at the item's place (its
//!   `issuance_service` stream folded up to there; the defaults until set), and it is delivered only while the
//!   system still serves the municipality, like every item.
//! - **Audit.** Every page (or SSE batch) that delivers personal data is recorded in the read access log
//!   (`feed.delivery`, one record per municipality, the business system as the terminal) before it is answered.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use cardap_domain::business_system::{BusinessSystem, BusinessSystemCommand, BusinessSystemError, BusinessSystemState};
use cardap_domain::card::{Card, CardState};
use cardap_domain::feed_fields::{FeedField, FeedFields};
use cardap_domain::issuance_service::{IssuanceService, IssuanceServiceEvent};
use cardap_domain::resident::{CardFid, Erasable, Resident, ResidentEvent, ResidentId, ResidentState};
use cardap_domain::{Aggregate, BusinessId, MunicipalityCode};
use cardap_projections::feeds::{self as index, ItemPlace, ItemRow, kind};
use cardap_projections::{Progress, ReadModels, library_links};
use cardap_store::{Checkpoint, CommandId, CorrelationId, EventStore, RecordedEvent, StoreError};
use futures_util::stream::{self, Stream, StreamExt};
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use crate::QueryError;
use crate::authz::{Actor, Permission, authorize};
use crate::business_systems::stream as system_stream;
use crate::context::CommandContext;
use crate::handler::{CommandError, CommandHandler, Executed, Loaded};
use crate::ids::stream_of;
use crate::pki::Pki;
use crate::read_access::{ReadAccess, ReadOperation};

/// The longest long poll a client may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(30);
/// The largest page.
pub const MAX_LIMIT: usize = 500;
/// Items per SSE batch.
const FOLLOW_BATCH: usize = 100;
/// How long an SSE follower waits for new items before it looks again (the system's state included).
const FOLLOW_WAIT: Duration = Duration::from_secs(10);
/// The safety-net poll while waiting for the index to move (a rebuild elsewhere, a lost notification).
const POLL: Duration = Duration::from_millis(500);

/// Why a feed could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// Another system's feed, a business ID never registered, or a retired system.
    #[error("no such feed")]
    NotFound,
    /// A cursor (or `Last-Event-ID`) that names no item of this feed.
    #[error("the cursor names no item of this feed")]
    InvalidCursor,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("{0}")]
    Internal(String),
}

/// One item of a feed, as delivered.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedItem {
    /// Stable; also the cursor after it.
    pub id: String,
    /// `registered`, `changed`, `card_suspended`, `card_resumed`, `card_abolished`, `ap_removed`, `moved_out`,
    /// `erased`, `standard_id_replaced` (to a library system: a reissued card's new 標準ID replaces one it linked),
    /// `issuance_service` (to the certificate issuance system: a municipality's issuance service).
    pub kind: String,
    pub municipality: String,
    /// `None` for an item about no resident (`issuance_service`); empty in a `standard_id_replaced` item for a
    /// library that does not serve the card's municipality.
    pub resident_id: Option<String>,
    /// Only the fields of the system's list.
    pub data: Value,
}

/// A page of a feed and where the next begins (`None` only when nothing was ever delivered and no cursor given).
#[derive(Debug, Clone, PartialEq)]
pub struct FeedPage {
    pub items: Vec<FeedItem>,
    pub next_cursor: Option<String>,
}

/// A business system's field list as it is now.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldList {
    pub fields: FeedFields,
    /// `false`: the built-in default of its business ID.
    pub set: bool,
    /// The business system's stream version (the `ETag`).
    pub version: u64,
}

/// What a request says of itself, for the read access log.
#[derive(Debug, Clone, Default)]
pub struct FeedRequest {
    pub request_id: Option<String>,
}

/// The text of an item's place.
fn item_id(place: ItemPlace) -> String {
    format!("{}-{}-{}", place.at.transaction, place.at.position, place.ord)
}

/// Reads an item id back; `None` unless it has exactly the form [`item_id`] writes.
fn parse_item_id(text: &str) -> Option<ItemPlace> {
    let mut parts = text.split('-');
    let mut number = || {
        let part = parts.next()?;
        (!part.is_empty() && part.len() <= 20 && part.bytes().all(|b| b.is_ascii_digit()))
            .then(|| part.parse::<u64>().ok())
            .flatten()
    };
    let (transaction, position, ord) = (number()?, number()?, number()?);
    if parts.next().is_some() || position == 0 {
        return None;
    }
    Some(ItemPlace { at: Checkpoint { transaction, position }, ord })
}

/// The replication feeds over the sealed event store and the feeds' index.
#[derive(Debug, Clone)]
pub struct Feeds {
    store: Arc<dyn EventStore>,
    read: ReadModels,
    pki: Pki,
    reads: ReadAccess,
    systems: CommandHandler<BusinessSystem>,
    /// How far this node's runner of the feeds' index has got: a waiting reader looks again as soon as it moves
    /// (its items are committed by then), not at the append, which the index has not applied yet.
    indexed: Progress,
    /// Set when the server begins to shut down: followers end their streams.
    closing: Arc<watch::Sender<bool>>,
}

impl Feeds {
    /// The feeds over the sealed `store` and the read models; `index` is the progress of this node's runner of
    /// the feeds' index (`cardap_projections::feeds::NAME`).
    pub fn new(store: Arc<dyn EventStore>, read: ReadModels, pki: Pki, reads: ReadAccess, index: Progress) -> Self {
        Feeds {
            systems: CommandHandler::new(store.clone()),
            store,
            read,
            pki,
            reads,
            indexed: index,
            closing: Arc::new(watch::channel(false).0),
        }
    }

    /// The server is shutting down: long polls answer what they have, followers end their streams.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// The business system a client certificate (DER, as the TLS handshake verified it) belongs to: a live
    /// business server certificate cardap issued to it. `None` for any other certificate.
    pub async fn caller(&self, certificate: &[u8]) -> Result<Option<BusinessId>, FeedError> {
        self.pki.business_system_presenting(certificate).await.map_err(|e| FeedError::Internal(e.to_string()))
    }

    /// The system's state now, when `caller` may read the feed `business_id` (its own, registered, in service).
    async fn open(
        &self,
        caller: &BusinessId,
        business_id: &str,
    ) -> Result<(BusinessId, BusinessSystemState), FeedError> {
        let Ok(id) = BusinessId::parse(business_id) else { return Err(FeedError::NotFound) };
        if id != *caller {
            return Err(FeedError::NotFound);
        }
        let loaded = self.systems.load(&system_stream(&id)).await.map_err(|e| match e {
            CommandError::Store(s) => FeedError::Store(s),
            other => FeedError::Internal(other.to_string()),
        })?;
        if !loaded.state.is_registered() || loaded.state.is_retired() {
            return Err(FeedError::NotFound);
        }
        Ok((id, loaded.state))
    }

    /// The place a cursor names, if it names an item of `id`'s feed (or a place the index has not reached yet).
    async fn cursor(&self, id: &BusinessId, cursor: Option<&str>) -> Result<Option<ItemPlace>, FeedError> {
        let Some(text) = cursor.map(str::trim).filter(|c| !c.is_empty()) else { return Ok(None) };
        let place = parse_item_id(text).ok_or(FeedError::InvalidCursor)?;
        let pool = self.read.pool();
        if index::item_exists(pool, id.as_str(), place).await? {
            return Ok(Some(place));
        }
        // A rebuild of the index in progress: a place it has not reached, but the log has, is honoured (its items
        // come back with the same ids). Beyond the log's head, or behind the index without an item: forged or
        // stale.
        if place.at > index::reached(pool).await? && place.at <= self.store.head().await? {
            return Ok(Some(place));
        }
        Err(FeedError::InvalidCursor)
    }

    /// One page of `business_id`'s feed for `caller` after `cursor`: at most `limit` items; when there are none yet,
    /// waits up to `wait` (at most [`MAX_WAIT`]) for the first.
    pub async fn page(
        &self,
        caller: &BusinessId,
        business_id: &str,
        cursor: Option<&str>,
        limit: usize,
        wait: Duration,
        request: &FeedRequest,
    ) -> Result<FeedPage, FeedError> {
        let (id, _) = self.open(caller, business_id).await?;
        let after = self.cursor(&id, cursor).await?;
        let limit = limit.clamp(1, MAX_LIMIT);
        let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
        self.next_items(&id, after, limit, deadline, request).await
    }

    /// Validates `cursor` (or `Last-Event-ID`) for `caller`, then follows the feed: every item from there on, as it
    /// comes, until the server shuts down, the system is retired, or the client goes away.
    pub async fn follow(
        &self,
        caller: &BusinessId,
        business_id: &str,
        cursor: Option<&str>,
        request: FeedRequest,
    ) -> Result<impl Stream<Item = FeedItem> + Send + 'static, FeedError> {
        let (id, _) = self.open(caller, business_id).await?;
        let after = self.cursor(&id, cursor).await?;
        let feeds = self.clone();
        let caller = caller.clone();
        let batches = stream::unfold(Some(after), move |after| {
            let (feeds, id, caller, request) = (feeds.clone(), id.clone(), caller.clone(), request.clone());
            async move {
                let after = after?;
                if *feeds.closing.borrow() {
                    return None;
                }
                // The system's state again at every batch: a retirement ends the stream at once.
                if let Err(e) = feeds.open(&caller, id.as_str()).await {
                    tracing::info!(business_system = %id, error = %e, "a feed follower ends");
                    return None;
                }
                let deadline = tokio::time::Instant::now() + FOLLOW_WAIT;
                match feeds.next_items(&id, after, FOLLOW_BATCH, deadline, &request).await {
                    Ok(page) => {
                        let next = page.next_cursor.as_deref().and_then(parse_item_id).or(after);
                        Some((page.items, Some(next)))
                    }
                    Err(e) => {
                        tracing::warn!(business_system = %id, error = %e, "a feed follower stopped");
                        None
                    }
                }
            }
        });
        Ok(batches.flat_map(stream::iter))
    }

    /// Items after `after`, waiting for the first until `deadline` (or the server's shutdown).
    async fn next_items(
        &self,
        id: &BusinessId,
        mut after: Option<ItemPlace>,
        limit: usize,
        deadline: tokio::time::Instant,
        request: &FeedRequest,
    ) -> Result<FeedPage, FeedError> {
        let mut indexed = self.indexed.clone();
        let mut closing = self.closing.subscribe();
        loop {
            // Read before the index is: whatever it commits after this read moves it past `seen`.
            let seen = indexed.current();
            let rows = index::items_after(self.read.pool(), id.as_str(), after, limit).await?;
            let items = match rows.last() {
                Some(last) => {
                    after = Some(last.place);
                    // The system's state after this read: permits and field list as they are now.
                    let (_, state) = self.open(id, id.as_str()).await?;
                    self.deliver(id, &state, rows, request).await?
                }
                None => vec![],
            };
            let now = tokio::time::Instant::now();
            if !items.is_empty() || now >= deadline || *closing.borrow() {
                return Ok(FeedPage { items, next_cursor: after.map(item_id) });
            }
            tokio::select! {
                _ = indexed.wait_past(seen, POLL.min(deadline - now)) => {}
                _ = closing.changed() => {}
            }
        }
    }

    /// The content of `rows` for `id` as it may see it now, recorded in the read access log.
    async fn deliver(
        &self,
        id: &BusinessId,
        state: &BusinessSystemState,
        rows: Vec<ItemRow>,
        request: &FeedRequest,
    ) -> Result<Vec<FeedItem>, FeedError> {
        let fields = state.feed_fields();
        let (residents, cards) = self.histories(state, &rows).await?;
        let mut services: HashMap<String, Vec<(RecordedEvent, IssuanceServiceEvent)>> = HashMap::new();
        let mut items = Vec::with_capacity(rows.len());
        let mut personal: BTreeMap<String, Vec<ResidentId>> = BTreeMap::new();
        for row in rows {
            let Ok(municipality) = MunicipalityCode::parse(&row.municipality) else { continue };
            if row.kind == kind::STANDARD_ID_REPLACED {
                // Entitled by the library's link, not by shared use (a card of any municipality): the two 標準IDs
                // only (while its list still grants the 標準ID), and the resident's id only where the system serves
                // his municipality. No personal field: nothing for the read access log.
                let pool = self.read.pool();
                let granted = fields.contains(FeedField::StandardId);
                if granted && let Some((old, new)) = library_links::replacement(pool, id.as_str(), row.place).await? {
                    let resident_id = if state.permits(&municipality) { row.resident_id } else { String::new() };
                    items.push(FeedItem {
                        id: item_id(row.place),
                        kind: row.kind,
                        municipality: row.municipality,
                        resident_id: Some(resident_id),
                        data: json!({ "old_standard_id": old, "new_standard_id": new }),
                    });
                }
                continue;
            }
            // Withdrawn (or retired) since the item was indexed: nothing of that municipality any more.
            if !state.permits(&municipality) {
                continue;
            }
            if row.kind == kind::ISSUANCE_SERVICE {
                // The service as it stood at the item's place; nothing personal.
                if !services.contains_key(&row.municipality) {
                    let stream = crate::issuance_service::stream(&municipality);
                    services.insert(row.municipality.clone(), decoded(self.store.read_stream(&stream, 1).await?)?);
                }
                let history = services.get(&row.municipality).map(Vec::as_slice).unwrap_or_default();
                items.push(FeedItem {
                    id: item_id(row.place),
                    kind: row.kind,
                    municipality: row.municipality,
                    resident_id: None,
                    data: state_at::<IssuanceService>(history, row.place.at).current().to_json(),
                });
                continue;
            }
            let Ok(resident_id) = ResidentId::parse(&row.resident_id) else { continue };
            let history = residents.get(&row.resident_id).map(Vec::as_slice).unwrap_or_default();
            let card = row.fid.as_ref().and_then(|f| cards.get(f)).map(Vec::as_slice).unwrap_or_default();
            let Some(data) = content(id, &fields, &row, history, card) else { continue };
            if data.keys().any(|k| FeedField::parse(k).is_ok_and(FeedField::is_personal)) {
                personal.entry(row.municipality.clone()).or_default().push(resident_id);
            }
            items.push(FeedItem {
                id: item_id(row.place),
                kind: row.kind,
                municipality: row.municipality,
                resident_id: Some(row.resident_id),
                data: Value::Object(data),
            });
        }
        // Recorded before it is answered, or not answered.
        for (municipality, mut residents) in personal {
            let Ok(code) = MunicipalityCode::parse(&municipality) else { continue };
            residents.sort();
            residents.dedup();
            let ctx = CommandContext {
                actor: None,
                command_id: CommandId::generate(),
                correlation_id: CorrelationId::generate(),
                causation_id: None,
                terminal: Some(format!("business-system {id}")),
                request_id: request.request_id.clone(),
            };
            self.reads.record(&ctx, &code, ReadOperation::FeedDelivery, &residents, &[]).await?;
        }
        Ok(items)
    }

    /// The histories of the residents and cards `rows` name (of municipalities `state` permits), each decoded
    /// in version order, by resident id and by FID: every stream in one read of the store.
    async fn histories(&self, state: &BusinessSystemState, rows: &[ItemRow]) -> Result<Histories, FeedError> {
        let mut residents: HashMap<String, String> = HashMap::new();
        let mut cards: HashMap<String, String> = HashMap::new();
        let mut streams = Vec::new();
        for row in rows {
            let permitted = MunicipalityCode::parse(&row.municipality).is_ok_and(|m| state.permits(&m));
            // A 標準ID replacement needs no history; a municipality's issuance service is about no resident.
            if row.kind == kind::STANDARD_ID_REPLACED || row.kind == kind::ISSUANCE_SERVICE || !permitted {
                continue;
            }
            let stream = stream_of::<Resident>(&row.resident_id);
            if !residents.contains_key(stream.as_str()) {
                residents.insert(stream.as_str().to_owned(), row.resident_id.clone());
                streams.push(stream);
            }
            if let Some(fid) = &row.fid {
                let key = CardFid::parse(fid).map_err(|e| FeedError::Internal(format!("card {fid}: {e}")))?;
                let stream = stream_of::<Card>(&cardap_domain::card::stream_key(&key));
                if !cards.contains_key(stream.as_str()) {
                    cards.insert(stream.as_str().to_owned(), fid.clone());
                    streams.push(stream);
                }
            }
        }
        let mut by_resident: HashMap<String, Vec<RecordedEvent>> = HashMap::new();
        let mut by_card: HashMap<String, Vec<RecordedEvent>> = HashMap::new();
        for event in self.store.read_streams(&streams).await? {
            if let Some(resident) = residents.get(event.stream_id.as_str()) {
                by_resident.entry(resident.clone()).or_default().push(event);
            } else if let Some(fid) = cards.get(event.stream_id.as_str()) {
                by_card.entry(fid.clone()).or_default().push(event);
            }
        }
        let residents = by_resident.into_iter().map(|(k, v)| Ok((k, decoded(v)?))).collect::<Result<_, FeedError>>()?;
        let cards = by_card.into_iter().map(|(k, v)| Ok((k, decoded(v)?))).collect::<Result<_, FeedError>>()?;
        Ok((residents, cards))
    }

    // ---- the field list (システム管理) ----

    /// The field list of a business system (the system administrator); `None` when it was never registered.
    pub async fn fields(
        &self,
        actor: &Actor,
        id: &BusinessId,
    ) -> Result<Option<FieldList>, CommandError<BusinessSystemError>> {
        authorize(actor, &Permission::ManageBusinessSystems)?;
        let Loaded { state, version } = self.systems.load(&system_stream(id)).await?;
        Ok(state.is_registered().then(|| FieldList {
            fields: state.feed_fields(),
            set: state.feed_fields_set(),
            version,
        }))
    }

    /// Replaces the field list (the system administrator); items delivered from now on carry these fields only.
    pub async fn set_fields(
        &self,
        ctx: &CommandContext,
        id: &BusinessId,
        if_match: Option<u64>,
        fields: FeedFields,
    ) -> Result<Executed<BusinessSystem>, CommandError<BusinessSystemError>> {
        let command = BusinessSystemCommand::SetFeedFields { fields };
        self.systems.execute(ctx, &Permission::ManageBusinessSystems, &system_stream(id), None, if_match, command).await
    }
}

/// Decoded events by resident id, and by card FID.
type Histories = (
    HashMap<String, Vec<(RecordedEvent, ResidentEvent)>>,
    HashMap<String, Vec<(RecordedEvent, cardap_domain::card::CardEvent)>>,
);

/// Decodes a stream's events (in version order), keeping each one's place.
fn decoded<E: cardap_domain::DomainEvent>(events: Vec<RecordedEvent>) -> Result<Vec<(RecordedEvent, E)>, FeedError> {
    events
        .into_iter()
        .map(|e| {
            let d = e.decode::<E>().map_err(|err| FeedError::Internal(format!("event {}: {err}", e.event_id)))?;
            Ok((e, d))
        })
        .collect()
}

/// The state of an aggregate as it stood at `at` (its events at or before that place in the log).
fn state_at<A: Aggregate>(history: &[(RecordedEvent, A::Event)], at: Checkpoint) -> A::State {
    history.iter().filter(|(r, _)| r.checkpoint <= at).fold(A::State::default(), |s, (_, e)| A::evolve(s, e))
}

/// The listed personal fields of `value` (an object of personal data or of changes, by field name).
fn listed(fields: &FeedFields, value: &Value) -> Map<String, Value> {
    let Some(object) = value.as_object() else { return Map::new() };
    object
        .iter()
        .filter(|(k, _)| FeedField::parse(k).is_ok_and(|f| f.is_personal() && fields.contains(f)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The card facts `id` may see of the card as it stood.
fn card_facts(id: &BusinessId, fields: &FeedFields, card: &CardState, data: &mut Map<String, Value>) {
    let Some(card) = &card.registered else { return };
    if fields.contains(FeedField::CardStatus) {
        data.insert(FeedField::CardStatus.as_str().to_owned(), json!(card.status.as_str()));
    }
    if fields.contains(FeedField::StandardId)
        && let Some(Some(standard_id)) = card.aps.get(id)
    {
        data.insert(FeedField::StandardId.as_str().to_owned(), json!(standard_id.as_str()));
    }
}

/// An item's `data`; `None` when it has nothing the system may see and is skipped (a change of unlisted fields).
fn content(
    id: &BusinessId,
    fields: &FeedFields,
    row: &ItemRow,
    resident: &[(RecordedEvent, ResidentEvent)],
    card: &[(RecordedEvent, cardap_domain::card::CardEvent)],
) -> Option<Map<String, Value>> {
    let at = row.place.at;
    let mut data = Map::new();
    match row.kind.as_str() {
        kind::REGISTERED => {
            let state: ResidentState = state_at::<Resident>(resident, at);
            if let Some(Erasable::Known(personal)) = state.registered.as_ref().map(|r| &r.personal) {
                data = listed(fields, &serde_json::to_value(personal).unwrap_or(Value::Null));
            }
            card_facts(id, fields, &state_at::<Card>(card, at), &mut data);
        }
        kind::CHANGED => {
            let (_, event) = resident.iter().find(|(r, _)| r.event_id.to_string() == row.event_id)?;
            let ResidentEvent::FieldsChanged { changes: Erasable::Known(changes) } = event else { return None };
            data = listed(fields, &changes.to_json());
            if data.is_empty() {
                return None;
            }
        }
        kind::CARD_SUSPENDED | kind::CARD_RESUMED | kind::CARD_ABOLISHED => {
            let state = state_at::<Card>(card, at);
            if fields.contains(FeedField::CardStatus)
                && let Some(card) = &state.registered
            {
                data.insert(FeedField::CardStatus.as_str().to_owned(), json!(card.status.as_str()));
            }
        }
        // No personal data: the system drops or deactivates what it keeps of him.
        _ => {}
    }
    Some(data)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_item_id_reads_back_and_nothing_else_does() {
        let place = ItemPlace { at: Checkpoint { transaction: 812, position: 40 }, ord: 3 };
        assert_eq!(item_id(place), "812-40-3");
        assert_eq!(parse_item_id("812-40-3"), Some(place));
        assert_eq!(parse_item_id("0-7-0"), Some(ItemPlace { at: Checkpoint { transaction: 0, position: 7 }, ord: 0 }));
        for bad in
            ["", "812-40", "812-40-3-1", "812--3", "a-1-1", "+1-1-1", "1-1-1 ", "1-0-0", "99999999999999999999-1-1"]
        {
            assert_eq!(parse_item_id(bad), None, "{bad:?}");
        }
    }
}
