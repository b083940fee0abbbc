//! The one error type of the HTTP edge: every failure becomes `application/problem+json` (RFC 9457) with a
//! stable `type` code, a title and detail for the clerk at the counter (Japanese by default, English with
//! `Accept-Language: en`), and field-level `errors` for validation. Internals of a 500 are logged, never sent.
//!
//! Length: the catalogue of problem types is listed three times (the enum, [`ProblemType::ALL`], the strings)
//! and once more in the test that pins the published strings, beside a constructor per kind of answer.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cardap_commands::{AuthzError, CommandError};
use cardap_domain::ParseError;
use cardap_projections::ProjectionError;
use cardap_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

use crate::i18n::{Lang, Text};

/// The catalogue of problem types: every `type` the API answers with, in one place. The strings are a stable
/// contract (clients branch on them): a variant may be added, an existing string never changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProblemType {
    /// 422: fields that fail their rules, named by JSON pointer (or CSV row and column).
    Validation,
    /// 400: a body or header that cannot be read at all (broken JSON, a bad `If-Match`).
    MalformedRequest,
    UnsupportedMediaType,
    MethodNotAllowed,
    PayloadTooLarge,
    /// 503: the database is unreachable or the server is shutting down.
    Unavailable,
    /// 503: the request ran longer than the server's time limit.
    Timeout,
    /// 503: too many logins at once (every password worker busy); retry after `Retry-After`.
    Busy,
    /// 429: too many failed logins from the address or for the operator; retry after `Retry-After`.
    TooManyAttempts,
    Unauthenticated,
    InvalidCredentials,
    OperatorLocked,
    OperatorRevoked,
    Forbidden,
    /// 403: the session's password was generated for its operator and must be changed (`PUT /api/v1/me/password`)
    /// before anything else.
    PasswordChangeRequired,
    NotFound,
    AlreadyExists,
    /// 409: a concurrent change won; retrying may succeed.
    Conflict,
    PreconditionFailed,
    Internal,
    MunicipalityAbolished,
    BusinessSystemRetired,
    BuiltinBusinessSystem,
    SharedUseNotPermitted,
    ResidentMovedOut,
    ResidentErased,
    ResidentHasCard,
    CardStillActive,
    FidTaken,
    CardAbolished,
    CardSuspended,
    CardAlreadySuspended,
    CardNotSuspended,
    LocalAreaMissing,
    LocalAreaExists,
    ApAlreadyInstalled,
    ApNotInstalled,
    /// 429: the municipality, or the server, runs as many imports of this kind as it may; retry after
    /// `Retry-After`.
    TooManyImports,
    /// 409: the job has not succeeded (it is still running, or it failed), so it has no passwords to give.
    JobNotSucceeded,
    /// 410: the job's generated passwords were fetched already and are kept nowhere any more.
    PasswordsGone,
    /// 422: a certificate signing request that cannot be accepted (unreadable, bad signature, unsupported key or
    /// signature algorithm); the detail says what is accepted.
    InvalidCsr,
    /// 422: the request's subject does not fit its holder (a business server CSR whose CN is not the host of one
    /// of the business system's URLs).
    CsrSubjectMismatch,
    /// 409: the certificate has been revoked already.
    CertificateRevoked,
    /// 410: an operator's PKCS#12 bundle was downloaded already (or expired): it is handed out once.
    Pkcs12Gone,
    /// 409: the business system is not registered as a login client (no redirect URIs), so it can have no
    /// client secret.
    LoginNotConfigured,
    /// 409: the business system has no webhook URL, so it can have no webhook signing secret.
    WebhookNotConfigured,
    /// 422: a card's MAC over what it holds does not verify (another card, or data altered on the way).
    CardConfirmationInvalid,
    /// 409: the card's local area was created by another municipality.
    CardOfAnotherMunicipality,
    /// 403: the password was right, but the operator's municipality requires him to log in biometrically (or with
    /// his operator certificate).
    BiometricRequired,
    /// 422: the authenticator's model (AAGUID) is not on the municipality's allow-list.
    AuthenticatorModelNotAllowed,
    /// 422: the authenticator's answer to a registration does not verify (challenge, origin, user verification,
    /// attestation).
    AuthenticatorNotVerified,
    /// 409: the operator has as many authenticators as he may.
    TooManyAuthenticators,
    /// 409: the resident has not moved out, and an erasure without a documented request waits for the move-out.
    ResidentNotMovedOut,
    /// 409: the retention period after the resident's move-out has not passed; the detail says from when.
    RetentionNotPassed,
    /// 400: a feed's `cursor` (or `Last-Event-ID`) names no item of that feed: forged, stale, or another's.
    InvalidCursor,
    /// 422: a library link's 標準ID is on no card's library AP (never handed out, or its AP removed).
    UnknownStandardId,
    /// 422: the certificate issuance AP (`01`) is installed only with the resident's consent to his user info going
    /// to the issuance server (`issuance_consent: true`); nothing was written.
    ConsentRequired,
}

impl ProblemType {
    /// Every problem type, for the OpenAPI document and its tests.
    pub const ALL: [ProblemType; 57] = [
        ProblemType::Validation,
        ProblemType::MalformedRequest,
        ProblemType::UnsupportedMediaType,
        ProblemType::MethodNotAllowed,
        ProblemType::PayloadTooLarge,
        ProblemType::Unavailable,
        ProblemType::Timeout,
        ProblemType::Busy,
        ProblemType::TooManyAttempts,
        ProblemType::Unauthenticated,
        ProblemType::InvalidCredentials,
        ProblemType::OperatorLocked,
        ProblemType::OperatorRevoked,
        ProblemType::Forbidden,
        ProblemType::NotFound,
        ProblemType::AlreadyExists,
        ProblemType::Conflict,
        ProblemType::PreconditionFailed,
        ProblemType::Internal,
        ProblemType::MunicipalityAbolished,
        ProblemType::BusinessSystemRetired,
        ProblemType::BuiltinBusinessSystem,
        ProblemType::SharedUseNotPermitted,
        ProblemType::ResidentMovedOut,
        ProblemType::ResidentErased,
        ProblemType::ResidentHasCard,
        ProblemType::CardStillActive,
        ProblemType::FidTaken,
        ProblemType::CardAbolished,
        ProblemType::CardSuspended,
        ProblemType::CardAlreadySuspended,
        ProblemType::CardNotSuspended,
        ProblemType::LocalAreaMissing,
        ProblemType::LocalAreaExists,
        ProblemType::ApAlreadyInstalled,
        ProblemType::ApNotInstalled,
        ProblemType::PasswordChangeRequired,
        ProblemType::TooManyImports,
        ProblemType::JobNotSucceeded,
        ProblemType::PasswordsGone,
        ProblemType::InvalidCsr,
        ProblemType::CsrSubjectMismatch,
        ProblemType::CertificateRevoked,
        ProblemType::Pkcs12Gone,
        ProblemType::LoginNotConfigured,
        ProblemType::CardConfirmationInvalid,
        ProblemType::CardOfAnotherMunicipality,
        ProblemType::BiometricRequired,
        ProblemType::AuthenticatorModelNotAllowed,
        ProblemType::AuthenticatorNotVerified,
        ProblemType::TooManyAuthenticators,
        ProblemType::ResidentNotMovedOut,
        ProblemType::RetentionNotPassed,
        ProblemType::InvalidCursor,
        ProblemType::UnknownStandardId,
        ProblemType::WebhookNotConfigured,
        ProblemType::ConsentRequired,
    ];

    /// The `type` as sent.
    pub const fn as_str(self) -> &'static str {
        match self {
            ProblemType::Validation => "/problems/validation",
            ProblemType::MalformedRequest => "/problems/malformed-request",
            ProblemType::UnsupportedMediaType => "/problems/unsupported-media-type",
            ProblemType::MethodNotAllowed => "/problems/method-not-allowed",
            ProblemType::PayloadTooLarge => "/problems/payload-too-large",
            ProblemType::Unavailable => "/problems/unavailable",
            ProblemType::Timeout => "/problems/timeout",
            ProblemType::Busy => "/problems/busy",
            ProblemType::TooManyAttempts => "/problems/too-many-attempts",
            ProblemType::Unauthenticated => "/problems/unauthenticated",
            ProblemType::InvalidCredentials => "/problems/invalid-credentials",
            ProblemType::OperatorLocked => "/problems/operator-locked",
            ProblemType::OperatorRevoked => "/problems/operator-revoked",
            ProblemType::Forbidden => "/problems/forbidden",
            ProblemType::PasswordChangeRequired => "/problems/password-change-required",
            ProblemType::NotFound => "/problems/not-found",
            ProblemType::AlreadyExists => "/problems/already-exists",
            ProblemType::Conflict => "/problems/conflict",
            ProblemType::PreconditionFailed => "/problems/precondition-failed",
            ProblemType::Internal => "/problems/internal",
            ProblemType::MunicipalityAbolished => "/problems/municipality-abolished",
            ProblemType::BusinessSystemRetired => "/problems/business-system-retired",
            ProblemType::BuiltinBusinessSystem => "/problems/builtin-business-system",
            ProblemType::SharedUseNotPermitted => "/problems/shared-use-not-permitted",
            ProblemType::ResidentMovedOut => "/problems/resident-moved-out",
            ProblemType::ResidentErased => "/problems/resident-erased",
            ProblemType::ResidentHasCard => "/problems/resident-has-card",
            ProblemType::CardStillActive => "/problems/card-still-active",
            ProblemType::FidTaken => "/problems/fid-taken",
            ProblemType::CardAbolished => "/problems/card-abolished",
            ProblemType::CardSuspended => "/problems/card-suspended",
            ProblemType::CardAlreadySuspended => "/problems/card-already-suspended",
            ProblemType::CardNotSuspended => "/problems/card-not-suspended",
            ProblemType::LocalAreaMissing => "/problems/local-area-missing",
            ProblemType::LocalAreaExists => "/problems/local-area-exists",
            ProblemType::ApAlreadyInstalled => "/problems/ap-already-installed",
            ProblemType::ApNotInstalled => "/problems/ap-not-installed",
            ProblemType::TooManyImports => "/problems/too-many-imports",
            ProblemType::JobNotSucceeded => "/problems/job-not-succeeded",
            ProblemType::PasswordsGone => "/problems/passwords-gone",
            ProblemType::InvalidCsr => "/problems/invalid-csr",
            ProblemType::CsrSubjectMismatch => "/problems/csr-subject-mismatch",
            ProblemType::CertificateRevoked => "/problems/certificate-revoked",
            ProblemType::Pkcs12Gone => "/problems/pkcs12-gone",
            ProblemType::LoginNotConfigured => "/problems/login-not-configured",
            ProblemType::WebhookNotConfigured => "/problems/webhook-not-configured",
            ProblemType::CardConfirmationInvalid => "/problems/card-confirmation-invalid",
            ProblemType::CardOfAnotherMunicipality => "/problems/card-of-another-municipality",
            ProblemType::BiometricRequired => "/problems/biometric-required",
            ProblemType::AuthenticatorModelNotAllowed => "/problems/authenticator-model-not-allowed",
            ProblemType::AuthenticatorNotVerified => "/problems/authenticator-not-verified",
            ProblemType::TooManyAuthenticators => "/problems/too-many-authenticators",
            ProblemType::ResidentNotMovedOut => "/problems/resident-not-moved-out",
            ProblemType::RetentionNotPassed => "/problems/retention-not-passed",
            ProblemType::InvalidCursor => "/problems/invalid-cursor",
            ProblemType::UnknownStandardId => "/problems/unknown-standard-id",
            ProblemType::ConsentRequired => "/problems/consent-required",
        }
    }
}

impl std::fmt::Display for ProblemType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed request (boxed: it travels in every handler's `Result`).
#[derive(Debug)]
pub struct ApiError(Box<Problem>);

#[derive(Debug)]
struct Problem {
    status: StatusCode,
    /// Stable code, e.g. `/problems/validation`; clients branch on it, so it never changes.
    kind: ProblemType,
    title: Text,
    detail: Option<Text>,
    errors: Vec<FieldError>,
    /// What to log for a 5xx (never sent to the client).
    internal: Option<String>,
    headers: Vec<(header::HeaderName, HeaderValue)>,
}

/// One invalid field: a JSON pointer (`/kana_name/family`), or for CSV a row and column.
#[derive(Debug, Clone)]
pub struct FieldError {
    pub field: String,
    pub message: Text,
    /// CSV only: the row as a spreadsheet numbers it (the header is row 1).
    pub row: Option<u64>,
    /// CSV only: the column's header as written in the file.
    pub column: Option<String>,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: Text) -> Self {
        FieldError { field: field.into(), message, row: None, column: None }
    }

    /// The same error, located in a CSV file's `row` and `column` (for a clerk with the file open).
    pub fn in_cell(mut self, row: u64, column: impl Into<String>) -> Self {
        self.row = Some(row);
        self.column = Some(column.into());
        self
    }

    /// The same error, located in a CSV file's `row` as a whole.
    pub fn in_row(mut self, row: u64) -> Self {
        self.row = Some(row);
        self
    }

    /// A value that failed its domain `parse`.
    pub fn parse(field: impl Into<String>, err: &ParseError) -> Self {
        FieldError::new(field, Text::of(&err))
    }

    pub fn required(field: impl Into<String>) -> Self {
        FieldError::new(field, Text::new("必須項目です", "is required"))
    }
}

/// The body as sent.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProblemDetails {
    /// Stable problem code, e.g. `/problems/validation`.
    #[serde(rename = "type")]
    #[schema(example = "/problems/validation")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ProblemField>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProblemField {
    /// JSON pointer of the field, e.g. `/code`; for CSV `/rows/{row}/{field}` (e.g. `/rows/12/phone`).
    #[schema(example = "/code")]
    pub field: String,
    #[schema(example = "検査数字が正しくありません")]
    pub message: String,
    /// CSV only: the row as a spreadsheet numbers it (the header is row 1, the first data row is row 2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row: Option<u64>,
    /// CSV only: the column's header as written in the file (e.g. `連絡先電話`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, kind: ProblemType, title: Text) -> Self {
        ApiError(Box::new(Problem {
            status,
            kind,
            title,
            detail: None,
            errors: vec![],
            internal: None,
            headers: vec![],
        }))
    }

    pub fn with_detail(mut self, detail: Text) -> Self {
        self.0.detail = Some(detail);
        self
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        let mut e = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ProblemType::Validation,
            Text::new("入力内容に誤りがあります", "The request has invalid fields"),
        );
        e.0.errors = errors;
        e
    }

    pub fn malformed(detail: Text, errors: Vec<FieldError>) -> Self {
        let mut e = Self::new(
            StatusCode::BAD_REQUEST,
            ProblemType::MalformedRequest,
            Text::new("リクエストの形式が正しくありません", "The request is malformed"),
        )
        .with_detail(detail);
        e.0.errors = errors;
        e
    }

    pub fn unsupported_media_type(expected: &str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ProblemType::UnsupportedMediaType,
            Text::new("対応していない形式です", "Unsupported media type"),
        )
        .with_detail(Text::new(
            format!("Content-Type は {expected} を指定してください"),
            format!("send Content-Type: {expected}"),
        ))
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ProblemType::MethodNotAllowed,
            Text::new("このURLではこの操作はできません", "This method is not allowed on this path"),
        )
    }

    pub fn payload_too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ProblemType::PayloadTooLarge,
            Text::new("送信データが大きすぎます", "The request body is too large"),
        )
    }

    pub fn shutting_down() -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ProblemType::Unavailable,
            Text::new(
                "サーバを停止しています。しばらくしてからもう一度お試しください",
                "The server is shutting down; try again",
            ),
        );
        e.0.headers.push((header::RETRY_AFTER, HeaderValue::from_static("5")));
        e
    }

    /// Every password worker is busy: the login was not checked; the client may retry in a second.
    pub fn busy() -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ProblemType::Busy,
            Text::new(
                "ログインが混み合っています。少し待ってからもう一度お試しください",
                "Too many logins at once; try again in a moment",
            ),
        );
        e.0.headers.push((header::RETRY_AFTER, HeaderValue::from_static("1")));
        e
    }

    /// Too many failed logins: the next attempt may come after `retry_after` (whole seconds, rounded up).
    pub fn too_many_attempts(retry_after: std::time::Duration) -> Self {
        let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            ProblemType::TooManyAttempts,
            Text::new(
                "ログインの失敗が続いたため、しばらく受け付けません。時間をおいてもう一度お試しください",
                "Too many failed logins; wait before trying again",
            ),
        )
        .with_detail(Text::new(format!("{seconds} 秒後に再度お試しください"), format!("retry in {seconds} s")));
        if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
            e.0.headers.push((header::RETRY_AFTER, value));
        }
        e
    }

    /// The municipality (`municipality`) or the server runs as many imports of this kind as it may: nothing was
    /// read or started; retry after `retry_after`.
    pub fn too_many_imports(municipality: bool, retry_after: std::time::Duration) -> Self {
        let seconds = retry_after.as_secs().max(1);
        let detail = if municipality {
            Text::new(
                "この市町村・任意団体では同じ種類の取り込みが実行中です。終わってからもう一度お試しください",
                "an import of this kind is already running for this municipality; try again when it has finished",
            )
        } else {
            Text::new(
                "サーバで実行中の取り込みが上限に達しています。しばらくしてからもう一度お試しください",
                "the server runs as many imports of this kind as it may; try again shortly",
            )
        };
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            ProblemType::TooManyImports,
            Text::new("取り込みが混み合っています", "Too many imports at once"),
        )
        .with_detail(detail);
        if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
            e.0.headers.push((header::RETRY_AFTER, value));
        }
        e
    }

    /// The job has no passwords to give yet (running) or at all (failed).
    pub fn job_not_succeeded(detail: Text) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            ProblemType::JobNotSucceeded,
            Text::new("ジョブが成功していません", "The job has not succeeded"),
        )
        .with_detail(detail)
    }

    /// The generated passwords were handed out once and are kept nowhere any more.
    pub fn passwords_gone() -> Self {
        Self::new(
            StatusCode::GONE,
            ProblemType::PasswordsGone,
            Text::new("生成したパスワードは取得済みです", "The generated passwords were fetched already"),
        )
        .with_detail(Text::new(
            "パスワードは一度だけ表示します。分からなくなったオペレータは管理者がパスワードを再設定してください",
            "passwords are shown once; an administrator resets the password of an operator who lost it",
        ))
    }

    /// A card's MAC over what it holds that does not verify (422 `/problems/card-confirmation-invalid`).
    pub fn card_confirmation_invalid(detail: Text) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ProblemType::CardConfirmationInvalid,
            Text::new("カードの応答を検証できません", "The card's answer does not verify"),
        )
        .with_detail(detail)
    }

    /// Something handed out once is gone (410 `kind`).
    /// 410 with its own title: the resource is gone for good (an erased resident).
    pub fn gone_as(kind: ProblemType, title: Text, detail: Text) -> Self {
        Self::new(StatusCode::GONE, kind, title).with_detail(detail)
    }

    pub fn gone(kind: ProblemType, detail: Text) -> Self {
        Self::new(StatusCode::GONE, kind, Text::new("取得済みです", "Handed out already")).with_detail(detail)
    }

    /// A certificate request refused (422 `kind`), with what is accepted in `detail`.
    /// 400 `/problems/invalid-cursor`: a feed's cursor that names no item of that feed.
    pub fn invalid_cursor() -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ProblemType::InvalidCursor,
            Text::new("カーソルが正しくありません", "Invalid cursor"),
        )
        .with_detail(Text::new(
            "このフィードの項目を指すカーソルではありません。最後に受け取った項目のIDを指定するか、省略して最初から読んでください",
            "the cursor names no item of this feed: pass the id of the last item received, or none to read from the start",
        ))
    }

    /// 422 `/problems/unknown-standard-id`: a library link's 標準ID is on no card's library AP.
    pub fn unknown_standard_id(detail: Text) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ProblemType::UnknownStandardId,
            Text::new("標準IDが見つかりません", "Unknown 標準ID"),
        )
        .with_detail(detail)
    }

    /// 422 `/problems/consent-required`: AP `01` without the resident's consent; `field` names where to give it.
    pub fn consent_required(field: &str, detail: Text) -> Self {
        let mut e = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ProblemType::ConsentRequired,
            Text::new("本人の同意が必要です", "The resident's consent is required"),
        )
        .with_detail(detail.clone());
        e.0.errors = vec![FieldError::new(field, detail)];
        e
    }

    pub fn unprocessable(kind: ProblemType, detail: Text) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            kind,
            Text::new("証明書発行要求を受け付けられません", "The certificate signing request cannot be accepted"),
        )
        .with_detail(detail)
    }

    /// The operator who started an import logged out, his session expired or he was revoked: the import stopped.
    pub fn session_ended() -> Self {
        Self::unauthenticated().with_detail(Text::new(
            "取り込みを実行していたオペレータのログインが終了した（ログアウト、期限切れ、失効）ため中止しました",
            "the importing operator's session ended (logout, expiry or revocation); the import was stopped",
        ))
    }

    /// The request ran past the server's time limit (its handler is dropped).
    pub fn timed_out(limit: std::time::Duration) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ProblemType::Timeout,
            Text::new("処理が時間内に終わりませんでした", "The request took too long"),
        )
        .with_detail(Text::new(
            format!("{} 秒以内に応答できませんでした", limit.as_secs()),
            format!("no response within {} s", limit.as_secs()),
        ));
        e.0.internal = Some(format!("no response within {limit:?}"));
        e.0.headers.push((header::RETRY_AFTER, HeaderValue::from_static("5")));
        e
    }

    pub fn unauthenticated() -> Self {
        let mut e = Self::new(
            StatusCode::UNAUTHORIZED,
            ProblemType::Unauthenticated,
            Text::new(
                "ログインが必要です。セッションが無効か期限切れです",
                "Authentication required: the session is missing, invalid or expired",
            ),
        );
        e.0.headers.push((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        e
    }

    pub fn invalid_credentials() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ProblemType::InvalidCredentials,
            Text::new("オペレータIDまたはパスワードが正しくありません", "Wrong operator ID or password"),
        )
    }

    pub fn operator_locked(detail: Text) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ProblemType::OperatorLocked,
            Text::new(
                "ログインの失敗が続いたため、このオペレータはロックされています",
                "This operator is locked after repeated failed logins",
            ),
        )
        .with_detail(detail)
    }

    /// The password was right, but this operator must log in biometrically (his municipality's policy).
    pub fn biometric_required() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            ProblemType::BiometricRequired,
            Text::new(
                "このオペレータは生体認証でログインしてください",
                "This operator must log in biometrically",
            ),
        )
        .with_detail(Text::new(
            "市町村・任意団体の設定により、パスワードではログインできません。生体認証（またはオペレータ証明書）でログインしてください",
            "the municipality requires biometric login for this operator: log in with his authenticator (or his \
             operator certificate), not a password",
        ))
    }

    /// A refusal about an authenticator (422 or 409 `kind`), with what to do in `detail`.
    pub fn authenticator(status: StatusCode, kind: ProblemType, detail: Text) -> Self {
        Self::new(
            status,
            kind,
            Text::new("認証器（生体認証装置）を登録できません", "The authenticator cannot be registered"),
        )
        .with_detail(detail)
    }

    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            ProblemType::Forbidden,
            Text::new("この操作を行う権限がありません", "Your roles do not allow this operation"),
        )
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, ProblemType::NotFound, Text::new("対象が見つかりません", "Not found"))
    }

    pub fn already_exists(detail: Text) -> Self {
        Self::new(StatusCode::CONFLICT, ProblemType::AlreadyExists, Text::new("既に登録されています", "Already exists"))
            .with_detail(detail)
    }

    pub fn state_conflict(kind: ProblemType, detail: Text) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            kind,
            Text::new("現在の状態ではこの操作はできません", "Not possible in the current state"),
        )
        .with_detail(detail)
    }

    pub fn contended() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            ProblemType::Conflict,
            Text::new("他の操作と競合しました。もう一度お試しください", "A concurrent change conflicted; try again"),
        )
    }

    pub fn precondition_failed(current: u64) -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            ProblemType::PreconditionFailed,
            Text::new(
                "他の操作で更新されています。最新の内容を確認してください",
                "The resource was changed by someone else; reload it",
            ),
        )
        .with_detail(Text::new(format!("現在のバージョンは {current} です"), format!("current version is {current}")))
    }

    pub fn unavailable(internal: impl std::fmt::Display) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ProblemType::Unavailable,
            Text::new(
                "データベースに接続できません。しばらくしてからもう一度お試しください",
                "The database is unavailable; try again shortly",
            ),
        );
        e.0.internal = Some(internal.to_string());
        e.0.headers.push((header::RETRY_AFTER, HeaderValue::from_static("5")));
        e
    }

    pub fn internal(internal: impl std::fmt::Display) -> Self {
        let mut e = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ProblemType::Internal,
            Text::new("システムエラーが発生しました", "Internal error"),
        );
        e.0.internal = Some(internal.to_string());
        e
    }

    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    /// The `type` as sent.
    pub fn kind(&self) -> &'static str {
        self.0.kind.as_str()
    }

    pub fn problem_type(&self) -> ProblemType {
        self.0.kind
    }

    /// The body in `lang`.
    pub fn problem(&self, lang: Lang) -> ProblemDetails {
        ProblemDetails {
            kind: self.0.kind.as_str().to_owned(),
            title: self.0.title.get(lang).to_owned(),
            status: self.0.status.as_u16(),
            detail: self.0.detail.as_ref().map(|d| d.get(lang).to_owned()),
            errors: self
                .0
                .errors
                .iter()
                .map(|f| ProblemField {
                    field: f.field.clone(),
                    message: f.message.get(lang).to_owned(),
                    row: f.row,
                    column: f.column.clone(),
                })
                .collect(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(internal) = &self.0.internal
            && self.0.status.is_server_error()
        {
            tracing::error!(status = self.0.status.as_u16(), kind = self.0.kind.as_str(), error = %internal, "request failed");
        }
        let body = serde_json::to_vec(&self.problem(Lang::current())).unwrap_or_default();
        let mut response = (self.0.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        for (name, value) in self.0.headers {
            headers.insert(name, value);
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => ApiError::unavailable(e),
            StoreError::Conflict { actual, .. } => ApiError::precondition_failed(actual),
            other => ApiError::internal(other),
        }
    }
}

impl From<ProjectionError> for ApiError {
    fn from(e: ProjectionError) -> Self {
        match e {
            ProjectionError::Unavailable(_) => ApiError::unavailable(e),
            ProjectionError::Store(s) => s.into(),
            other => ApiError::internal(other),
        }
    }
}

impl From<cardap_commands::access::AccessFailure> for ApiError {
    fn from(e: cardap_commands::access::AccessFailure) -> Self {
        use cardap_commands::access::AccessFailure;
        match e {
            AccessFailure::Store(s) => s.into(),
            AccessFailure::View(v) => v.into(),
            other => ApiError::internal(other),
        }
    }
}

impl From<cardap_commands::imports::Busy> for ApiError {
    fn from(busy: cardap_commands::imports::Busy) -> Self {
        use cardap_commands::imports::BusyScope;
        ApiError::too_many_imports(busy.scope == BusyScope::Municipality, busy.retry_after)
    }
}

impl From<AuthzError> for ApiError {
    fn from(e: AuthzError) -> Self {
        match e {
            AuthzError::Forbidden => ApiError::forbidden(),
            AuthzError::PasswordChangeRequired => ApiError::new(
                StatusCode::FORBIDDEN,
                ProblemType::PasswordChangeRequired,
                Text::new(
                    "初期パスワードのままです。先にパスワードを変更してください",
                    "Change your password first: it was generated for you",
                ),
            ),
            AuthzError::NotVisible => ApiError::not_found(),
            // Forbidden too, saying which of his own privileges he may not touch or which he does not hold.
            AuthzError::OwnPrivileges | AuthzError::NotHeld(_) => ApiError::forbidden().with_detail(Text::of(&e)),
        }
    }
}

/// Maps the command path's failures; `domain` maps the aggregate's own refusals.
pub fn command_error<E: std::error::Error + 'static>(
    e: CommandError<E>,
    domain: impl FnOnce(E) -> ApiError,
) -> ApiError {
    match e {
        CommandError::Domain(d) | CommandError::Item { error: d, .. } => domain(d),
        CommandError::Unauthorized(a) => a.into(),
        CommandError::PreconditionFailed { current, .. } => ApiError::precondition_failed(current),
        CommandError::Contended => ApiError::contended(),
        CommandError::Store(s) => s.into(),
        CommandError::Decode(d) => ApiError::internal(d),
        CommandError::Internal(i) => ApiError::internal(i),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Clients branch on these strings: a change here breaks them. Add new ones; never edit or remove one.
    #[test]
    fn the_problem_types_are_the_published_ones() {
        let published = [
            "/problems/validation",
            "/problems/malformed-request",
            "/problems/unsupported-media-type",
            "/problems/method-not-allowed",
            "/problems/payload-too-large",
            "/problems/unavailable",
            "/problems/timeout",
            "/problems/busy",
            "/problems/too-many-attempts",
            "/problems/unauthenticated",
            "/problems/invalid-credentials",
            "/problems/operator-locked",
            "/problems/operator-revoked",
            "/problems/forbidden",
            "/problems/not-found",
            "/problems/already-exists",
            "/problems/conflict",
            "/problems/precondition-failed",
            "/problems/internal",
            "/problems/municipality-abolished",
            "/problems/business-system-retired",
            "/problems/builtin-business-system",
            "/problems/shared-use-not-permitted",
            "/problems/resident-moved-out",
            "/problems/resident-erased",
            "/problems/resident-has-card",
            "/problems/card-still-active",
            "/problems/fid-taken",
            "/problems/card-abolished",
            "/problems/card-suspended",
            "/problems/card-already-suspended",
            "/problems/card-not-suspended",
            "/problems/local-area-missing",
            "/problems/local-area-exists",
            "/problems/ap-already-installed",
            "/problems/ap-not-installed",
            "/problems/password-change-required",
            "/problems/too-many-imports",
            "/problems/job-not-succeeded",
            "/problems/passwords-gone",
            "/problems/invalid-csr",
            "/problems/csr-subject-mismatch",
            "/problems/certificate-revoked",
            "/problems/pkcs12-gone",
            "/problems/login-not-configured",
            "/problems/card-confirmation-invalid",
            "/problems/card-of-another-municipality",
            "/problems/biometric-required",
            "/problems/authenticator-model-not-allowed",
            "/problems/authenticator-not-verified",
            "/problems/too-many-authenticators",
            "/problems/resident-not-moved-out",
            "/problems/retention-not-passed",
            "/problems/invalid-cursor",
            "/problems/unknown-standard-id",
            "/problems/webhook-not-configured",
            "/problems/consent-required",
        ];

        let catalogue: Vec<&str> = ProblemType::ALL.iter().map(|t| t.as_str()).collect();

        assert_eq!(catalogue, published);
    }

    #[test]
    fn a_problem_is_sent_with_its_catalogue_type() {
        let problem = ApiError::state_conflict(ProblemType::CardSuspended, Text::new("停止中", "suspended"));

        let body = problem.problem(Lang::En);

        assert_eq!(body.kind, "/problems/card-suspended");
        assert_eq!(body.status, 409);
        assert_eq!(body.detail.as_deref(), Some("suspended"));
    }
}
