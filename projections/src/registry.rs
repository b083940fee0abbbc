//! The imported resident registry (既存住基 / 住基ネットCS の本人確認4情報) per municipality: what 利用者登録
//! prefills from (by registry key, or by the facts read from a card), and what the bulk import compares its
//! rows with to tell new, unchanged and changed entries apart.
//!
//! Owns `rm_registry_entries`. An import pushes up to a million `RegistryEntryImported` through it, so every
//! event is one statement. The facts are personal data: once an entry's data key was destroyed they arrive as
//! `Erased` and the row keeps only its key, `erased = 1` and its version; `RegistryEntryErased` (its resident was
//! erased) blanks the row in place the same way, without a rebuild. Every query is confined to one
//! municipality. Must not log the facts.

use std::collections::HashMap;

use async_trait::async_trait;
use cardap_domain::contact::Sex;
use cardap_domain::registry::{FullName, RegistryEntry, RegistryEvent, RegistryFacts, RegistryKey};
use cardap_domain::resident::{Address, EraDate, Erasable, KanaName, PostalCode};
use cardap_domain::{Aggregate, MunicipalityCode};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};

use crate::ProjectionError;
use crate::typed::{Recorded, View};

/// Builds `rm_registry_entries`.
#[derive(Debug)]
pub struct RegistryView;

pub const NAME: &str = "registry";

/// The most keys one `versions` statement looks up; more are looked up in several.
pub const VERSIONS_BATCH: usize = 1000;

#[async_trait]
impl View for RegistryView {
    type Event = RegistryEvent;
    const NAME: &'static str = NAME;
    const STREAM_TYPES: &'static [&'static str] = &[RegistryEntry::STREAM_TYPE];

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        decoded: RegistryEvent,
        recorded: &Recorded<'_>,
    ) -> Result<(), ProjectionError> {
        let version = recorded.version();
        let query = match decoded {
            RegistryEvent::Imported { municipality, key, facts } => {
                let f = facts.known();
                sqlx::query(
                    "INSERT INTO rm_registry_entries (municipality, registry_key, name, kana, birth_date, sex, \
                     postal_code, address, erased, version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(municipality.as_str().to_owned())
                .bind(key.as_str().to_owned())
                .bind(f.map(|f| f.name.as_str().to_owned()))
                .bind(f.and_then(|f| f.kana.as_ref()).map(|v| v.as_str().to_owned()))
                .bind(f.map(|f| f.birth_date.as_str().to_owned()))
                .bind(f.map(|f| f.sex.code()))
                .bind(f.and_then(|f| f.postal_code.as_ref()).map(|v| v.as_str().to_owned()))
                .bind(f.and_then(|f| f.address.as_ref()).map(|v| v.as_str().to_owned()))
                .bind(i64::from(f.is_none()))
                .bind(version)
            }
            RegistryEvent::Erased => {
                let Some((municipality, key)) = recorded.key().split_once('.') else {
                    return Err(recorded.error("stream key is not <municipality>.<registry key>"));
                };
                sqlx::query(
                    "UPDATE rm_registry_entries SET name = NULL, kana = NULL, birth_date = NULL, sex = NULL, \
                     postal_code = NULL, address = NULL, erased = 1, version = $1 \
                     WHERE municipality = $2 AND registry_key = $3",
                )
                .bind(version)
                .bind(municipality.to_owned())
                .bind(key.to_owned())
            }
            RegistryEvent::Changed { changes } => {
                let Some((municipality, key)) = recorded.key().split_once('.') else {
                    return Err(recorded.error("stream key is not <municipality>.<registry key>"));
                };
                let (municipality, key) = (municipality.to_owned(), key.to_owned());
                match changes {
                    Erasable::Known(c) => {
                        fn optional<T: AsRef<str>>(v: &Option<Option<T>>) -> (i64, Option<String>) {
                            match v {
                                Some(v) => (1, v.as_ref().map(|v| v.as_ref().to_owned())),
                                None => (0, None),
                            }
                        }
                        let kana = optional(&c.kana.as_ref().map(|v| v.as_ref().map(|v| v.as_str())));
                        let postal = optional(&c.postal_code.as_ref().map(|v| v.as_ref().map(|v| v.as_str())));
                        let address = optional(&c.address.as_ref().map(|v| v.as_ref().map(|v| v.as_str())));
                        sqlx::query(
                            "UPDATE rm_registry_entries SET name = COALESCE($1, name), \
                             kana = CASE WHEN $2 = 1 THEN $3 ELSE kana END, birth_date = COALESCE($4, birth_date), \
                             sex = COALESCE($5, sex), postal_code = CASE WHEN $6 = 1 THEN $7 ELSE postal_code END, \
                             address = CASE WHEN $8 = 1 THEN $9 ELSE address END, version = $10 \
                             WHERE municipality = $11 AND registry_key = $12",
                        )
                        .bind(c.name.map(String::from))
                        .bind(kana.0)
                        .bind(kana.1)
                        .bind(c.birth_date.map(String::from))
                        .bind(c.sex.map(|s| s.code()))
                        .bind(postal.0)
                        .bind(postal.1)
                        .bind(address.0)
                        .bind(address.1)
                        .bind(version)
                        .bind(municipality)
                        .bind(key)
                    }
                    Erasable::Erased => sqlx::query(
                        "UPDATE rm_registry_entries SET name = NULL, kana = NULL, birth_date = NULL, sex = NULL, \
                         postal_code = NULL, address = NULL, erased = 1, version = $1 \
                         WHERE municipality = $2 AND registry_key = $3",
                    )
                    .bind(version)
                    .bind(municipality)
                    .bind(key),
                }
            }
        };
        query.execute(&mut *conn).await.map_err(ProjectionError::from_sqlx)?;
        Ok(())
    }

    async fn reset(&self, conn: &mut AnyConnection) -> Result<(), ProjectionError> {
        sqlx::query("DELETE FROM rm_registry_entries").execute(conn).await.map_err(ProjectionError::from_sqlx)?;
        Ok(())
    }
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

const SELECT: &str = "SELECT municipality, registry_key, name, kana, birth_date, sex, postal_code, address, erased, \
     version FROM rm_registry_entries";

/// The entry `key` of `municipality`.
pub async fn get(
    pool: &AnyPool,
    municipality: &MunicipalityCode,
    key: &RegistryKey,
) -> Result<Option<RegistryEntryRow>, ProjectionError> {
    let r = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT} WHERE municipality = $1 AND registry_key = $2")))
        .bind(municipality.as_str().to_owned())
        .bind(key.as_str().to_owned())
        .fetch_optional(pool)
        .await
        .map_err(ProjectionError::from_sqlx)?;
    r.as_ref().map(row).transpose()
}

/// The entries of `municipality` matching the facts read from a card: the same birth date and sex, and the same
/// name once spaces are removed on both sides (the registry separates family and given name by a full-width
/// space, a card's text may not). In registry-key order.
pub async fn find_by_facts(
    pool: &AnyPool,
    municipality: &MunicipalityCode,
    birth_date: &EraDate,
    name: &FullName,
    sex: Sex,
) -> Result<Vec<RegistryEntryRow>, ProjectionError> {
    // FullName has made every space the full-width one.
    let compact: String = name.as_str().chars().filter(|c| !c.is_whitespace()).collect();
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE municipality = $1 AND birth_date = $2 AND sex = $3 AND replace(name, '\u{3000}', '') = $4 \
         ORDER BY registry_key"
    )))
    .bind(municipality.as_str().to_owned())
    .bind(birth_date.as_str().to_owned())
    .bind(sex.code())
    .bind(compact)
    .fetch_all(pool)
    .await
    .map_err(ProjectionError::from_sqlx)?;
    rows.iter().map(row).collect()
}

/// For each of `keys` that `municipality` has: its stream version and its facts (`None` once erased). Keys it
/// does not have are absent. One statement per [`VERSIONS_BATCH`] keys; the number of placeholders is rounded
/// up to a few fixed sizes (repeating a key) so that the statements stay few and prepared.
pub async fn versions(
    pool: &AnyPool,
    municipality: &MunicipalityCode,
    keys: &[RegistryKey],
) -> Result<HashMap<RegistryKey, (u64, Option<RegistryFacts>)>, ProjectionError> {
    let mut out = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(VERSIONS_BATCH) {
        let Some(last) = chunk.last() else {
            continue;
        };
        let size = [1, 10, 100, VERSIONS_BATCH].into_iter().find(|s| *s >= chunk.len()).unwrap_or(VERSIONS_BATCH);
        let placeholders = (2..size + 2).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
        let mut query = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SELECT} WHERE municipality = $1 AND registry_key IN ({placeholders})"
        )))
        // Planned afresh every time: the table grows by a million rows during one import, and a cached generic
        // plan made while it was small keeps scanning all of it until the next ANALYZE.
        .persistent(false)
        .bind(municipality.as_str().to_owned());
        for key in chunk.iter().chain(std::iter::repeat(last)).take(size) {
            query = query.bind(key.as_str().to_owned());
        }
        let rows = query.fetch_all(pool).await.map_err(ProjectionError::from_sqlx)?;
        for r in &rows {
            let entry = row(r)?;
            let version = u64::try_from(entry.version).map_err(|e| bad("version", &e))?;
            out.insert(entry.registry_key, (version, entry.facts));
        }
    }
    Ok(out)
}

fn bad(what: &str, e: &dyn std::fmt::Display) -> ProjectionError {
    ProjectionError::Database(sqlx::Error::Decode(format!("rm_registry_entries.{what}: {e}").into()))
}

fn row(r: &AnyRow) -> Result<RegistryEntryRow, ProjectionError> {
    let get = ProjectionError::Database;
    let s = |c: &str| r.try_get::<Option<String>, _>(c).map_err(get);
    let municipality: String = r.try_get("municipality").map_err(get)?;
    let key: String = r.try_get("registry_key").map_err(get)?;
    let erased = r.try_get::<i64, _>("erased").map_err(get)? != 0;
    let facts = match (erased, s("name")?, s("birth_date")?, s("sex")?) {
        (false, Some(name), Some(birth_date), Some(sex)) => Some(RegistryFacts {
            name: FullName::parse(&name).map_err(|e| bad("name", &e))?,
            kana: s("kana")?.map(|v| KanaName::parse(&v)).transpose().map_err(|e| bad("kana", &e))?,
            birth_date: EraDate::parse(&birth_date).map_err(|e| bad("birth_date", &e))?,
            sex: Sex::parse(&sex).map_err(|e| bad("sex", &e))?,
            postal_code: s("postal_code")?
                .map(|v| PostalCode::parse(&v))
                .transpose()
                .map_err(|e| bad("postal_code", &e))?,
            address: s("address")?.map(|v| Address::parse(&v)).transpose().map_err(|e| bad("address", &e))?,
        }),
        (false, ..) => return Err(bad("name", &"missing on an entry that is not erased")),
        (true, ..) => None,
    };
    Ok(RegistryEntryRow {
        municipality: MunicipalityCode::parse(&municipality).map_err(|e| bad("municipality", &e))?,
        registry_key: RegistryKey::parse(&key).map_err(|e| bad("registry_key", &e))?,
        facts,
        erased,
        version: r.try_get("version").map_err(get)?,
    })
}
