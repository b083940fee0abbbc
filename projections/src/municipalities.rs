//! The municipality list (運用環境設定: 市町村設定, 表示順): one row per registered municipality, in display order.

use async_trait::async_trait;
use cardap_domain::Aggregate;
use cardap_domain::MunicipalityCode;
use cardap_domain::municipality::{Municipality, MunicipalityEvent};
use serde::Serialize;
use sqlx::{AnyConnection, AnyPool, Row};

use crate::ProjectionError;
use crate::typed::{Recorded, View};

/// Builds `rm_municipalities`.
#[derive(Debug)]
pub struct MunicipalityList;

pub const NAME: &str = "municipalities";

#[async_trait]
impl View for MunicipalityList {
    type Event = MunicipalityEvent;
    const NAME: &'static str = NAME;
    const STREAM_TYPES: &'static [&'static str] = &[Municipality::STREAM_TYPE];
    const TABLES: &'static [&'static str] = &["rm_municipalities"];

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        decoded: MunicipalityEvent,
        recorded: &Recorded<'_>,
    ) -> Result<(), ProjectionError> {
        let at = recorded.at();
        let version = recorded.version();
        let key = recorded.key().to_owned();
        let query = match decoded {
            MunicipalityEvent::Registered { code, name, kind, display_order } => sqlx::query(
                "INSERT INTO rm_municipalities (code, name, kind, display_order, abolished, version, registered_at, updated_at) \
                 VALUES ($1, $2, $3, $4, 0, $5, $6, $6)",
            )
            .bind(code.as_str().to_owned())
            .bind(name.as_str().to_owned())
            .bind(kind.as_str())
            .bind(i64::from(display_order.value()))
            .bind(version)
            .bind(at),
            MunicipalityEvent::Renamed { name } => {
                sqlx::query("UPDATE rm_municipalities SET name = $1, version = $2, updated_at = $3 WHERE code = $4")
                    .bind(name.as_str().to_owned())
                    .bind(version)
                    .bind(at)
                    .bind(key)
            }
            MunicipalityEvent::DisplayOrderChanged { display_order } => sqlx::query(
                "UPDATE rm_municipalities SET display_order = $1, version = $2, updated_at = $3 WHERE code = $4",
            )
            .bind(i64::from(display_order.value()))
            .bind(version)
            .bind(at)
            .bind(key),
            MunicipalityEvent::Abolished => {
                sqlx::query("UPDATE rm_municipalities SET abolished = 1, version = $1, updated_at = $2 WHERE code = $3")
                    .bind(version)
                    .bind(at)
                    .bind(key)
            }
        };
        query.execute(&mut *conn).await.map_err(ProjectionError::from_sqlx)?;
        Ok(())
    }
}

/// One row of the municipality list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MunicipalityRow {
    pub code: String,
    pub name: String,
    pub kind: String,
    pub display_order: i64,
    pub abolished: bool,
    /// The stream version: the resource's ETag.
    pub version: i64,
    pub registered_at: String,
    pub updated_at: String,
}

/// Which municipalities a caller may list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visible {
    All,
    Only(MunicipalityCode),
}

/// A page of the list in display order, after `(display_order, code)` of the previous page.
pub async fn list(
    pool: &AnyPool,
    visible: &Visible,
    after: Option<(i64, String)>,
    limit: i64,
    include_abolished: bool,
) -> Result<Vec<MunicipalityRow>, ProjectionError> {
    let (after_order, after_code) = after.unwrap_or((i64::MIN, String::new()));
    let only = match visible {
        Visible::All => None,
        Visible::Only(code) => Some(code.as_str().to_owned()),
    };
    let rows = sqlx::query(
        "SELECT code, name, kind, display_order, abolished, version, registered_at, updated_at \
         FROM rm_municipalities \
         WHERE ($1 IS NULL OR code = $1) AND ($2 = 1 OR abolished = 0) \
           AND (display_order > $3 OR (display_order = $3 AND code > $4)) \
         ORDER BY display_order, code LIMIT $5",
    )
    .bind(only)
    .bind(i64::from(include_abolished))
    .bind(after_order)
    .bind(after_code)
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(ProjectionError::from_sqlx)?;
    rows.iter().map(row).collect()
}

/// One municipality, abolished or not.
pub async fn get(pool: &AnyPool, code: &MunicipalityCode) -> Result<Option<MunicipalityRow>, ProjectionError> {
    let r = sqlx::query(
        "SELECT code, name, kind, display_order, abolished, version, registered_at, updated_at \
         FROM rm_municipalities WHERE code = $1",
    )
    .bind(code.as_str().to_owned())
    .fetch_optional(pool)
    .await
    .map_err(ProjectionError::from_sqlx)?;
    r.as_ref().map(row).transpose()
}

fn row(r: &sqlx::any::AnyRow) -> Result<MunicipalityRow, ProjectionError> {
    let get = |e: sqlx::Error| ProjectionError::Database(e);
    Ok(MunicipalityRow {
        code: r.try_get("code").map_err(get)?,
        name: r.try_get("name").map_err(get)?,
        kind: r.try_get("kind").map_err(get)?,
        display_order: r.try_get("display_order").map_err(get)?,
        abolished: r.try_get::<i64, _>("abolished").map_err(get)? != 0,
        version: r.try_get("version").map_err(get)?,
        registered_at: r.try_get("registered_at").map_err(get)?,
        updated_at: r.try_get("updated_at").map_err(get)?,
    })
}
