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
    pub next: Option<Checkpoint>,
}

/// The history queries over one event store.
#[derive(Debug, Clone)]
pub struct History {
    store: Arc<dyn EventStore>,
    read: ReadModels,
}

impl History {
    pub fn new(store: Arc<dyn EventStore>, read: ReadModels) -> Self {
        History { store, read }
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

    /// Up to about `limit` lines after `after`, in the global order. Call [`History::authorize`] first.
    pub async fn page(
        &self,
        query: &HistoryQuery,
        after: Checkpoint,
        limit: usize,
        names: &mut HashMap<OperatorKey, Option<String>>,
    ) -> Result<HistoryPage, QueryError> {
        let filter = match &query.municipality {
            Some(code) => ReadFilter::Municipality(code.clone()),
            None => ReadFilter::All,
        };
        let mut lines = vec![];
        let mut at = after;
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
                return Ok(HistoryPage { lines, next: Some(at) });
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
                    let row = directory::get(self.read.pool(), key).await?;
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
            changes: event.payload,
        }))
    }
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
