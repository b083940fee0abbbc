//! The hash chain over the read access log (issue 12, point 5: "the access log too"): like the events' chain, a
//! sealer walks the log in commit order and stores, per row, `hash = SHA-256(previous hash || the row's canonical
//! bytes)` in `read_access_chain`; [`ReadsChain::verify`] recomputes it and names the first row that was altered,
//! removed or moved. The signed heads ([`super::heads`]) carry this chain's head beside the events'.
//!
//! Owns `read_access_chain` and the canonical form of a row: the JSON array `[seq, recorded_at, municipality,
//! operator_key, terminal, request_id, operation, subject_count, residents, registry_keys]`. The order is the one
//! rows committed in: `(transaction_id, seq)` on PostgreSQL, taking only rows of transactions older than the oldest
//! still running (a row that commits late is sealed late, never skipped); `seq` on SQLite (one writer).

use sha2::{Digest, Sha256};
use sqlx::{AnyPool, Row};

use crate::ProjectionError;

/// Rows sealed per round, and read per page while verifying.
const PAGE: i64 = 1000;

/// What verifying the read access log's chain found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadsVerdict {
    /// Every sealed row is as it was sealed (`rows`), in its place.
    Intact { rows: u64 },
    /// The row sealed at chain position `seq` (log row `row`) is not what was sealed.
    Altered { seq: u64, row: u64 },
    /// The row sealed at `seq` is no longer in the log, or the log ends before the chain does.
    Missing { seq: u64, row: u64 },
    /// The row sealed at `seq` is still in the log, but not in its place.
    Reordered { seq: u64, row: u64 },
    /// The chain verifies in itself, but its hash at `seq` is not the one signed then: rows after position `after`
    /// up to `seq` were rewritten and the chain recomputed.
    Rewritten { after: u64, seq: u64 },
    /// The chain ends at position `ends`, before the head signed at `seq`.
    Truncated { ends: u64, seq: u64 },
}

impl ReadsVerdict {
    pub fn is_intact(&self) -> bool {
        matches!(self, ReadsVerdict::Intact { .. })
    }
}

impl std::fmt::Display for ReadsVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Intact { rows } => write!(f, "read access log intact: {rows} rows verified"),
            Self::Altered { seq, row } => {
                write!(f, "read access log ALTERED: row {row} (chain position {seq})")
            }
            Self::Missing { seq, row } => {
                write!(f, "read access log MISSING: row {row} (chain position {seq}) is no longer in the log")
            }
            Self::Reordered { seq, row } => {
                write!(f, "read access log REORDERED: row {row} (chain position {seq}) is no longer in its place")
            }
            Self::Rewritten { after, seq } => write!(
                f,
                "read access log REWRITTEN: the chain at position {seq} is not the one signed; rows after position \
                 {after} up to {seq} were changed and the chain recomputed"
            ),
            Self::Truncated { ends, seq } => write!(
                f,
                "read access log TRUNCATED: the chain ends at position {ends}, before the head signed at position {seq}"
            ),
        }
    }
}

/// One row of the log as read for the chain.
struct LogRow {
    seq: i64,
    transaction: i64,
    canonical: Vec<u8>,
}

/// One link as stored.
struct Link {
    seq: u64,
    log_seq: i64,
    transaction: i64,
    hash: String,
}

/// The chain over the read access log, kept in `pool` beside it.
#[derive(Debug, Clone)]
pub struct ReadsChain {
    pool: AnyPool,
}

impl ReadsChain {
    pub fn new(pool: AnyPool) -> Self {
        ReadsChain { pool }
    }

    /// Seals the rows committed since the last link; how many were sealed.
    pub async fn extend(&self) -> Result<u64, ProjectionError> {
        let (mut seq, mut hash, mut after) = match self.last().await? {
            Some(link) => (link.seq, super::decode_hash(&link.hash)?, (link.transaction, link.log_seq)),
            None => (0, super::GENESIS, (0, 0)),
        };
        let mut sealed = 0;
        loop {
            let rows = self.rows(after).await?;
            let Some(last) = rows.last() else { return Ok(sealed) };
            after = (last.transaction, last.seq);
            let mut tx = self.pool.begin().await.map_err(ProjectionError::from_sqlx)?;
            for row in &rows {
                hash = link(&hash, &row.canonical);
                seq += 1;
                sqlx::query(
                    "INSERT INTO read_access_chain (seq, log_seq, transaction_id, hash) VALUES ($1, $2, $3, $4)",
                )
                .bind(super::to_i64(seq))
                .bind(row.seq)
                .bind(row.transaction)
                .bind(hex::encode(hash))
                .execute(&mut *tx)
                .await
                .map_err(ProjectionError::from_sqlx)?;
            }
            // Two sealers at once (two nodes): the second's rows collide on `seq` and it rolls back.
            tx.commit().await.map_err(ProjectionError::from_sqlx)?;
            sealed += rows.len() as u64;
        }
    }

    /// The chain's last link: its position and hash (`(0, GENESIS)` before the first row).
    pub async fn head(&self) -> Result<(u64, String), ProjectionError> {
        Ok(match self.last().await? {
            Some(link) => (link.seq, link.hash),
            None => (0, hex::encode(super::GENESIS)),
        })
    }

    /// Recomputes the chain from the log and compares it with every stored link, then with the signed heads
    /// `(position, hash)` (already checked for their signatures), in any order.
    pub async fn verify(&self, signed: &[(u64, String)]) -> Result<ReadsVerdict, ProjectionError> {
        let mut heads: Vec<&(u64, String)> = signed.iter().filter(|(seq, _)| *seq > 0).collect();
        heads.sort_by_key(|(seq, _)| *seq);
        let mut heads = heads.into_iter().peekable();
        let mut signed_up_to = 0;
        let mut hash = super::GENESIS;
        let mut after = (0, 0);
        let mut seq = 0_u64;
        loop {
            let links = self.links(seq).await?;
            if links.is_empty() {
                return Ok(match heads.find(|(head, _)| *head > seq) {
                    Some((head, _)) => ReadsVerdict::Truncated { ends: seq, seq: *head },
                    None => ReadsVerdict::Intact { rows: seq },
                });
            }
            let rows = self.rows(after).await?;
            for (i, link) in links.iter().enumerate() {
                let row = u64::try_from(link.log_seq).unwrap_or_default();
                let Some(found) = rows.get(i) else {
                    return Ok(ReadsVerdict::Missing { seq: link.seq, row });
                };
                if found.seq != link.log_seq {
                    let moved = sqlx::query("SELECT 1 FROM read_access_log WHERE seq = $1")
                        .bind(link.log_seq)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(ProjectionError::from_sqlx)?;
                    return Ok(match moved {
                        Some(_) => ReadsVerdict::Reordered { seq: link.seq, row },
                        None => ReadsVerdict::Missing { seq: link.seq, row },
                    });
                }
                hash = self::link(&hash, &found.canonical);
                if hex::encode(hash) != link.hash {
                    return Ok(ReadsVerdict::Altered { seq: link.seq, row });
                }
                while let Some((head, head_hash)) = heads.next_if(|(head, _)| *head <= link.seq) {
                    if *head != link.seq || *head_hash != link.hash {
                        return Ok(ReadsVerdict::Rewritten { after: signed_up_to, seq: *head });
                    }
                    signed_up_to = *head;
                }
                after = (found.transaction, found.seq);
                seq = link.seq;
            }
        }
    }

    /// Up to a page of rows after `after` (transaction, seq), in commit order.
    async fn rows(&self, after: (i64, i64)) -> Result<Vec<LogRow>, ProjectionError> {
        let columns = "seq, recorded_at, municipality, operator_key, terminal, request_id, operation, subject_count, \
                       residents, registry_keys";
        let mut conn = self.pool.acquire().await.map_err(ProjectionError::from_sqlx)?;
        let rows = if conn.backend_name().eq_ignore_ascii_case("PostgreSQL") {
            let sql = format!(
                "SELECT {columns}, transaction_id::text::bigint AS tx FROM read_access_log \
                 WHERE (transaction_id, seq) > ($1::text::xid8, $2) \
                   AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
                 ORDER BY transaction_id, seq LIMIT $3"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(after.0.to_string())
                .bind(after.1)
                .bind(PAGE)
                .fetch_all(&mut *conn)
                .await
        } else {
            let sql = format!("SELECT {columns}, 0 AS tx FROM read_access_log WHERE seq > $1 ORDER BY seq LIMIT $2");
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(after.1).bind(PAGE).fetch_all(&mut *conn).await
        }
        .map_err(ProjectionError::from_sqlx)?;
        rows.iter()
            .map(|r| {
                let db = ProjectionError::from_sqlx;
                let seq: i64 = r.try_get("seq").map_err(db)?;
                let form = (
                    seq,
                    r.try_get::<i64, _>("recorded_at").map_err(db)?,
                    r.try_get::<String, _>("municipality").map_err(db)?,
                    r.try_get::<String, _>("operator_key").map_err(db)?,
                    r.try_get::<Option<String>, _>("terminal").map_err(db)?,
                    r.try_get::<Option<String>, _>("request_id").map_err(db)?,
                    r.try_get::<String, _>("operation").map_err(db)?,
                    r.try_get::<i64, _>("subject_count").map_err(db)?,
                    r.try_get::<String, _>("residents").map_err(db)?,
                    r.try_get::<String, _>("registry_keys").map_err(db)?,
                );
                Ok(LogRow {
                    seq,
                    transaction: r.try_get("tx").map_err(db)?,
                    canonical: serde_json::to_vec(&form).unwrap_or_default(),
                })
            })
            .collect()
    }

    async fn last(&self) -> Result<Option<Link>, ProjectionError> {
        let row =
            sqlx::query("SELECT seq, log_seq, transaction_id, hash FROM read_access_chain ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&self.pool)
                .await
                .map_err(ProjectionError::from_sqlx)?;
        row.map(|r| link_of(&r)).transpose()
    }

    async fn links(&self, after_seq: u64) -> Result<Vec<Link>, ProjectionError> {
        let rows = sqlx::query(
            "SELECT seq, log_seq, transaction_id, hash FROM read_access_chain WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(super::to_i64(after_seq))
        .bind(PAGE)
        .fetch_all(&self.pool)
        .await
        .map_err(ProjectionError::from_sqlx)?;
        rows.iter().map(link_of).collect()
    }
}

fn link_of(r: &sqlx::any::AnyRow) -> Result<Link, ProjectionError> {
    let db = ProjectionError::from_sqlx;
    let seq: i64 = r.try_get("seq").map_err(db)?;
    Ok(Link {
        seq: u64::try_from(seq).unwrap_or_default(),
        log_seq: r.try_get("log_seq").map_err(db)?,
        transaction: r.try_get("transaction_id").map_err(db)?,
        hash: r.try_get("hash").map_err(db)?,
    })
}

fn link(previous: &[u8; 32], canonical: &[u8]) -> [u8; 32] {
    let mut digest = Sha256::new();
    digest.update(previous);
    digest.update(canonical);
    digest.finalize().into()
}
