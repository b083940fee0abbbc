//! Login to business systems through cardap (業務ログイン認証, 手引き II 3(3)): cardap is the OpenID Connect
//! provider of the business systems registered in it. Owns the use cases of that protocol — the discovery
//! document and the JWKS, the checks of an authorization request, the code given to an operator who may use the
//! business system now, the exchange of that code for an ID token — the business system's registration as a
//! login client (its redirect URIs and client secret, events of its stream) and the ID-token signing key (created
//! once, its private half sealed under the master key in the transaction of its event).
//!
//! The rules: only the authorization code flow, with PKCE (S256) required; a redirect URI is used only when it
//! is registered for that business system, compared exactly, and an error about the client or the redirect URI
//! is never sent to it; a code is 256 random bits, stored as its hash, usable once for a minute by the system it
//! was issued to with the verifier of its challenge; an operator gets a code only for a business system he may
//! use now (his permission ∩ his municipality's shared use ∩ not retired — the operator top page's list), and
//! the exchange checks that again, so a revocation between the two ends it. The ID token (ES256) names the
//! municipality, the operator ID, his 業務内ID and role *for that business system only*, and how he proved who he
//! is; it lives `id_token_lifetime` (5 minutes by default): a business system ends its own session with it and
//! asks again (`prompt=none`), so a revoked operator is out of every business system within that time.
//!
//! The JWS is made here with ring (ES256 is a signature over `header.payload`, 30 lines) rather than with a JWT
//! crate: the ones maintained today bring a second crypto provider (aws-lc or RustCrypto). The tests verify the
//! tokens with an independent relying-party library (openidconnect).
//!
//! Must not: log a code, a secret or a token; issue a code or a token when any check fails.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use cardap_domain::business_system::{BusinessSystem, BusinessSystemCommand, BusinessSystemError};
use cardap_domain::login_client::{
    LOGIN_KEYS_STREAM_KEY, LoginClient, LoginKeys, LoginKeysCommand, LoginKeysError, SigningKey,
};
use cardap_domain::operator::AuthMethod;
use cardap_domain::{Aggregate, BusinessId, Timestamp};
use cardap_projections::ReadModels;
use cardap_projections::operators as directory;
use cardap_store::{
    CodeRow, CommandId, Companion, CredentialStore, EventStore, LoginGrants, MasterKey, StreamId, Taken,
};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::access::{Access, LoginError, SessionOf};
use crate::authz::Permission;
use crate::business_systems::{BusinessSystems, stream as business_stream};
use crate::engine::{Tx, transact};
use crate::handler::{CommandError, Executed};
use crate::passwords::Secret;
use crate::pki::Pki;
use crate::{Clock, CommandContext};

const KEYS_NAMESPACE: Uuid = Uuid::from_u128(0x6361_7264_6170_4f49_4443_6b65_7973_0001);
/// The AAD of the sealed signing key.
const SIGNING_LABEL: &str = "cardap-oidc:signing";
/// How long an authorization code may wait for its exchange.
pub const CODE_LIFETIME: Duration = Duration::from_secs(60);

/// The settings of the provider.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    /// The issuer (`iss`): cardap's public base URL, exactly as business systems reach it.
    pub issuer: String,
    /// How long an ID token is valid.
    pub id_token_lifetime: Duration,
}

/// The signing key as this process uses it.
struct Signer {
    kid: String,
    pair: EcdsaKeyPair,
    x: String,
    y: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("kid", &self.kid).finish_non_exhaustive()
    }
}

/// The OpenID Connect provider over one event store.
#[derive(Debug, Clone)]
pub struct LoginProvider {
    store: Arc<dyn EventStore>,
    clock: Arc<dyn Clock>,
    master: MasterKey,
    credentials: Arc<CredentialStore>,
    grants: LoginGrants,
    read: ReadModels,
    access: Access,
    systems: BusinessSystems,
    /// Which business system a client certificate belongs to (`tls_client_auth`).
    pki: Pki,
    settings: OidcSettings,
    signer: Arc<RwLock<Option<Arc<Signer>>>>,
}

/// An authorization request as received (every field as the query or form had it).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, Serialize)]
pub struct AuthRequest {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub prompt: Option<String>,
}

/// A request whose client and redirect URI are known good: errors from here on go back to the business system.
#[derive(Debug, Clone)]
pub struct CheckedRequest {
    pub business_id: BusinessId,
    pub business_name: String,
    pub redirect_uri: String,
    pub state: Option<String>,
    nonce: Option<String>,
    code_challenge: String,
    /// `prompt=none`: no login form; `login_required` instead.
    pub no_prompt: bool,
}

/// Why an authorization request got no code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorizeError {
    /// The client or its redirect URI cannot be trusted: shown to the operator, never redirected.
    #[error("{0}")]
    Unsafe(String),
    /// An OAuth error for the business system, sent to its redirect URI (RFC 6749 §4.1.2.1).
    #[error("{error}: {description}")]
    Redirect { redirect: String, error: &'static str, description: String },
}

/// Why a token request was refused (RFC 6749 §5.2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The client did not authenticate (401 with `WWW-Authenticate: Basic`).
    #[error("invalid_client: {0}")]
    InvalidClient(String),
    /// A bad, used, expired or foreign code, wrong redirect URI or PKCE verifier, or an operator who may no
    /// longer use the system.
    #[error("invalid_grant: {0}")]
    InvalidGrant(String),
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    #[error("unsupported_grant_type: only authorization_code")]
    UnsupportedGrantType,
    #[error("{0}")]
    Internal(String),
}

impl TokenError {
    /// The `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::InvalidClient(_) => "invalid_client",
            TokenError::InvalidGrant(_) => "invalid_grant",
            TokenError::InvalidRequest(_) => "invalid_request",
            TokenError::UnsupportedGrantType => "unsupported_grant_type",
            TokenError::Internal(_) => "server_error",
        }
    }
}

/// A token request's form (RFC 6749 §4.1.3) and the client's credentials (Basic or in the form).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct TokenRequest {
    pub grant_type: Option<String>,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

/// The token response (RFC 6749 §5.1 with the OpenID Connect `id_token`).
#[derive(Debug, Clone, Serialize)]
pub struct TokenResponse {
    /// Required by OAuth 2.0; it opens nothing at cardap (business systems get everything from the ID token).
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub id_token: String,
}

/// What an issued client secret answers once.
#[derive(Debug)]
pub struct ClientSecret {
    pub client_id: String,
    pub secret: Secret,
    pub version: u64,
}

/// The claims of an ID token.
#[derive(Debug, Serialize)]
struct IdTokenClaims<'a> {
    iss: &'a str,
    sub: String,
    aud: &'a str,
    exp: i64,
    iat: i64,
    auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<String>,
    /// RFC 8176 values: `pwd` (password), `swk` (the key of an operator certificate), `hwk` + `user` (a
    /// WebAuthn authenticator with user verification).
    amr: Vec<&'static str>,
    /// cardap's name of the method: `password`, `certificate`, `biometric`.
    auth_method: &'static str,
    /// 氏名・組織名 (only an operator who may act gets a token, and his management information is not erased).
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    /// The municipality's code; `null` for the system administrator.
    municipality: Option<String>,
    operator_id: String,
    /// His 業務内ID in this business system, if its administrator assigned one.
    #[serde(skip_serializing_if = "Option::is_none")]
    internal_id: Option<String>,
    /// His role in this business system, as assigned with the 業務内ID.
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<String>,
}

fn internal<E: std::error::Error + 'static>(e: impl std::fmt::Display) -> CommandError<E> {
    CommandError::Internal(e.to_string())
}

fn keys_stream() -> StreamId {
    crate::ids::stream_of::<LoginKeys>(LOGIN_KEYS_STREAM_KEY)
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn random_token() -> Result<String, String> {
    let mut raw = [0_u8; 32];
    getrandom::fill(&mut raw).map_err(|e| e.to_string())?;
    Ok(URL_SAFE_NO_PAD.encode(raw))
}

/// Whether `s` is a PKCE verifier (RFC 7636 §4.1): 43..=128 of `A-Z a-z 0-9 - . _ ~`; a challenge made from one
/// (S256) is 43 base64url characters.
fn is_pkce_text(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// The RFC 7638 thumbprint of a P-256 public key: its `kid`.
fn thumbprint(x: &str, y: &str) -> String {
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

impl Signer {
    fn from_pkcs8(pkcs8: &[u8]) -> Result<Signer, String> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &SystemRandom::new())
            .map_err(|e| format!("the ID-token signing key cannot be read: {e}"))?;
        // An uncompressed point: 0x04 || x || y.
        let point = pair.public_key().as_ref();
        let (x, y) = point.get(1..33).zip(point.get(33..65)).ok_or("the signing key is not a P-256 point")?;
        let (x, y) = (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y));
        Ok(Signer { kid: thumbprint(&x, &y), pair, x, y })
    }

    /// A compact JWS (ES256) of `claims`.
    fn sign(&self, claims: &impl Serialize) -> Result<String, String> {
        let header = serde_json::json!({ "alg": "ES256", "typ": "JWT", "kid": self.kid });
        let header = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).map_err(|e| e.to_string())?);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).map_err(|e| e.to_string())?);
        let input = format!("{header}.{payload}");
        let signature = self.pair.sign(&SystemRandom::new(), input.as_bytes()).map_err(|e| e.to_string())?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref())))
    }
}

impl LoginProvider {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn EventStore>,
        read: ReadModels,
        clock: Arc<dyn Clock>,
        master: MasterKey,
        access: Access,
        systems: BusinessSystems,
        pki: Pki,
        settings: OidcSettings,
    ) -> Self {
        let credentials = Arc::new(CredentialStore::new(read.pool().clone()));
        let grants = LoginGrants::new(read.pool().clone());
        LoginProvider {
            store,
            clock,
            master,
            credentials,
            grants,
            read,
            access,
            systems,
            pki,
            settings,
            signer: Arc::new(RwLock::new(None)),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    fn signer(&self) -> Result<Arc<Signer>, String> {
        self.signer
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| "the ID-token signing key is not loaded".to_owned())
    }

    /// Loads the ID-token signing key (unsealing it), or creates it on first start. Safe when several nodes
    /// start at once: the creation's command id is derived from the stream, and the loser loads the winner's.
    pub async fn start(&self) -> Result<(), CommandError<LoginKeysError>> {
        if self.load_key().await? {
            return Ok(());
        }
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).map_err(internal)?;
        let signer = Signer::from_pkcs8(pkcs8.as_ref()).map_err(internal)?;
        let sealed =
            STANDARD.encode(self.master.seal_secret(SIGNING_LABEL, pkcs8.as_ref().to_vec()).map_err(internal)?);
        let key = SigningKey {
            kid: signer.kid.clone(),
            x: signer.x.clone(),
            y: signer.y.clone(),
            at: self.clock.timestamp(),
        };
        let stream = keys_stream();
        let ctx =
            CommandContext::system(CommandId::from_uuid(Uuid::new_v5(&KEYS_NAMESPACE, stream.as_str().as_bytes())));
        let (stream_ref, key_ref, sealed_ref) = (&stream, &key, &sealed);
        let now = self.clock.now();
        let done = transact(&self.store, &ctx, &[], None, |mut tx: Tx| async move {
            let loaded = tx.load::<LoginKeys, LoginKeysError>(stream_ref).await?;
            if loaded.state.current().is_some() {
                return Ok((false, tx));
            }
            let events = LoginKeys::decide(&loaded.state, LoginKeysCommand::Create(key_ref.clone()))
                .map_err(CommandError::Domain)?;
            tx.companion(Companion::StoreCaKey {
                name: format!("oidc:{}", key_ref.kid),
                sealed: sealed_ref.clone(),
                at: now,
            });
            tx.append::<LoginKeys>(stream_ref, loaded.version, &events);
            Ok((true, tx))
        })
        .await?;
        if done.value == Some(true) {
            tracing::info!(kid = %signer.kid, "created the ID-token signing key (ES256); sealed");
            *self.signer.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(signer));
            return Ok(());
        }
        if self.load_key().await? { Ok(()) } else { Err(internal("the signing key was created but cannot be loaded")) }
    }

    async fn load_key(&self) -> Result<bool, CommandError<LoginKeysError>> {
        let loaded = Tx::new(self.store.clone()).load::<LoginKeys, LoginKeysError>(&keys_stream()).await?;
        let Some(current) = loaded.state.current() else { return Ok(false) };
        let name = format!("oidc:{}", current.kid);
        let sealed = self
            .credentials
            .sealed_ca_key(&name)
            .await?
            .ok_or_else(|| internal(format!("the signing key {} is not in ca_keys", current.kid)))?;
        let sealed = STANDARD.decode(sealed).map_err(|_| internal("the sealed signing key is not base64"))?;
        let pkcs8 = self.master.open_secret(SIGNING_LABEL, &sealed).ok_or_else(|| {
            internal("the ID-token signing key cannot be unsealed: wrong master key, or its ca_keys row was altered")
        })?;
        let signer = Signer::from_pkcs8(&pkcs8).map_err(internal)?;
        *self.signer.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(signer));
        Ok(true)
    }

    /// The discovery document (OpenID Connect Discovery 1.0 §3).
    pub fn discovery(&self) -> serde_json::Value {
        let iss = self.settings.issuer.trim_end_matches('/');
        serde_json::json!({
            "issuer": iss,
            "authorization_endpoint": format!("{iss}/oidc/authorize"),
            "token_endpoint": format!("{iss}/oidc/token"),
            "jwks_uri": format!("{iss}/oidc/jwks"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "tls_client_auth"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["openid"],
            "claims_supported": [
                "iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "amr", "auth_method", "name",
                "municipality", "operator_id", "internal_id", "role"
            ],
            "prompt_values_supported": ["none", "login"],
            "authorization_response_iss_parameter_supported": true,
        })
    }

    /// The public signing keys (JWKS).
    pub fn jwks(&self) -> Result<serde_json::Value, String> {
        let signer = self.signer()?;
        Ok(serde_json::json!({ "keys": [{
            "kty": "EC", "crv": "P-256", "x": signer.x, "y": signer.y, "use": "sig", "alg": "ES256",
            "kid": signer.kid,
        }]}))
    }

    /// The business system's login registration, if it is registered, in service, and a login client.
    async fn client(&self, client_id: &str) -> Result<Option<(BusinessId, String, LoginClient)>, String> {
        let Ok(id) = BusinessId::parse(client_id) else { return Ok(None) };
        let loaded = self.systems.current(&id).await.map_err(|e| e.to_string())?;
        let state = loaded.state;
        let name = state.profile().map(|p| p.name.as_str().to_owned()).unwrap_or_default();
        match state.login() {
            Some(client) if !state.is_retired() => Ok(Some((id, name, client.clone()))),
            _ => Ok(None),
        }
    }

    /// Checks an authorization request: first the client and the redirect URI (a failure there is shown, never
    /// redirected), then the rest (a failure goes back to the business system).
    pub async fn check(&self, request: &AuthRequest) -> Result<CheckedRequest, AuthorizeError> {
        let client_id = request.client_id.as_deref().unwrap_or_default();
        let client = self.client(client_id).await.map_err(AuthorizeError::Unsafe)?;
        let Some((business_id, business_name, client)) = client else {
            return Err(AuthorizeError::Unsafe(format!(
                "client_id {client_id:?} is not a business system registered for login through cardap"
            )));
        };
        let redirect = match request.redirect_uri.as_deref() {
            Some(uri) if client.allows(uri) => uri.to_owned(),
            Some(uri) => {
                return Err(AuthorizeError::Unsafe(format!(
                    "redirect_uri {uri:?} is not registered for business system {business_id}"
                )));
            }
            None => return Err(AuthorizeError::Unsafe("redirect_uri is required".to_owned())),
        };
        let back = |error: &'static str, description: &str| AuthorizeError::Redirect {
            redirect: redirect.clone(),
            error,
            description: description.to_owned(),
        };
        if request.response_type.as_deref() != Some("code") {
            return Err(back("unsupported_response_type", "only response_type=code (the authorization code flow)"));
        }
        if !request.scope.as_deref().unwrap_or_default().split(' ').any(|s| s == "openid") {
            return Err(back("invalid_scope", "scope must include openid"));
        }
        if request.code_challenge_method.as_deref() != Some("S256") {
            return Err(back("invalid_request", "PKCE is required: code_challenge_method=S256 and a code_challenge"));
        }
        let challenge = request.code_challenge.clone().unwrap_or_default();
        if challenge.len() != 43 || !is_pkce_text(&challenge, 43, 43) {
            return Err(back(
                "invalid_request",
                "code_challenge must be the 43-character base64url S256 of a verifier",
            ));
        }
        if request.nonce.as_ref().is_some_and(|n| n.len() > 255)
            || request.state.as_ref().is_some_and(|s| s.len() > 1024)
        {
            return Err(back("invalid_request", "nonce is at most 255 and state at most 1024 characters"));
        }
        Ok(CheckedRequest {
            business_id,
            business_name,
            redirect_uri: redirect,
            state: request.state.clone(),
            nonce: request.nonce.clone(),
            code_challenge: challenge,
            no_prompt: request.prompt.as_deref().is_some_and(|p| p.split(' ').any(|v| v == "none")),
        })
    }

    /// The redirect of a failed request that may go back: its URL with `error`, `error_description`, `state`
    /// and `iss` (RFC 9207).
    pub fn error_redirect(&self, checked_state: Option<&str>, error: &AuthorizeError) -> Option<String> {
        let AuthorizeError::Redirect { redirect, error, description } = error else { return None };
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("error", error).append_pair("error_description", description);
        if let Some(state) = checked_state {
            query.append_pair("state", state);
        }
        query.append_pair("iss", self.settings.issuer.trim_end_matches('/'));
        Some(join_query(redirect, &query.finish()))
    }

    /// The code for an operator already authenticated (a session token or an operator certificate): the
    /// redirect URL with `code`, `state` and `iss`, or `access_denied` when he may not use the system now.
    pub async fn authorize(&self, checked: &CheckedRequest, who: &SessionOf) -> Result<String, AuthorizeError> {
        let denied = |why: &str| AuthorizeError::Redirect {
            redirect: checked.redirect_uri.clone(),
            error: "access_denied",
            description: why.to_owned(),
        };
        if who.actor.password_change_required {
            return Err(denied("the operator must change his password at cardap first"));
        }
        let usable = self.systems.usable_now(&who.actor).await.map_err(|e| AuthorizeError::Unsafe(e.to_string()))?;
        if !usable.iter().any(|row| row.business_id == checked.business_id.as_str()) {
            tracing::info!(operator = %who.actor.operator, business = %checked.business_id, "no login code: not usable now");
            return Err(denied("the operator may not use this business system now"));
        }
        let code = random_token().map_err(AuthorizeError::Unsafe)?;
        let now = self.clock.timestamp().unix();
        let row = CodeRow {
            code_hash: sha256_hex(&code),
            business_id: checked.business_id.as_str().to_owned(),
            operator: who.actor.operator,
            redirect_uri: checked.redirect_uri.clone(),
            code_challenge: checked.code_challenge.clone(),
            nonce: checked.nonce.clone(),
            method: who.method,
            auth_time: now,
            expires_at: now + CODE_LIFETIME.as_secs() as i64,
        };
        self.grants.store_code(&row).await.map_err(|e| AuthorizeError::Unsafe(e.to_string()))?;
        tracing::info!(operator = %who.actor.operator, business = %checked.business_id, "login code issued");
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("code", &code);
        if let Some(state) = &checked.state {
            query.append_pair("state", state);
        }
        query.append_pair("iss", self.settings.issuer.trim_end_matches('/'));
        Ok(join_query(&checked.redirect_uri, &query.finish()))
    }

    /// The login form's submission: municipality + operator ID + password with every rule of a password login
    /// (throttle, lock, record), then [`LoginProvider::authorize`]. No cardap session is started.
    pub async fn authorize_with_password(
        &self,
        checked: &CheckedRequest,
        municipality: Option<&str>,
        operator_id: &str,
        password: Secret,
        client: Option<std::net::IpAddr>,
    ) -> Result<Result<String, AuthorizeError>, LoginError> {
        let operator = self.access.check_password(municipality, operator_id, password, client).await?;
        let password_change_required = self
            .credentials
            .password_change_required(operator.key)
            .await
            .map_err(crate::access::AccessFailure::from)?;
        let who = crate::access::session_of(operator, password_change_required, AuthMethod::Password);
        Ok(self.authorize(checked, &who).await)
    }

    /// Exchanges a code for an ID token (RFC 6749 §4.1.3, OpenID Connect Core §3.1.3). The business system
    /// authenticates with its client secret (HTTP Basic, or in the form), or with its business server
    /// certificate as the TLS client certificate (`tls_client_auth`, RFC 8705 §2.1: `client_id` in the form,
    /// `certificate` the verified DER of the connection's client certificate).
    pub async fn exchange(
        &self,
        request: TokenRequest,
        basic: Option<(String, String)>,
        certificate: Option<&[u8]>,
    ) -> Result<TokenResponse, TokenError> {
        let client_id = self.client_authenticated(&request, basic, certificate).await?;
        if request.grant_type.as_deref() != Some("authorization_code") {
            return Err(TokenError::UnsupportedGrantType);
        }
        let (Some(code), Some(verifier)) = (request.code.as_deref(), request.code_verifier.as_deref()) else {
            return Err(TokenError::InvalidRequest("code and code_verifier are required".to_owned()));
        };
        let now = self.clock.timestamp().unix();
        let row = match self
            .grants
            .take_code(&sha256_hex(code), now)
            .await
            .map_err(|e| TokenError::Internal(e.to_string()))?
        {
            Taken::Now(row) => row,
            Taken::Before(row) => {
                tracing::warn!(business = %row.business_id, operator = %row.operator, "a login code was presented twice");
                return Err(TokenError::InvalidGrant("the code was used already".to_owned()));
            }
            Taken::Nothing => return Err(TokenError::InvalidGrant("unknown or expired code".to_owned())),
        };
        if row.business_id != client_id {
            return Err(TokenError::InvalidGrant("the code was issued to another client".to_owned()));
        }
        if request.redirect_uri.as_deref() != Some(row.redirect_uri.as_str()) {
            return Err(TokenError::InvalidGrant("redirect_uri differs from the authorization request's".to_owned()));
        }
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        if !is_pkce_text(verifier, 43, 128) || challenge != row.code_challenge {
            return Err(TokenError::InvalidGrant("code_verifier does not match the code_challenge".to_owned()));
        }
        self.id_token_for(&row, now).await
    }

    /// The business system that authenticated: by its secret (Basic or form, never both), else by its
    /// certificate.
    async fn client_authenticated(
        &self,
        request: &TokenRequest,
        basic: Option<(String, String)>,
        certificate: Option<&[u8]>,
    ) -> Result<String, TokenError> {
        let failed = |e: &dyn std::fmt::Display| TokenError::Internal(e.to_string());
        let (client_id, secret) = match (basic, &request.client_secret) {
            (Some(_), Some(_)) => {
                return Err(TokenError::InvalidRequest("the client authenticated twice (Basic and form)".to_owned()));
            }
            (Some(pair), None) => pair,
            (None, Some(secret)) => (request.client_id.clone().unwrap_or_default(), secret.clone()),
            (None, None) => {
                let presenting = match certificate {
                    Some(der) => self.pki.business_system_presenting(der).await.map_err(|e| failed(&e))?,
                    None => None,
                };
                return match (presenting, request.client_id.as_deref()) {
                    (Some(id), Some(client_id)) if id.as_str() == client_id => Ok(client_id.to_owned()),
                    (Some(id), _) => Err(TokenError::InvalidClient(format!(
                        "the client certificate is business system {id}'s, not client_id's"
                    ))),
                    (None, _) => Err(TokenError::InvalidClient(
                        "client authentication required: client_secret_basic, client_secret_post, or \
                         tls_client_auth with the business system's server certificate"
                            .to_owned(),
                    )),
                };
            }
        };
        let stored = match BusinessId::parse(&client_id) {
            Ok(id) => self.grants.client_secret_hash(id.as_str()).await.map_err(|e| failed(&e))?,
            Err(_) => None,
        };
        let given = sha256_hex(&secret);
        let known = stored.as_deref().is_some_and(|h| {
            #[allow(deprecated)]
            ring::constant_time::verify_slices_are_equal(h.as_bytes(), given.as_bytes()).is_ok()
        });
        if !known {
            return Err(TokenError::InvalidClient("unknown client or wrong client secret".to_owned()));
        }
        Ok(client_id)
    }

    /// The ID token of a taken code, if its operator still may use the business system now.
    async fn id_token_for(&self, row: &CodeRow, now: i64) -> Result<TokenResponse, TokenError> {
        let failed = |e: &dyn std::fmt::Display| TokenError::Internal(e.to_string());
        let operator =
            directory::get(self.read.pool(), self.read.sealer(), row.operator).await.map_err(|e| failed(&e))?;
        // Revoked, or his municipality abolished, since the code was issued: no token.
        let Some(operator) = self.access.still_acting(operator).await.map_err(|e| failed(&e))? else {
            return Err(TokenError::InvalidGrant(
                "the operator may no longer act (revoked, or municipality abolished)".to_owned(),
            ));
        };
        let password_change_required =
            self.credentials.password_change_required(operator.key).await.map_err(|e| failed(&e))?;
        let who = crate::access::session_of(operator.clone(), password_change_required, row.method);
        let usable = self.systems.usable_now(&who.actor).await.map_err(|e| failed(&e))?;
        if !usable.iter().any(|s| s.business_id == row.business_id) {
            return Err(TokenError::InvalidGrant("the operator may no longer use this business system".to_owned()));
        }
        let internal = self.access_internal_id(row).await.map_err(|e| failed(&e))?;
        let lifetime = self.settings.id_token_lifetime.as_secs();
        let claims = IdTokenClaims {
            iss: self.settings.issuer.trim_end_matches('/'),
            sub: operator.key.to_string(),
            aud: &row.business_id,
            exp: now + lifetime as i64,
            iat: now,
            auth_time: row.auth_time,
            nonce: row.nonce.clone(),
            amr: match row.method {
                AuthMethod::Password => vec!["pwd"],
                AuthMethod::Certificate => vec!["swk"],
                AuthMethod::Biometric => vec!["hwk", "user"],
            },
            auth_method: row.method.as_str(),
            name: operator.name.clone(),
            municipality: operator.municipality.as_ref().map(|m| m.as_str().to_owned()),
            operator_id: operator.operator_id.clone(),
            internal_id: internal.as_ref().map(|(id, _)| id.clone()),
            role: internal.and_then(|(_, role)| role),
        };
        let id_token = self.signer().map_err(TokenError::Internal)?.sign(&claims).map_err(TokenError::Internal)?;
        tracing::info!(operator = %operator.key, business = %row.business_id, "ID token issued");
        Ok(TokenResponse {
            access_token: random_token().map_err(TokenError::Internal)?,
            token_type: "Bearer",
            expires_in: lifetime,
            id_token,
        })
    }

    /// The operator's 業務内ID and role in the code's business system.
    async fn access_internal_id(&self, row: &CodeRow) -> Result<Option<(String, Option<String>)>, crate::QueryError> {
        let ids = directory::internal_ids(self.read.pool(), row.operator).await?;
        Ok(ids.into_iter().find(|(b, _, _)| *b == row.business_id).map(|(_, id, role)| (id, role)))
    }

    /// Deletes expired codes.
    pub async fn purge(&self) -> Result<u64, cardap_store::StoreError> {
        self.grants.purge(self.clock.timestamp().unix()).await
    }

    /// Registers (or changes) a business system as a login client: its redirect URIs and back-channel logout URI.
    pub async fn configure_client(
        &self,
        ctx: &CommandContext,
        id: &BusinessId,
        if_match: Option<u64>,
        client: LoginClient,
    ) -> Result<Executed<BusinessSystem>, CommandError<BusinessSystemError>> {
        self.systems.execute(ctx, id, if_match, BusinessSystemCommand::ConfigureLogin { client }).await
    }

    /// Issues a new client secret for a login client, replacing the old one: 256 random bits, answered once,
    /// its SHA-256 stored with the event in one transaction.
    pub async fn issue_client_secret(
        &self,
        ctx: &CommandContext,
        id: &BusinessId,
    ) -> Result<ClientSecret, CommandError<BusinessSystemError>> {
        let secret = random_token().map_err(internal)?;
        let hash = sha256_hex(&secret);
        let stream = business_stream(id);
        let at = self.clock.now();
        let (stream_ref, hash_ref, id_ref) = (&stream, &hash, id.as_str());
        let permissions = [Permission::ManageBusinessSystems];
        let done = transact(&self.store, ctx, &permissions, None, |mut tx: Tx| async move {
            let loaded = tx.load::<BusinessSystem, BusinessSystemError>(stream_ref).await?;
            let command = BusinessSystemCommand::IssueLoginSecret { at: Timestamp::from_unix(at.timestamp()) };
            let events = BusinessSystem::decide(&loaded.state, command).map_err(CommandError::Domain)?;
            tx.companion(Companion::SetLoginSecret { business_id: id_ref.to_owned(), hash: hash_ref.clone(), at });
            tx.append::<BusinessSystem>(stream_ref, loaded.version, &events);
            Ok((loaded.version + events.len() as u64, tx))
        })
        .await?;
        let version = done.value.ok_or_else(|| internal("a new secret's command was applied before"))?;
        self.systems.settle_at(done.checkpoint).await;
        Ok(ClientSecret { client_id: id.as_str().to_owned(), secret: Secret::new(secret), version })
    }

    /// The business system's login registration as its stream has it now (`None`: not a login client).
    pub async fn client_of(
        &self,
        id: &BusinessId,
    ) -> Result<Option<(LoginClient, Option<Timestamp>, u64)>, CommandError<BusinessSystemError>> {
        let loaded = self.systems.current(id).await?;
        if !loaded.state.is_registered() {
            return Err(CommandError::Domain(BusinessSystemError::NotRegistered));
        }
        Ok(loaded.state.login().map(|c| (c.clone(), loaded.state.login_secret_issued(), loaded.version)))
    }
}

/// `uri` with `query` appended (`?` or `&`).
fn join_query(uri: &str, query: &str) -> String {
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}{query}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn pkce_text_is_43_to_128_unreserved_characters() {
        assert!(is_pkce_text(&"a".repeat(43), 43, 128));
        assert!(!is_pkce_text(&"a".repeat(42), 43, 128));
        assert!(!is_pkce_text(&"a".repeat(129), 43, 128));
        assert!(!is_pkce_text(&format!("{}+", "a".repeat(43)), 43, 128));
    }

    #[test]
    fn an_es256_token_verifies_with_its_published_key() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let signer = Signer::from_pkcs8(pkcs8.as_ref()).unwrap();
        let token = signer.sign(&serde_json::json!({ "sub": "x" })).unwrap();
        let (input, signature) = token.rsplit_once('.').unwrap();
        let mut point = vec![4_u8];
        point.extend(URL_SAFE_NO_PAD.decode(&signer.x).unwrap());
        point.extend(URL_SAFE_NO_PAD.decode(&signer.y).unwrap());
        let public = ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point);
        public.verify(input.as_bytes(), &URL_SAFE_NO_PAD.decode(signature).unwrap()).unwrap();
        assert_eq!(signer.kid, thumbprint(&signer.x, &signer.y));
    }

    #[test]
    fn a_query_is_joined_to_a_redirect_uri_with_or_without_one() {
        assert_eq!(join_query("https://a.jp/cb", "code=1"), "https://a.jp/cb?code=1");
        assert_eq!(join_query("https://a.jp/cb?x=2", "code=1"), "https://a.jp/cb?x=2&code=1");
    }
}
