//! The operator directory as login needs it: (municipality, operator ID) → operator key, name and roles.

use async_trait::async_trait;
use cardap_domain::operator::{Operator, OperatorEvent, OperatorId, Role};
use cardap_domain::{Aggregate, MunicipalityCode, OperatorKey};
use cardap_store::RecordedEvent;
use sqlx::{AnyConnection, AnyPool, Row};
use uuid::Uuid;

use crate::{Projection, ProjectionError};

/// Builds `rm_operators`.
#[derive(Debug)]
pub struct OperatorDirectory;

const NAME: &str = "operators";

#[async_trait]
impl Projection for OperatorDirectory {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn apply(&self, conn: &mut AnyConnection, event: &RecordedEvent) -> Result<(), ProjectionError> {
        if event.stream_type != Operator::STREAM_TYPE {
            return Ok(());
        }
        let decoded: OperatorEvent = event.decode().map_err(|e| ProjectionError::event(NAME, event, e))?;
        match decoded {
            OperatorEvent::Registered { key, municipality, operator_id, name, roles } => {
                sqlx::query(
                    "INSERT INTO rm_operators (operator_key, municipality, operator_id, name, roles, version) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(key.to_string())
                .bind(municipality.map(|m| m.as_str().to_owned()).unwrap_or_default())
                .bind(operator_id.as_str().to_owned())
                .bind(name.as_str().to_owned())
                .bind(roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(" "))
                .bind(i64::try_from(event.version).unwrap_or(i64::MAX))
                .execute(conn)
                .await
                .map_err(ProjectionError::from_sqlx)?;
            }
        }
        Ok(())
    }

    async fn reset(&self, conn: &mut AnyConnection) -> Result<(), ProjectionError> {
        sqlx::query("DELETE FROM rm_operators").execute(conn).await.map_err(ProjectionError::from_sqlx)?;
        Ok(())
    }
}

/// An operator as login and authorization see him.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorRow {
    pub key: OperatorKey,
    pub municipality: Option<MunicipalityCode>,
    pub operator_id: String,
    pub name: String,
    pub roles: Vec<Role>,
}

/// Finds an operator by his login: municipality (`None` for the system administrator) and operator ID.
pub async fn find_by_login(
    pool: &AnyPool,
    municipality: Option<&MunicipalityCode>,
    operator_id: &OperatorId,
) -> Result<Option<OperatorRow>, ProjectionError> {
    let r = sqlx::query(
        "SELECT operator_key, municipality, operator_id, name, roles FROM rm_operators \
         WHERE municipality = $1 AND operator_id = $2",
    )
    .bind(municipality.map(|m| m.as_str().to_owned()).unwrap_or_default())
    .bind(operator_id.as_str().to_owned())
    .fetch_optional(pool)
    .await
    .map_err(ProjectionError::from_sqlx)?;
    r.as_ref().map(row).transpose()
}

/// Finds an operator by his key.
pub async fn get(pool: &AnyPool, key: OperatorKey) -> Result<Option<OperatorRow>, ProjectionError> {
    let r = sqlx::query(
        "SELECT operator_key, municipality, operator_id, name, roles FROM rm_operators WHERE operator_key = $1",
    )
    .bind(key.to_string())
    .fetch_optional(pool)
    .await
    .map_err(ProjectionError::from_sqlx)?;
    r.as_ref().map(row).transpose()
}

fn row(r: &sqlx::any::AnyRow) -> Result<OperatorRow, ProjectionError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        ProjectionError::Database(sqlx::Error::Decode(format!("rm_operators.{what}: {e}").into()))
    };
    let key: String = r.try_get("operator_key").map_err(ProjectionError::Database)?;
    let municipality: String = r.try_get("municipality").map_err(ProjectionError::Database)?;
    let roles: String = r.try_get("roles").map_err(ProjectionError::Database)?;
    Ok(OperatorRow {
        key: OperatorKey::from_uuid(Uuid::parse_str(&key).map_err(|e| bad("operator_key", &e))?),
        municipality: if municipality.is_empty() {
            None
        } else {
            Some(MunicipalityCode::parse(&municipality).map_err(|e| bad("municipality", &e))?)
        },
        operator_id: r.try_get("operator_id").map_err(ProjectionError::Database)?,
        name: r.try_get("name").map_err(ProjectionError::Database)?,
        roles: roles.split_whitespace().map(Role::parse).collect::<Result<_, _>>().map_err(|e| bad("roles", &e))?,
    })
}
