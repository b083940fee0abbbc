//! The read access log (issue 12, point 4): every read of a resident's personal data — who, when, from which
//! terminal, through which operation, which residents — recorded by the use cases that read it
//! ([`ResidentServices`](crate::residents::ResidentServices)' `read_resident`, `search_residents`,
//! `read_registry_entry`, `lookup_registry`; the history's pages and a resident as of an instant, in
//! `history`), queried by auditors like the history, and the municipality's
//! bulk-read alert.
//!
//! Owns what a record holds and when it is written, the alert's window and rule, the threshold setting (an event,
//! `MunicipalityReadAlertSet`, on the municipality's `read_alert_policy` stream) and who may query. Writes the
//! `read_access_log` and `read_access_alerts` tables (`cardap_store::AccessLogStore`); never personal data, only
//! resident ids and registry keys; never logs anything but operator key, municipality and counts.
//!
//! - **Written before the answer, or no answer.** A use case records its read after it found what it will answer
//!   and before it returns it; if the record cannot be written, the read fails ([`CommandError::Store`]). No
//!   batching: a batch that has not flushed when the process dies would have answered personal data without a
//!   record. The cost is one single-row INSERT per read operation, one round trip and its durable commit (no
//!   liveness ping before it: `AccessLogStore::record`) — a search page of a hundred residents is one row holding
//!   the hundred ids (`residents`, space-separated), not a hundred rows.
//! - **Which operations.** `resident.read` (one resident), `resident.search` (the ids of the page returned; a page
//!   with nobody on it records nothing, as it showed nobody's data), `registry.read` (an entry of the imported
//!   registry by its key) and `registry.lookup` (the entries matching a card's four facts), recorded by registry
//!   key (宛名番号). The answers of writes (register, change, move out) show what the clerk wrote: they are in the
//!   history already (the event, its operator and terminal) and are not recorded twice. Card views carry no
//!   personal data.
//! - **The alert.** When the municipality has a threshold N (`None` by default) and one operator has read more
//!   than N distinct residents and registry entries in the sliding hour ending with this read, an alert is
//!   recorded (queryable by the auditors), logged at WARN (operator key, municipality, counts) and counted
//!   (`cardap_read_alerts_total`) — once per operator per hour: no second alert while one raised less than an hour
//!   ago stands. The check adds up the hour's `subject_count` first (cheap, an upper bound) and only counts
//!   distinct ids when that sum passes N; and then not again while the last count on this node plus everything
//!   he read since stays at most N (an upper bound too), so a clerk who keeps searching the same residents is not
//!   recounted at every read. Two reads that cross the threshold at the same moment on two connections may both
//!   record an alert. The threshold is cached per node for [`THRESHOLD_TTL`]: a change made on
//!   another node takes effect here within that time (at once on the node that made it).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use cardap_domain::operator::OperatorId;
use cardap_domain::read_alert::{self, ReadAlertCommand, ReadAlertError, ReadAlertPolicy};
use cardap_domain::registry::RegistryKey;
use cardap_domain::resident::ResidentId;
use cardap_domain::{MunicipalityCode, OperatorKey};
use cardap_projections::ReadModels;
use cardap_projections::operators as directory;
use cardap_store::{AccessLogStore, EventStore, NewReadAccess, ReadAccessFilter, ReadAlertRow, StoreError, StreamId};
use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;

use crate::authz::{Actor, AuthzError, Permission, authorize};
use crate::clock::Clock;
use crate::context::CommandContext;
use crate::handler::{CommandError, CommandHandler, Executed, Loaded};
use crate::{QueryError, ids::stream_of};

/// The alert's window: distinct residents read by one operator within this long.
pub const WINDOW: Duration = Duration::from_secs(3600);
/// How long a node uses a municipality's threshold before reading it again.
pub const THRESHOLD_TTL: Duration = Duration::from_secs(30);

/// A read of personal data, by its stable name in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOperation {
    /// One resident (`GET …/residents/{id}`).
    ResidentRead,
    /// 利用者検索: the residents of the page returned.
    ResidentSearch,
    /// 既存住基からの呼び出し: one registry entry by its key.
    RegistryRead,
    /// カード読み取りからの呼び出し: the registry entries matching a card's four facts.
    RegistryLookup,
    /// An auditor's page of the history whose changes show residents' personal data (those residents).
    History,
    /// An auditor's look at a resident as he stood at an instant.
    ResidentAsOf,
    /// A business system's replication feed delivered these residents' personal data (`commands::feeds`).
    FeedDelivery,
}

impl ReadOperation {
    pub fn as_str(self) -> &'static str {
        match self {
            ReadOperation::ResidentRead => "resident.read",
            ReadOperation::ResidentSearch => "resident.search",
            ReadOperation::RegistryRead => "registry.read",
            ReadOperation::RegistryLookup => "registry.lookup",
            ReadOperation::History => "audit.history",
            ReadOperation::ResidentAsOf => "resident.as_of",
            ReadOperation::FeedDelivery => "feed.delivery",
        }
    }
}

/// What an auditor asks of the read access log (or of its alerts).
#[derive(Debug, Clone, Default)]
pub struct ReadAccessQuery {
    /// `None`: every municipality (the system administrator only).
    pub municipality: Option<MunicipalityCode>,
    /// Only the reads of this operator (of `municipality`; the system administrator's own with `None`).
    pub operator_id: Option<OperatorId>,
    /// Only the reads that returned this resident (not for the alerts).
    pub resident_id: Option<ResidentId>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// One recorded read.
#[derive(Debug, Clone, Serialize)]
pub struct ReadAccessLine {
    /// The record's place in the log (increasing).
    pub seq: u64,
    pub recorded_at: DateTime<Utc>,
    pub municipality: String,
    /// The reader's login ID (`None`: no longer in the directory; see `operator_key`).
    pub operator_id: Option<String>,
    pub operator_key: String,
    pub terminal: Option<String>,
    pub request_id: Option<String>,
    pub operation: String,
    /// The resident ids returned.
    pub residents: Vec<String>,
    /// The registry entries returned, by key (宛名番号).
    pub registry_keys: Vec<String>,
}

/// One bulk-read alert.
#[derive(Debug, Clone, Serialize)]
pub struct ReadAlertLine {
    pub seq: u64,
    pub raised_at: DateTime<Utc>,
    pub municipality: String,
    pub operator_id: Option<String>,
    pub operator_key: String,
    /// The hour looked at began after this instant and ended at `raised_at`.
    pub window_start: DateTime<Utc>,
    /// Distinct residents and registry entries he read in it.
    pub distinct_residents: u64,
    /// The municipality's threshold then.
    pub threshold: u64,
}

/// One page and where the next begins (`None`: the end of the log as it is now).
#[derive(Debug)]
pub struct LogPage<L> {
    pub lines: Vec<L>,
    pub next: Option<LogCursor>,
}

/// Where a page ends: opaque to the caller.
#[derive(Debug, Clone, Copy)]
pub struct LogCursor(u64);

/// The thresholds this node uses, by municipality, with when each was read.
type ThresholdCache = Arc<Mutex<HashMap<MunicipalityCode, (Instant, Option<u32>)>>>;

/// The last count of distinct residents, by municipality and operator: when (Unix milliseconds), how many.
type CountCache = Arc<Mutex<HashMap<(MunicipalityCode, OperatorKey), (i64, u64)>>>;

/// Operator login IDs by key, remembered across the pages of one answer.
pub type OperatorNames = HashMap<OperatorKey, Option<String>>;

/// The read access log, the alert and the threshold.
#[derive(Clone)]
pub struct ReadAccess {
    log: AccessLogStore,
    store: Arc<dyn EventStore>,
    read: ReadModels,
    clock: Arc<dyn Clock>,
    thresholds: ThresholdCache,
    /// The last count of distinct residents per operator on this node (when, how many), so that re-reading the
    /// same residents does not count them all again at every read.
    counted: CountCache,
    alerts_raised: Arc<AtomicU64>,
}

impl std::fmt::Debug for ReadAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadAccess").finish_non_exhaustive()
    }
}

/// The stream of a municipality's read alert threshold.
pub fn policy_stream(code: &MunicipalityCode) -> StreamId {
    stream_of::<ReadAlertPolicy>(&read_alert::stream_key(code))
}

fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

fn instant(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

impl ReadAccess {
    /// Over the read-model database (the event store's), reading the time from `clock`.
    pub fn new(store: Arc<dyn EventStore>, read: ReadModels, clock: Arc<dyn Clock>) -> Self {
        ReadAccess {
            log: AccessLogStore::new(read.pool().clone()),
            store,
            read,
            clock,
            thresholds: Arc::default(),
            counted: Arc::default(),
            alerts_raised: Arc::default(),
        }
    }

    /// How many bulk-read alerts this node raised since it started (for metrics).
    pub fn alerts_raised(&self) -> u64 {
        self.alerts_raised.load(Ordering::Relaxed)
    }

    /// Records that `ctx`'s operator read `residents` and `registry_keys` of `municipality` through `operation`,
    /// then checks the municipality's bulk-read threshold. Nothing returned: nothing recorded.
    pub(crate) async fn record(
        &self,
        ctx: &CommandContext,
        municipality: &MunicipalityCode,
        operation: ReadOperation,
        residents: &[ResidentId],
        registry_keys: &[RegistryKey],
    ) -> Result<(), StoreError> {
        if residents.is_empty() && registry_keys.is_empty() {
            return Ok(());
        }
        let operator = ctx.actor.as_ref().map_or(OperatorKey::from_uuid(uuid::Uuid::nil()), |a| a.operator);
        let now = millis(self.clock.now());
        self.log
            .record(&NewReadAccess {
                recorded_at: now,
                municipality: municipality.as_str().to_owned(),
                operator,
                terminal: ctx.terminal.clone(),
                request_id: ctx.request_id.clone(),
                operation: operation.as_str(),
                residents: residents.iter().map(ToString::to_string).collect(),
                registry_keys: registry_keys.iter().map(|k| k.as_str().to_owned()).collect(),
            })
            .await?;
        // A business system's feed is a replication it is entitled to, recorded (the terminal names the system)
        // but not an operator paging through residents: it counts toward no operator's bulk-read threshold.
        if operation == ReadOperation::FeedDelivery {
            return Ok(());
        }
        self.check_bulk_read(municipality, operator, now).await
    }

    async fn check_bulk_read(
        &self,
        code: &MunicipalityCode,
        operator: OperatorKey,
        now: i64,
    ) -> Result<(), StoreError> {
        let Some(threshold) = self.threshold_now(code).await? else { return Ok(()) };
        let threshold = u64::from(threshold);
        let since = now - i64::try_from(WINDOW.as_millis()).unwrap_or(i64::MAX);
        if self.log.read_since(code.as_str(), operator, since).await? <= threshold
            || self.log.alerted_since(code.as_str(), operator, since).await?
        {
            return Ok(());
        }
        let key = (code.clone(), operator);
        let counted = self.counted.lock().unwrap_or_else(PoisonError::into_inner).get(&key).copied();
        if let Some((at, distinct)) = counted
            && at > since
        {
            // No more distinct residents now than then, plus all he read since (the same millisecond again: a
            // read recorded just after that count is not missed).
            let since_count = self.log.read_since(code.as_str(), operator, at - 1).await?;
            if distinct + since_count <= threshold {
                return Ok(());
            }
        }
        let distinct = self.log.distinct_read_since(code.as_str(), operator, since).await?;
        self.counted.lock().unwrap_or_else(PoisonError::into_inner).insert(key, (now, distinct));
        if distinct <= threshold {
            return Ok(());
        }
        self.log
            .record_alert(&ReadAlertRow {
                seq: 0,
                raised_at: now,
                municipality: code.as_str().to_owned(),
                operator,
                window_start: since,
                distinct_subjects: distinct,
                threshold,
            })
            .await?;
        self.alerts_raised.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            municipality = %code,
            operator = %operator,
            distinct_residents = distinct,
            threshold,
            "bulk read: one operator read more residents within an hour than the municipality's threshold"
        );
        Ok(())
    }

    /// The threshold as this node uses it (cached for [`THRESHOLD_TTL`]).
    async fn threshold_now(&self, code: &MunicipalityCode) -> Result<Option<u32>, StoreError> {
        let cached = self.thresholds.lock().unwrap_or_else(PoisonError::into_inner).get(code).copied();
        if let Some((at, threshold)) = cached
            && at.elapsed() < THRESHOLD_TTL
        {
            return Ok(threshold);
        }
        let loaded = self.threshold(code).await.map_err(|e| match e {
            CommandError::Store(s) => s,
            other => StoreError::Corrupt(other.to_string()),
        })?;
        let threshold = loaded.state.residents_per_hour();
        self.thresholds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(code.clone(), (Instant::now(), threshold));
        Ok(threshold)
    }

    // ---- the threshold (an event on the municipality's stream) ----

    /// The municipality's bulk-read threshold now (none when never set), with its version (the `ETag`).
    async fn threshold(
        &self,
        code: &MunicipalityCode,
    ) -> Result<Loaded<ReadAlertPolicy>, CommandError<ReadAlertError>> {
        CommandHandler::<ReadAlertPolicy>::new(self.store.clone()).load(&policy_stream(code)).await
    }

    /// The municipality's bulk-read threshold as `actor` may see it: those who set it (its operations managers,
    /// the system administrator) and its auditors — not the clerks it watches.
    pub async fn threshold_for(
        &self,
        actor: &Actor,
        code: &MunicipalityCode,
    ) -> Result<Loaded<ReadAlertPolicy>, CommandError<ReadAlertError>> {
        authorize(actor, &Permission::ConfigureReadAlerts(code.clone()))
            .or_else(|_| authorize(actor, &Permission::ReadHistory(code.clone())))?;
        self.threshold(code).await
    }

    /// Sets (or with `None` lifts) the municipality's bulk-read threshold: its operations managers and the system
    /// administrator. The same value again records nothing.
    pub async fn set_threshold(
        &self,
        ctx: &CommandContext,
        code: &MunicipalityCode,
        if_match: Option<u64>,
        residents_per_hour: Option<u32>,
    ) -> Result<Executed<ReadAlertPolicy>, CommandError<ReadAlertError>> {
        let at = self.clock.timestamp();
        let executed = CommandHandler::<ReadAlertPolicy>::new(self.store.clone())
            .execute(
                ctx,
                &Permission::ConfigureReadAlerts(code.clone()),
                &policy_stream(code),
                Some(code.clone()),
                if_match,
                ReadAlertCommand::Set { residents_per_hour, at },
            )
            .await?;
        self.thresholds.lock().unwrap_or_else(PoisonError::into_inner).remove(code);
        Ok(executed)
    }

    // ---- the auditors' queries ----

    /// Whether `actor` may ask `query`: a municipality's log is for its auditors and the system administrator
    /// (another municipality's is [`AuthzError::NotVisible`]); every municipality's for the system administrator.
    pub fn authorize(&self, actor: &Actor, query: &ReadAccessQuery) -> Result<(), AuthzError> {
        match &query.municipality {
            Some(code) => authorize(actor, &Permission::ReadHistory(code.clone())),
            None if actor.is_system_admin() => Ok(()),
            None => Err(AuthzError::Forbidden),
        }
    }

    fn filter(query: &ReadAccessQuery) -> ReadAccessFilter {
        ReadAccessFilter {
            municipality: query.municipality.as_ref().map(|m| m.as_str().to_owned()),
            operator: query.operator_id.as_ref().map(|id| OperatorKey::for_login(query.municipality.as_ref(), id)),
            resident: query.resident_id.map(|r| r.to_string()),
            from: query.from.map(millis),
            to: query.to.map(millis),
        }
    }

    /// Up to `limit` recorded reads after `after` (`None`: from the start), in the log's order. Call
    /// [`ReadAccess::authorize`] first.
    pub async fn page(
        &self,
        query: &ReadAccessQuery,
        after: Option<LogCursor>,
        limit: usize,
        names: &mut OperatorNames,
    ) -> Result<LogPage<ReadAccessLine>, QueryError> {
        let rows = self.log.page(&Self::filter(query), after.map_or(0, |c| c.0), limit).await?;
        let next = (rows.len() == limit).then(|| rows.last().map(|r| LogCursor(r.seq))).flatten();
        let mut lines = Vec::with_capacity(rows.len());
        for row in rows {
            lines.push(ReadAccessLine {
                seq: row.seq,
                recorded_at: instant(row.recorded_at),
                municipality: row.municipality,
                operator_id: self.name(row.operator, names).await?,
                operator_key: row.operator.to_string(),
                terminal: row.terminal,
                request_id: row.request_id,
                operation: row.operation,
                residents: row.residents,
                registry_keys: row.registry_keys,
            });
        }
        Ok(LogPage { lines, next })
    }

    /// Up to `limit` bulk-read alerts after `after`, in the order raised (`resident_id` is not looked at). Call
    /// [`ReadAccess::authorize`] first.
    pub async fn alerts(
        &self,
        query: &ReadAccessQuery,
        after: Option<LogCursor>,
        limit: usize,
        names: &mut OperatorNames,
    ) -> Result<LogPage<ReadAlertLine>, QueryError> {
        let rows = self.log.alerts(&Self::filter(query), after.map_or(0, |c| c.0), limit).await?;
        let next = (rows.len() == limit).then(|| rows.last().map(|r| LogCursor(r.seq))).flatten();
        let mut lines = Vec::with_capacity(rows.len());
        for row in rows {
            lines.push(ReadAlertLine {
                seq: row.seq,
                raised_at: instant(row.raised_at),
                municipality: row.municipality,
                operator_id: self.name(row.operator, names).await?,
                operator_key: row.operator.to_string(),
                window_start: instant(row.window_start),
                distinct_residents: row.distinct_subjects,
                threshold: row.threshold,
            });
        }
        Ok(LogPage { lines, next })
    }

    async fn name(&self, key: OperatorKey, names: &mut OperatorNames) -> Result<Option<String>, QueryError> {
        if let Some(name) = names.get(&key) {
            return Ok(name.clone());
        }
        let name = directory::get(self.read.pool(), self.read.sealer(), key).await?.map(|r| r.operator_id);
        names.insert(key, name.clone());
        Ok(name)
    }
}
