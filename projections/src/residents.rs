//! The resident register (利用者, 手引き I 1.1 利用者登録): one row per resident of a municipality with his
//! personal data, registry link, move-out, active card and version, and the searches the 利用者検索 screen runs
//! (kana prefix, birth date, card FID) in keyset pages.
//!
//! Owns `rm_residents` and its blind index `rm_resident_tokens`. No personal value is stored in clear (issue 12,
//! point 7): his personal data is one column, `personal`, sealed under his own data key (the key of his events)
//! with AAD `rm_residents/<resident id>` ([`RowSealer`]); searches go through tokens (HMAC under the search key,
//! cut to a 64-bit integer: [`RowSealer::token64`]) of every prefix of his kana name (family || given, no spaces,
//! the first [`MAX_PREFIX`] characters) and of his birth date, each tied to his municipality. The index refers to
//! him by `seq`, the log position of his registration (the same in every rebuild), so that its key is two integers
//! and the listing by municipality only appends; his row keeps his tokens (`tokens`) to take them out again. A
//! search therefore pages in registration order (keyset on `seq`); each page is shown sorted by kana. Ids, the
//! registry key (an identifier), the card link and the status stay in clear; so does the FID in `rm_cards` (a
//! card's number, not a name, address, birth date or contact).
//!
//! Personal data arrives already unsealed; when the resident's data key was destroyed it arrives as `Erased`
//! (or his key is gone by the time it is applied), and then `personal` is NULL (`erased = 1`) and his tokens go,
//! while ids, the card link and the status stay. `ResidentErased` (消去, his erasure decided) deletes his row and
//! tokens in place: nothing about him — not even his registry key or card link — is left to find. Must not log
//! personal data. Every query is confined to one municipality.
//!
//! A batch of events is applied set-based ([`View::apply_all`]): new registrations are staged (with the move-out
//! and card attachment that follow them in the same batch), their keys fetched in one statement, and their rows and
//! tokens written in multi-row statements; any other event of a staged resident writes the staged ones first, so
//! the result is the one of applying the events one by one.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use cardap_domain::local_settings::{CustomValue, FieldKey};
use cardap_domain::registry::RegistryKey;
use cardap_domain::resident::{
    CardFid, EraDate, Erasable, KanaName, PersonName, PersonalData, Resident, ResidentEvent, ResidentId,
};
use cardap_domain::{Aggregate, MunicipalityCode};
use cardap_store::{DataKey, StreamId};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};

use crate::ProjectionError;
use crate::sealing::{GroupWrite, RowSealer};
use crate::typed::{Recorded, View};

/// Builds `rm_residents` and `rm_resident_tokens`.
#[derive(Debug)]
pub struct ResidentRegister {
    sealer: RowSealer,
}

impl ResidentRegister {
    pub fn new(sealer: RowSealer) -> Self {
        ResidentRegister { sealer }
    }
}

pub const NAME: &str = "residents";

/// The largest page a search returns.
pub const MAX_PAGE: u32 = 1000;

/// The longest kana prefix with its own token. A longer typed prefix is searched by its first `MAX_PREFIX`
/// characters and the opened names are compared with the whole of it (such a page may hold fewer rows).
pub const MAX_PREFIX: usize = 20;

/// Token kinds.
const KANA: &str = "kana-prefix";
const BIRTH: &str = "birth-date";

#[async_trait]
impl View for ResidentRegister {
    type Event = ResidentEvent;
    const NAME: &'static str = NAME;
    const STREAM_TYPES: &'static [&'static str] = &[Resident::STREAM_TYPE];
    const TABLES: &'static [&'static str] = &["rm_resident_tokens", "rm_residents"];
    // The search's indexes: writing the register looks rows up only by resident id.
    const BUILT_AFTER_LOAD: &'static [&'static str] = &["rm_resident_tokens_pkey", "rm_residents_by_municipality"];

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
                let staged = Staged::registered(id, municipality, registry_key, personal, recorded);
                return self.write_staged(conn, vec![staged]).await;
            }
            ResidentEvent::FieldsChanged { changes: Erasable::Known(c) } => {
                let current =
                    sqlx::query("SELECT municipality, seq, personal, tokens FROM rm_residents WHERE resident_id = $1")
                        .bind(id.clone())
                        .fetch_optional(&mut *conn)
                        .await
                        .map_err(ProjectionError::from_sqlx)?;
                // No row (never registered here, or already purged): nothing to change, as an UPDATE of no row.
                let Some(current) = current else {
                    return Ok(());
                };
                let municipality: String = current.try_get("municipality").map_err(ProjectionError::Database)?;
                let blob: Option<Vec<u8>> = current.try_get("personal").map_err(ProjectionError::Database)?;
                let subject = recorded.stream_id();
                let key = match blob {
                    Some(_) => self.sealer.keys_in(conn, std::slice::from_ref(subject)).await?.remove(subject),
                    None => None,
                };
                match (blob, key) {
                    (Some(blob), Some(key)) => {
                        let data: PersonalData = RowSealer::open(&key, &aad(&id), &blob)?;
                        let searched_before = (data.kana_name.clone(), data.birth_date.clone());
                        let data = c.apply_to(data);
                        let mut tokens = Indexed::of(&current)?;
                        if (data.kana_name.clone(), data.birth_date.clone()) != searched_before {
                            tokens = tokens.replaced(conn, self.tokens(&municipality, &data)).await?;
                        }
                        sqlx::query(
                            "UPDATE rm_residents SET personal = $1, tokens = $2, version = $3, updated_at = $4 \
                             WHERE resident_id = $5",
                        )
                        .bind(RowSealer::seal(&key, &aad(&id), &data)?)
                        .bind(tokens.column())
                        .bind(version)
                        .bind(at)
                        .bind(id)
                    }
                    // Already erased, or his key went meanwhile: nothing personal is kept.
                    _ => erase_personal(conn, &id, version, at).await?,
                }
            }
            ResidentEvent::FieldsChanged { changes: Erasable::Erased } => {
                erase_personal(conn, &id, version, at).await?
            }
            // Erased (消去): his row goes, in place (no rebuild), so that no search — by kana, birth date, his card's
            // FID — and no registry key leads to him any more. A rebuild ends the same way.
            ResidentEvent::Erased { .. } => {
                drop_tokens(conn, &id).await?;
                sqlx::query("DELETE FROM rm_residents WHERE resident_id = $1").bind(id)
            }
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

    async fn apply_all(
        &self,
        conn: &mut AnyConnection,
        events: Vec<(ResidentEvent, Recorded<'_>)>,
    ) -> Result<(), ProjectionError> {
        let mut staged: Vec<Staged> = Vec::new();
        let mut at_index: HashMap<String, usize> = HashMap::new();
        for (event, recorded) in events {
            let version = recorded.version();
            let pending = at_index.get(recorded.key()).copied();
            match (event, pending) {
                (ResidentEvent::Registered { id, municipality, registry_key, personal }, None) => {
                    at_index.insert(recorded.key().to_owned(), staged.len());
                    staged.push(Staged::registered(id, municipality, registry_key, personal, &recorded));
                }
                (ResidentEvent::MovedOut, Some(i)) => {
                    if let Some(row) = staged.get_mut(i) {
                        (row.moved_out, row.version, row.updated_at) = (true, version, recorded.at());
                    }
                }
                (ResidentEvent::CardAttached { fid }, Some(i)) => {
                    if let Some(row) = staged.get_mut(i) {
                        (row.active_fid, row.version, row.updated_at) = (Some(fid), version, recorded.at());
                    }
                }
                (event, pending) => {
                    if pending.is_some() {
                        self.write_staged(conn, std::mem::take(&mut staged)).await?;
                        at_index.clear();
                    }
                    self.apply(conn, event, &recorded).await?;
                }
            }
        }
        self.write_staged(conn, staged).await
    }
}

impl ResidentRegister {
    /// The tokens a resident is found by: every prefix of his kana name and his birth date.
    fn tokens(&self, municipality: &str, data: &PersonalData) -> Vec<i64> {
        let name = kana_search_key(data.kana_name.family.as_str(), data.kana_name.given.as_str());
        let mut tokens: Vec<i64> = prefixes(&name).map(|p| self.sealer.token64(municipality, KANA, p)).collect();
        tokens.push(self.sealer.token64(municipality, BIRTH, data.birth_date.as_str()));
        // Distinct (another prefix length or kind each) unless two truncated HMACs collide: the index keeps one.
        tokens.sort_unstable();
        tokens.dedup();
        tokens
    }
}

/// A registration not written yet (a batch's, or a single one), with what later events of the same batch changed of
/// its row.
struct Staged {
    id: String,
    /// The position of his registration in the log.
    seq: i64,
    subject: StreamId,
    municipality: MunicipalityCode,
    registry_key: Option<RegistryKey>,
    personal: Erasable<PersonalData>,
    moved_out: bool,
    active_fid: Option<CardFid>,
    version: i64,
    registered_at: String,
    updated_at: String,
}

impl Staged {
    /// His row as his registration (the first event of his stream) makes it.
    fn registered(
        id: ResidentId,
        municipality: MunicipalityCode,
        registry_key: Option<RegistryKey>,
        personal: Erasable<PersonalData>,
        recorded: &Recorded<'_>,
    ) -> Self {
        Staged {
            id: id.to_string(),
            seq: recorded.position(),
            subject: recorded.stream_id().clone(),
            municipality,
            registry_key,
            personal,
            moved_out: false,
            active_fid: None,
            version: recorded.version(),
            registered_at: recorded.at(),
            updated_at: recorded.at(),
        }
    }
}

/// Registrations written per pair of statements (one INSERT of their tokens, one of their rows): at most
/// 100 × ([`MAX_PREFIX`] + 1) × 2 = 4,200 parameters, well under SQLite's and PostgreSQL's limits per statement.
const GROUP: usize = 100;

/// A group of staged registrations sealed and tokenized, ready to be written.
struct Prepared<'a> {
    /// (token, seq), in key order: the index's inserts walk its pages in one direction.
    tokens: Vec<(i64, i64)>,
    rows: Vec<Ready<'a>>,
}

/// A row ready to be written: the registration, its sealed personal data and its `tokens` column.
type Ready<'a> = (&'a Staged, Option<Vec<u8>>, Option<Vec<u8>>);

impl ResidentRegister {
    /// Writes staged registrations, a group at a time: their keys fetched together, each row sealed and tokenized.
    async fn write_staged(&self, conn: &mut AnyConnection, staged: Vec<Staged>) -> Result<(), ProjectionError> {
        self.sealer
            .write_groups(
                conn,
                &staged,
                GROUP,
                |r| r.personal.known().map(|_| &r.subject),
                |keys, group| self.prepare(keys, group),
            )
            .await
    }

    /// Seals and tokenizes staged registrations (those whose key is gone are written erased, without tokens).
    fn prepare<'a>(
        &self,
        keys: &HashMap<StreamId, DataKey>,
        staged: &'a [Staged],
    ) -> Result<Prepared<'a>, ProjectionError> {
        let mut tokens: Vec<(i64, i64)> = Vec::with_capacity(staged.len() * 12);
        let mut rows = Vec::with_capacity(staged.len());
        for r in staged {
            let (sealed, indexed) = match (r.personal.known(), keys.get(&r.subject)) {
                (Some(data), Some(key)) => {
                    let own = self.tokens(r.municipality.as_str(), data);
                    tokens.extend(own.iter().map(|t| (*t, r.seq)));
                    (Some(RowSealer::seal(key, &aad(&r.id), data)?), Indexed { seq: r.seq, tokens: own })
                }
                _ => (None, Indexed { seq: r.seq, tokens: Vec::new() }),
            };
            rows.push((r, sealed, indexed.column()));
        }
        tokens.sort_unstable();
        Ok(Prepared { tokens, rows })
    }
}

impl GroupWrite for Prepared<'_> {
    /// A staged resident is a new registration (the first event of his stream, applied once): he has no tokens yet,
    /// so none are deleted first.
    async fn write(self, conn: &mut AnyConnection) -> Result<(), ProjectionError> {
        if !self.tokens.is_empty() {
            let values = crate::values_list(self.tokens.len(), 2);
            let mut query = sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO rm_resident_tokens (token, seq) VALUES {values}"
            )));
            for (token, seq) in &self.tokens {
                query = query.bind(*token).bind(*seq);
            }
            query.execute(&mut *conn).await.map_err(ProjectionError::from_sqlx)?;
        }
        if self.rows.is_empty() {
            return Ok(());
        }
        let values = crate::values_list(self.rows.len(), 12);
        let mut query = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO rm_residents (municipality, resident_id, seq, personal, tokens, registry_key, moved_out, \
             active_fid, erased, version, registered_at, updated_at) VALUES {values}"
        )));
        for (r, sealed, tokens) in self.rows {
            let erased = i64::from(sealed.is_none());
            query = query
                .bind(r.municipality.as_str().to_owned())
                .bind(r.id.clone())
                .bind(r.seq)
                .bind(sealed)
                .bind(tokens)
                .bind(r.registry_key.clone().map(String::from))
                .bind(i64::from(r.moved_out))
                .bind(r.active_fid.as_ref().map(|f| f.as_str().to_owned()))
                .bind(erased)
                .bind(r.version)
                .bind(r.registered_at.clone())
                .bind(r.updated_at.clone());
        }
        query.execute(&mut *conn).await.map_err(ProjectionError::from_sqlx)?;
        Ok(())
    }
}

/// Every prefix of `name` up to [`MAX_PREFIX`] characters, shortest first.
fn prefixes(name: &str) -> impl Iterator<Item = &str> {
    name.char_indices().map(|(i, c)| i + c.len_utf8()).take(MAX_PREFIX).map(|end| &name[..end])
}

/// The AAD of a resident's sealed row.
fn aad(resident_id: &str) -> String {
    format!("rm_residents/{resident_id}")
}

/// A resident's entries in the blind index: his `seq` and his tokens, as his row's `tokens` column keeps them.
struct Indexed {
    seq: i64,
    tokens: Vec<i64>,
}

impl Indexed {
    /// What a row (with its `seq` and `tokens` columns) says is in the index.
    fn of(row: &AnyRow) -> Result<Indexed, ProjectionError> {
        let seq: i64 = row.try_get("seq").map_err(ProjectionError::Database)?;
        let column: Option<Vec<u8>> = row.try_get("tokens").map_err(ProjectionError::Database)?;
        let column = column.unwrap_or_default();
        if !column.len().is_multiple_of(8) {
            return Err(bad("tokens", &format_args!("{} bytes, not a multiple of 8", column.len())));
        }
        let tokens = column
            .chunks_exact(8)
            .map(|t| i64::from_be_bytes([t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7]]))
            .collect();
        Ok(Indexed { seq, tokens })
    }

    /// The row's `tokens` column: 8 bytes per token, big-endian; NULL when none.
    fn column(&self) -> Option<Vec<u8>> {
        (!self.tokens.is_empty()).then(|| self.tokens.iter().flat_map(|t| t.to_be_bytes()).collect())
    }

    /// Takes his tokens out of the index and puts `tokens` in (none: he is found by nothing any more).
    async fn replaced(self, conn: &mut AnyConnection, tokens: Vec<i64>) -> Result<Indexed, ProjectionError> {
        if !self.tokens.is_empty() {
            let marks = (0..self.tokens.len()).map(|i| format!("${}", i + 2)).collect::<Vec<_>>().join(", ");
            let mut query = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM rm_resident_tokens WHERE seq = $1 AND token IN ({marks})"
            )))
            .bind(self.seq);
            for token in &self.tokens {
                query = query.bind(*token);
            }
            query.execute(&mut *conn).await.map_err(ProjectionError::from_sqlx)?;
        }
        if !tokens.is_empty() {
            let values = (0..tokens.len()).map(|i| format!("(${}, $1)", i + 2)).collect::<Vec<_>>().join(", ");
            let mut query = sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO rm_resident_tokens (token, seq) VALUES {values}"
            )))
            .bind(self.seq);
            for token in &tokens {
                query = query.bind(*token);
            }
            query.execute(&mut *conn).await.map_err(ProjectionError::from_sqlx)?;
        }
        Ok(Indexed { seq: self.seq, tokens })
    }
}

/// Takes the resident's tokens out of the blind index (his row's `tokens` column is left to the caller).
async fn drop_tokens(conn: &mut AnyConnection, resident_id: &str) -> Result<(), ProjectionError> {
    let row = sqlx::query("SELECT seq, tokens FROM rm_residents WHERE resident_id = $1")
        .bind(resident_id.to_owned())
        .fetch_optional(&mut *conn)
        .await
        .map_err(ProjectionError::from_sqlx)?;
    if let Some(row) = row {
        Indexed::of(&row)?.replaced(conn, Vec::new()).await?;
    }
    Ok(())
}

/// The statement that blanks a resident's personal data (his key is gone) and drops his tokens first.
async fn erase_personal<'q>(
    conn: &mut AnyConnection,
    id: &str,
    version: i64,
    at: String,
) -> Result<sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>, ProjectionError> {
    drop_tokens(conn, id).await?;
    Ok(sqlx::query(
        "UPDATE rm_residents SET personal = NULL, tokens = NULL, erased = 1, version = $1, updated_at = $2 \
         WHERE resident_id = $3",
    )
    .bind(version)
    .bind(at)
    .bind(id.to_owned()))
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

/// Where a search page ends: the registration position (`seq`) of the last resident of the page in the search's
/// order (registration order). Opaque to clients: the API encodes it as it likes and hands it back as `after`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResidentCursor {
    pub seq: i64,
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
    /// Sorted by kana name (then resident id) within the page; pages follow each other in registration order.
    pub rows: Vec<ResidentRow>,
    /// The cursor of the next page, `None` on the last one.
    pub next: Option<ResidentCursor>,
}

const COLUMNS: &str = "r.resident_id, r.municipality, r.personal, r.registry_key, r.moved_out, r.active_fid, \
     r.erased, r.version, r.registered_at, r.updated_at";

/// A resident of `municipality`.
pub async fn get(
    pool: &AnyPool,
    sealer: &RowSealer,
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
    Ok(open_rows(sealer, r.into_iter().collect()).await?.pop())
}

/// 利用者検索: the residents of `municipality` matching `search`, one page in registration order (keyset on
/// `seq`), the page itself sorted by kana name.
///
/// The kana prefix and the birth date are each one token of `rm_resident_tokens` (primary key (token, seq): an
/// index range already in keyset order); both = the birth date's range with the kana token checked per row; the
/// FID goes through the card's primary key; no condition lists the municipality through (municipality, seq). The
/// statement holds only the conditions given (no `$n IS NULL OR …`). Every row a token found is checked against its
/// opened data (a truncated HMAC may collide; a prefix longer than the indexed one is compared in full), so such a
/// page may hold fewer rows than asked, never a wrong one.
pub async fn search(
    pool: &AnyPool,
    sealer: &RowSealer,
    municipality: &MunicipalityCode,
    search: &ResidentSearch,
) -> Result<ResidentPage, ProjectionError> {
    let limit = search.limit.clamp(1, MAX_PAGE);
    let prefix = search.kana_prefix.as_deref().map(normalize_prefix).filter(|p| !p.is_empty());
    let code = municipality.as_str();
    // The first token drives the scan, the others are checked per row: the birth date first, as a day holds few
    // residents while a short kana prefix may hold a tenth of the municipality.
    let mut tokens = Vec::new();
    if let Some(date) = &search.birth_date {
        tokens.push(sealer.token64(code, BIRTH, date.as_str()));
    }
    if let Some(p) = &prefix {
        let indexed = prefixes(p).last().unwrap_or(p);
        tokens.push(sealer.token64(code, KANA, indexed));
    }
    // Only fixed fragments and placeholders go into the SQL; every value is bound.
    let mut sql = match tokens.len() {
        0 => format!("SELECT {COLUMNS}, r.seq AS k FROM rm_residents r WHERE r.municipality = $1"),
        _ => format!(
            "SELECT {COLUMNS}, t.seq AS k FROM rm_resident_tokens t \
             JOIN rm_residents r ON r.municipality = $1 AND r.seq = t.seq WHERE t.token = $2"
        ),
    };
    let key = if tokens.is_empty() { "r.seq" } else { "t.seq" };
    let mut n = 1 + tokens.len().min(1);
    let mut param = || {
        n += 1;
        n
    };
    for _ in tokens.iter().skip(1) {
        sql.push_str(&format!(
            " AND EXISTS (SELECT 1 FROM rm_resident_tokens t2 WHERE t2.token = ${} AND t2.seq = {key})",
            param()
        ));
    }
    if search.fid.is_some() {
        sql.push_str(&format!(
            " AND r.resident_id = (SELECT c.resident_id FROM rm_cards c WHERE c.fid = ${} AND c.municipality = $1)",
            param()
        ));
    }
    if search.after.is_some() {
        sql.push_str(&format!(" AND {key} > ${}", param()));
    }
    sql.push_str(&format!(" ORDER BY {key} LIMIT ${}", param()));

    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(code.to_owned());
    for token in tokens {
        query = query.bind(token);
    }
    if let Some(fid) = &search.fid {
        query = query.bind(fid.as_str().to_owned());
    }
    if let Some(after) = &search.after {
        query = query.bind(after.seq);
    }
    // One more than a page tells whether there is a next one.
    let mut rows = query.bind(i64::from(limit) + 1).fetch_all(pool).await.map_err(ProjectionError::from_sqlx)?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next = match rows.last() {
        Some(last) if more => Some(ResidentCursor { seq: last.try_get("k").map_err(ProjectionError::Database)? }),
        _ => None,
    };
    let mut rows = open_rows(sealer, rows).await?;
    // What the tokens found, checked against the opened data.
    let birth = search.birth_date.as_ref().map(|d| d.as_str());
    rows.retain(|r| {
        let name = r.kana_name.as_ref().map(|k| kana_search_key(&k.family, &k.given));
        prefix.as_ref().is_none_or(|p| name.as_ref().is_some_and(|n| n.starts_with(p.as_str())))
            && birth.is_none_or(|b| r.birth_date.as_deref() == Some(b))
    });
    rows.sort_by_cached_key(|r| {
        (r.kana_name.as_ref().map(|k| kana_search_key(&k.family, &k.given)).unwrap_or_default(), r.resident_id)
    });
    Ok(ResidentPage { rows, next })
}

fn bad(what: &str, e: &dyn std::fmt::Display) -> ProjectionError {
    ProjectionError::Database(sqlx::Error::Decode(format!("rm_residents.{what}: {e}").into()))
}

/// The rows as the API shows them, in the same order, their personal data opened with one key fetch for all.
/// A row whose key was destroyed reads as erased.
async fn open_rows(sealer: &RowSealer, rows: Vec<AnyRow>) -> Result<Vec<ResidentRow>, ProjectionError> {
    let mut ids = Vec::with_capacity(rows.len());
    for r in &rows {
        let id: String = r.try_get("resident_id").map_err(ProjectionError::Database)?;
        ids.push(ResidentId::parse(&id).map_err(|e| bad("resident_id", &e))?);
    }
    let subjects: Vec<StreamId> = ids.iter().map(subject).collect::<Result<_, _>>()?;
    let keys = sealer.keys(&subjects).await?;
    rows.iter().zip(&subjects).map(|(r, s)| row(r, keys.get(s))).collect()
}

/// A resident's subject: his stream.
fn subject(id: &ResidentId) -> Result<StreamId, ProjectionError> {
    StreamId::new(Resident::STREAM_TYPE, &id.to_string()).map_err(|e| bad("resident_id", &e))
}

fn row(r: &AnyRow, key: Option<&DataKey>) -> Result<ResidentRow, ProjectionError> {
    let get = ProjectionError::Database;
    let s = |c: &str| r.try_get::<Option<String>, _>(c).map_err(get);
    let id: String = r.try_get("resident_id").map_err(get)?;
    let municipality: String = r.try_get("municipality").map_err(get)?;
    let sealed: Option<Vec<u8>> = r.try_get("personal").map_err(get)?;
    let personal: Option<PersonalData> = match (sealed, key) {
        (Some(sealed), Some(key)) => Some(RowSealer::open(key, &aad(&id), &sealed)?),
        _ => None,
    };
    let p = personal.as_ref();
    let text = |v: Option<&str>| v.map(str::to_owned);
    Ok(ResidentRow {
        resident_id: ResidentId::parse(&id).map_err(|e| bad("resident_id", &e))?,
        municipality: MunicipalityCode::parse(&municipality).map_err(|e| bad("municipality", &e))?,
        kana_name: p.map(|p| PersonName {
            family: p.kana_name.family.as_str().to_owned(),
            given: p.kana_name.given.as_str().to_owned(),
        }),
        kanji_name: p.map(|p| PersonName {
            family: p.kanji_name.family.as_str().to_owned(),
            given: p.kanji_name.given.as_str().to_owned(),
        }),
        birth_date: p.map(|p| p.birth_date.as_str().to_owned()),
        sex: p.map(|p| p.sex.code().to_owned()),
        postal_code: text(p.and_then(|p| p.postal_code.as_ref()).map(|v| v.as_str())),
        address1: text(p.and_then(|p| p.address1.as_ref()).map(|v| v.as_str())),
        address2: text(p.and_then(|p| p.address2.as_ref()).map(|v| v.as_str())),
        phone: text(p.and_then(|p| p.phone.as_ref()).map(|v| v.as_str())),
        email: text(p.and_then(|p| p.email.as_ref()).map(|v| v.as_str())),
        occupation: text(p.and_then(|p| p.occupation.as_ref()).map(|v| v.as_str())),
        custom_fields: p.map(|p| p.custom_fields.clone()),
        registry_key: s("registry_key")?
            .map(|k| RegistryKey::parse(&k))
            .transpose()
            .map_err(|e| bad("registry_key", &e))?,
        moved_out: r.try_get::<i64, _>("moved_out").map_err(get)? != 0,
        active_fid: s("active_fid")?.map(|f| CardFid::parse(&f)).transpose().map_err(|e| bad("active_fid", &e))?,
        // Erased in the row, or his key destroyed since (on another node, say): nothing personal can be read.
        erased: personal.is_none(),
        version: r.try_get("version").map_err(get)?,
        registered_at: r.try_get("registered_at").map_err(get)?,
        updated_at: r.try_get("updated_at").map_err(get)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_prefix_up_to_the_indexed_length_has_a_token() {
        assert_eq!(prefixes("ヤマダ").collect::<Vec<_>>(), ["ヤ", "ヤマ", "ヤマダ"]);
        assert_eq!(prefixes("").count(), 0);
        let long = "ア".repeat(MAX_PREFIX + 5);
        let all: Vec<&str> = prefixes(&long).collect();
        assert_eq!(all.len(), MAX_PREFIX);
        assert_eq!(all.last().map(|p| p.chars().count()), Some(MAX_PREFIX));
    }
}
