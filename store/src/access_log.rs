//! The read access log's tables (`read_access_log`, `read_access_alerts`, migration 0017): append a record of a
//! read, page through the records and the alerts in `seq` order with an auditor's filters, and the two sums the
//! bulk-read alert needs. Same SQL on both backends, over the read-model pool (the event store's database).
//!
//! Owns the row shapes and the SQL only; what is recorded, when an alert is raised and who may ask are
//! `commands::read_access`'s. Rows hold ids, never personal data. Both tables are append-only (triggers refuse
//! updates and deletes). A page is ordered by `seq`: on PostgreSQL a row whose INSERT commits after a later `seq`
//! was read can fall behind a page already returned (each record is its own one-statement transaction, so the
//! window is the INSERT itself); the page is an auditor's query, not a follower, so this is said, not fixed.

use cardap_domain::OperatorKey;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use crate::StoreError;

/// A read to record.
#[derive(Debug, Clone)]
pub struct NewReadAccess {
    /// Unix milliseconds.
    pub recorded_at: i64,
    pub municipality: String,
    pub operator: OperatorKey,
    pub terminal: Option<String>,
    pub request_id: Option<String>,
    pub operation: &'static str,
    /// Resident ids, as their canonical text.
    pub residents: Vec<String>,
    /// Registry keys (宛名番号).
    pub registry_keys: Vec<String>,
}

/// A recorded read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadAccessRow {
    pub seq: u64,
    /// Unix milliseconds.
    pub recorded_at: i64,
    pub municipality: String,
    pub operator: OperatorKey,
    pub terminal: Option<String>,
    pub request_id: Option<String>,
    pub operation: String,
    pub residents: Vec<String>,
    pub registry_keys: Vec<String>,
}

/// A recorded bulk-read alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadAlertRow {
    pub seq: u64,
    /// Unix milliseconds.
    pub raised_at: i64,
    pub municipality: String,
    pub operator: OperatorKey,
    /// The window looked at: after `window_start`, up to `raised_at` (Unix milliseconds).
    pub window_start: i64,
    /// How many distinct residents and registry entries he read in it.
    pub distinct_subjects: u64,
    /// The municipality's threshold then.
    pub threshold: u64,
}

/// What an auditor's page is restricted to; every given condition must hold.
#[derive(Debug, Clone, Default)]
pub struct ReadAccessFilter {
    pub municipality: Option<String>,
    pub operator: Option<OperatorKey>,
    /// A resident id (canonical text: a hyphenated UUID); only for the log, not for the alerts.
    pub resident: Option<String>,
    /// From (inclusive), Unix milliseconds.
    pub from: Option<i64>,
    /// To (exclusive), Unix milliseconds.
    pub to: Option<i64>,
}

/// The read access log over the read-model pool.
#[derive(Debug, Clone)]
pub struct AccessLogStore {
    pool: AnyPool,
}

const LOG_COLUMNS: &str =
    "seq, recorded_at, municipality, operator_key, terminal, request_id, operation, residents, registry_keys";
const ALERT_COLUMNS: &str = "seq, raised_at, municipality, operator_key, window_start, distinct_subjects, threshold";

impl AccessLogStore {
    pub fn new(pool: AnyPool) -> Self {
        AccessLogStore { pool }
    }

    /// Appends one record; it is durable when this returns (its own transaction, committed).
    ///
    /// Every read of personal data waits for this, so it takes one round trip: an idle connection is taken as it
    /// is, without the pool's liveness ping before it (another round trip). A connection found broken (the
    /// database restarted since) fails the INSERT without an answer; the record is then written again through the
    /// pool, which replaces the dead connection. If the first INSERT had committed all the same (the connection
    /// broke between the commit and its answer), the read is in the log twice with the same request id: never
    /// missing.
    pub async fn record(&self, read: &NewReadAccess) -> Result<(), StoreError> {
        let count = i64::try_from(read.residents.len() + read.registry_keys.len()).unwrap_or(i64::MAX);
        let (residents, registry_keys) = (read.residents.join(" "), read.registry_keys.join(" "));
        let insert = || {
            sqlx::query(
                "INSERT INTO read_access_log (recorded_at, municipality, operator_key, terminal, request_id, \
                 operation, subject_count, residents, registry_keys) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(read.recorded_at)
            .bind(read.municipality.clone())
            .bind(read.operator.to_string())
            .bind(read.terminal.clone())
            .bind(read.request_id.clone())
            .bind(read.operation)
            .bind(count)
            .bind(residents.clone())
            .bind(registry_keys.clone())
        };
        if let Some(mut idle) = self.pool.try_acquire() {
            match insert().execute(&mut *idle).await.map_err(StoreError::from_sqlx) {
                Ok(_) => return Ok(()),
                Err(StoreError::Unavailable(e)) => {
                    // Not returned to the pool: it may be the broken one.
                    idle.close_on_drop();
                    tracing::debug!(error = %e, "an idle connection failed the read access record; writing it again");
                }
                Err(other) => return Err(other),
            }
        }
        insert().execute(&self.pool).await.map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    /// Up to `limit` records after `after` (a `seq`; 0: from the start) matching `filter`, in `seq` order.
    pub async fn page(
        &self,
        filter: &ReadAccessFilter,
        after: u64,
        limit: usize,
    ) -> Result<Vec<ReadAccessRow>, StoreError> {
        let rows = self
            .filtered(format!("SELECT {LOG_COLUMNS} FROM read_access_log"), "recorded_at", true, filter, after, limit)
            .await?;
        rows.iter().map(log_row).collect()
    }

    /// How many residents and registry entries `operator` read in `municipality` after `since` (Unix
    /// milliseconds), counting repeats: an upper bound of the distinct ones, cheap to add up.
    pub async fn read_since(&self, municipality: &str, operator: OperatorKey, since: i64) -> Result<u64, StoreError> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(subject_count), 0) AS BIGINT) AS total FROM read_access_log \
             WHERE operator_key = $1 AND recorded_at > $2 AND municipality = $3",
        )
        .bind(operator.to_string())
        .bind(since)
        .bind(municipality.to_owned())
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::from_sqlx)?;
        crate::to_u64(row.try_get("total").map_err(crate::corrupt)?)
    }

    /// How many distinct residents and registry entries `operator` read in `municipality` after `since`.
    pub async fn distinct_read_since(
        &self,
        municipality: &str,
        operator: OperatorKey,
        since: i64,
    ) -> Result<u64, StoreError> {
        let rows = sqlx::query(
            "SELECT residents, registry_keys FROM read_access_log \
             WHERE operator_key = $1 AND recorded_at > $2 AND municipality = $3",
        )
        .bind(operator.to_string())
        .bind(since)
        .bind(municipality.to_owned())
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::from_sqlx)?;
        let mut seen = std::collections::HashSet::new();
        for row in &rows {
            let residents: String = row.try_get("residents").map_err(crate::corrupt)?;
            let keys: String = row.try_get("registry_keys").map_err(crate::corrupt)?;
            seen.extend(residents.split_whitespace().map(|r| format!("r{r}")));
            seen.extend(keys.split_whitespace().map(|k| format!("k{k}")));
        }
        Ok(seen.len() as u64)
    }

    /// Whether an alert about `operator` in `municipality` was raised after `since` (Unix milliseconds).
    pub async fn alerted_since(
        &self,
        municipality: &str,
        operator: OperatorKey,
        since: i64,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT seq FROM read_access_alerts WHERE operator_key = $1 AND raised_at > $2 AND municipality = $3 \
             LIMIT 1",
        )
        .bind(operator.to_string())
        .bind(since)
        .bind(municipality.to_owned())
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::from_sqlx)?;
        Ok(row.is_some())
    }

    /// Appends an alert.
    pub async fn record_alert(&self, alert: &ReadAlertRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO read_access_alerts (raised_at, municipality, operator_key, window_start, \
             distinct_subjects, threshold) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(alert.raised_at)
        .bind(alert.municipality.clone())
        .bind(alert.operator.to_string())
        .bind(alert.window_start)
        .bind(crate::to_i64(alert.distinct_subjects)?)
        .bind(crate::to_i64(alert.threshold)?)
        .execute(&self.pool)
        .await
        .map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    /// Up to `limit` alerts after `after` (a `seq`) matching `filter` (its `resident` is not looked at).
    pub async fn alerts(
        &self,
        filter: &ReadAccessFilter,
        after: u64,
        limit: usize,
    ) -> Result<Vec<ReadAlertRow>, StoreError> {
        let rows = self
            .filtered(
                format!("SELECT {ALERT_COLUMNS} FROM read_access_alerts"),
                "raised_at",
                false,
                filter,
                after,
                limit,
            )
            .await?;
        rows.iter().map(alert_row).collect()
    }

    /// The rows of `select` (`SELECT … FROM <table>`) after `after` (a `seq`) matching `filter` — its instants
    /// against `time_column`, its resident only when `by_resident` — in `seq` order, at most `limit`.
    async fn filtered(
        &self,
        select: String,
        time_column: &str,
        by_resident: bool,
        filter: &ReadAccessFilter,
        after: u64,
        limit: usize,
    ) -> Result<Vec<AnyRow>, StoreError> {
        let mut sql = format!("{select} WHERE seq > $1");
        let mut n = 1;
        let mut next = |column: &str, op: &str| {
            n += 1;
            format!(" AND {column} {op} ${n}")
        };
        let mut texts = vec![];
        let mut numbers = vec![];
        if let Some(m) = &filter.municipality {
            sql += &next("municipality", "=");
            texts.push(m.clone());
        }
        if let Some(o) = &filter.operator {
            sql += &next("operator_key", "=");
            texts.push(o.to_string());
        }
        if let Some(r) = filter.resident.as_ref().filter(|_| by_resident) {
            // A resident id is a UUID: no LIKE wildcard and no space in it, and every id in the column has its
            // length, so the pattern matches a whole id of the column or nothing.
            sql += &next("residents", "LIKE");
            texts.push(format!("%{r}%"));
        }
        if let Some(from) = filter.from {
            sql += &next(time_column, ">=");
            numbers.push(from);
        }
        if let Some(to) = filter.to {
            sql += &next(time_column, "<");
            numbers.push(to);
        }
        n += 1;
        sql += &format!(" ORDER BY seq LIMIT ${n}");
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(crate::to_i64(after)?);
        for t in texts {
            query = query.bind(t);
        }
        for v in numbers {
            query = query.bind(v);
        }
        query.bind(i64::try_from(limit).unwrap_or(i64::MAX)).fetch_all(&self.pool).await.map_err(StoreError::from_sqlx)
    }
}

fn operator_of(row: &AnyRow) -> Result<OperatorKey, StoreError> {
    let key: String = row.try_get("operator_key").map_err(crate::corrupt)?;
    uuid::Uuid::parse_str(&key)
        .map(OperatorKey::from_uuid)
        .map_err(|e| StoreError::Corrupt(format!("read access log operator {key}: {e}")))
}

fn words(row: &AnyRow, column: &str) -> Result<Vec<String>, StoreError> {
    let text: String = row.try_get(column).map_err(crate::corrupt)?;
    Ok(text.split_whitespace().map(str::to_owned).collect())
}

fn log_row(row: &AnyRow) -> Result<ReadAccessRow, StoreError> {
    Ok(ReadAccessRow {
        seq: crate::to_u64(row.try_get("seq").map_err(crate::corrupt)?)?,
        recorded_at: row.try_get("recorded_at").map_err(crate::corrupt)?,
        municipality: row.try_get("municipality").map_err(crate::corrupt)?,
        operator: operator_of(row)?,
        terminal: row.try_get("terminal").map_err(crate::corrupt)?,
        request_id: row.try_get("request_id").map_err(crate::corrupt)?,
        operation: row.try_get("operation").map_err(crate::corrupt)?,
        residents: words(row, "residents")?,
        registry_keys: words(row, "registry_keys")?,
    })
}

fn alert_row(row: &AnyRow) -> Result<ReadAlertRow, StoreError> {
    Ok(ReadAlertRow {
        seq: crate::to_u64(row.try_get("seq").map_err(crate::corrupt)?)?,
        raised_at: row.try_get("raised_at").map_err(crate::corrupt)?,
        municipality: row.try_get("municipality").map_err(crate::corrupt)?,
        operator: operator_of(row)?,
        window_start: row.try_get("window_start").map_err(crate::corrupt)?,
        distinct_subjects: crate::to_u64(row.try_get("distinct_subjects").map_err(crate::corrupt)?)?,
        threshold: crate::to_u64(row.try_get("threshold").map_err(crate::corrupt)?)?,
    })
}
