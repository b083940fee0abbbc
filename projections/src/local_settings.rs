//! Resident-service settings per municipality (市町村設定): its custom registration fields (チューニング項目),
//! the card AP catalog it offers and the preset APs, as the registration screens and the card screens read them.
//!
//! Owns `rm_local_settings`: one row per municipality that configured anything, replaced whole by each
//! `LocalSettingsConfigured`. A municipality without a row has the defaults (no custom fields, empty catalog).

use async_trait::async_trait;
use cardap_domain::local_settings::{CustomFieldDefinition, LocalSettings, LocalSettingsEvent};
use cardap_domain::{Aggregate, BusinessId, MunicipalityCode};
use serde::Serialize;
use sqlx::{AnyConnection, AnyPool, Row};

use crate::ProjectionError;
use crate::typed::{Recorded, View};

/// Builds `rm_local_settings`.
#[derive(Debug)]
pub struct LocalSettingsView;

pub const NAME: &str = "local_settings";

#[async_trait]
impl View for LocalSettingsView {
    type Event = LocalSettingsEvent;
    const NAME: &'static str = NAME;
    const STREAM_TYPES: &'static [&'static str] = &[LocalSettings::STREAM_TYPE];
    const TABLES: &'static [&'static str] = &["rm_local_settings"];

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        decoded: LocalSettingsEvent,
        recorded: &Recorded<'_>,
    ) -> Result<(), ProjectionError> {
        let LocalSettingsEvent::Configured { municipality, settings } = decoded;
        let version = recorded.version();
        let custom_fields = serde_json::to_string(&settings.custom_fields).map_err(|e| recorded.error(e))?;
        sqlx::query(
            "INSERT INTO rm_local_settings (municipality, custom_fields, catalog, presets, version) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (municipality) DO UPDATE SET \
             custom_fields = excluded.custom_fields, catalog = excluded.catalog, presets = excluded.presets, \
             version = excluded.version",
        )
        .bind(municipality.as_str().to_owned())
        .bind(custom_fields)
        .bind(join(&settings.catalog))
        .bind(join(&settings.presets))
        .bind(version)
        .execute(&mut *conn)
        .await
        .map_err(ProjectionError::from_sqlx)?;
        Ok(())
    }
}

fn join<'a>(ids: impl IntoIterator<Item = &'a BusinessId>) -> String {
    ids.into_iter().map(BusinessId::as_str).collect::<Vec<_>>().join(" ")
}

/// A municipality's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocalSettingsRow {
    pub municipality: MunicipalityCode,
    /// In the order the municipality defined them (the screen's order).
    pub custom_fields: Vec<CustomFieldDefinition>,
    /// The card APs offered, in business-id order.
    pub catalog: Vec<BusinessId>,
    /// Installed with the local area on every card, in business-id order.
    pub presets: Vec<BusinessId>,
    /// The stream version: the resource's ETag.
    pub version: i64,
}

/// The settings of `municipality`; `None` if it never configured any.
pub async fn get(pool: &AnyPool, municipality: &MunicipalityCode) -> Result<Option<LocalSettingsRow>, ProjectionError> {
    let r =
        sqlx::query("SELECT custom_fields, catalog, presets, version FROM rm_local_settings WHERE municipality = $1")
            .bind(municipality.as_str().to_owned())
            .fetch_optional(pool)
            .await
            .map_err(ProjectionError::from_sqlx)?;
    let Some(r) = r else {
        return Ok(None);
    };
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        ProjectionError::Database(sqlx::Error::Decode(format!("rm_local_settings.{what}: {e}").into()))
    };
    let get = ProjectionError::Database;
    let ids = |column: &str| -> Result<Vec<BusinessId>, ProjectionError> {
        let text: String = r.try_get(column).map_err(get)?;
        text.split_whitespace().map(BusinessId::parse).collect::<Result<_, _>>().map_err(|e| bad(column, &e))
    };
    let custom_fields: String = r.try_get("custom_fields").map_err(get)?;
    Ok(Some(LocalSettingsRow {
        municipality: municipality.clone(),
        custom_fields: serde_json::from_str(&custom_fields).map_err(|e| bad("custom_fields", &e))?,
        catalog: ids("catalog")?,
        presets: ids("presets")?,
        version: r.try_get("version").map_err(get)?,
    }))
}
