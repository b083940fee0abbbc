//! The internal CA over HTTP (手引き I 2.1, 2.2): the chain (`GET /pki/ca.pem`) and the CRL (`GET /pki/crl`), both
//! public; business server certificates (業務サーバ証明書) under `/api/v1/business-systems/{business_id}/certificates`
//! (システム管理) and operator certificates (オペレータ証明書) under
//! `/api/v1/municipalities/{code}/operators/{operator_id}/certificates` (the operator himself, or who manages the
//! municipality's operators).
//!
//! Choices of this module, also stated in `/openapi.json`:
//! - a CSR (証明書発行要求ファイル) is sent as the body itself — `application/pkcs10` (PEM or DER),
//!   `application/x-pem-file` or `text/plain` (PEM) — or as JSON `{"csr": "<PEM>"}`; the document lists
//!   `text/plain` and JSON (its fuzzer has no serializer for `application/pkcs10`), the descriptions say the rest;
//! - `GET …/certificates/{serial}` answers JSON, or the certificate with its chain (PEM) when `Accept` asks for
//!   `application/pem-certificate-chain` or `application/x-pem-file`;
//! - a refused CSR is `422` `/problems/invalid-csr` (unreadable, bad signature, unsupported key or signature,
//!   with what is accepted), a business server CSR whose CN fits no URL of the business system `422`
//!   `/problems/csr-subject-mismatch`; revoking a revoked certificate `409` `/problems/certificate-revoked`;
//! - another municipality's operator path is `404` before the body is read;
//! - SSL communication certificates (SSL通信用証明書) for cardap's own endpoints, under
//!   `/api/v1/tls-certificates/{endpoint}` (システム管理): issued from the endpoint's CSR for the DNS names and IP
//!   addresses in the body, reissued, and deleted — `DELETE` revokes (cessationOfOperation) and the certificate
//!   stays listed as revoked.
//!
//! - an operator's PKCS#12 bundle (`POST …/certificates/pkcs12`) answers its one-time password once; the bundle is
//!   downloaded once (`GET …/certificates/{serial}/pkcs12`), then `410` `/problems/pkcs12-gone`.
//!
//! Length: eighteen operations with their OpenAPI annotations and the parsing of their bodies; the use cases are
//! `cardap_commands::pki`'s.
//!
//! Must not decide anything: the rules are `cardap_commands::pki`'s.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cardap_commands::pki::CertificateRow;
use cardap_commands::pki::{EndpointName, PkiError, TlsNames};
use cardap_commands::{CommandError, Permission, authorize};
use cardap_domain::certificate::{CertificateError, CertificateSerial, Holder, RevocationReason};
use cardap_domain::operator::OperatorId;
use cardap_domain::{BusinessId, MunicipalityCode, OperatorKey};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Authenticated;
use crate::error::{ApiError, FieldError, ProblemDetails, ProblemType, command_error};
use crate::i18n::Text;
use crate::json::ApiJson;
use crate::routes::{RequestMeta, municipality_in_path};
use crate::state::AppState;

const PEM_CHAIN: &str = "application/pem-certificate-chain";

/// A P-256 CSR for `CN=portal.example.jp` (shortened for the document).
const CSR_EXAMPLE: &str =
    "-----BEGIN CERTIFICATE REQUEST-----\nMIIBLzCB1gIBADB0MQswCQYDVQQGEwJKUDEO…\n-----END CERTIFICATE REQUEST-----\n";

pub fn router() -> Router<AppState> {
    let business = "/api/v1/business-systems/{business_id}/certificates";
    let operator = "/api/v1/municipalities/{code}/operators/{operator_id}/certificates";
    Router::new()
        .route("/pki/ca.pem", get(chain))
        .route("/pki/crl", get(crl))
        .route(business, get(list_business).post(issue_business))
        .route(&format!("{business}/{{serial}}"), get(show_business))
        .route(&format!("{business}/{{serial}}/revoke"), post(revoke_business))
        .route(&format!("{business}/{{serial}}/reissue"), post(reissue_business))
        .route(operator, get(list_operator).post(issue_operator))
        .route(&format!("{operator}/{{serial}}"), get(show_operator))
        .route(&format!("{operator}/{{serial}}/revoke"), post(revoke_operator))
        .route(&format!("{operator}/pkcs12"), post(issue_operator_pkcs12))
        .route(&format!("{operator}/{{serial}}/pkcs12"), get(take_pkcs12))
        .route("/api/v1/tls-certificates/{endpoint}", get(list_tls).post(issue_tls))
        .route("/api/v1/tls-certificates/{endpoint}/{serial}", get(show_tls).delete(delete_tls))
        .route("/api/v1/tls-certificates/{endpoint}/{serial}/reissue", post(reissue_tls))
}

/// A certificate issued by the internal CA.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "serial": "4f1c0e5b9d2a7c3e8b6f1a0d2c4e6f80", "kind": "business-server", "holder": "05",
    "subject": "C=JP, ST=Tokyo, O=Minami-Edo City, CN=portal.example.jp",
    "not_before": "2026-04-01T00:00:00Z", "not_after": "2027-05-03T00:00:00Z", "revoked": false,
    "revoked_at": null, "revocation_reason": null,
    "certificate": "-----BEGIN CERTIFICATE-----\nMIIB…\n-----END CERTIFICATE-----\n"
}))]
pub struct CertificateView {
    /// Serial number, lower-case hex (as `openssl x509 -serial` prints it, in lower case).
    pub serial: String,
    /// `operator`, `business-server` or `tls`.
    pub kind: String,
    /// The business ID, or `<municipality code>:<operator ID>`.
    pub holder: String,
    /// The subject as written in the certificate.
    pub subject: String,
    /// RFC 3339, UTC.
    pub not_before: String,
    pub not_after: String,
    pub revoked: bool,
    pub revoked_at: Option<String>,
    /// RFC 5280 reason (`keyCompromise`, `superseded`, `affiliationChanged`, `privilegeWithdrawn` …).
    pub revocation_reason: Option<String>,
    /// The certificate, PEM (without the chain: `GET /pki/ca.pem`, or this resource with `Accept:
    /// application/pem-certificate-chain`).
    pub certificate: String,
}

fn rfc3339(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

impl From<CertificateRow> for CertificateView {
    fn from(r: CertificateRow) -> Self {
        CertificateView {
            certificate: cardap_commands::pki::ca::pem("CERTIFICATE", &r.der),
            serial: r.serial,
            kind: r.kind,
            holder: r.holder,
            subject: r.subject,
            not_before: rfc3339(r.not_before),
            not_after: rfc3339(r.not_after),
            revoked: r.revoked_at.is_some(),
            revoked_at: r.revoked_at.map(rfc3339),
            revocation_reason: r.revoked_reason,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CertificateList {
    /// Newest first.
    pub items: Vec<CertificateView>,
}

/// A CSR as JSON (the body may also be the CSR itself, see the operation).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"csr": CSR_EXAMPLE}))]
pub struct CsrBody {
    /// 証明書発行要求ファイル: PKCS#10, PEM (`-----BEGIN CERTIFICATE REQUEST-----`).
    pub csr: String,
}

/// Why a certificate is revoked.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"reason": "keyCompromise"}))]
pub struct RevokeBody {
    /// RFC 5280 reason: `unspecified` (the default), `keyCompromise`, `affiliationChanged`, `superseded`,
    /// `cessationOfOperation` or `privilegeWithdrawn`.
    pub reason: Option<String>,
}

fn pki_error(e: PkiError) -> ApiError {
    let text = Text::of(&e);
    match e {
        PkiError::Csr(_) => ApiError::unprocessable(ProblemType::InvalidCsr, text),
        PkiError::SubjectMismatch { .. } => ApiError::unprocessable(ProblemType::CsrSubjectMismatch, text),
        PkiError::BusinessSystemRetired => ApiError::state_conflict(ProblemType::BusinessSystemRetired, text),
        PkiError::OperatorRevoked => ApiError::state_conflict(ProblemType::OperatorRevoked, text),
        PkiError::Certificate(CertificateError::Unknown) => ApiError::not_found(),
        PkiError::Certificate(CertificateError::AlreadyRevoked) => {
            ApiError::state_conflict(ProblemType::CertificateRevoked, text)
        }
        PkiError::Certificate(CertificateError::AlreadyIssued) => ApiError::contended(),
        PkiError::NoCa => ApiError::internal("the CA is not loaded"),
        PkiError::BundleGone => ApiError::gone(ProblemType::Pkcs12Gone, text),
    }
}

fn failed(e: CommandError<PkiError>) -> ApiError {
    command_error(e, pki_error)
}

/// The CSR of a request body: the body itself (`application/pkcs10`, PEM or DER; `application/x-pem-file`,
/// `text/plain`) or JSON `{"csr": …}`.
fn csr_of(headers: &HeaderMap, body: &Bytes) -> Result<Vec<u8>, ApiError> {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
        .unwrap_or_default();
    match media.as_str() {
        "application/json" => {
            let parsed: CsrBody = serde_json::from_slice(body).map_err(|e| {
                ApiError::malformed(
                    Text::new("JSON を読み取れません", "The JSON body cannot be read"),
                    vec![FieldError::new("/csr", Text::new(e.to_string(), e.to_string()))],
                )
            })?;
            Ok(parsed.csr.into_bytes())
        }
        "application/pkcs10" | "application/x-pem-file" | "text/plain" => Ok(body.to_vec()),
        _ => Err(ApiError::unsupported_media_type("application/pkcs10, application/json")),
    }
}

fn serial_in_path(serial: &str) -> Result<CertificateSerial, ApiError> {
    CertificateSerial::parse(serial).map_err(|_| ApiError::not_found())
}

fn business_in_path(business_id: &str) -> Result<BusinessId, ApiError> {
    BusinessId::parse(business_id).map_err(|_| ApiError::not_found())
}

fn reason_of(body: Option<RevokeBody>) -> Result<RevocationReason, ApiError> {
    match body.and_then(|b| b.reason) {
        None => Ok(RevocationReason::Unspecified),
        Some(r) => {
            RevocationReason::parse(&r).map_err(|e| ApiError::validation(vec![FieldError::parse("/reason", &e)]))
        }
    }
}

fn revoke_body(body: &Bytes) -> Result<Option<RevokeBody>, ApiError> {
    if body.is_empty() {
        return Ok(None);
    }
    serde_json::from_slice(body).map(Some).map_err(|e| {
        ApiError::malformed(
            Text::new("JSON を読み取れません", "The JSON body cannot be read"),
            vec![FieldError::new("/reason", Text::new(e.to_string(), e.to_string()))],
        )
    })
}

/// JSON, or the certificate with its chain when `Accept` asks for PEM.
fn answer(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    row: CertificateRow,
) -> Result<Response, ApiError> {
    let wants_pem = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains(PEM_CHAIN) || a.contains("application/x-pem-file"));
    if wants_pem {
        let pem = state.pki.pem_with_chain(&row).map_err(failed)?;
        return Ok((status, [(header::CONTENT_TYPE, HeaderValue::from_static(PEM_CHAIN))], pem).into_response());
    }
    Ok((status, Json(CertificateView::from(row))).into_response())
}

#[utoipa::path(get, operation_id = "caChain", path = "/pki/ca.pem", tag = "pki",
    responses((status = 200, content_type = "application/pem-certificate-chain", body = String,
        description = "The issuing CA's certificate, then the root's (PEM): what relying parties install")))]
pub async fn chain(State(state): State<AppState>) -> Result<Response, ApiError> {
    let pem = state.pki.chain_pem().map_err(failed)?;
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static(PEM_CHAIN))], pem).into_response())
}

#[utoipa::path(get, operation_id = "crl", path = "/pki/crl", tag = "pki",
    responses((status = 200, content_type = "application/pkix-crl", body = Vec<u8>,
        description = "The current CRL (DER) of the issuing CA: every revoked certificate not yet expired, with its \
            reason; made anew at every revocation and before half its validity (nextUpdate) has passed")))]
pub async fn crl(State(state): State<AppState>) -> Result<Response, ApiError> {
    let der = state.pki.crl().await.map_err(failed)?;
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("application/pkix-crl"))], der).into_response())
}

#[utoipa::path(post, operation_id = "issueBusinessServerCertificate",
    path = "/api/v1/business-systems/{business_id}/certificates", tag = "pki",
    request_body(content(
        (CsrBody = "application/json"),
        (String = "text/plain", example = json!(CSR_EXAMPLE)),
    ), description = "証明書発行要求ファイル (PKCS#10): JSON `{\"csr\": PEM}`, or the CSR itself as `text/plain` (PEM) or \
        `application/pkcs10` (PEM or DER). Accepted keys: RSA ≥ 2048 bits (PKCS#1 v1.5 with SHA-256/384/512), \
        ECDSA P-256 or P-384 (SHA-256/384), Ed25519. Its CN must be the host of one of the business system's URLs; \
        C, ST, L, O, OU are taken as written; only the public key and that subject are used."),
    params(("business_id" = String, Path, description = "業務ID"),
        ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key issues once")),
    security(("bearer" = [])),
    responses((status = 201, body = CertificateView, description = "Issued (業務サーバ証明書)"),
        (status = 403, body = ProblemDetails), (status = 404, body = ProblemDetails),
        (status = 409, body = ProblemDetails, description = "`/problems/business-system-retired`"),
        (status = 415, body = ProblemDetails),
        (status = 422, body = ProblemDetails,
            description = "`/problems/invalid-csr`, `/problems/csr-subject-mismatch`")))]
pub async fn issue_business(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(business_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = business_in_path(&business_id)?;
    authorize(&auth.actor, &Permission::ManageBusinessSystems)?;
    let csr = csr_of(&headers, &body)?;
    let ctx = RequestMeta::from_headers(&headers).context(&auth, "certificates.issue", id.as_str());
    let row = state.pki.issue_business_server(&ctx, &id, &csr).await.map_err(failed)?;
    answer(&state, &HeaderMap::new(), StatusCode::CREATED, row)
}

#[utoipa::path(get, operation_id = "listBusinessServerCertificates",
    path = "/api/v1/business-systems/{business_id}/certificates", tag = "pki",
    params(("business_id" = String, Path, description = "業務ID")),
    security(("bearer" = [])),
    responses((status = 200, body = CertificateList, description = "Every certificate issued for it, newest first"),
        (status = 403, body = ProblemDetails), (status = 404, body = ProblemDetails)))]
pub async fn list_business(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(business_id): Path<String>,
) -> Result<Response, ApiError> {
    let id = business_in_path(&business_id)?;
    authorize(&auth.actor, &Permission::ManageBusinessSystems)?;
    state.business_systems.view(&id).await?.ok_or_else(ApiError::not_found)?;
    let rows = state.pki.certificates_of(&Holder::BusinessServer { business_id: id }).await.map_err(failed)?;
    Ok(Json(CertificateList { items: rows.into_iter().map(CertificateView::from).collect() }).into_response())
}

#[utoipa::path(get, operation_id = "showBusinessServerCertificate",
    path = "/api/v1/business-systems/{business_id}/certificates/{serial}", tag = "pki",
    params(("business_id" = String, Path, description = "業務ID"),
        ("serial" = String, Path, description = "Serial number, hex")),
    security(("bearer" = [])),
    responses((status = 200, body = CertificateView,
            description = "JSON; with `Accept: application/pem-certificate-chain` the certificate and its chain, PEM"),
        (status = 403, body = ProblemDetails), (status = 404, body = ProblemDetails)))]
pub async fn show_business(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((business_id, serial)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = business_in_path(&business_id)?;
    let serial = serial_in_path(&serial)?;
    authorize(&auth.actor, &Permission::ManageBusinessSystems)?;
    let holder = Holder::BusinessServer { business_id: id };
    let row = state.pki.certificate_of(&holder, &serial).await.map_err(failed)?.ok_or_else(ApiError::not_found)?;
    answer(&state, &headers, StatusCode::OK, row)
}

#[utoipa::path(post, operation_id = "revokeBusinessServerCertificate",
    path = "/api/v1/business-systems/{business_id}/certificates/{serial}/revoke", tag = "pki",
    request_body = RevokeBody,
    params(("business_id" = String, Path, description = "業務ID"),
        ("serial" = String, Path, description = "Serial number, hex")),
    security(("bearer" = [])),
    responses((status = 200, body = CertificateView, description = "Revoked: the CRL lists it from now on"),
        (status = 403, body = ProblemDetails), (status = 404, body = ProblemDetails),
        (status = 409, body = ProblemDetails, description = "`/problems/certificate-revoked`: revoked already")))]
pub async fn revoke_business(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((business_id, serial)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = business_in_path(&business_id)?;
    let serial = serial_in_path(&serial)?;
    authorize(&auth.actor, &Permission::ManageBusinessSystems)?;
    let why = reason_of(revoke_body(&body)?)?;
    let ctx = RequestMeta::from_headers(&headers).context(&auth, "certificates.revoke", serial.as_str());
    let row = state.pki.revoke_business_server(&ctx, &id, &serial, why).await.map_err(failed)?;
    Ok(Json(CertificateView::from(row)).into_response())
}

#[utoipa::path(post, operation_id = "reissueBusinessServerCertificate",
    path = "/api/v1/business-systems/{business_id}/certificates/{serial}/reissue", tag = "pki",
    request_body(content(
        (CsrBody = "application/json"),
        (String = "text/plain", example = json!(CSR_EXAMPLE)),
    ), description = "A new 証明書発行要求ファイル, as for issuing (JSON, `text/plain` or `application/pkcs10`)"),
    params(("business_id" = String, Path, description = "業務ID"),
        ("serial" = String, Path, description = "The serial of the certificate to replace")),
    security(("bearer" = [])),
    responses((status = 201, body = CertificateView,
            description = "The new certificate; the old one is revoked (superseded) in the same transaction"),
        (status = 403, body = ProblemDetails), (status = 404, body = ProblemDetails),
        (status = 409, body = ProblemDetails, description = "`/problems/certificate-revoked`: the old one is revoked"),
        (status = 415, body = ProblemDetails),
        (status = 422, body = ProblemDetails,
            description = "`/problems/invalid-csr`, `/problems/csr-subject-mismatch`")))]
pub async fn reissue_business(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((business_id, serial)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = business_in_path(&business_id)?;
    let serial = serial_in_path(&serial)?;
    authorize(&auth.actor, &Permission::ManageBusinessSystems)?;
    let csr = csr_of(&headers, &body)?;
    let ctx = RequestMeta::from_headers(&headers).context(&auth, "certificates.reissue", serial.as_str());
    let row = state.pki.reissue_business_server(&ctx, &id, &serial, &csr).await.map_err(failed)?;
    answer(&state, &HeaderMap::new(), StatusCode::CREATED, row)
}

/// The operator in the path, if the caller may see his municipality and he exists (else 404), and whether the
/// caller may see his certificates (himself, or who may read the municipality's operators: else 403).
async fn operator_in_path(
    state: &AppState,
    auth: &Authenticated,
    code: &str,
    operator_id: &str,
) -> Result<(MunicipalityCode, OperatorId), ApiError> {
    let code = municipality_in_path(state, auth, code).await?;
    let id = OperatorId::parse(operator_id).map_err(|_| ApiError::not_found())?;
    if auth.actor.operator != OperatorKey::for_login(Some(&code), &id) {
        authorize(&auth.actor, &Permission::ViewOperators(code.clone()))?;
    }
    state.operators.by_login(&code, &id).await?.ok_or_else(ApiError::not_found)?;
    Ok((code, id))
}

#[utoipa::path(post, operation_id = "issueOperatorCertificate",
    path = "/api/v1/municipalities/{code}/operators/{operator_id}/certificates", tag = "pki",
    request_body(content(
        (CsrBody = "application/json"),
        (String = "text/plain", example = json!(CSR_EXAMPLE)),
    ), description = "A CSR made on the operator's terminal (the key never leaves it), as JSON, `text/plain` or \
        `application/pkcs10`; only its public key is used. The certificate names `CN=<operator ID>, OU=<municipality code>` and the SAN URIs \
        `urn:cardap:operator:<code>:<operator ID>` and `urn:cardap:business:<business ID>` per permitted business system."),
    params(("code" = String, Path, description = "Municipality code"),
        ("operator_id" = String, Path, description = "オペレータID"),
        ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key issues once")),
    security(("bearer" = [])),
    responses((status = 201, body = CertificateView, description = "Issued (オペレータ証明書)"),
        (status = 403, body = ProblemDetails), (status = 404, body = ProblemDetails),
        (status = 409, body = ProblemDetails, description = "`/problems/operator-revoked`"),
        (status = 415, body = ProblemDetails),
        (status = 422, body = ProblemDetails, description = "`/problems/invalid-csr`")))]
pub async fn issue_operator(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((code, operator_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (code, id) = operator_in_path(&state, &auth, &code, &operator_id).await?;
    let csr = csr_of(&headers, &body)?;
    let target = format!("{}:{}", code.as_str(), id.as_str());
    let ctx = RequestMeta::from_headers(&headers).context(&auth, "certificates.issue-operator", &target);
    let row = state.pki.issue_operator(&ctx, &code, &id, &csr).await.map_err(failed)?;
    answer(&state, &HeaderMap::new(), StatusCode::CREATED, row)
}

#[utoipa::path(get, operation_id = "listOperatorCertificates",
    path = "/api/v1/municipalities/{code}/operators/{operator_id}/certificates", tag = "pki",
    params(("code" = String, Path, description = "Municipality code"),
        ("operator_id" = String, Path, description = "オペレータID")),
    security(("bearer" = [])),
    responses((status = 200, body = CertificateList, description = "His certificates, newest first"),
        (status = 403, body = ProblemDetails), (status = 404, body = ProblemDetails)))]
pub async fn list_operator(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((code, operator_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (code, id) = operator_in_path(&state, &auth, &code, &operator_id).await?;
    let holder = Holder::Operator { municipality: Some(code), operator_id: id };
    let rows = state.pki.certificates_of(&holder).await.map_err(failed)?;
    Ok(Json(CertificateList { items: rows.into_iter().map(CertificateView::from).collect() }).into_response())
}

#[utoipa::path(get, operation_id = "showOperatorCertificate",
    path = "/api/v1/municipalities/{code}/operators/{operator_id}/certificates/{serial}", tag = "pki",
    params(("code" = String, Path, description = "Municipality code"),
        ("operator_id" = String, Path, description = "オペレータID"),
        ("serial" = String, Path, description = "Serial number, hex")),
    security(("bearer" = [])),
    responses((status = 200, body = CertificateView,
            description = "JSON; with `Accept: application/pem-certificate-chain` the certificate and its chain, PEM"),
        (status = 403, body = ProblemDetails), (status = 404, body = ProblemDetails)))]
pub async fn show_operator(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((code, operator_id, serial)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (code, id) = operator_in_path(&state, &auth, &code, &operator_id).await?;
    let serial = serial_in_path(&serial)?;
    let holder = Holder::Operator { municipality: Some(code), operator_id: id };
    let row = state.pki.certificate_of(&holder, &serial).await.map_err(failed)?.ok_or_else(ApiError::not_found)?;
    answer(&state, &headers, StatusCode::OK, row)
}

#[utoipa::path(post, operation_id = "revokeOperatorCertificate",
    path = "/api/v1/municipalities/{code}/operators/{operator_id}/certificates/{serial}/revoke", tag = "pki",
    request_body = RevokeBody,
    params(("code" = String, Path, description = "Municipality code"),
        ("operator_id" = String, Path, description = "オペレータID"),
        ("serial" = String, Path, description = "Serial number, hex")),
    security(("bearer" = [])),
    responses((status = 200, body = CertificateView, description = "Revoked: the CRL lists it from now on"),
        (status = 403, body = ProblemDetails), (status = 404, body = ProblemDetails),
        (status = 409, body = ProblemDetails, description = "`/problems/certificate-revoked`: revoked already")))]
pub async fn revoke_operator(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((code, operator_id, serial)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (code, id) = operator_in_path(&state, &auth, &code, &operator_id).await?;
    let serial = serial_in_path(&serial)?;
    let why = reason_of(revoke_body(&body)?)?;
    let ctx = RequestMeta::from_headers(&headers).context(&auth, "certificates.revoke", serial.as_str());
    let row = state.pki.revoke_operator(&ctx, &code, &id, &serial, why).await.map_err(failed)?;
    Ok(Json(CertificateView::from(row)).into_response())
}

/// An SSL communication certificate to issue (or reissue): the endpoint's CSR and the names it answers to.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"csr": CSR_EXAMPLE, "dns_names": ["cardap.example.lg.jp"], "ips": ["192.0.2.10"]}))]
pub struct TlsRequest {
    /// The endpoint's CSR (PEM); only its public key is used.
    pub csr: String,
    /// DNS names (SAN), at most 20; the first is also the CN.
    #[serde(default)]
    pub dns_names: Vec<String>,
    /// IP addresses (SAN), at most 20. At least one DNS name or IP address in all.
    #[serde(default)]
    pub ips: Vec<String>,
}

fn endpoint_in_path(endpoint: &str) -> Result<EndpointName, ApiError> {
    EndpointName::parse(endpoint).ok_or_else(ApiError::not_found)
}

/// A DNS name of lower-case or upper-case letters, digits and hyphens in dot-separated labels of 1–63.
fn dns_name_ok(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn tls_names(body: &TlsRequest) -> Result<TlsNames, ApiError> {
    let mut errors = vec![];
    for (i, name) in body.dns_names.iter().enumerate() {
        if !dns_name_ok(name) {
            errors.push(FieldError::new(
                format!("/dns_names/{i}"),
                Text::new("DNS 名として正しくありません", "not a DNS name (letters, digits, hyphens, dots)"),
            ));
        }
    }
    let mut ips = vec![];
    for (i, ip) in body.ips.iter().enumerate() {
        match ip.parse::<std::net::IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) => errors.push(FieldError::new(
                format!("/ips/{i}"),
                Text::new("IP アドレスとして正しくありません", "not an IPv4 or IPv6 address"),
            )),
        }
    }
    if body.dns_names.is_empty() && body.ips.is_empty() {
        errors.push(FieldError::new(
            "/dns_names",
            Text::new("DNS 名か IP アドレスを一つ以上指定してください", "at least one DNS name or IP address"),
        ));
    }
    if body.dns_names.len() > 20 || body.ips.len() > 20 {
        errors.push(FieldError::new("/dns_names", Text::new("20 個までです", "at most 20 of each")));
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    Ok(TlsNames { dns_names: body.dns_names.clone(), ips })
}

#[utoipa::path(post, operation_id = "issueTlsCertificate", path = "/api/v1/tls-certificates/{endpoint}", tag = "pki",
    request_body = TlsRequest,
    params(("endpoint" = String, Path, description = "The endpoint's name"),
        ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key issues once")),
    security(("bearer" = [])),
    responses((status = 201, body = CertificateView, description = "Issued (SSL通信用証明書: serverAuth)"),
        (status = 403, body = ProblemDetails), (status = 404, body = ProblemDetails),
        (status = 422, body = ProblemDetails, description = "`/problems/invalid-csr`, or names that are not DNS names or IP addresses")))]
pub async fn issue_tls(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(endpoint): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<TlsRequest>,
) -> Result<Response, ApiError> {
    let endpoint = endpoint_in_path(&endpoint)?;
    authorize(&auth.actor, &Permission::ManageTlsCertificates)?;
    let names = tls_names(&body)?;
    let ctx = RequestMeta::from_headers(&headers).context(&auth, "certificates.issue-tls", endpoint.as_str());
    let row = state.pki.issue_tls(&ctx, &endpoint, &names, body.csr.as_bytes()).await.map_err(failed)?;
    answer(&state, &HeaderMap::new(), StatusCode::CREATED, row)
}

#[utoipa::path(get, operation_id = "listTlsCertificates", path = "/api/v1/tls-certificates/{endpoint}", tag = "pki",
    params(("endpoint" = String, Path, description = "The endpoint's name")),
    security(("bearer" = [])),
    responses((status = 200, body = CertificateList, description = "The endpoint's certificates, newest first"),
        (status = 403, body = ProblemDetails), (status = 404, body = ProblemDetails)))]
pub async fn list_tls(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(endpoint): Path<String>,
) -> Result<Response, ApiError> {
    let endpoint = endpoint_in_path(&endpoint)?;
    authorize(&auth.actor, &Permission::ManageTlsCertificates)?;
    let holder = Holder::Tls { endpoint: endpoint.as_str().to_owned() };
    let rows = state.pki.certificates_of(&holder).await.map_err(failed)?;
    Ok(Json(CertificateList { items: rows.into_iter().map(CertificateView::from).collect() }).into_response())
}

#[utoipa::path(get, operation_id = "showTlsCertificate", path = "/api/v1/tls-certificates/{endpoint}/{serial}",
    tag = "pki",
    params(("endpoint" = String, Path, description = "The endpoint's name"),
        ("serial" = String, Path, description = "Serial number, hex")),
    security(("bearer" = [])),
    responses((status = 200, body = CertificateView,
            description = "JSON; with `Accept: application/pem-certificate-chain` the certificate and its chain, PEM"),
        (status = 403, body = ProblemDetails), (status = 404, body = ProblemDetails)))]
pub async fn show_tls(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((endpoint, serial)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let endpoint = endpoint_in_path(&endpoint)?;
    let serial = serial_in_path(&serial)?;
    authorize(&auth.actor, &Permission::ManageTlsCertificates)?;
    let holder = Holder::Tls { endpoint: endpoint.as_str().to_owned() };
    let row = state.pki.certificate_of(&holder, &serial).await.map_err(failed)?.ok_or_else(ApiError::not_found)?;
    answer(&state, &headers, StatusCode::OK, row)
}

#[utoipa::path(delete, operation_id = "deleteTlsCertificate", path = "/api/v1/tls-certificates/{endpoint}/{serial}",
    tag = "pki",
    params(("endpoint" = String, Path, description = "The endpoint's name"),
        ("serial" = String, Path, description = "Serial number, hex")),
    security(("bearer" = [])),
    responses((status = 200, body = CertificateView,
            description = "Deleted: revoked (cessationOfOperation), in the CRL from now on, and still listed as revoked"),
        (status = 403, body = ProblemDetails), (status = 404, body = ProblemDetails),
        (status = 409, body = ProblemDetails, description = "`/problems/certificate-revoked`: deleted already")))]
pub async fn delete_tls(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((endpoint, serial)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let endpoint = endpoint_in_path(&endpoint)?;
    let serial = serial_in_path(&serial)?;
    authorize(&auth.actor, &Permission::ManageTlsCertificates)?;
    let ctx = RequestMeta::from_headers(&headers).context(&auth, "certificates.delete-tls", serial.as_str());
    let row = state.pki.delete_tls(&ctx, &endpoint, &serial).await.map_err(failed)?;
    Ok(Json(CertificateView::from(row)).into_response())
}

#[utoipa::path(post, operation_id = "reissueTlsCertificate",
    path = "/api/v1/tls-certificates/{endpoint}/{serial}/reissue", tag = "pki",
    request_body = TlsRequest,
    params(("endpoint" = String, Path, description = "The endpoint's name"),
        ("serial" = String, Path, description = "The serial of the certificate to replace")),
    security(("bearer" = [])),
    responses((status = 201, body = CertificateView,
            description = "The new certificate; the old one is revoked (superseded) in the same transaction"),
        (status = 403, body = ProblemDetails), (status = 404, body = ProblemDetails),
        (status = 409, body = ProblemDetails, description = "`/problems/certificate-revoked`: the old one is revoked"),
        (status = 422, body = ProblemDetails, description = "`/problems/invalid-csr`, or bad names")))]
pub async fn reissue_tls(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((endpoint, serial)): Path<(String, String)>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<TlsRequest>,
) -> Result<Response, ApiError> {
    let endpoint = endpoint_in_path(&endpoint)?;
    let serial = serial_in_path(&serial)?;
    authorize(&auth.actor, &Permission::ManageTlsCertificates)?;
    let names = tls_names(&body)?;
    let ctx = RequestMeta::from_headers(&headers).context(&auth, "certificates.reissue-tls", serial.as_str());
    let row = state.pki.reissue_tls(&ctx, &endpoint, &serial, &names, body.csr.as_bytes()).await.map_err(failed)?;
    answer(&state, &HeaderMap::new(), StatusCode::CREATED, row)
}

/// A PKCS#12 bundle made for an operator, and the one-time password that opens it (shown this once).
#[derive(Debug, Serialize, ToSchema)]
pub struct Pkcs12Issued {
    pub certificate: CertificateView,
    /// Opens the bundle; not kept by the server, and not shown again.
    pub one_time_password: String,
    /// Where the bundle is downloaded, once, within an hour.
    pub download: String,
}

#[utoipa::path(post, operation_id = "issueOperatorPkcs12",
    path = "/api/v1/municipalities/{code}/operators/{operator_id}/certificates/pkcs12", tag = "pki",
    params(("code" = String, Path, description = "Municipality code"),
        ("operator_id" = String, Path, description = "オペレータID")),
    security(("bearer" = [])),
    responses((status = 201, body = Pkcs12Issued,
            description = "An operator certificate with a key made by the server, in a PKCS#12 bundle under a one-time \
                password (answered now, once); the bundle is downloaded once from `download` within an hour"),
        (status = 403, body = ProblemDetails), (status = 404, body = ProblemDetails),
        (status = 409, body = ProblemDetails, description = "`/problems/operator-revoked`")))]
pub async fn issue_operator_pkcs12(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((code, operator_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (code, id) = operator_in_path(&state, &auth, &code, &operator_id).await?;
    let target = format!("{}:{}", code.as_str(), id.as_str());
    let ctx = RequestMeta::from_headers(&headers).context(&auth, "certificates.issue-pkcs12", &target);
    let (row, password) = state.pki.issue_operator_pkcs12(&ctx, &code, &id).await.map_err(failed)?;
    let download = format!(
        "/api/v1/municipalities/{}/operators/{}/certificates/{}/pkcs12",
        code.as_str(),
        id.as_str(),
        row.serial
    );
    let body = Pkcs12Issued {
        certificate: CertificateView::from(row),
        one_time_password: password.expose().to_owned(),
        download,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[utoipa::path(get, operation_id = "takeOperatorPkcs12",
    path = "/api/v1/municipalities/{code}/operators/{operator_id}/certificates/{serial}/pkcs12", tag = "pki",
    params(("code" = String, Path, description = "Municipality code"),
        ("operator_id" = String, Path, description = "オペレータID"),
        ("serial" = String, Path, description = "Serial number, hex")),
    security(("bearer" = [])),
    responses((status = 200, content_type = "application/x-pkcs12", body = Vec<u8>,
            description = "The bundle (key, certificate, chain), once"),
        (status = 403, body = ProblemDetails), (status = 404, body = ProblemDetails),
        (status = 410, body = ProblemDetails,
            description = "`/problems/pkcs12-gone`: downloaded already, expired, or the server restarted")))]
pub async fn take_pkcs12(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((code, operator_id, serial)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (code, id) = operator_in_path(&state, &auth, &code, &operator_id).await?;
    let serial = serial_in_path(&serial)?;
    let ctx = RequestMeta::from_headers(&headers).context(&auth, "certificates.take-pkcs12", serial.as_str());
    let bundle = state.pki.take_pkcs12(&ctx, &code, &id, &serial).map_err(failed)?;
    let disposition = format!("attachment; filename=\"{}-{}.p12\"", id.as_str(), serial.as_str());
    let disposition = HeaderValue::from_str(&disposition).map_err(ApiError::internal)?;
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/x-pkcs12")),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        bundle,
    )
        .into_response())
}
