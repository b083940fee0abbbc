//! The operator directory (オペレータ情報): who can log in, with which roles and business systems, whether he is
//! revoked or locked, his management information and his 業務内IDs. Login, authorization, the operator screens
//! and the CSV export read it.

use async_trait::async_trait;
use cardap_domain::operator::{Operator, OperatorEvent, OperatorId, OperatorLogins, OperatorProfile, Role};
use cardap_domain::{Aggregate, BusinessId, MunicipalityCode, OperatorKey};
use sqlx::{AnyConnection, AnyPool, Row};
use uuid::Uuid;

use crate::ProjectionError;
use crate::typed::{Recorded, View};

/// Builds `rm_operators` and `rm_operator_internal_ids`.
#[derive(Debug)]
pub struct OperatorDirectory;

pub const NAME: &str = "operators";

#[async_trait]
impl View for OperatorDirectory {
    type Event = OperatorEvent;
    const NAME: &'static str = NAME;
    const STREAM_TYPES: &'static [&'static str] = &[Operator::STREAM_TYPE, OperatorLogins::STREAM_TYPE];

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
            OperatorEvent::Registered { key, municipality, operator_id, profile, roles, business_systems } => {
                let p = ProfileColumns::of(&profile);
                // A re-registration after revocation replaces the old row: a new decision, a fresh start.
                sqlx::query("DELETE FROM rm_operators WHERE operator_key = $1")
                    .bind(key.to_string())
                    .execute(&mut *conn)
                    .await
                    .map_err(db)?;
                sqlx::query("DELETE FROM rm_operator_internal_ids WHERE operator_key = $1")
                    .bind(key.to_string())
                    .execute(&mut *conn)
                    .await
                    .map_err(db)?;
                sqlx::query(
                    "INSERT INTO rm_operators (operator_key, municipality, operator_id, name, department, sex, phone, \
                     extension, email, info, extra, roles, business_systems, revoked, locked, locked_until, version, \
                     registered_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 0, 0, NULL, $14, $15, $15)",
                )
                .bind(key.to_string())
                .bind(municipality.map(|m| m.as_str().to_owned()).unwrap_or_default())
                .bind(operator_id.as_str().to_owned())
                .bind(p.name)
                .bind(p.department)
                .bind(p.sex)
                .bind(p.phone)
                .bind(p.extension)
                .bind(p.email)
                .bind(p.info)
                .bind(p.extra)
                .bind(join(roles.iter().map(|r| r.as_str())))
                .bind(join(business_systems.iter().map(|b| b.as_str())))
                .bind(version)
                .bind(at)
                .execute(&mut *conn)
                .await
                .map_err(db)?;
            }
            OperatorEvent::ProfileUpdated { profile } => {
                let p = ProfileColumns::of(&profile);
                sqlx::query(
                    "UPDATE rm_operators SET name = $1, department = $2, sex = $3, phone = $4, extension = $5, \
                     email = $6, info = $7, extra = $8, version = $9, updated_at = $10 WHERE operator_key = $11",
                )
                .bind(p.name)
                .bind(p.department)
                .bind(p.sex)
                .bind(p.phone)
                .bind(p.extension)
                .bind(p.email)
                .bind(p.info)
                .bind(p.extra)
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
                    "UPDATE rm_operators SET revoked = 1, locked = 0, locked_until = NULL, version = $1, \
                     updated_at = $2 WHERE operator_key = $3",
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

    async fn reset(&self, conn: &mut AnyConnection) -> Result<(), ProjectionError> {
        sqlx::query("DELETE FROM rm_operator_internal_ids")
            .execute(&mut *conn)
            .await
            .map_err(ProjectionError::from_sqlx)?;
        sqlx::query("DELETE FROM rm_operators").execute(&mut *conn).await.map_err(ProjectionError::from_sqlx)?;
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
    pub name: String,
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

const SELECT: &str = "SELECT operator_key, municipality, operator_id, name, department, sex, phone, extension, email, \
     info, extra, roles, business_systems, revoked, locked, locked_until, version FROM rm_operators";

/// Finds an operator by his login: municipality (`None` for the system administrator) and operator ID.
pub async fn find_by_login(
    pool: &AnyPool,
    municipality: Option<&MunicipalityCode>,
    operator_id: &OperatorId,
) -> Result<Option<OperatorRow>, ProjectionError> {
    let r = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT} WHERE municipality = $1 AND operator_id = $2")))
        .bind(municipality.map(|m| m.as_str().to_owned()).unwrap_or_default())
        .bind(operator_id.as_str().to_owned())
        .fetch_optional(pool)
        .await
        .map_err(ProjectionError::from_sqlx)?;
    r.as_ref().map(row).transpose()
}

/// Finds an operator by his key.
pub async fn get(pool: &AnyPool, key: OperatorKey) -> Result<Option<OperatorRow>, ProjectionError> {
    let r = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT} WHERE operator_key = $1")))
        .bind(key.to_string())
        .fetch_optional(pool)
        .await
        .map_err(ProjectionError::from_sqlx)?;
    r.as_ref().map(row).transpose()
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

/// A municipality's operators matching `filter`, in operator-ID order, after `after` (paging), at most `limit`.
pub async fn search(
    pool: &AnyPool,
    municipality: &MunicipalityCode,
    filter: &OperatorFilter,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<OperatorRow>, ProjectionError> {
    // Substring match that keeps case on both backends (SQLite's LIKE ignores ASCII case; operator IDs don't).
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE municipality = $1 AND operator_id > $2 AND ($3 = 1 OR revoked = 0) \
         AND ($4 IS NULL OR replace(operator_id, $4, '') <> operator_id) \
         AND ($5 IS NULL OR replace(name, $5, '') <> name) \
         AND ($6 IS NULL OR replace(department, $6, '') <> department) \
         AND ($7 IS NULL OR replace(phone, $7, '') <> phone) \
         AND ($8 IS NULL OR replace(email, $8, '') <> email) \
         AND ($9 IS NULL OR replace(info, $9, '') <> info) \
         ORDER BY operator_id LIMIT $10"
    )))
    .bind(municipality.as_str().to_owned())
    .bind(after.unwrap_or_default().to_owned())
    .bind(i64::from(filter.include_revoked))
    .bind(filter.operator_id.clone())
    .bind(filter.name.clone())
    .bind(filter.department.clone())
    .bind(filter.phone.clone())
    .bind(filter.email.clone())
    .bind(filter.info.clone())
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(ProjectionError::from_sqlx)?;
    rows.iter().map(row).collect()
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

fn row(r: &sqlx::any::AnyRow) -> Result<OperatorRow, ProjectionError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        ProjectionError::Database(sqlx::Error::Decode(format!("rm_operators.{what}: {e}").into()))
    };
    let get = ProjectionError::Database;
    let key: String = r.try_get("operator_key").map_err(get)?;
    let municipality: String = r.try_get("municipality").map_err(get)?;
    let roles: String = r.try_get("roles").map_err(get)?;
    let business_systems: String = r.try_get("business_systems").map_err(get)?;
    Ok(OperatorRow {
        key: OperatorKey::from_uuid(Uuid::parse_str(&key).map_err(|e| bad("operator_key", &e))?),
        municipality: if municipality.is_empty() {
            None
        } else {
            Some(MunicipalityCode::parse(&municipality).map_err(|e| bad("municipality", &e))?)
        },
        operator_id: r.try_get("operator_id").map_err(get)?,
        name: r.try_get("name").map_err(get)?,
        department: r.try_get("department").map_err(get)?,
        sex: r.try_get("sex").map_err(get)?,
        phone: r.try_get("phone").map_err(get)?,
        extension: r.try_get("extension").map_err(get)?,
        email: r.try_get("email").map_err(get)?,
        info: r.try_get("info").map_err(get)?,
        extra: r.try_get("extra").map_err(get)?,
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
