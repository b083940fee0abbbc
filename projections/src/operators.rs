//! The operator directory (オペレータ情報): who can log in, with which roles and business systems, whether he is
//! revoked or locked, his management information and his 業務内IDs. Login, authorization, the operator screens
//! and the CSV export read it.
//!
//! His management information (name, department, sex, phone, extension, e-mail, info, extra) is personal data
//! (issue 12, point 7): `rm_operators.profile` holds it sealed ([`RowSealer`], AAD `rm_operators/<operator
//! key>`) under the key of his registration (`profile_subject`, the subject the event log seals it under), and
//! revoking him clears the column while the erasure follower destroys the key. Operators registered before
//! profiles were sealed per registration (their events hold it in clear) have no subject: their column is sealed
//! under a key derived from the master key ([`LEGACY_PROFILE_KEY`]). The substring filters of the operator
//! screens and the export therefore run in memory on the opened rows, page by page, never in SQL.

use async_trait::async_trait;
use cardap_domain::operator::{Operator, OperatorEvent, OperatorId, OperatorLogins, OperatorProfile, Role};
use cardap_domain::resident::Erasable;
use cardap_domain::{Aggregate, BusinessId, MunicipalityCode, OperatorKey};
use cardap_store::{DataKey, StreamId, personal_subject};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};
use uuid::Uuid;

use crate::ProjectionError;
use crate::sealing::RowSealer;
use crate::typed::{Recorded, View};

/// The label of the key derived from the master key that seals the profiles of operators registered before they
/// had a key per registration.
pub const LEGACY_PROFILE_KEY: &str = "cardap rm_operators legacy profile v1";

/// Builds `rm_operators` and `rm_operator_internal_ids`.
#[derive(Debug)]
pub struct OperatorDirectory {
    sealer: RowSealer,
}

impl OperatorDirectory {
    pub fn new(sealer: RowSealer) -> Self {
        OperatorDirectory { sealer }
    }

    /// `profile` sealed for the row of `key`, with its subject: under the key of the registration the event
    /// names, or the derived legacy key when it names none. `None` when erased or its key is destroyed.
    async fn sealed(
        &self,
        conn: &mut AnyConnection,
        recorded: &Recorded<'_>,
        registration: u32,
        profile: &Erasable<OperatorProfile>,
        key: &str,
    ) -> Result<(Option<String>, Option<Vec<u8>>), ProjectionError> {
        let Erasable::Known(profile) = profile else { return Ok((None, None)) };
        let columns = ProfileColumns::of(profile);
        if registration == 0 {
            let sealed = RowSealer::seal(&self.sealer.derived_key(LEGACY_PROFILE_KEY)?, &aad(key), &columns)?;
            return Ok((None, Some(sealed)));
        }
        let subject = profile_subject(recorded.stream_id(), registration)?;
        let keys = self.sealer.keys_in(conn, std::slice::from_ref(&subject)).await?;
        let sealed = keys.get(&subject).map(|k| RowSealer::seal(k, &aad(key), &columns)).transpose()?;
        Ok((Some(subject.as_str().to_owned()), sealed))
    }
}

/// The subject whose key seals the profile of `registration` on `stream`, as the sealed event store names it.
fn profile_subject(stream: &StreamId, registration: u32) -> Result<StreamId, ProjectionError> {
    Ok(personal_subject(stream, &serde_json::json!({ "personal_key": format!("r{registration}") }))?)
}

fn aad(operator_key: &str) -> String {
    format!("rm_operators/{operator_key}")
}

pub const NAME: &str = "operators";

#[async_trait]
impl View for OperatorDirectory {
    type Event = OperatorEvent;
    const NAME: &'static str = NAME;
    const STREAM_TYPES: &'static [&'static str] = &[Operator::STREAM_TYPE, OperatorLogins::STREAM_TYPE];
    const TABLES: &'static [&'static str] = &["rm_operator_internal_ids", "rm_operators"];

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        decoded: OperatorEvent,
        recorded: &Recorded<'_>,
    ) -> Result<(), ProjectionError> {
        if recorded.stream_type() == OperatorLogins::STREAM_TYPE {
            return apply_login(conn, decoded, recorded).await;
        }
        let version = recorded.version();
        let at = recorded.at();
        let Some(key) = operator_key(recorded.key()) else {
            return Err(recorded.error("operator event without an operator key"));
        };
        let db = ProjectionError::from_sqlx;
        match decoded {
            OperatorEvent::Registered {
                key: operator,
                municipality,
                operator_id,
                registration,
                profile,
                roles,
                business_systems,
            } => {
                let key = operator.to_string();
                let (subject, sealed) = self.sealed(conn, recorded, registration, &profile, &key).await?;
                // A re-registration after revocation replaces the old row: a new decision, a fresh start.
                sqlx::query("DELETE FROM rm_operators WHERE operator_key = $1")
                    .bind(key.clone())
                    .execute(&mut *conn)
                    .await
                    .map_err(db)?;
                sqlx::query("DELETE FROM rm_operator_internal_ids WHERE operator_key = $1")
                    .bind(key.clone())
                    .execute(&mut *conn)
                    .await
                    .map_err(db)?;
                sqlx::query(
                    "INSERT INTO rm_operators (operator_key, municipality, operator_id, profile_subject, profile, \
                     roles, business_systems, revoked, locked, locked_until, version, registered_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 0, NULL, $8, $9, $9)",
                )
                .bind(key)
                .bind(municipality.map(|m| m.as_str().to_owned()).unwrap_or_default())
                .bind(operator_id.as_str().to_owned())
                .bind(subject)
                .bind(sealed)
                .bind(join(roles.iter().map(|r| r.as_str())))
                .bind(join(business_systems.iter().map(|b| b.as_str())))
                .bind(version)
                .bind(at)
                .execute(&mut *conn)
                .await
                .map_err(db)?;
            }
            OperatorEvent::ProfileUpdated { registration, profile } => {
                let (subject, sealed) = self.sealed(conn, recorded, registration, &profile, &key).await?;
                sqlx::query(
                    "UPDATE rm_operators SET profile_subject = $1, profile = $2, version = $3, updated_at = $4 \
                     WHERE operator_key = $5",
                )
                .bind(subject)
                .bind(sealed)
                .bind(version)
                .bind(at)
                .bind(key)
                .execute(&mut *conn)
                .await
                .map_err(db)?;
            }
            OperatorEvent::RolesChanged { roles } => {
                set(conn, "roles", join(roles.iter().map(|r| r.as_str())), version, &at, &key).await?;
            }
            OperatorEvent::BusinessSystemsChanged { business_systems } => {
                set(conn, "business_systems", join(business_systems.iter().map(|b| b.as_str())), version, &at, &key)
                    .await?;
            }
            OperatorEvent::Revoked { .. } => {
                sqlx::query(
                    // 失効 erases his management information here too (the follower destroys its key).
                    "UPDATE rm_operators SET revoked = 1, locked = 0, locked_until = NULL, profile_subject = NULL, \
                     profile = NULL, version = $1, updated_at = $2 WHERE operator_key = $3",
                )
                .bind(version)
                .bind(at)
                .bind(key)
                .execute(&mut *conn)
                .await
                .map_err(db)?;
            }
            OperatorEvent::Locked { until, .. } => {
                sqlx::query(
                    "UPDATE rm_operators SET locked = 1, locked_until = $1, version = $2, updated_at = $3 \
                     WHERE operator_key = $4",
                )
                .bind(until.map(|t| t.unix()))
                .bind(version)
                .bind(at)
                .bind(key)
                .execute(&mut *conn)
                .await
                .map_err(db)?;
            }
            OperatorEvent::InternalIdAssigned { business_id, internal_id, role } => {
                sqlx::query(
                    "INSERT INTO rm_operator_internal_ids (operator_key, business_id, internal_id, role) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (operator_key, business_id) \
                     DO UPDATE SET internal_id = excluded.internal_id, role = excluded.role",
                )
                .bind(key.clone())
                .bind(business_id.as_str().to_owned())
                .bind(internal_id.as_str().to_owned())
                .bind(role.map(|r| r.as_str().to_owned()))
                .execute(&mut *conn)
                .await
                .map_err(db)?;
                touch(conn, version, &at, &key).await?;
            }
            OperatorEvent::InternalIdRemoved { business_id } => {
                sqlx::query("DELETE FROM rm_operator_internal_ids WHERE operator_key = $1 AND business_id = $2")
                    .bind(key.clone())
                    .bind(business_id.as_str().to_owned())
                    .execute(&mut *conn)
                    .await
                    .map_err(db)?;
                touch(conn, version, &at, &key).await?;
            }
            // An unlock, or a login after a lock had run out (the domain lets him in only then), clears it.
            OperatorEvent::Unlocked | OperatorEvent::LoggedIn { .. } => {
                sqlx::query(
                    "UPDATE rm_operators SET locked = 0, locked_until = NULL, version = $1, updated_at = $2 \
                     WHERE operator_key = $3",
                )
                .bind(version)
                .bind(at)
                .bind(key)
                .execute(&mut *conn)
                .await
                .map_err(db)?;
            }
            // Authenticators are listed from his stream itself; the directory only follows his version.
            OperatorEvent::PasswordChanged { .. }
            | OperatorEvent::LoginFailed { .. }
            | OperatorEvent::AuthenticatorRegistered { .. }
            | OperatorEvent::AuthenticatorRemoved { .. }
            | OperatorEvent::AuthenticatorUsed { .. }
            | OperatorEvent::SignCountRegressed { .. } => {
                touch(conn, version, &at, &key).await?;
            }
        }
        Ok(())
    }
}

/// A fact of an operator's login stream: his lock as the view shows it. His `version` (the ETag of his own
/// stream) is left alone: logging in changes nothing an administrator edits.
async fn apply_login(
    conn: &mut AnyConnection,
    decoded: OperatorEvent,
    recorded: &Recorded<'_>,
) -> Result<(), ProjectionError> {
    let Some(key) = operator_key(recorded.key()) else {
        return Err(recorded.error("login event without an operator key"));
    };
    let lock = match decoded {
        OperatorEvent::Locked { until, .. } => Some(until.map(|t| t.unix())),
        OperatorEvent::Unlocked | OperatorEvent::LoggedIn { .. } => None,
        _ => return Ok(()),
    };
    let (locked, until) = match lock {
        Some(until) => (1_i64, until),
        None => (0, None),
    };
    sqlx::query("UPDATE rm_operators SET locked = $1, locked_until = $2 WHERE operator_key = $3")
        .bind(locked)
        .bind(until)
        .bind(key)
        .execute(&mut *conn)
        .await
        .map_err(ProjectionError::from_sqlx)?;
    Ok(())
}

/// The operator key of an event's stream (streams are keyed by login; the key is derived from it).
fn operator_key(stream_key: &str) -> Option<String> {
    let (scope, id) = stream_key.split_once('.')?;
    let operator_id = OperatorId::parse(id).ok()?;
    let municipality = if scope == "system" { None } else { Some(MunicipalityCode::parse(scope).ok()?) };
    Some(OperatorKey::for_login(municipality.as_ref(), &operator_id).to_string())
}

fn join<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items.collect::<Vec<_>>().join(" ")
}

async fn set(
    conn: &mut AnyConnection,
    column: &'static str,
    value: String,
    version: i64,
    at: &str,
    key: &str,
) -> Result<(), ProjectionError> {
    let sql = match column {
        "roles" => "UPDATE rm_operators SET roles = $1, version = $2, updated_at = $3 WHERE operator_key = $4",
        _ => "UPDATE rm_operators SET business_systems = $1, version = $2, updated_at = $3 WHERE operator_key = $4",
    };
    sqlx::query(sql)
        .bind(value)
        .bind(version)
        .bind(at.to_owned())
        .bind(key.to_owned())
        .execute(conn)
        .await
        .map_err(ProjectionError::from_sqlx)?;
    Ok(())
}

async fn touch(conn: &mut AnyConnection, version: i64, at: &str, key: &str) -> Result<(), ProjectionError> {
    sqlx::query("UPDATE rm_operators SET version = $1, updated_at = $2 WHERE operator_key = $3")
        .bind(version)
        .bind(at.to_owned())
        .bind(key.to_owned())
        .execute(conn)
        .await
        .map_err(ProjectionError::from_sqlx)?;
    Ok(())
}

/// The sealed column's content: his management information as the directory shows it.
#[derive(Serialize, Deserialize)]
struct ProfileColumns {
    name: String,
    department: Option<String>,
    sex: Option<String>,
    phone: Option<String>,
    extension: Option<String>,
    email: Option<String>,
    info: Option<String>,
    extra: Option<String>,
}

impl ProfileColumns {
    fn of(p: &OperatorProfile) -> Self {
        ProfileColumns {
            name: p.name.as_str().to_owned(),
            department: p.department.as_ref().map(|v| v.as_str().to_owned()),
            sex: p.sex.map(|v| v.code().to_owned()),
            phone: p.phone.as_ref().map(|v| v.as_str().to_owned()),
            extension: p.extension.as_ref().map(|v| v.as_str().to_owned()),
            email: p.email.as_ref().map(|v| v.as_str().to_owned()),
            info: p.info.as_ref().map(|v| v.as_str().to_owned()),
            extra: p.extra.as_ref().map(|v| v.as_str().to_owned()),
        }
    }
}

/// An operator as login, authorization and the operator screens see him.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorRow {
    pub key: OperatorKey,
    pub municipality: Option<MunicipalityCode>,
    pub operator_id: String,
    /// 氏名・組織名; `None` once erased (a revoked operator).
    pub name: Option<String>,
    pub department: Option<String>,
    pub sex: Option<String>,
    pub phone: Option<String>,
    pub extension: Option<String>,
    pub email: Option<String>,
    pub info: Option<String>,
    pub extra: Option<String>,
    pub roles: Vec<Role>,
    pub business_systems: Vec<BusinessId>,
    pub revoked: bool,
    pub locked: bool,
    /// Unix seconds; `None` while locked means until an administrator unlocks.
    pub locked_until: Option<i64>,
    /// The stream version: the resource's ETag.
    pub version: i64,
}

impl OperatorRow {
    /// Whether he may work at `now` (Unix seconds): not revoked and not under a running lock.
    pub fn is_active_at(&self, now: i64) -> bool {
        let locked_now = self.locked && self.locked_until.is_none_or(|until| now < until);
        !self.revoked && !locked_now
    }
}

const SELECT: &str = "SELECT operator_key, municipality, operator_id, profile_subject, profile, roles, \
     business_systems, revoked, locked, locked_until, version FROM rm_operators";

/// Finds an operator by his login: municipality (`None` for the system administrator) and operator ID.
pub async fn find_by_login(
    pool: &AnyPool,
    sealer: &RowSealer,
    municipality: Option<&MunicipalityCode>,
    operator_id: &OperatorId,
) -> Result<Option<OperatorRow>, ProjectionError> {
    let r = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT} WHERE municipality = $1 AND operator_id = $2")))
        .bind(municipality.map(|m| m.as_str().to_owned()).unwrap_or_default())
        .bind(operator_id.as_str().to_owned())
        .fetch_optional(pool)
        .await
        .map_err(ProjectionError::from_sqlx)?;
    Ok(open_rows(sealer, r.into_iter().collect()).await?.pop())
}

/// Finds an operator by his key.
pub async fn get(pool: &AnyPool, sealer: &RowSealer, key: OperatorKey) -> Result<Option<OperatorRow>, ProjectionError> {
    let r = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT} WHERE operator_key = $1")))
        .bind(key.to_string())
        .fetch_optional(pool)
        .await
        .map_err(ProjectionError::from_sqlx)?;
    Ok(open_rows(sealer, r.into_iter().collect()).await?.pop())
}

/// The filter conditions of the operator export screen (each a substring; all must match).
#[derive(Debug, Clone, Default)]
pub struct OperatorFilter {
    pub operator_id: Option<String>,
    pub name: Option<String>,
    pub department: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub info: Option<String>,
    pub include_revoked: bool,
}

impl OperatorFilter {
    /// Whether the opened row matches the conditions on his management information (the operator ID and
    /// revocation are conditions of the query). An erased field matches no condition on it.
    fn matches_profile(&self, row: &OperatorRow) -> bool {
        let holds = |condition: &Option<String>, field: &Option<String>| match condition {
            None => true,
            Some(part) => field.as_deref().is_some_and(|f| f.contains(part.as_str())),
        };
        holds(&self.name, &row.name)
            && holds(&self.department, &row.department)
            && holds(&self.phone, &row.phone)
            && holds(&self.email, &row.email)
            && holds(&self.info, &row.info)
    }

    fn filters_profile(&self) -> bool {
        [&self.name, &self.department, &self.phone, &self.email, &self.info].iter().any(|c| c.is_some())
    }
}

/// Rows read per query while filtering on the sealed management information in memory.
const SCAN: i64 = 500;

/// A municipality's operators matching `filter`, in operator-ID order, after `after` (paging), at most `limit`.
/// The conditions on his management information are checked on the opened rows: the directory is read in
/// operator-ID order, [`SCAN`] rows at a time, until `limit` match or it ends.
pub async fn search(
    pool: &AnyPool,
    sealer: &RowSealer,
    municipality: &MunicipalityCode,
    filter: &OperatorFilter,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<OperatorRow>, ProjectionError> {
    let wanted = usize::try_from(limit.max(0)).unwrap_or(usize::MAX);
    let scan = if filter.filters_profile() { SCAN } else { limit };
    let mut found = Vec::new();
    let mut after = after.unwrap_or_default().to_owned();
    while found.len() < wanted {
        // Substring match that keeps case on both backends (SQLite's LIKE ignores ASCII case; operator IDs don't).
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SELECT} WHERE municipality = $1 AND operator_id > $2 AND ($3 = 1 OR revoked = 0) \
             AND ($4 IS NULL OR replace(operator_id, $4, '') <> operator_id) ORDER BY operator_id LIMIT $5"
        )))
        .bind(municipality.as_str().to_owned())
        .bind(after.clone())
        .bind(i64::from(filter.include_revoked))
        .bind(filter.operator_id.clone())
        .bind(scan)
        .fetch_all(pool)
        .await
        .map_err(ProjectionError::from_sqlx)?;
        let read = rows.len();
        let opened = open_rows(sealer, rows).await?;
        if let Some(last) = opened.last() {
            after.clone_from(&last.operator_id);
        }
        found.extend(opened.into_iter().filter(|r| filter.matches_profile(r)));
        if i64::try_from(read).unwrap_or(i64::MAX) < scan {
            break;
        }
    }
    found.truncate(wanted);
    Ok(found)
}

/// An operator's 業務内IDs: (business id, internal id, that system's role).
pub async fn internal_ids(
    pool: &AnyPool,
    key: OperatorKey,
) -> Result<Vec<(String, String, Option<String>)>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT business_id, internal_id, role FROM rm_operator_internal_ids WHERE operator_key = $1 ORDER BY business_id",
    )
    .bind(key.to_string())
    .fetch_all(pool)
    .await
    .map_err(ProjectionError::from_sqlx)?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("business_id").map_err(ProjectionError::Database)?,
                r.try_get("internal_id").map_err(ProjectionError::Database)?,
                r.try_get("role").map_err(ProjectionError::Database)?,
            ))
        })
        .collect()
}

/// Every 業務内ID held in `municipality` by an operator who is not revoked: (business id, 業務内ID, operator ID),
/// in that order (the dry run of an import names those a file would take from another operator).
pub async fn internal_id_holders(
    pool: &AnyPool,
    municipality: &MunicipalityCode,
) -> Result<Vec<(String, String, String)>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT i.business_id, i.internal_id, o.operator_id FROM rm_operator_internal_ids i \
         JOIN rm_operators o ON o.operator_key = i.operator_key WHERE o.municipality = $1 AND o.revoked = 0 \
         ORDER BY i.business_id, i.internal_id, o.operator_id",
    )
    .bind(municipality.as_str().to_owned())
    .fetch_all(pool)
    .await
    .map_err(ProjectionError::from_sqlx)?;
    let get = ProjectionError::Database;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("business_id").map_err(get)?,
                r.try_get("internal_id").map_err(get)?,
                r.try_get("operator_id").map_err(get)?,
            ))
        })
        .collect()
}

/// The operators of `municipality`, not revoked, who hold `internal_id` in `business_id`: a 業務内ID assigned
/// before 業務内IDs were claimed on streams of their own has no claim, and is found only here.
pub async fn internal_id_holder_keys(
    pool: &AnyPool,
    municipality: &MunicipalityCode,
    business_id: &BusinessId,
    internal_id: &str,
) -> Result<Vec<OperatorKey>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT i.operator_key FROM rm_operator_internal_ids i \
         JOIN rm_operators o ON o.operator_key = i.operator_key \
         WHERE o.municipality = $1 AND o.revoked = 0 AND i.business_id = $2 AND i.internal_id = $3",
    )
    .bind(municipality.as_str().to_owned())
    .bind(business_id.as_str().to_owned())
    .bind(internal_id.to_owned())
    .fetch_all(pool)
    .await
    .map_err(ProjectionError::from_sqlx)?;
    rows.iter()
        .map(|r| {
            let key: String = r.try_get("operator_key").map_err(ProjectionError::Database)?;
            let uuid = Uuid::parse_str(&key).map_err(|e| {
                ProjectionError::Database(sqlx::Error::Decode(
                    format!("rm_operator_internal_ids.operator_key: {e}").into(),
                ))
            })?;
            Ok(OperatorKey::from_uuid(uuid))
        })
        .collect()
}

/// The rows in the same order, their management information opened with one key fetch for all. A profile whose
/// key was destroyed reads as erased; one that does not open under its key is an error.
async fn open_rows(sealer: &RowSealer, rows: Vec<AnyRow>) -> Result<Vec<OperatorRow>, ProjectionError> {
    let get = ProjectionError::Database;
    let mut subjects = Vec::with_capacity(rows.len());
    for r in &rows {
        let subject: Option<String> = r.try_get("profile_subject").map_err(get)?;
        subjects.push(subject.map(|s| StreamId::parse(&s).map_err(|e| bad("profile_subject", &e))).transpose()?);
    }
    let wanted: Vec<StreamId> = subjects.iter().flatten().cloned().collect();
    let keys = if wanted.is_empty() { Default::default() } else { sealer.keys(&wanted).await? };
    // Derived only when a row needs it (an operator registered before profiles had keys of their own).
    let legacy = match subjects.iter().any(Option::is_none) {
        true => Some(sealer.derived_key(LEGACY_PROFILE_KEY)?),
        false => None,
    };
    rows.iter()
        .zip(&subjects)
        .map(|(r, subject)| {
            let key = match subject {
                Some(subject) => keys.get(subject),
                None => legacy.as_ref(),
            };
            row(r, key)
        })
        .collect()
}

fn bad(what: &str, e: &dyn std::fmt::Display) -> ProjectionError {
    ProjectionError::Database(sqlx::Error::Decode(format!("rm_operators.{what}: {e}").into()))
}

fn row(r: &AnyRow, key: Option<&DataKey>) -> Result<OperatorRow, ProjectionError> {
    let get = ProjectionError::Database;
    let operator_key: String = r.try_get("operator_key").map_err(get)?;
    let municipality: String = r.try_get("municipality").map_err(get)?;
    let roles: String = r.try_get("roles").map_err(get)?;
    let business_systems: String = r.try_get("business_systems").map_err(get)?;
    let sealed: Option<Vec<u8>> = r.try_get("profile").map_err(get)?;
    let profile: Option<ProfileColumns> = match (sealed, key) {
        (Some(sealed), Some(key)) => Some(RowSealer::open(key, &aad(&operator_key), &sealed)?),
        _ => None,
    };
    let (name, department, sex, phone, extension, email, info, extra) = match profile {
        Some(p) => (Some(p.name), p.department, p.sex, p.phone, p.extension, p.email, p.info, p.extra),
        None => Default::default(),
    };
    Ok(OperatorRow {
        key: OperatorKey::from_uuid(Uuid::parse_str(&operator_key).map_err(|e| bad("operator_key", &e))?),
        municipality: if municipality.is_empty() {
            None
        } else {
            Some(MunicipalityCode::parse(&municipality).map_err(|e| bad("municipality", &e))?)
        },
        operator_id: r.try_get("operator_id").map_err(get)?,
        name,
        department,
        sex,
        phone,
        extension,
        email,
        info,
        extra,
        roles: roles.split_whitespace().map(Role::parse).collect::<Result<_, _>>().map_err(|e| bad("roles", &e))?,
        business_systems: business_systems
            .split_whitespace()
            .map(BusinessId::parse)
            .collect::<Result<_, _>>()
            .map_err(|e| bad("business_systems", &e))?,
        revoked: r.try_get::<i64, _>("revoked").map_err(get)? != 0,
        locked: r.try_get::<i64, _>("locked").map_err(get)? != 0,
        locked_until: r.try_get("locked_until").map_err(get)?,
        version: r.try_get("version").map_err(get)?,
    })
}
