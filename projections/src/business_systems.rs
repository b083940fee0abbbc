//! Business systems (業務システム) and shared use (共同利用業務設定): which business systems exist, and which
//! municipalities may use each. The operator top page, AP catalogs and feeds all ask this view.

use async_trait::async_trait;
use cardap_domain::business_system::{BusinessSystem, BusinessSystemEvent, BusinessSystemProfile};
use cardap_domain::{Aggregate, BusinessId, MunicipalityCode};
use serde::Serialize;
use sqlx::{AnyConnection, AnyPool, Row};

use crate::ProjectionError;
use crate::typed::{Recorded, View};

/// Builds `rm_business_systems` and `rm_shared_use`.
#[derive(Debug)]
pub struct BusinessSystems;

pub const NAME: &str = "business_systems";

#[async_trait]
impl View for BusinessSystems {
    type Event = BusinessSystemEvent;
    const NAME: &'static str = NAME;
    const STREAM_TYPES: &'static [&'static str] = &[BusinessSystem::STREAM_TYPE];
    const TABLES: &'static [&'static str] = &["rm_shared_use", "rm_business_systems"];

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        decoded: BusinessSystemEvent,
        recorded: &Recorded<'_>,
    ) -> Result<(), ProjectionError> {
        let id = recorded.key().to_owned();
        let version = recorded.version();
        let result = match decoded {
            BusinessSystemEvent::Registered { id, profile } => {
                let p = ProfileColumns::of(&profile);
                sqlx::query(
                    "INSERT INTO rm_business_systems (business_id, name, organization, image, top_url, \
                     operator_admin_url, personalize_url, phone, email, retired, version) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $10)",
                )
                .bind(id.as_str().to_owned())
                .bind(p.name)
                .bind(p.organization)
                .bind(p.image)
                .bind(p.top_url)
                .bind(p.operator_admin_url)
                .bind(p.personalize_url)
                .bind(p.phone)
                .bind(p.email)
                .bind(version)
                .execute(&mut *conn)
                .await
            }
            BusinessSystemEvent::Updated { profile } => {
                let p = ProfileColumns::of(&profile);
                sqlx::query(
                    "UPDATE rm_business_systems SET name = $1, organization = $2, image = $3, top_url = $4, \
                     operator_admin_url = $5, personalize_url = $6, phone = $7, email = $8, version = $9 \
                     WHERE business_id = $10",
                )
                .bind(p.name)
                .bind(p.organization)
                .bind(p.image)
                .bind(p.top_url)
                .bind(p.operator_admin_url)
                .bind(p.personalize_url)
                .bind(p.phone)
                .bind(p.email)
                .bind(version)
                .bind(id)
                .execute(&mut *conn)
                .await
            }
            BusinessSystemEvent::Retired => {
                // A retired system permits nobody any more.
                sqlx::query("DELETE FROM rm_shared_use WHERE business_id = $1")
                    .bind(id.clone())
                    .execute(&mut *conn)
                    .await
                    .map_err(ProjectionError::from_sqlx)?;
                sqlx::query("UPDATE rm_business_systems SET retired = 1, version = $1 WHERE business_id = $2")
                    .bind(version)
                    .bind(id)
                    .execute(&mut *conn)
                    .await
            }
            BusinessSystemEvent::MunicipalityPermitted { municipality } => {
                sqlx::query("UPDATE rm_business_systems SET version = $1 WHERE business_id = $2")
                    .bind(version)
                    .bind(id.clone())
                    .execute(&mut *conn)
                    .await
                    .map_err(ProjectionError::from_sqlx)?;
                sqlx::query(
                    "INSERT INTO rm_shared_use (business_id, municipality) VALUES ($1, $2) \
                     ON CONFLICT (business_id, municipality) DO NOTHING",
                )
                .bind(id)
                .bind(municipality.as_str().to_owned())
                .execute(&mut *conn)
                .await
            }
            // The login client's registration and the feed's field list are read from the stream by their use
            // cases; the resource's ETag (its version) still moves.
            BusinessSystemEvent::LoginConfigured { .. }
            | BusinessSystemEvent::LoginSecretIssued { .. }
            | BusinessSystemEvent::FeedFieldsSet { .. }
            | BusinessSystemEvent::WebhookSet { .. }
            | BusinessSystemEvent::WebhookRemoved
            | BusinessSystemEvent::WebhookSecretIssued { .. } => {
                sqlx::query("UPDATE rm_business_systems SET version = $1 WHERE business_id = $2")
                    .bind(version)
                    .bind(id)
                    .execute(&mut *conn)
                    .await
            }
            BusinessSystemEvent::MunicipalityWithdrawn { municipality } => {
                sqlx::query("UPDATE rm_business_systems SET version = $1 WHERE business_id = $2")
                    .bind(version)
                    .bind(id.clone())
                    .execute(&mut *conn)
                    .await
                    .map_err(ProjectionError::from_sqlx)?;
                sqlx::query("DELETE FROM rm_shared_use WHERE business_id = $1 AND municipality = $2")
                    .bind(id)
                    .bind(municipality.as_str().to_owned())
                    .execute(&mut *conn)
                    .await
            }
        };
        result.map_err(ProjectionError::from_sqlx)?;
        Ok(())
    }
}

struct ProfileColumns {
    name: String,
    organization: Option<String>,
    image: Option<String>,
    top_url: Option<String>,
    operator_admin_url: Option<String>,
    personalize_url: Option<String>,
    phone: Option<String>,
    email: Option<String>,
}

impl ProfileColumns {
    fn of(p: &BusinessSystemProfile) -> Self {
        let text = |v: Option<&str>| v.map(str::to_owned);
        ProfileColumns {
            name: p.name.as_str().to_owned(),
            organization: text(p.organization.as_ref().map(|v| v.as_str())),
            image: text(p.image.as_ref().map(|v| v.as_str())),
            top_url: text(p.top_url.as_ref().map(|v| v.as_str())),
            operator_admin_url: text(p.operator_admin_url.as_ref().map(|v| v.as_str())),
            personalize_url: text(p.personalize_url.as_ref().map(|v| v.as_str())),
            phone: text(p.phone.as_ref().map(|v| v.as_str())),
            email: text(p.email.as_ref().map(|v| v.as_str())),
        }
    }
}

/// One business system as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BusinessSystemRow {
    pub business_id: String,
    pub name: String,
    pub organization: Option<String>,
    pub image: Option<String>,
    pub top_url: Option<String>,
    pub operator_admin_url: Option<String>,
    pub personalize_url: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub retired: bool,
    pub version: i64,
}

/// Every business system, in business-id order.
pub async fn list(pool: &AnyPool, include_retired: bool) -> Result<Vec<BusinessSystemRow>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT business_id, name, organization, image, top_url, operator_admin_url, personalize_url, phone, email, \
         retired, version FROM rm_business_systems WHERE ($1 = 1 OR retired = 0) ORDER BY business_id",
    )
    .bind(i64::from(include_retired))
    .fetch_all(pool)
    .await
    .map_err(ProjectionError::from_sqlx)?;
    rows.iter().map(row).collect()
}

pub async fn get(pool: &AnyPool, id: &BusinessId) -> Result<Option<BusinessSystemRow>, ProjectionError> {
    let r = sqlx::query(
        "SELECT business_id, name, organization, image, top_url, operator_admin_url, personalize_url, phone, email, \
         retired, version FROM rm_business_systems WHERE business_id = $1",
    )
    .bind(id.as_str().to_owned())
    .fetch_optional(pool)
    .await
    .map_err(ProjectionError::from_sqlx)?;
    r.as_ref().map(row).transpose()
}

/// The municipalities permitted to use a business system.
pub async fn permitted_municipalities(pool: &AnyPool, id: &BusinessId) -> Result<Vec<String>, ProjectionError> {
    let rows = sqlx::query("SELECT municipality FROM rm_shared_use WHERE business_id = $1 ORDER BY municipality")
        .bind(id.as_str().to_owned())
        .fetch_all(pool)
        .await
        .map_err(ProjectionError::from_sqlx)?;
    rows.iter().map(|r| r.try_get("municipality").map_err(ProjectionError::Database)).collect()
}

/// The business systems a municipality may use now: permitted under shared use and not retired.
pub async fn usable_by(pool: &AnyPool, municipality: &MunicipalityCode) -> Result<Vec<BusinessId>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT b.business_id FROM rm_business_systems b JOIN rm_shared_use s ON s.business_id = b.business_id \
         WHERE s.municipality = $1 AND b.retired = 0 ORDER BY b.business_id",
    )
    .bind(municipality.as_str().to_owned())
    .fetch_all(pool)
    .await
    .map_err(ProjectionError::from_sqlx)?;
    ids(&rows)
}

/// Every business system that is not retired (what the system administrator may use).
pub async fn active(pool: &AnyPool) -> Result<Vec<BusinessId>, ProjectionError> {
    let rows = sqlx::query("SELECT business_id FROM rm_business_systems WHERE retired = 0 ORDER BY business_id")
        .fetch_all(pool)
        .await
        .map_err(ProjectionError::from_sqlx)?;
    ids(&rows)
}

fn ids(rows: &[sqlx::any::AnyRow]) -> Result<Vec<BusinessId>, ProjectionError> {
    rows.iter()
        .map(|r| {
            let id: String = r.try_get("business_id").map_err(ProjectionError::Database)?;
            BusinessId::parse(&id).map_err(|e| {
                ProjectionError::Database(sqlx::Error::Decode(format!("rm_business_systems.business_id: {e}").into()))
            })
        })
        .collect()
}

fn row(r: &sqlx::any::AnyRow) -> Result<BusinessSystemRow, ProjectionError> {
    let get = ProjectionError::Database;
    Ok(BusinessSystemRow {
        business_id: r.try_get("business_id").map_err(get)?,
        name: r.try_get("name").map_err(get)?,
        organization: r.try_get("organization").map_err(get)?,
        image: r.try_get("image").map_err(get)?,
        top_url: r.try_get("top_url").map_err(get)?,
        operator_admin_url: r.try_get("operator_admin_url").map_err(get)?,
        personalize_url: r.try_get("personalize_url").map_err(get)?,
        phone: r.try_get("phone").map_err(get)?,
        email: r.try_get("email").map_err(get)?,
        retired: r.try_get::<i64, _>("retired").map_err(get)? != 0,
        version: r.try_get("version").map_err(get)?,
    })
}
