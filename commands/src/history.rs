//! Operator history for auditors (issue 12, point 2): who did what to whom, when, from which terminal — every
//! appended event of a municipality (or of the installation, for the system administrator), in the global order,
//! filtered by operator, resident and time, one page at a time so that the edge can stream it.
//!
//! Owns the query's rules: who may ask for what (`ReadHistory` of the municipality: its auditors and the system
//! administrator; all municipalities only for the system administrator), how an operator ID and a resident are
//! matched (an operator's own key, derived from his login; a resident's own stream and the card events that name
//! him), and what a line shows (the event's type, stream and payload as its change, the acting operator's login ID
//! and terminal from its metadata). Logins, failed logins and lockouts are events of the operators' login streams
//! and appear like any other. Reads the event store (personal data unsealed as for any use case) and the operator
//! directory; writes nothing.
//!
//! Also the state as of an instant (issue 12, point 3): an operator's stream replayed up to then — his roles,
//! permitted business systems, 業務内IDs, whether he was revoked or locked — and "what could he do on date D": those
//! of his business systems his municipality was permitted (共同利用) and that were in service then, each
//! business system's stream replayed up to the same instant. Likewise a resident (his personal data as it was
//! then, or erased if his key is gone since) and a card (status, local area, APs) of the municipality.

use std::collections::HashMap;
use std::sync::Arc;

use cardap_domain::operator::{self, OperatorId};
use cardap_domain::{MunicipalityCode, OperatorKey};
use cardap_projections::ReadModels;
use cardap_projections::operators as directory;
use cardap_store::{Checkpoint, EventStore, ReadFilter, RecordedEvent};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::QueryError;
use crate::authz::{Actor, AuthzError, Permission, authorize};
use crate::context::CommandContext;
use crate::read_access::{ReadAccess, ReadOperation};

/// How many events are read from the store at a time.
const SCAN: usize = 500;

/// What an auditor asks for.
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    /// `None`: every municipality and the installation's own events (the system administrator only).
    pub municipality: Option<MunicipalityCode>,
    /// Only what this operator (of `municipality`; the system administrator's own with `None`) did, and what
    /// happened to his own streams (his logins, failed logins, locks, changes by his administrators).
    pub operator_id: Option<OperatorId>,
    /// Only what concerns this resident: his own stream and the card events that name him.
    pub resident_id: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// One line of the history.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryLine {
    /// The event's place in the global order (its position).
    pub position: u64,
    pub recorded_at: DateTime<Utc>,
    pub municipality: Option<String>,
    /// The acting operator's login ID (`None`: the system itself, or an operator no longer in the directory,
    /// shown by his key in `operator_key`).
    pub operator_id: Option<String>,
    pub operator_key: Option<String>,
    pub terminal: Option<String>,
    /// The event type (`ResidentRegistered`, `OperatorLoginFailed`, …).
    #[serde(rename = "type")]
    pub event_type: String,
    /// `<stream type>/<key>`.
    pub stream: String,
    /// What changed: the event's payload.
    pub changes: serde_json::Value,
}

/// One page of lines and where the next begins (`None`: the end of the log as it is now).
#[derive(Debug)]
pub struct HistoryPage {
    pub lines: Vec<HistoryLine>,
    pub next: Option<HistoryCursor>,
}

/// Where a history page ends: opaque to the caller, who hands it back for the next page.
#[derive(Debug, Clone, Copy)]
pub struct HistoryCursor(Checkpoint);

/// The history queries over one event store.
#[derive(Clone)]
pub struct History {
    store: Arc<dyn EventStore>,
    read: ReadModels,
    reads: ReadAccess,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History").finish_non_exhaustive()
    }
}

impl History {
    /// `reads`: the read access log, where the personal data a page or an as-of answer shows is recorded.
    pub fn new(store: Arc<dyn EventStore>, read: ReadModels, reads: ReadAccess) -> Self {
        History { store, read, reads }
    }

    /// Whether `actor` may ask `query`: the history of a municipality is for its auditors and the system
    /// administrator; of all municipalities for the system administrator only.
    pub fn authorize(&self, actor: &Actor, query: &HistoryQuery) -> Result<(), AuthzError> {
        match &query.municipality {
            Some(code) => authorize(actor, &Permission::ReadHistory(code.clone())),
            None if actor.is_system_admin() => Ok(()),
            None => Err(AuthzError::Forbidden),
        }
    }

    /// Up to about `limit` lines after `after` (`None`: from the start), in the global order, the residents whose
    /// personal data the page shows recorded in the read access log as `ctx`'s read. Call [`History::authorize`]
    /// first.
    pub async fn page(
        &self,
        ctx: &CommandContext,
        query: &HistoryQuery,
        after: Option<HistoryCursor>,
        limit: usize,
        names: &mut HashMap<OperatorKey, Option<String>>,
    ) -> Result<HistoryPage, QueryError> {
        let page = self.unrecorded_page(query, after, limit, names).await?;
        // Per municipality: the residents whose registration or change (with personal data) the page shows.
        let mut shown: HashMap<&str, Vec<cardap_domain::resident::ResidentId>> = HashMap::new();
        for line in &page.lines {
            // Personal data is the payload's `personal` (the sealing convention), unsealed for the page.
            let personal = line.changes.get("personal").is_some_and(|p| !p.is_null());
            let resident = line
                .stream
                .strip_prefix("resident/")
                .and_then(|id| cardap_domain::resident::ResidentId::parse(id).ok());
            if let (true, Some(resident), Some(code)) = (personal, resident, line.municipality.as_deref()) {
                let ids = shown.entry(code).or_default();
                if !ids.contains(&resident) {
                    ids.push(resident);
                }
            }
        }
        for (code, residents) in shown {
            let Ok(code) = MunicipalityCode::parse(code) else { continue };
            self.reads.record(ctx, &code, ReadOperation::History, &residents, &[]).await?;
        }
        Ok(page)
    }

    async fn unrecorded_page(
        &self,
        query: &HistoryQuery,
        after: Option<HistoryCursor>,
        limit: usize,
        names: &mut HashMap<OperatorKey, Option<String>>,
    ) -> Result<HistoryPage, QueryError> {
        let filter = match (&query.operator_id, &query.municipality) {
            // One operator's history: his own events and those on his streams, through the operator index and
            // within the time range, not the whole municipality's log.
            (Some(id), code) => ReadFilter::Actor {
                operator: OperatorKey::for_login(code.as_ref(), id),
                streams: vec![
                    crate::access::operator_stream(code.as_ref(), id),
                    cardap_store::StreamId::of(
                        <operator::OperatorLogins as cardap_domain::Aggregate>::STREAM_TYPE,
                        &operator::stream_key(code.as_ref(), id),
                    ),
                ],
                since: query.from,
                until: query.to,
            },
            (None, Some(code)) => ReadFilter::Municipality(code.clone()),
            (None, None) => ReadFilter::All,
        };
        let mut lines = vec![];
        let mut at = after.map_or(Checkpoint::START, |c| c.0);
        loop {
            let events = self.store.read_all(at, SCAN, &filter).await?;
            let Some(last) = events.last() else { return Ok(HistoryPage { lines, next: None }) };
            at = last.checkpoint;
            let full = events.len() == SCAN;
            for event in events {
                if let Some(line) = self.line(query, event, names).await? {
                    lines.push(line);
                }
            }
            if !full {
                return Ok(HistoryPage { lines, next: None });
            }
            if lines.len() >= limit {
                return Ok(HistoryPage { lines, next: Some(HistoryCursor(at)) });
            }
        }
    }

    async fn line(
        &self,
        query: &HistoryQuery,
        event: RecordedEvent,
        names: &mut HashMap<OperatorKey, Option<String>>,
    ) -> Result<Option<HistoryLine>, QueryError> {
        let municipality = event.metadata.municipality.as_ref().map(|m| m.as_str().to_owned());
        // An operator of one municipality may have acted elsewhere only as the system administrator: an auditor
        // of a municipality sees that municipality's events.
        if let Some(code) = &query.municipality
            && municipality.as_deref() != Some(code.as_str())
        {
            return Ok(None);
        }
        if query.from.is_some_and(|from| event.recorded_at < from) || query.to.is_some_and(|to| event.recorded_at >= to)
        {
            return Ok(None);
        }
        if let Some(resident) = &query.resident_id
            && !concerns(&event, resident)
        {
            return Ok(None);
        }
        if let Some(operator_id) = &query.operator_id
            && !done_by_or_to(&event, query.municipality.as_ref(), operator_id)
        {
            return Ok(None);
        }
        let operator_id = match event.metadata.operator {
            Some(key) => match names.get(&key) {
                Some(name) => name.clone(),
                None => {
                    let row = directory::get(self.read.pool(), self.read.sealer(), key).await?;
                    let name = row.map(|r| r.operator_id);
                    names.insert(key, name.clone());
                    name
                }
            },
            None => None,
        };
        Ok(Some(HistoryLine {
            position: event.checkpoint.position,
            recorded_at: event.recorded_at,
            municipality,
            operator_id,
            operator_key: event.metadata.operator.map(|k| k.to_string()),
            terminal: event.metadata.terminal.clone(),
            event_type: event.event_type.clone(),
            stream: format!("{}/{}", event.stream_type, event.stream_id.key()),
            changes: event.payload.into_value(),
        }))
    }
}

/// An operator as he stood at an instant, and what he could use then.
#[derive(Debug, Clone, Serialize)]
pub struct OperatorAsOf {
    pub at: DateTime<Utc>,
    /// His stream's version then (0: not registered yet).
    pub version: u64,
    pub registered: bool,
    pub revoked: bool,
    /// Locked out of new password logins at that instant.
    pub locked: bool,
    pub roles: Vec<String>,
    /// His permitted business systems (許可業務).
    pub business_systems: Vec<String>,
    /// Those he could use then: permitted ∩ his municipality's shared use then ∩ in service then (none while
    /// revoked).
    pub usable_business_systems: Vec<String>,
    /// His 業務内IDs then: (business ID, 業務内ID, that system's role).
    pub internal_ids: Vec<(String, String, Option<String>)>,
}

impl History {
    /// The operator `operator_id` of `municipality` as of `at`, and what he could use then; `None` when no such
    /// operator was ever registered. Call `authorize(actor, &Permission::ReadHistory(municipality))` first.
    pub async fn operator_as_of(
        &self,
        municipality: &MunicipalityCode,
        operator_id: &OperatorId,
        at: DateTime<Utc>,
    ) -> Result<Option<OperatorAsOf>, QueryError> {
        use cardap_domain::business_system::BusinessSystem;
        use cardap_domain::operator::Operator;
        let operator =
            replay::<Operator>(&self.store, &crate::access::operator_stream(Some(municipality), operator_id), at)
                .await?;
        let Some((state, version)) = operator else { return Ok(None) };
        let mut usable = vec![];
        if state.is_active() {
            for id in state.business_systems() {
                let stream = crate::business_systems::stream(id);
                let Some((system, _)) = replay::<BusinessSystem>(&self.store, &stream, at).await? else { continue };
                if system.is_registered() && !system.is_retired() && system.permits(municipality) {
                    usable.push(id.as_str().to_owned());
                }
            }
        }
        Ok(Some(OperatorAsOf {
            at,
            version,
            registered: state.is_registered(),
            revoked: state.is_revoked(),
            locked: state.is_locked_at(cardap_domain::Timestamp::from_unix(at.timestamp())),
            roles: state.roles().iter().map(|r| r.as_str().to_owned()).collect(),
            business_systems: state.business_systems().iter().map(|b| b.as_str().to_owned()).collect(),
            usable_business_systems: usable,
            internal_ids: state
                .internal_ids()
                .iter()
                .map(|(b, a)| {
                    (
                        b.as_str().to_owned(),
                        a.internal_id.as_str().to_owned(),
                        a.role.as_ref().map(|r| r.as_str().to_owned()),
                    )
                })
                .collect(),
        }))
    }
}

impl History {
    /// The resident `id` of `municipality` as he stood at `at` (his stream replayed up to then), with the version
    /// reached, recorded in the read access log as `ctx`'s read when it shows his personal data; `None` when he was
    /// not registered in that municipality by then. Call `authorize(actor, &Permission::ReadHistory(municipality))`
    /// first.
    pub async fn resident_as_of(
        &self,
        ctx: &CommandContext,
        municipality: &MunicipalityCode,
        id: &cardap_domain::resident::ResidentId,
        at: DateTime<Utc>,
    ) -> Result<Option<crate::residents::ResidentSnapshot>, QueryError> {
        use cardap_domain::resident::{self, Resident};
        let stream = crate::ids::stream_of::<Resident>(&resident::stream_key(id));
        let then = replay::<Resident>(&self.store, &stream, at).await?;
        let then = then.and_then(|(state, version)| {
            let resident = state.registered.filter(|r| r.municipality == *municipality)?;
            Some(crate::residents::ResidentSnapshot { resident, version })
        });
        if then.as_ref().is_some_and(|t| matches!(t.resident.personal, cardap_domain::resident::Erasable::Known(_))) {
            self.reads.record(ctx, municipality, ReadOperation::ResidentAsOf, &[*id], &[]).await?;
        }
        Ok(then)
    }

    /// The card `fid` of `municipality` as it stood at `at`; `None` when it was not registered there by then.
    /// Call `authorize(actor, &Permission::ReadHistory(municipality))` first.
    pub async fn card_as_of(
        &self,
        municipality: &MunicipalityCode,
        fid: &cardap_domain::resident::CardFid,
        at: DateTime<Utc>,
    ) -> Result<Option<crate::residents::CardSnapshot>, QueryError> {
        use cardap_domain::card::{self, Card};
        let stream = crate::ids::stream_of::<Card>(&card::stream_key(fid));
        let then = replay::<Card>(&self.store, &stream, at).await?;
        Ok(then.and_then(|(state, version)| {
            let card = state.registered.filter(|c| c.municipality == *municipality)?;
            Some(crate::residents::CardSnapshot { card, version })
        }))
    }
}

/// A business system's shared use (共同利用) as it stood at an instant.
#[derive(Debug, Clone, Serialize)]
pub struct SharedUseAsOf {
    pub at: DateTime<Utc>,
    pub version: u64,
    pub registered: bool,
    pub retired: bool,
    /// The municipalities permitted then that the caller may see (all for the system administrator, else his own
    /// when it was).
    pub permitted_municipalities: Vec<String>,
}

impl History {
    /// The shared use of business system `id` as of `at`, as `actor` may see it: every municipality for the
    /// system administrator; for an auditor, whether his own municipality was permitted. `None`: never registered;
    /// `Err(Forbidden)` for anyone else.
    pub async fn shared_use_as_of(
        &self,
        actor: &Actor,
        id: &cardap_domain::BusinessId,
        at: DateTime<Utc>,
    ) -> Result<Option<SharedUseAsOf>, crate::CommandError<std::convert::Infallible>> {
        use cardap_domain::business_system::BusinessSystem;
        let own = match (&actor.municipality, actor.is_system_admin()) {
            (_, true) => None,
            (Some(code), false) => {
                authorize(actor, &Permission::ReadHistory(code.clone()))?;
                Some(code.clone())
            }
            (None, false) => return Err(AuthzError::Forbidden.into()),
        };
        let stream = crate::business_systems::stream(id);
        let Some((state, version)) = replay::<BusinessSystem>(&self.store, &stream, at)
            .await
            .map_err(|e| crate::CommandError::Internal(e.to_string()))?
        else {
            return Ok(None);
        };
        let permitted = state
            .permitted()
            .iter()
            .filter(|code| own.as_ref().is_none_or(|own| own == *code))
            .map(|code| code.as_str().to_owned())
            .collect();
        Ok(Some(SharedUseAsOf {
            at,
            version,
            registered: state.is_registered(),
            retired: state.is_retired(),
            permitted_municipalities: permitted,
        }))
    }
}

/// An aggregate's state folded from its events recorded up to `at` (inclusive), and the version reached; `None`
/// when the stream has no events at all.
async fn replay<A: cardap_domain::Aggregate>(
    store: &Arc<dyn EventStore>,
    stream: &cardap_store::StreamId,
    at: DateTime<Utc>,
) -> Result<Option<(A::State, u64)>, QueryError> {
    let events = store.read_stream(stream, 1).await?;
    if events.is_empty() {
        return Ok(None);
    }
    let mut state = A::State::default();
    let mut version = 0;
    for event in events.into_iter().take_while(|e| e.recorded_at <= at) {
        let decoded =
            <A::Event as cardap_domain::DomainEvent>::decode(&event.event_type, event.event_version, &event.payload)
                .map_err(|e| QueryError::Event {
                    projection: "history",
                    event: event.event_type.clone(),
                    reason: e.to_string(),
                })?;
        state = A::evolve(state, &decoded);
        version = event.version;
    }
    Ok(Some((state, version)))
}

/// Whether the operator did it, or it happened to his own streams (his logins, failed logins and locks are
/// recorded by the system on his login stream).
fn done_by_or_to(event: &RecordedEvent, municipality: Option<&MunicipalityCode>, operator_id: &OperatorId) -> bool {
    let key = OperatorKey::for_login(municipality, operator_id);
    event.metadata.operator == Some(key)
        || (matches!(event.stream_type.as_str(), "operator" | "operator_login")
            && event.stream_id.key() == operator::stream_key(municipality, operator_id))
}

/// Whether the event is about the resident: his own stream, or a card event naming him.
fn concerns(event: &RecordedEvent, resident: &str) -> bool {
    (event.stream_type == "resident" && event.stream_id.key() == resident)
        || event.payload.get("resident_id").and_then(serde_json::Value::as_str) == Some(resident)
}
