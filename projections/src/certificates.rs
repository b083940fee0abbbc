//! Certificates of the internal CA (`rm_certificates`): every certificate issued, by serial and by holder, with
//! its revocation — what the certificate lookups answer from and what the CRL lists.

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cardap_domain::Aggregate;
use cardap_domain::certificate::{Certificate, CertificateEvent, CertificateSerial, Holder};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};

use crate::ProjectionError;
use crate::typed::{Recorded, View};

/// Builds `rm_certificates`.
#[derive(Debug)]
pub struct Certificates;

pub const NAME: &str = "certificates";

/// The `holder` column of a holder: the business ID, `<municipality code or system>:<operator ID>`, or the
/// endpoint name.
pub fn holder_key(holder: &Holder) -> String {
    match holder {
        Holder::Operator { municipality, operator_id } => {
            format!("{}:{}", municipality.as_ref().map_or("system", |m| m.as_str()), operator_id.as_str())
        }
        Holder::BusinessServer { business_id } => business_id.as_str().to_owned(),
        Holder::Tls { endpoint } => endpoint.clone(),
    }
}

#[async_trait]
impl View for Certificates {
    type Event = CertificateEvent;
    const NAME: &'static str = NAME;
    const STREAM_TYPES: &'static [&'static str] = &[Certificate::STREAM_TYPE];
    const TABLES: &'static [&'static str] = &["rm_certificates"];

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        decoded: CertificateEvent,
        recorded: &Recorded<'_>,
    ) -> Result<(), ProjectionError> {
        let version = recorded.version();
        let result =
            match decoded {
                CertificateEvent::Issued(c) => {
                    sqlx::query(
                        "INSERT INTO rm_certificates (serial, kind, holder, subject, not_before, not_after, der, \
                     revoked_at, revoked_reason, version) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL, $8)",
                    )
                    .bind(c.serial.as_str().to_owned())
                    .bind(c.holder.kind())
                    .bind(holder_key(&c.holder))
                    .bind(c.subject)
                    .bind(c.not_before.unix())
                    .bind(c.not_after.unix())
                    .bind(STANDARD.encode(&c.der))
                    .bind(version)
                    .execute(&mut *conn)
                    .await
                }
                CertificateEvent::Revoked { reason, at } => sqlx::query(
                    "UPDATE rm_certificates SET revoked_at = $1, revoked_reason = $2, version = $3 WHERE serial = $4",
                )
                .bind(at.unix())
                .bind(reason.as_str())
                .bind(version)
                .bind(recorded.key().to_owned())
                .execute(&mut *conn)
                .await,
            };
        result.map_err(ProjectionError::from_sqlx)?;
        Ok(())
    }
}

/// One certificate as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertificateRow {
    pub serial: String,
    /// `operator`, `business-server` or `tls`.
    pub kind: String,
    pub holder: String,
    pub subject: String,
    pub not_before: i64,
    pub not_after: i64,
    pub der: Vec<u8>,
    pub revoked_at: Option<i64>,
    /// RFC 5280 name of the reason (`keyCompromise` …).
    pub revoked_reason: Option<String>,
    pub version: i64,
}

fn row(r: &AnyRow) -> Result<CertificateRow, ProjectionError> {
    let corrupt = ProjectionError::Database;
    let der: String = r.try_get("der").map_err(corrupt)?;
    Ok(CertificateRow {
        serial: r.try_get("serial").map_err(corrupt)?,
        kind: r.try_get("kind").map_err(corrupt)?,
        holder: r.try_get("holder").map_err(corrupt)?,
        subject: r.try_get("subject").map_err(corrupt)?,
        not_before: r.try_get("not_before").map_err(corrupt)?,
        not_after: r.try_get("not_after").map_err(corrupt)?,
        der: STANDARD.decode(der).map_err(|e| {
            ProjectionError::Store(cardap_store::StoreError::Corrupt(format!("rm_certificates.der: {e}")))
        })?,
        revoked_at: r.try_get("revoked_at").map_err(corrupt)?,
        revoked_reason: r.try_get("revoked_reason").map_err(corrupt)?,
        version: r.try_get("version").map_err(corrupt)?,
    })
}

/// One certificate by serial.
pub async fn get(pool: &AnyPool, serial: &CertificateSerial) -> Result<Option<CertificateRow>, ProjectionError> {
    let r = sqlx::query(
        "SELECT serial, kind, holder, subject, not_before, not_after, der, revoked_at, revoked_reason, version \
         FROM rm_certificates WHERE serial = $1",
    )
    .bind(serial.as_str().to_owned())
    .fetch_optional(pool)
    .await
    .map_err(ProjectionError::from_sqlx)?;
    r.as_ref().map(row).transpose()
}

/// The certificates of one holder, newest first.
pub async fn of_holder(pool: &AnyPool, holder: &Holder) -> Result<Vec<CertificateRow>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT serial, kind, holder, subject, not_before, not_after, der, revoked_at, revoked_reason, version \
         FROM rm_certificates WHERE kind = $1 AND holder = $2 ORDER BY not_before DESC, serial",
    )
    .bind(holder.kind())
    .bind(holder_key(holder))
    .fetch_all(pool)
    .await
    .map_err(ProjectionError::from_sqlx)?;
    rows.iter().map(row).collect()
}

/// A revoked certificate as the CRL lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedRow {
    pub serial: String,
    pub revoked_at: i64,
    pub reason: String,
}

/// Every revoked certificate that has not expired yet at `now` (an expired one leaves the CRL), by serial.
pub async fn revoked(pool: &AnyPool, now: i64) -> Result<Vec<RevokedRow>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT serial, revoked_at, revoked_reason FROM rm_certificates \
         WHERE revoked_at IS NOT NULL AND not_after > $1 ORDER BY serial",
    )
    .bind(now)
    .fetch_all(pool)
    .await
    .map_err(ProjectionError::from_sqlx)?;
    let corrupt = ProjectionError::Database;
    rows.iter()
        .map(|r| {
            Ok(RevokedRow {
                serial: r.try_get("serial").map_err(corrupt)?,
                revoked_at: r.try_get("revoked_at").map_err(corrupt)?,
                reason: r.try_get("revoked_reason").map_err(corrupt)?,
            })
        })
        .collect()
}
