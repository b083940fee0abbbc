//! The imported resident registry (既存住基 / 住基ネットCS の本人確認4情報) per municipality: what 利用者登録
//! prefills from (by registry key, or by the facts read from a card), and what the bulk import compares its
//! rows with to tell new, unchanged and changed entries apart.
//!
//! Owns `rm_registry_entries`. An import pushes up to a million `RegistryEntryImported` through it, so every
//! event is one statement. The facts are personal data and are never stored in clear (issue 12, point 7): they
//! are one column, `facts`, sealed under the entry's own data key (the key of its events) with AAD
//! `rm_registry_entries/<municipality>.<registry key>` ([`RowSealer`]); the lookup by the facts read from a card
//! goes through `birth_token`, a blind index (HMAC under the search key) of the birth date tied to the
//! municipality, and compares name and sex in memory among the few entries of that day. The registry key (宛名番号)
//! is an identifier and stays in clear. Once an entry's data key was destroyed its facts arrive as `Erased` and
//! the row keeps only its key, `erased = 1` and its version; `RegistryEntryErased` (its resident was erased)
//! blanks the row in place the same way, without a rebuild. Every query is confined to one municipality. Must not
//! log the facts.

use std::collections::HashMap;

use async_trait::async_trait;
use cardap_domain::contact::Sex;
use cardap_domain::registry::{self, FullName, RegistryEntry, RegistryEvent, RegistryFacts, RegistryKey};
use cardap_domain::resident::{EraDate, Erasable};
use cardap_domain::{Aggregate, MunicipalityCode};
use cardap_store::{DataKey, StreamId};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};

use crate::ProjectionError;
use crate::sealing::{GroupWrite, RowSealer};
use crate::typed::{Recorded, View};

/// Builds `rm_registry_entries`.
#[derive(Debug)]
pub struct RegistryView {
    sealer: RowSealer,
}

impl RegistryView {
    pub fn new(sealer: RowSealer) -> Self {
        RegistryView { sealer }
    }
}

pub const NAME: &str = "registry";

/// The most keys one `versions` statement looks up; more are looked up in several.
pub const VERSIONS_BATCH: usize = 1000;

/// The token kind of the birth date.
const BIRTH: &str = "registry-birth-date";

#[async_trait]
impl View for RegistryView {
    type Event = RegistryEvent;
    const NAME: &'static str = NAME;
    const STREAM_TYPES: &'static [&'static str] = &[RegistryEntry::STREAM_TYPE];
    const TABLES: &'static [&'static str] = &["rm_registry_entries"];

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        decoded: RegistryEvent,
        recorded: &Recorded<'_>,
    ) -> Result<(), ProjectionError> {
        let version = recorded.version();
        let subject = recorded.stream_id();
        let aad = aad(recorded.key());
        let query = match decoded {
            RegistryEvent::Imported { municipality, key, facts } => {
                let entry = StagedEntry::imported(municipality, key, facts, recorded);
                return self.write_staged(conn, vec![entry]).await;
            }
            RegistryEvent::Erased | RegistryEvent::Changed { changes: Erasable::Erased } => {
                let (municipality, key) = split(recorded)?;
                blank(version, municipality, key)
            }
            RegistryEvent::Changed { changes: Erasable::Known(c) } => {
                let (municipality, key) = split(recorded)?;
                let current =
                    sqlx::query("SELECT facts FROM rm_registry_entries WHERE municipality = $1 AND registry_key = $2")
                        .bind(municipality.clone())
                        .bind(key.clone())
                        .fetch_optional(&mut *conn)
                        .await
                        .map_err(ProjectionError::from_sqlx)?;
                // No row: nothing to change, as an UPDATE of no row.
                let Some(current) = current else {
                    return Ok(());
                };
                let blob: Option<Vec<u8>> = current.try_get("facts").map_err(ProjectionError::Database)?;
                let data_key = match blob {
                    Some(_) => self.sealer.keys_in(conn, std::slice::from_ref(subject)).await?.remove(subject),
                    None => None,
                };
                match (blob, data_key) {
                    (Some(blob), Some(k)) => {
                        let facts: RegistryFacts = RowSealer::open(&k, &aad, &blob)?;
                        let facts = c.apply_to(facts);
                        sqlx::query(
                            "UPDATE rm_registry_entries SET facts = $1, birth_token = $2, version = $3 \
                             WHERE municipality = $4 AND registry_key = $5",
                        )
                        .bind(RowSealer::seal(&k, &aad, &facts)?)
                        .bind(self.sealer.token(&municipality, BIRTH, facts.birth_date.as_str()))
                        .bind(version)
                        .bind(municipality)
                        .bind(key)
                    }
                    // Already erased, or its key went meanwhile.
                    _ => blank(version, municipality, key),
                }
            }
        };
        query.execute(&mut *conn).await.map_err(ProjectionError::from_sqlx)?;
        Ok(())
    }

    /// An import's entries set-based: consecutive `Imported` events (each the first of its stream) are staged,
    /// their keys fetched together and their rows written in multi-row INSERTs; any other event writes the staged
    /// ones first and is applied on its own, so the result is the one of applying the events one by one.
    async fn apply_all(
        &self,
        conn: &mut AnyConnection,
        events: Vec<(RegistryEvent, Recorded<'_>)>,
    ) -> Result<(), ProjectionError> {
        let mut staged: Vec<StagedEntry> = Vec::new();
        for (event, recorded) in events {
            match event {
                RegistryEvent::Imported { municipality, key, facts } => {
                    staged.push(StagedEntry::imported(municipality, key, facts, &recorded))
                }
                event => {
                    self.write_staged(conn, std::mem::take(&mut staged)).await?;
                    self.apply(conn, event, &recorded).await?;
                }
            }
        }
        self.write_staged(conn, staged).await
    }
}

/// An imported entry not written yet (a batch's, or a single one).
struct StagedEntry {
    subject: StreamId,
    aad: String,
    municipality: MunicipalityCode,
    key: RegistryKey,
    facts: Erasable<RegistryFacts>,
    version: i64,
}

impl StagedEntry {
    /// The row its `Imported` event (the first of its stream) makes.
    fn imported(
        municipality: MunicipalityCode,
        key: RegistryKey,
        facts: Erasable<RegistryFacts>,
        recorded: &Recorded<'_>,
    ) -> Self {
        StagedEntry {
            subject: recorded.stream_id().clone(),
            aad: aad(recorded.key()),
            municipality,
            key,
            facts,
            version: recorded.version(),
        }
    }
}

/// Rows per multi-row INSERT of entries (6 parameters each).
const ENTRY_ROWS: usize = 100;

/// An entry ready to be written: its sealed facts and birth-date token (none when erased or its key is gone).
type SealedEntry<'a> = (&'a StagedEntry, Option<(Vec<u8>, Vec<u8>)>);

/// A group of entries ready to be written by one INSERT.
struct SealedEntries<'a>(Vec<SealedEntry<'a>>);

impl RegistryView {
    /// Writes staged entries: their data keys fetched in one statement per chunk, each row sealed and tokenized
    /// while the database writes the rows before it.
    async fn write_staged(&self, conn: &mut AnyConnection, staged: Vec<StagedEntry>) -> Result<(), ProjectionError> {
        self.sealer
            .write_groups(
                conn,
                &staged,
                ENTRY_ROWS,
                |e| e.facts.known().map(|_| &e.subject),
                |keys, chunk| self.sealed(keys, chunk),
            )
            .await
    }

    fn sealed<'a>(
        &self,
        keys: &HashMap<StreamId, DataKey>,
        staged: &'a [StagedEntry],
    ) -> Result<SealedEntries<'a>, ProjectionError> {
        let mut rows = Vec::with_capacity(staged.len());
        for e in staged {
            let sealed = match (e.facts.known(), keys.get(&e.subject)) {
                (Some(f), Some(k)) => Some((
                    RowSealer::seal(k, &e.aad, f)?,
                    self.sealer.token(e.municipality.as_str(), BIRTH, f.birth_date.as_str()),
                )),
                _ => None,
            };
            rows.push((e, sealed));
        }
        Ok(SealedEntries(rows))
    }
}

impl GroupWrite for SealedEntries<'_> {
    /// One multi-row INSERT of entries.
    async fn write(self, conn: &mut AnyConnection) -> Result<(), ProjectionError> {
        let values = crate::values_list(self.0.len(), 6);
        let mut query = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO rm_registry_entries (municipality, registry_key, facts, birth_token, erased, version) \
             VALUES {values}"
        )));
        for (e, sealed) in self.0 {
            let erased = i64::from(sealed.is_none());
            let (facts, token) = sealed.unzip();
            query = query
                .bind(e.municipality.as_str().to_owned())
                .bind(e.key.as_str().to_owned())
                .bind(facts)
                .bind(token)
                .bind(erased)
                .bind(e.version);
        }
        query.execute(&mut *conn).await.map_err(ProjectionError::from_sqlx)?;
        Ok(())
    }
}

/// (municipality, registry key) of the event's stream.
fn split(recorded: &Recorded<'_>) -> Result<(String, String), ProjectionError> {
    match recorded.key().split_once('.') {
        Some((municipality, key)) => Ok((municipality.to_owned(), key.to_owned())),
        None => Err(recorded.error("stream key is not <municipality>.<registry key>")),
    }
}

/// Blanks an entry: its facts and its token go, its key and version stay.
fn blank<'q>(
    version: i64,
    municipality: String,
    key: String,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    sqlx::query(
        "UPDATE rm_registry_entries SET facts = NULL, birth_token = NULL, erased = 1, version = $1 \
         WHERE municipality = $2 AND registry_key = $3",
    )
    .bind(version)
    .bind(municipality)
    .bind(key)
}

/// The AAD of an entry's sealed facts (`stream key` = `<municipality>.<registry key>`).
fn aad(stream_key: &str) -> String {
    format!("rm_registry_entries/{stream_key}")
}

/// One registry entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegistryEntryRow {
    pub municipality: MunicipalityCode,
    pub registry_key: RegistryKey,
    /// `None` once erased.
    pub facts: Option<RegistryFacts>,
    pub erased: bool,
    /// The entry's stream version: the import's expected version for a change.
    pub version: i64,
}

const SELECT: &str = "SELECT municipality, registry_key, facts, erased, version FROM rm_registry_entries";

/// The entry `key` of `municipality`.
pub async fn get(
    pool: &AnyPool,
    sealer: &RowSealer,
    municipality: &MunicipalityCode,
    key: &RegistryKey,
) -> Result<Option<RegistryEntryRow>, ProjectionError> {
    let r = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT} WHERE municipality = $1 AND registry_key = $2")))
        .bind(municipality.as_str().to_owned())
        .bind(key.as_str().to_owned())
        .fetch_optional(pool)
        .await
        .map_err(ProjectionError::from_sqlx)?;
    Ok(open_rows(sealer, r.into_iter().collect()).await?.pop())
}

/// The entries of `municipality` matching the facts read from a card: the same birth date and sex, and the same
/// name once spaces are removed on both sides (the registry separates family and given name by a full-width
/// space, a card's text may not). In registry-key order. The birth date's token finds the entries of that day;
/// they are opened and compared in memory.
pub async fn find_by_facts(
    pool: &AnyPool,
    sealer: &RowSealer,
    municipality: &MunicipalityCode,
    birth_date: &EraDate,
    name: &FullName,
    sex: Sex,
) -> Result<Vec<RegistryEntryRow>, ProjectionError> {
    // FullName has made every space the full-width one.
    let compact = |n: &FullName| n.as_str().chars().filter(|c| !c.is_whitespace()).collect::<String>();
    let wanted = compact(name);
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE birth_token = $1 AND municipality = $2 ORDER BY registry_key"
    )))
    .bind(sealer.token(municipality.as_str(), BIRTH, birth_date.as_str()))
    .bind(municipality.as_str().to_owned())
    .fetch_all(pool)
    .await
    .map_err(ProjectionError::from_sqlx)?;
    let mut rows = open_rows(sealer, rows).await?;
    rows.retain(|r| {
        r.facts.as_ref().is_some_and(|f| f.birth_date == *birth_date && f.sex == sex && compact(&f.name) == wanted)
    });
    Ok(rows)
}

/// For each of `keys` that `municipality` has: its stream version and its facts (`None` once erased). Keys it
/// does not have are absent. One statement per [`VERSIONS_BATCH`] keys; the number of placeholders is rounded
/// up to a few fixed sizes (repeating a key) so that the statements stay few.
///
/// On PostgreSQL each key is one probe of the primary key (a `LATERAL` lookup), whatever the table's statistics
/// say: an import into a registry that was empty when last analyzed (the first import of a new installation) was
/// planned as a scan of the municipality's whole range filtered by the keys, once per batch, so each batch took
/// longer than the one before (33 ms a batch on average over 300,000 rows, most of the import's time).
pub async fn versions(
    pool: &AnyPool,
    sealer: &RowSealer,
    municipality: &MunicipalityCode,
    keys: &[RegistryKey],
) -> Result<HashMap<RegistryKey, (u64, Option<RegistryFacts>)>, ProjectionError> {
    let mut out = HashMap::with_capacity(keys.len());
    let mut conn = pool.acquire().await.map_err(ProjectionError::from_sqlx)?;
    let postgres = conn.backend_name().eq_ignore_ascii_case("PostgreSQL");
    for chunk in keys.chunks(VERSIONS_BATCH) {
        let Some(last) = chunk.last() else {
            continue;
        };
        let size = [1, 10, 100, VERSIONS_BATCH].into_iter().find(|s| *s >= chunk.len()).unwrap_or(VERSIONS_BATCH);
        let sql = if postgres {
            let keys = (2..size + 2).map(|i| format!("(${i}::text)")).collect::<Vec<_>>().join(", ");
            format!(
                "SELECT e.municipality, e.registry_key, e.facts, e.erased, e.version FROM (VALUES {keys}) k(key) \
                 CROSS JOIN LATERAL ({SELECT} WHERE municipality = $1 AND registry_key = k.key LIMIT 1) e"
            )
        } else {
            let keys = (2..size + 2).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
            format!("{SELECT} WHERE municipality = $1 AND registry_key IN ({keys})")
        };
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(municipality.as_str().to_owned());
        for key in chunk.iter().chain(std::iter::repeat(last)).take(size) {
            query = query.bind(key.as_str().to_owned());
        }
        let rows = query.fetch_all(&mut *conn).await.map_err(ProjectionError::from_sqlx)?;
        for entry in open_rows(sealer, rows).await? {
            let version = u64::try_from(entry.version).map_err(|e| bad("version", &e))?;
            out.insert(entry.registry_key, (version, entry.facts));
        }
    }
    Ok(out)
}

fn bad(what: &str, e: &dyn std::fmt::Display) -> ProjectionError {
    ProjectionError::Database(sqlx::Error::Decode(format!("rm_registry_entries.{what}: {e}").into()))
}

/// The entries of `rows`, in the same order, their facts opened with one key fetch for all. An entry whose key
/// was destroyed reads as erased.
async fn open_rows(sealer: &RowSealer, rows: Vec<AnyRow>) -> Result<Vec<RegistryEntryRow>, ProjectionError> {
    let get = ProjectionError::Database;
    let mut ids = Vec::with_capacity(rows.len());
    for r in &rows {
        let municipality: String = r.try_get("municipality").map_err(get)?;
        let key: String = r.try_get("registry_key").map_err(get)?;
        let municipality = MunicipalityCode::parse(&municipality).map_err(|e| bad("municipality", &e))?;
        let key = RegistryKey::parse(&key).map_err(|e| bad("registry_key", &e))?;
        let stream_key = registry::stream_key(&municipality, &key);
        let subject = StreamId::new(RegistryEntry::STREAM_TYPE, &stream_key).map_err(|e| bad("registry_key", &e))?;
        ids.push((municipality, key, stream_key, subject));
    }
    let subjects: Vec<StreamId> = ids.iter().map(|(.., s)| s.clone()).collect();
    let keys = sealer.keys(&subjects).await?;
    rows.iter()
        .zip(ids)
        .map(|(r, (municipality, key, stream_key, subject))| row(r, municipality, key, &stream_key, keys.get(&subject)))
        .collect()
}

fn row(
    r: &AnyRow,
    municipality: MunicipalityCode,
    registry_key: RegistryKey,
    stream_key: &str,
    key: Option<&DataKey>,
) -> Result<RegistryEntryRow, ProjectionError> {
    let get = ProjectionError::Database;
    let sealed: Option<Vec<u8>> = r.try_get("facts").map_err(get)?;
    let facts: Option<RegistryFacts> = match (sealed, key) {
        (Some(sealed), Some(key)) => Some(RowSealer::open(key, &aad(stream_key), &sealed)?),
        _ => None,
    };
    Ok(RegistryEntryRow {
        municipality,
        registry_key,
        erased: facts.is_none(),
        facts,
        version: r.try_get("version").map_err(get)?,
    })
}
