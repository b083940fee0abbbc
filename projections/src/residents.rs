//! The resident register (利用者, 手引き I 1.1 利用者登録): one row per resident of a municipality with his
//! personal data, registry link, move-out, active card and version, and the searches the 利用者検索 screen runs
//! (kana prefix, birth date, card FID) in keyset pages.
//!
//! Owns `rm_residents`. Personal data arrives already unsealed; when the resident's data key was destroyed it
//! arrives as `Erased`, and then every personal column of the row is set to NULL (`erased = 1`) while ids, the
//! card link and the status stay. `ResidentErased` (消去, his erasure decided) deletes his row in place: nothing
//! about him — not even his registry key or card link — is left to find. Must not log personal data. Every query
//! is confined to one municipality.

use std::collections::BTreeMap;

use async_trait::async_trait;
use cardap_domain::local_settings::{CustomValue, FieldKey};
use cardap_domain::registry::RegistryKey;
use cardap_domain::resident::{
    CardFid, EraDate, Erasable, KanaName, PersonName, PersonalChanges, PersonalData, Resident, ResidentEvent,
    ResidentId,
};
use cardap_domain::{Aggregate, MunicipalityCode};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};

use crate::ProjectionError;
use crate::typed::{Recorded, View};

/// Builds `rm_residents`.
#[derive(Debug)]
pub struct ResidentRegister;

pub const NAME: &str = "residents";

/// The largest page a search returns.
pub const MAX_PAGE: u32 = 1000;

#[async_trait]
impl View for ResidentRegister {
    type Event = ResidentEvent;
    const NAME: &'static str = NAME;
    const STREAM_TYPES: &'static [&'static str] = &[Resident::STREAM_TYPE];

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        decoded: ResidentEvent,
        recorded: &Recorded<'_>,
    ) -> Result<(), ProjectionError> {
        let version = recorded.version();
        let at = recorded.at();
        let id = recorded.key().to_owned();
        let query = match decoded {
            ResidentEvent::Registered { id, municipality, registry_key, personal } => {
                let p = match &personal {
                    Erasable::Known(data) => Columns::of(data).map_err(|e| recorded.error(e))?,
                    Erasable::Erased => Columns::default(),
                };
                sqlx::query(
                    "INSERT INTO rm_residents (municipality, resident_id, kana_family, kana_given, kana_search, \
                     kanji_family, kanji_given, birth_date, sex, postal_code, address1, address2, phone, email, \
                     occupation, custom_fields, registry_key, moved_out, active_fid, erased, version, registered_at, \
                     updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, 0, NULL, $18, \
                     $19, $20, $20)",
                )
                .bind(municipality.as_str().to_owned())
                .bind(id.to_string())
                .bind(p.kana_family)
                .bind(p.kana_given)
                .bind(p.kana_search)
                .bind(p.kanji_family)
                .bind(p.kanji_given)
                .bind(p.birth_date)
                .bind(p.sex)
                .bind(p.postal_code)
                .bind(p.address1)
                .bind(p.address2)
                .bind(p.phone)
                .bind(p.email)
                .bind(p.occupation)
                .bind(p.custom_fields)
                .bind(registry_key.map(String::from))
                .bind(i64::from(personal.known().is_none()))
                .bind(version)
                .bind(at)
            }
            ResidentEvent::FieldsChanged { changes: Erasable::Known(c) } => {
                let c = ChangeColumns::of(&c).map_err(|e| recorded.error(e))?;
                // One statement: unchanged fields keep their value (COALESCE for required fields, a flag for
                // optional ones, whose change may be a clear); custom fields are merged as a JSON merge patch
                // in which `null` removes a key (stored values are never null).
                let sql = if is_postgres(conn) {
                    sql_change("jsonb_strip_nulls(custom_fields::jsonb || $20::jsonb)::text")
                } else {
                    sql_change("json_patch(custom_fields, $20)")
                };
                sqlx::query(sql)
                    .bind(c.kana_family)
                    .bind(c.kana_given)
                    .bind(c.kana_search)
                    .bind(c.kanji_family)
                    .bind(c.kanji_given)
                    .bind(c.birth_date)
                    .bind(c.sex)
                    .bind(c.postal_code.0)
                    .bind(c.postal_code.1)
                    .bind(c.address1.0)
                    .bind(c.address1.1)
                    .bind(c.address2.0)
                    .bind(c.address2.1)
                    .bind(c.phone.0)
                    .bind(c.phone.1)
                    .bind(c.email.0)
                    .bind(c.email.1)
                    .bind(c.occupation.0)
                    .bind(c.occupation.1)
                    .bind(c.custom_patch)
                    .bind(version)
                    .bind(at)
                    .bind(id)
            }
            ResidentEvent::FieldsChanged { changes: Erasable::Erased } => sqlx::query(
                "UPDATE rm_residents SET kana_family = NULL, kana_given = NULL, kana_search = '', \
                 kanji_family = NULL, kanji_given = NULL, birth_date = NULL, sex = NULL, postal_code = NULL, \
                 address1 = NULL, address2 = NULL, phone = NULL, email = NULL, occupation = NULL, \
                 custom_fields = NULL, erased = 1, version = $1, updated_at = $2 WHERE resident_id = $3",
            )
            .bind(version)
            .bind(at)
            .bind(id),
            // Erased (消去): his row goes, in place (no rebuild), so that no search — by kana, birth date, his card's
            // FID — and no registry key leads to him any more. A rebuild ends the same way.
            ResidentEvent::Erased { .. } => sqlx::query("DELETE FROM rm_residents WHERE resident_id = $1").bind(id),
            ResidentEvent::MovedOut => sqlx::query(
                "UPDATE rm_residents SET moved_out = 1, version = $1, updated_at = $2 WHERE resident_id = $3",
            )
            .bind(version)
            .bind(at)
            .bind(id),
            ResidentEvent::CardAttached { fid } => sqlx::query(
                "UPDATE rm_residents SET active_fid = $1, version = $2, updated_at = $3 WHERE resident_id = $4",
            )
            .bind(fid.as_str().to_owned())
            .bind(version)
            .bind(at)
            .bind(id),
            ResidentEvent::CardDetached { fid } => sqlx::query(
                "UPDATE rm_residents SET active_fid = CASE WHEN active_fid = $1 THEN NULL ELSE active_fid END, \
                 version = $2, updated_at = $3 WHERE resident_id = $4",
            )
            .bind(fid.as_str().to_owned())
            .bind(version)
            .bind(at)
            .bind(id),
        };
        query.execute(&mut *conn).await.map_err(ProjectionError::from_sqlx)?;
        Ok(())
    }

    async fn reset(&self, conn: &mut AnyConnection) -> Result<(), ProjectionError> {
        sqlx::query("DELETE FROM rm_residents").execute(conn).await.map_err(ProjectionError::from_sqlx)?;
        Ok(())
    }
}

fn is_postgres(conn: &AnyConnection) -> bool {
    conn.backend_name().eq_ignore_ascii_case("PostgreSQL")
}

/// The change statement with the backend's JSON merge of `$20` into `custom_fields`.
fn sql_change(merge: &'static str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(format!(
        "UPDATE rm_residents SET kana_family = COALESCE($1, kana_family), kana_given = COALESCE($2, kana_given), \
         kana_search = COALESCE($3, kana_search), kanji_family = COALESCE($4, kanji_family), \
         kanji_given = COALESCE($5, kanji_given), birth_date = COALESCE($6, birth_date), sex = COALESCE($7, sex), \
         postal_code = CASE WHEN $8 = 1 THEN $9 ELSE postal_code END, \
         address1 = CASE WHEN $10 = 1 THEN $11 ELSE address1 END, \
         address2 = CASE WHEN $12 = 1 THEN $13 ELSE address2 END, \
         phone = CASE WHEN $14 = 1 THEN $15 ELSE phone END, \
         email = CASE WHEN $16 = 1 THEN $17 ELSE email END, \
         occupation = CASE WHEN $18 = 1 THEN $19 ELSE occupation END, \
         custom_fields = CASE WHEN $20 IS NULL THEN custom_fields ELSE {merge} END, \
         version = $21, updated_at = $22 WHERE resident_id = $23"
    ))
}

/// The search key of a kana name: family and given name joined without separator, spaces removed, so that a
/// prefix may run from the family name into the given name.
pub fn kana_search_key(family: &str, given: &str) -> String {
    family.chars().chain(given.chars()).filter(|c| !c.is_whitespace()).collect()
}

/// A typed prefix as [`kana_search_key`] stores names: spaces removed, half-width katakana made full-width.
fn normalize_prefix(prefix: &str) -> String {
    let compact: String = prefix.chars().filter(|c| !c.is_whitespace()).collect();
    KanaName::parse(&compact).map(String::from).unwrap_or(compact)
}

/// The personal columns of a registration; all `None` (and `kana_search` empty) once erased.
#[derive(Default)]
struct Columns {
    kana_family: Option<String>,
    kana_given: Option<String>,
    kana_search: String,
    kanji_family: Option<String>,
    kanji_given: Option<String>,
    birth_date: Option<String>,
    sex: Option<String>,
    postal_code: Option<String>,
    address1: Option<String>,
    address2: Option<String>,
    phone: Option<String>,
    email: Option<String>,
    occupation: Option<String>,
    custom_fields: Option<String>,
}

fn text<T: AsRef<str>>(v: &Option<T>) -> Option<String> {
    v.as_ref().map(|v| v.as_ref().to_owned())
}

impl Columns {
    fn of(p: &PersonalData) -> Result<Self, serde_json::Error> {
        Ok(Columns {
            kana_family: Some(p.kana_name.family.as_str().to_owned()),
            kana_given: Some(p.kana_name.given.as_str().to_owned()),
            kana_search: kana_search_key(p.kana_name.family.as_str(), p.kana_name.given.as_str()),
            kanji_family: Some(p.kanji_name.family.as_str().to_owned()),
            kanji_given: Some(p.kanji_name.given.as_str().to_owned()),
            birth_date: Some(p.birth_date.as_str().to_owned()),
            sex: Some(p.sex.code().to_owned()),
            postal_code: p.postal_code.as_ref().map(|v| v.as_str().to_owned()),
            address1: p.address1.as_ref().map(|v| v.as_str().to_owned()),
            address2: p.address2.as_ref().map(|v| v.as_str().to_owned()),
            phone: p.phone.as_ref().map(|v| v.as_str().to_owned()),
            email: p.email.as_ref().map(|v| v.as_str().to_owned()),
            occupation: p.occupation.as_ref().map(|v| v.as_str().to_owned()),
            custom_fields: Some(serde_json::to_string(&p.custom_fields)?),
        })
    }
}

/// An optional field of a change: (1 if it changes, its new value).
type Optional = (i64, Option<String>);

/// The parameters of the change statement: `None` = unchanged.
struct ChangeColumns {
    kana_family: Option<String>,
    kana_given: Option<String>,
    kana_search: Option<String>,
    kanji_family: Option<String>,
    kanji_given: Option<String>,
    birth_date: Option<String>,
    sex: Option<String>,
    postal_code: Optional,
    address1: Optional,
    address2: Optional,
    phone: Optional,
    email: Optional,
    occupation: Optional,
    /// JSON merge patch of the custom fields (`null` removes a key).
    custom_patch: Option<String>,
}

impl ChangeColumns {
    fn of(c: &PersonalChanges) -> Result<Self, serde_json::Error> {
        fn optional<T: AsRef<str>>(v: &Option<Option<T>>) -> Optional {
            match v {
                Some(v) => (1, text(v)),
                None => (0, None),
            }
        }
        let custom_patch =
            if c.custom_fields.is_empty() { None } else { Some(serde_json::to_string(&c.custom_fields)?) };
        Ok(ChangeColumns {
            kana_family: c.kana_name.as_ref().map(|n| n.family.as_str().to_owned()),
            kana_given: c.kana_name.as_ref().map(|n| n.given.as_str().to_owned()),
            kana_search: c.kana_name.as_ref().map(|n| kana_search_key(n.family.as_str(), n.given.as_str())),
            kanji_family: c.kanji_name.as_ref().map(|n| n.family.as_str().to_owned()),
            kanji_given: c.kanji_name.as_ref().map(|n| n.given.as_str().to_owned()),
            birth_date: c.birth_date.as_ref().map(|d| d.as_str().to_owned()),
            sex: c.sex.map(|s| s.code().to_owned()),
            postal_code: optional(&c.postal_code.as_ref().map(|v| v.as_ref().map(|v| v.as_str()))),
            address1: optional(&c.address1.as_ref().map(|v| v.as_ref().map(|v| v.as_str()))),
            address2: optional(&c.address2.as_ref().map(|v| v.as_ref().map(|v| v.as_str()))),
            phone: optional(&c.phone.as_ref().map(|v| v.as_ref().map(|v| v.as_str()))),
            email: optional(&c.email.as_ref().map(|v| v.as_ref().map(|v| v.as_str()))),
            occupation: optional(&c.occupation.as_ref().map(|v| v.as_ref().map(|v| v.as_str()))),
            custom_patch,
        })
    }
}

/// A resident as the screens and the API show him. Every personal field is `None` once erased.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResidentRow {
    pub resident_id: ResidentId,
    pub municipality: MunicipalityCode,
    pub kana_name: Option<PersonName<String>>,
    pub kanji_name: Option<PersonName<String>>,
    /// `EYYMMDD`.
    pub birth_date: Option<String>,
    /// The ISO 5218 digit.
    pub sex: Option<String>,
    pub postal_code: Option<String>,
    pub address1: Option<String>,
    pub address2: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub occupation: Option<String>,
    pub custom_fields: Option<BTreeMap<FieldKey, CustomValue>>,
    /// The registry entry he was prefilled from.
    pub registry_key: Option<RegistryKey>,
    pub moved_out: bool,
    pub active_fid: Option<CardFid>,
    /// His data key was destroyed: his personal data is gone for good.
    pub erased: bool,
    /// The stream version: the resource's ETag.
    pub version: i64,
    pub registered_at: String,
    pub updated_at: String,
}

/// Where a search page ends: the last row's place in the order (kana_search, resident_id). Opaque to clients:
/// the API encodes it as it likes and hands it back as `after`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResidentCursor {
    pub kana_search: String,
    pub resident_id: ResidentId,
}

/// The conditions of 利用者検索; all given conditions must match.
#[derive(Debug, Clone, Default)]
pub struct ResidentSearch {
    /// A prefix of the kana name as family + given without separator (spaces are ignored), e.g. `ヤマダ` or
    /// `ヤマダタ`.
    pub kana_prefix: Option<String>,
    pub birth_date: Option<EraDate>,
    /// A card of any status registered to him.
    pub fid: Option<CardFid>,
    /// Continue after this row (from the previous page's `next`).
    pub after: Option<ResidentCursor>,
    /// Rows per page, 1..=[`MAX_PAGE`].
    pub limit: u32,
}

/// One page of a search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResidentPage {
    pub rows: Vec<ResidentRow>,
    /// The cursor of the next page, `None` on the last one.
    pub next: Option<ResidentCursor>,
}

const COLUMNS: &str = "r.resident_id, r.municipality, r.kana_family, r.kana_given, r.kana_search, r.kanji_family, \
     r.kanji_given, r.birth_date, r.sex, r.postal_code, r.address1, r.address2, r.phone, r.email, r.occupation, \
     r.custom_fields, r.registry_key, r.moved_out, r.active_fid, r.erased, r.version, r.registered_at, r.updated_at";

/// A resident of `municipality`.
pub async fn get(
    pool: &AnyPool,
    municipality: &MunicipalityCode,
    id: &ResidentId,
) -> Result<Option<ResidentRow>, ProjectionError> {
    let r = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM rm_residents r WHERE r.municipality = $1 AND r.resident_id = $2"
    )))
    .bind(municipality.as_str().to_owned())
    .bind(id.to_string())
    .fetch_optional(pool)
    .await
    .map_err(ProjectionError::from_sqlx)?;
    r.as_ref().map(|r| row(r).map(|(row, _)| row)).transpose()
}

/// 利用者検索: the residents of `municipality` matching `search`, ordered by (kana, resident id), one page.
///
/// Each condition is an index range: the kana prefix is `kana_search >= p AND kana_search < p || U+10FFFF` on
/// (municipality, kana_search, resident_id), the birth date uses (municipality, birth_date, kana_search,
/// resident_id), the FID goes through the card's primary key. The statement holds only the conditions given,
/// so each combination gets a plan that uses them (no `$n IS NULL OR …`).
pub async fn search(
    pool: &AnyPool,
    municipality: &MunicipalityCode,
    search: &ResidentSearch,
) -> Result<ResidentPage, ProjectionError> {
    let limit = search.limit.clamp(1, MAX_PAGE);
    let prefix = search.kana_prefix.as_deref().map(normalize_prefix).filter(|p| !p.is_empty());
    // Only fixed fragments and placeholders go into the SQL; every value is bound.
    let mut sql = format!("SELECT {COLUMNS} FROM rm_residents r WHERE r.municipality = $1");
    let mut n = 1;
    let mut param = || {
        n += 1;
        n
    };
    if prefix.is_some() {
        let (lo, hi) = (param(), param());
        sql.push_str(&format!(" AND r.kana_search >= ${lo} AND r.kana_search < ${hi}"));
    }
    if search.birth_date.is_some() {
        sql.push_str(&format!(" AND r.birth_date = ${}", param()));
    }
    if search.fid.is_some() {
        sql.push_str(&format!(
            " AND r.resident_id = (SELECT c.resident_id FROM rm_cards c WHERE c.fid = ${} AND c.municipality = $1)",
            param()
        ));
    }
    if search.after.is_some() {
        let (k, id) = (param(), param());
        sql.push_str(&format!(" AND (r.kana_search, r.resident_id) > (${k}, ${id})"));
    }
    sql.push_str(&format!(" ORDER BY r.kana_search, r.resident_id LIMIT ${}", param()));

    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(municipality.as_str().to_owned());
    if let Some(p) = prefix {
        // Every name starting with p sorts at or after p and before p followed by the largest code point.
        let upper = format!("{p}\u{10FFFF}");
        // After a cursor the range starts at the cursor's key (implied by the keyset condition): SQLite takes
        // only one range on the column, and this one skips the pages already seen.
        let lower = match &search.after {
            Some(after) if after.kana_search > p => after.kana_search.clone(),
            _ => p,
        };
        query = query.bind(lower).bind(upper);
    }
    if let Some(date) = &search.birth_date {
        query = query.bind(date.as_str().to_owned());
    }
    if let Some(fid) = &search.fid {
        query = query.bind(fid.as_str().to_owned());
    }
    if let Some(after) = &search.after {
        query = query.bind(after.kana_search.clone()).bind(after.resident_id.to_string());
    }
    // One more than a page tells whether there is a next one.
    let rows = query.bind(i64::from(limit) + 1).fetch_all(pool).await.map_err(ProjectionError::from_sqlx)?;
    let mut rows = rows.iter().map(row).collect::<Result<Vec<_>, _>>()?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next = if more {
        rows.last()
            .map(|(r, kana_search)| ResidentCursor { kana_search: kana_search.clone(), resident_id: r.resident_id })
    } else {
        None
    };
    Ok(ResidentPage { rows: rows.into_iter().map(|(r, _)| r).collect(), next })
}

fn bad(what: &str, e: &dyn std::fmt::Display) -> ProjectionError {
    ProjectionError::Database(sqlx::Error::Decode(format!("rm_residents.{what}: {e}").into()))
}

/// A row and its `kana_search` (the cursor's key).
fn row(r: &AnyRow) -> Result<(ResidentRow, String), ProjectionError> {
    let get = ProjectionError::Database;
    let s = |c: &str| r.try_get::<Option<String>, _>(c).map_err(get);
    let name = |family: Option<String>, given: Option<String>| match (family, given) {
        (Some(family), Some(given)) => Some(PersonName { family, given }),
        _ => None,
    };
    let id: String = r.try_get("resident_id").map_err(get)?;
    let municipality: String = r.try_get("municipality").map_err(get)?;
    let custom_fields = s("custom_fields")?
        .map(|j| serde_json::from_str::<BTreeMap<FieldKey, CustomValue>>(&j))
        .transpose()
        .map_err(|e| bad("custom_fields", &e))?;
    let row = ResidentRow {
        resident_id: ResidentId::parse(&id).map_err(|e| bad("resident_id", &e))?,
        municipality: MunicipalityCode::parse(&municipality).map_err(|e| bad("municipality", &e))?,
        kana_name: name(s("kana_family")?, s("kana_given")?),
        kanji_name: name(s("kanji_family")?, s("kanji_given")?),
        birth_date: s("birth_date")?,
        sex: s("sex")?,
        postal_code: s("postal_code")?,
        address1: s("address1")?,
        address2: s("address2")?,
        phone: s("phone")?,
        email: s("email")?,
        occupation: s("occupation")?,
        custom_fields,
        registry_key: s("registry_key")?
            .map(|k| RegistryKey::parse(&k))
            .transpose()
            .map_err(|e| bad("registry_key", &e))?,
        moved_out: r.try_get::<i64, _>("moved_out").map_err(get)? != 0,
        active_fid: s("active_fid")?.map(|f| CardFid::parse(&f)).transpose().map_err(|e| bad("active_fid", &e))?,
        erased: r.try_get::<i64, _>("erased").map_err(get)? != 0,
        version: r.try_get("version").map_err(get)?,
        registered_at: r.try_get("registered_at").map_err(get)?,
        updated_at: r.try_get("updated_at").map_err(get)?,
    };
    Ok((row, r.try_get("kana_search").map_err(get)?))
}
