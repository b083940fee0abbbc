//! Biometric login (生体認証, 手引き I 2.1(2)② 生体情報登録, 2.1(4)(b)) with WebAuthn (webauthn-rs): the operations
//! manager registers and deletes an operator's authenticators (fingerprint or vein readers), the municipality sets
//! its biometric policy, and an operator logs in with municipality + operator ID + an assertion of his
//! authenticator, user verification required.
//!
//! Owns the two WebAuthn ceremonies and their rules around the domain's decisions (`cardap_domain::operator`,
//! `cardap_domain::biometric_policy`):
//! - **Registration** happens on the operator's terminal in the manager's session: the manager begins it (creation
//!   options with a challenge), the operator touches the reader, the terminal's browser hands the authenticator's
//!   answer to the finish, which the same manager sends. The answer is verified (challenge, origin, RP ID, user
//!   verification, the attestation statement's signature when there is one), its model (AAGUID) checked against
//!   the municipality's allow-list, and `OperatorAuthenticatorRegistered` appended.
//! - **Login** begins with municipality + operator ID (request options with a challenge) and finishes with the
//!   assertion; the answer to the beginning has the same shape whether he exists or not: an unknown operator, or
//!   one without authenticators, is offered credential IDs derived from a key only the server has (webauthn-rs's
//!   fake credential generator keyed from the master key), the same for the same name every time. A failed
//!   assertion counts for the throttle and the lockout like a wrong password; a locked operator gets the lock's
//!   answer whatever he presents; a revoked one, or one of an abolished municipality, nothing. The session is of
//!   method `biometric`.
//! - **Ceremonies** are kept in a table shared by every node ([`Ceremonies`]), taken (deleted) by the finish that
//!   uses them, and refused after [`BiometricSettings::ceremony_ttl`]: a replayed, unknown or expired challenge is
//!   refused.
//!
//! The signature counter is the domain's rule, not webauthn-rs's: a credential is handed to webauthn-rs with
//! counter 0, so that an assertion whose counter does not move is not refused before it can be recorded
//! (`OperatorAuthenticatorCounterRegressed`). Never logs a credential's key or an assertion.
//!
//! Length: two ceremonies of two steps each, the policy, and the conversions between webauthn-rs and the domain.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use cardap_domain::biometric_policy::{
    self, BiometricPolicy, BiometricPolicyCommand, BiometricPolicyError, BiometricRequirement,
};
use cardap_domain::operator::{
    Aaguid, AuthMethod, AuthenticatorLabel, CosePublicKey, CredentialId, MAX_AUTHENTICATORS, NewAuthenticator,
    Operator, OperatorCommand, OperatorError, OperatorEvent, OperatorId, RegisteredAuthenticator,
};
use cardap_domain::{MunicipalityCode, OperatorKey, Timestamp};
use cardap_projections::{ReadModels, operators};
use cardap_store::{CommandId, EventStore, StoreError, StreamId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use webauthn_rs::fake::{FakePasskeyDistribution, WebauthnFakeCredentialGenerator};
use webauthn_rs::prelude::{COSEKey, Credential, Passkey, PasskeyAuthentication, PasskeyRegistration};
use webauthn_rs::{Webauthn, WebauthnBuilder};
use webauthn_rs_core::internals::AuthenticatorData;
use webauthn_rs_core::proto::{
    AllowCredentials, AttestationFormat, AttestationMetadata, ParsedAttestation, ParsedAttestationData,
    RegisteredExtensions, Registration, UserVerificationPolicy,
};

pub use webauthn_rs::prelude::{PublicKeyCredential, RegisterPublicKeyCredential, Url};

use crate::access::{Access, AccessFailure, LoginError, NewSession, operator_stream};
use crate::authz::{Permission, authorize};
use crate::context::CommandContext;
use crate::handler::{CommandError, CommandHandler, Executed, Loaded};
use crate::ports::Ceremonies;
use crate::throttle::Attempter;
use crate::views::Views;

const REGISTRATION: &str = "registration";
const LOGIN: &str = "login";

/// The relying party, from the settings.
#[derive(Debug, Clone)]
pub struct BiometricSettings {
    /// The RP ID: the domain the terminals' browsers see cardap under (`cardap.example.jp`); credentials are bound
    /// to it, so it must never change once operators have registered authenticators.
    pub rp_id: String,
    /// The origin the terminals load cardap's pages from (`https://cardap.example.jp`); its host is the RP ID or
    /// a subdomain of it.
    pub origin: Url,
    /// The name authenticators may show.
    pub rp_name: String,
    /// How long a begun ceremony may be finished.
    pub ceremony_ttl: Duration,
}

/// Settings that cannot make a relying party.
#[derive(Debug, thiserror::Error)]
pub enum BiometricSetupError {
    #[error("webauthn.rp_id {rp_id:?} must be the host of webauthn.origin {origin} or a domain it belongs to")]
    RpIdNotOfOrigin { rp_id: String, origin: String },
    #[error("the fake credential generator: {0}")]
    Fakes(String),
}

/// Why an authenticator was not registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthenticatorError {
    #[error(transparent)]
    Operator(#[from] OperatorError),
    /// No such registration in progress: never begun, finished already, expired, or begun for another operator or
    /// by another manager.
    #[error("no such registration in progress (finished already, expired, or begun by someone else)")]
    UnknownCeremony,
    /// The authenticator's answer does not verify (challenge, origin, user verification, attestation …).
    #[error("the authenticator's answer does not verify: {0}")]
    NotVerified(String),
}

/// A begun ceremony: its id (to finish it), until when, and the options for the browser's
/// `navigator.credentials.create()` or `.get()` (WebAuthn JSON, binary as base64url).
#[derive(Debug, Clone)]
pub struct CeremonyStarted {
    pub id: Uuid,
    pub expires_at: DateTime<Utc>,
    pub options: serde_json::Value,
}

/// A registration in progress, as kept between its two steps.
#[derive(Serialize, Deserialize)]
struct RegistrationCeremony {
    municipality: MunicipalityCode,
    operator_id: OperatorId,
    /// The manager who began it: only he finishes it.
    begun_by: Option<OperatorKey>,
    label: AuthenticatorLabel,
    state: PasskeyRegistration,
}

/// A login in progress, as kept between its two steps.
#[derive(Serialize, Deserialize)]
struct LoginCeremony {
    /// The login name as typed (`<municipality>/<operator ID>`), for the throttle.
    login: String,
    /// The operator it was begun for, when he exists and may log in; `None` answers every assertion as wrong.
    operator: Option<(Option<MunicipalityCode>, OperatorId)>,
    state: PasskeyAuthentication,
}

/// Biometric registration, policy and login over the event store, the ceremonies and the login use cases.
#[derive(Clone)]
pub struct Biometrics {
    store: Arc<dyn EventStore>,
    read: ReadModels,
    views: Views,
    access: Access,
    ceremonies: Arc<dyn Ceremonies>,
    webauthn: Arc<Webauthn>,
    fakes: Arc<WebauthnFakeCredentialGenerator<FakePasskeyDistribution>>,
    ttl: Duration,
}

impl std::fmt::Debug for Biometrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Biometrics").field("webauthn", &self.webauthn).field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

type Result<T, E> = std::result::Result<T, CommandError<E>>;

impl Biometrics {
    /// `fake_key` keys the credential IDs offered for operators who do not exist: the same on every node (derive
    /// it from the master key), never shown.
    pub fn new(
        store: Arc<dyn EventStore>,
        read: ReadModels,
        views: Views,
        access: Access,
        ceremonies: Arc<dyn Ceremonies>,
        settings: &BiometricSettings,
        fake_key: &[u8; 32],
    ) -> std::result::Result<Self, BiometricSetupError> {
        let mismatch = || BiometricSetupError::RpIdNotOfOrigin {
            rp_id: settings.rp_id.clone(),
            origin: settings.origin.to_string(),
        };
        let webauthn = WebauthnBuilder::new(&settings.rp_id, &settings.origin)
            .map_err(|_| mismatch())?
            .rp_name(&settings.rp_name)
            .timeout(settings.ceremony_ttl)
            .build()
            .map_err(|_| mismatch())?;
        let fakes =
            WebauthnFakeCredentialGenerator::new(fake_key).map_err(|e| BiometricSetupError::Fakes(e.to_string()))?;
        Ok(Biometrics {
            store,
            read,
            views,
            access,
            ceremonies,
            webauthn: Arc::new(webauthn),
            fakes: Arc::new(fakes),
            ttl: settings.ceremony_ttl,
        })
    }

    fn expiry(&self) -> std::result::Result<DateTime<Utc>, StoreError> {
        let ttl =
            chrono::Duration::from_std(self.ttl).map_err(|e| StoreError::Corrupt(format!("ceremony ttl: {e}")))?;
        Ok(self.access.clock().now() + ttl)
    }

    // ---- registration (生体情報登録) ----

    /// Begins registering an authenticator for an operator of `code` (the operations manager's decision): the
    /// creation options for the terminal's browser, user verification required, his registered authenticators
    /// excluded. Records nothing yet.
    pub async fn begin_registration(
        &self,
        ctx: &CommandContext,
        code: &MunicipalityCode,
        operator_id: &OperatorId,
        label: AuthenticatorLabel,
    ) -> Result<CeremonyStarted, AuthenticatorError> {
        if let Some(actor) = &ctx.actor {
            authorize(actor, &Permission::ManageBiometrics(code.clone()))?;
        }
        let op = self.operator(code, operator_id).await.map_err(|e| e.map_domain(AuthenticatorError::Operator))?;
        let refuse = |e: OperatorError| CommandError::Domain(AuthenticatorError::Operator(e));
        let key = op.state.key().ok_or_else(|| refuse(OperatorError::NotRegistered))?;
        if op.state.is_revoked() {
            return Err(refuse(OperatorError::Revoked));
        }
        if op.state.authenticators().count() >= MAX_AUTHENTICATORS {
            return Err(refuse(OperatorError::TooManyAuthenticators { max: MAX_AUTHENTICATORS }));
        }
        let exclude = op.state.authenticators().map(|a| a.credential_id.as_bytes().to_vec()).collect();
        let name = op.state.name().map(|n| n.as_str().to_owned()).unwrap_or_else(|| operator_id.to_string());
        let (options, state) = self
            .webauthn
            .start_passkey_registration(key.as_uuid(), &format!("{code}/{operator_id}"), &name, Some(exclude))
            .map_err(|e| CommandError::Internal(format!("webauthn: {e}")))?;
        let ceremony = RegistrationCeremony {
            municipality: code.clone(),
            operator_id: operator_id.clone(),
            begun_by: ctx.actor.as_ref().map(|a| a.operator),
            label,
            state,
        };
        let options = serde_json::to_value(options).map_err(internal)?;
        let payload = serde_json::to_string(&ceremony).map_err(internal)?;
        let (id, expires_at) = (Uuid::new_v4(), self.expiry()?);
        self.ceremonies.put(id, REGISTRATION, &payload, expires_at.timestamp()).await?;
        Ok(CeremonyStarted { id, expires_at, options })
    }

    /// Finishes the registration `id` with the authenticator's answer: verified, its model checked against the
    /// municipality's allow-list, and recorded as `OperatorAuthenticatorRegistered`. The ceremony is used up
    /// whatever the outcome. Waits for the operator directory.
    pub async fn finish_registration(
        &self,
        ctx: &CommandContext,
        code: &MunicipalityCode,
        operator_id: &OperatorId,
        id: Uuid,
        answer: &RegisterPublicKeyCredential,
    ) -> Result<Executed<Operator>, AuthenticatorError> {
        let permission = Permission::ManageBiometrics(code.clone());
        if let Some(actor) = &ctx.actor {
            authorize(actor, &permission)?;
        }
        let stream = operator_stream(Some(code), operator_id);
        // A retry of a finish that went through (the same `Idempotency-Key`): its result, not a used-up ceremony.
        if let Some(outcome) = self.store.command_outcome(ctx.command_id).await? {
            let loaded =
                self.operator(code, operator_id).await.map_err(|e| e.map_domain(AuthenticatorError::Operator))?;
            return Ok(Executed {
                state: loaded.state,
                version: loaded.version,
                events: vec![],
                outcome: Some(outcome),
            });
        }
        let now = self.access.clock().now();
        let unknown = || CommandError::Domain(AuthenticatorError::UnknownCeremony);
        let payload = self.ceremonies.take(id, REGISTRATION, now.timestamp()).await?.ok_or_else(unknown)?;
        let ceremony: RegistrationCeremony = serde_json::from_str(&payload).map_err(internal)?;
        if ceremony.municipality != *code
            || ceremony.operator_id != *operator_id
            || ceremony.begun_by != ctx.actor.as_ref().map(|a| a.operator)
        {
            return Err(unknown());
        }
        let not_verified = |e: String| CommandError::Domain(AuthenticatorError::NotVerified(e));
        let passkey = self
            .webauthn
            .finish_passkey_registration(answer, &ceremony.state)
            .map_err(|e| not_verified(e.to_string()))?;
        let credential = Credential::from(passkey);
        let (aaguid, public_key) = attested_credential(answer).map_err(not_verified)?;
        let authenticator = NewAuthenticator {
            credential_id: CredentialId::from_bytes(credential.cred_id.clone())
                .map_err(|e| not_verified(e.to_string()))?,
            public_key,
            aaguid,
            sign_count: credential.counter,
            backup_eligible: credential.backup_eligible,
            label: ceremony.label,
        };
        let allowed_models = match self.policy(code).await {
            Ok(policy) => policy.state.allowed_models().iter().copied().collect(),
            Err(CommandError::Store(e)) => return Err(CommandError::Store(e)),
            Err(e) => return Err(internal(e)),
        };
        let command = OperatorCommand::RegisterAuthenticator { authenticator, at: timestamp(now), allowed_models };
        let executed = CommandHandler::<Operator>::new(self.store.clone())
            .execute(ctx, &permission, &stream, Some(code.clone()), None, command)
            .await
            .map_err(|e| e.map_domain(AuthenticatorError::Operator))?;
        self.wait_for_directory(&executed).await;
        Ok(executed)
    }

    /// Deletes an authenticator of an operator: it no longer logs him in.
    pub async fn remove_authenticator(
        &self,
        ctx: &CommandContext,
        code: &MunicipalityCode,
        operator_id: &OperatorId,
        credential_id: CredentialId,
        if_match: Option<u64>,
    ) -> Result<Executed<Operator>, OperatorError> {
        let at = self.access.clock().timestamp();
        let executed = CommandHandler::<Operator>::new(self.store.clone())
            .execute(
                ctx,
                &Permission::ManageBiometrics(code.clone()),
                &operator_stream(Some(code), operator_id),
                Some(code.clone()),
                if_match,
                OperatorCommand::RemoveAuthenticator { credential_id, at },
            )
            .await?;
        self.wait_for_directory(&executed).await;
        Ok(executed)
    }

    /// An operator as his stream has it now (his authenticators with it, and his version for the `ETag`).
    pub async fn operator(
        &self,
        code: &MunicipalityCode,
        operator_id: &OperatorId,
    ) -> Result<Loaded<Operator>, OperatorError> {
        CommandHandler::<Operator>::new(self.store.clone()).load(&operator_stream(Some(code), operator_id)).await
    }

    async fn wait_for_directory(&self, executed: &Executed<Operator>) {
        if let Some(outcome) = executed.outcome {
            self.views.wait_for_view(outcome.checkpoint, operators::NAME).await;
        }
    }

    // ---- the municipality's policy ----

    /// The municipality's biometric policy (the default when it never set one: nobody required, any model).
    pub async fn policy(&self, code: &MunicipalityCode) -> Result<Loaded<BiometricPolicy>, BiometricPolicyError> {
        CommandHandler::<BiometricPolicy>::new(self.store.clone()).load(&policy_stream(code)).await
    }

    /// Replaces the municipality's biometric policy (運用管理部門): who must log in biometrically, and which
    /// authenticator models may be registered (empty: any). Authenticators registered before stay.
    pub async fn set_policy(
        &self,
        ctx: &CommandContext,
        code: &MunicipalityCode,
        if_match: Option<u64>,
        required: BiometricRequirement,
        allowed_models: std::collections::BTreeSet<Aaguid>,
    ) -> Result<Executed<BiometricPolicy>, BiometricPolicyError> {
        let at = self.access.clock().timestamp();
        CommandHandler::<BiometricPolicy>::new(self.store.clone())
            .execute(
                ctx,
                &Permission::ManageBiometrics(code.clone()),
                &policy_stream(code),
                Some(code.clone()),
                if_match,
                BiometricPolicyCommand::Set { required, allowed_models, at },
            )
            .await
    }

    // ---- login ----

    /// Begins a biometric login of `operator_id` of `municipality` (`None`: the system administrator) from
    /// `client`: request options with a challenge and the credential IDs to ask for — his, or for a login that
    /// names nobody who may log in, ones derived from the server's key (the answer has the same shape either way).
    /// Throttled like a password login; records nothing.
    pub async fn begin_login(
        &self,
        municipality: Option<&str>,
        operator_id: &str,
        client: Option<IpAddr>,
    ) -> std::result::Result<CeremonyStarted, LoginError> {
        let login = format!("{}/{}", municipality.unwrap_or(""), operator_id.trim());
        if let Err(retry_after) = self.access.throttle().check(&attempters(client, &login)) {
            return Err(LoginError::Throttled { retry_after });
        }
        let (named, operator) = self.acting(municipality, operator_id).await?;
        let mut passkeys = vec![];
        // The stream of whoever the name names is read, known or not: the same work either way.
        if let Some((code, id)) = &named {
            let op = CommandHandler::<Operator>::new(self.store.clone())
                .load(&operator_stream(code.as_ref(), id))
                .await
                .map_err(failure)?;
            let authenticators: Vec<&RegisteredAuthenticator> =
                if operator.is_some() { op.state.authenticators().collect() } else { vec![] };
            for authenticator in authenticators {
                match passkey_of(authenticator) {
                    Ok(p) => passkeys.push(p),
                    Err(e) => {
                        tracing::warn!(credential = %authenticator.credential_id, error = %e, "unusable authenticator")
                    }
                }
            }
        }
        let (mut options, state) = self
            .webauthn
            .start_passkey_authentication(&passkeys)
            .map_err(|e| AccessFailure::Internal(format!("webauthn: {e}")))?;
        if passkeys.is_empty() {
            let fakes = self.fakes.generate(login.as_bytes()).map_err(|e| AccessFailure::Internal(e.to_string()))?;
            options.public_key.allow_credentials = fakes
                .into_iter()
                .map(|id| AllowCredentials { type_: "public-key".to_owned(), id, transports: None })
                .collect();
        }
        let operator = operator.filter(|_| !passkeys.is_empty());
        let payload = serde_json::to_string(&LoginCeremony { login, operator, state })
            .map_err(|e| AccessFailure::Internal(e.to_string()))?;
        let options = serde_json::to_value(options).map_err(|e| AccessFailure::Internal(e.to_string()))?;
        let (id, expires_at) = (Uuid::new_v4(), self.expiry().map_err(AccessFailure::from)?);
        self.ceremonies.put(id, LOGIN, &payload, expires_at.timestamp()).await.map_err(AccessFailure::from)?;
        Ok(CeremonyStarted { id, expires_at, options })
    }

    /// Finishes the biometric login `id` with the authenticator's assertion from `client`: a session of method
    /// `biometric`. The ceremony is used up whatever the outcome. A wrong assertion, an unknown or used challenge
    /// and a counter that does not move are refused as [`LoginError::InvalidCredentials`] and counted as failed
    /// logins (the counter also as `OperatorAuthenticatorCounterRegressed`).
    pub async fn finish_login(
        &self,
        id: Uuid,
        assertion: &PublicKeyCredential,
        client: Option<IpAddr>,
    ) -> std::result::Result<NewSession, LoginError> {
        let throttle = self.access.throttle();
        let address: Vec<Attempter> = client.map(Attempter::Address).into_iter().collect();
        if let Err(retry_after) = throttle.check(&address) {
            return Err(LoginError::Throttled { retry_after });
        }
        let now = self.access.clock().timestamp();
        let Some(payload) = self.ceremonies.take(id, LOGIN, now.unix()).await.map_err(AccessFailure::from)? else {
            throttle.failed(&address);
            return Err(LoginError::InvalidCredentials);
        };
        let ceremony: LoginCeremony =
            serde_json::from_str(&payload).map_err(|e| AccessFailure::Internal(e.to_string()))?;
        let who = attempters(client, &ceremony.login);
        if let Err(retry_after) = throttle.check(&who) {
            return Err(LoginError::Throttled { retry_after });
        }
        let Some((municipality, operator_id)) = ceremony.operator else {
            throttle.failed(&who);
            return Err(LoginError::InvalidCredentials);
        };
        // As he is now: revoked or of an abolished municipality since the beginning gets nothing.
        let row = operators::find_by_login(self.read.pool(), self.read.sealer(), municipality.as_ref(), &operator_id)
            .await
            .map_err(AccessFailure::from)?;
        let Some(row) = self.access.still_acting(row).await? else {
            throttle.failed(&who);
            return Err(LoginError::InvalidCredentials);
        };
        // Locked: the lock's answer whatever was presented, nothing more recorded (as for a password).
        let locked_until = row.locked_until.map(Timestamp::from_unix);
        if row.locked && locked_until.is_none_or(|until| now < until) {
            return Err(LoginError::Locked { until: locked_until });
        }
        let verified = match self.webauthn.finish_passkey_authentication(assertion, &ceremony.state) {
            Ok(verified) => verified,
            Err(e) => {
                tracing::info!(operator = %row.key, reason = %e, "biometric login refused: the assertion does not verify");
                throttle.failed(&who);
                self.access.record_failure(municipality, operator_id, now);
                return Err(LoginError::InvalidCredentials);
            }
        };
        let credential_id =
            CredentialId::from_bytes(verified.cred_id().clone()).map_err(|e| AccessFailure::Internal(e.to_string()))?;
        match self.login_step(municipality.as_ref(), &operator_id, &credential_id, verified.counter(), now).await {
            Ok(events) if events.iter().any(|e| matches!(e, OperatorEvent::SignCountRegressed { .. })) => {
                tracing::warn!(operator = %row.key, credential = %credential_id,
                    "biometric login refused: the authenticator's counter did not move (a cloned authenticator?)");
                throttle.failed(&who);
                Err(LoginError::InvalidCredentials)
            }
            Ok(_) => {
                throttle.succeeded(&Attempter::Login(ceremony.login));
                let session = self.access.open_session(row.key, AuthMethod::Biometric).await?;
                tracing::info!(operator = %row.key, "biometric login");
                Ok(session)
            }
            Err(CommandError::Domain(OperatorError::Locked { until })) => Err(LoginError::Locked { until }),
            Err(CommandError::Domain(e)) => {
                // Removed meanwhile (a failed login like any other), or revoked (nothing is recorded against him).
                tracing::info!(operator = %row.key, reason = %e, "biometric login refused");
                throttle.failed(&who);
                if e == OperatorError::AuthenticatorNotRegistered {
                    self.access.record_failure(municipality, operator_id, now);
                }
                Err(LoginError::InvalidCredentials)
            }
            Err(CommandError::Store(e)) => Err(AccessFailure::Store(e).into()),
            Err(e) => Err(AccessFailure::Internal(e.to_string()).into()),
        }
    }

    /// Deletes the ceremonies that expired unfinished; how many. Run now and then by the server.
    pub async fn purge_ceremonies(&self) -> std::result::Result<u64, StoreError> {
        self.ceremonies.purge(self.access.clock().timestamp().unix()).await
    }

    /// The login a name gives when it parses, and the same login again when its operator exists and may act now.
    async fn acting(
        &self,
        municipality: Option<&str>,
        operator_id: &str,
    ) -> std::result::Result<(Login, Login), AccessFailure> {
        let municipality = match municipality {
            Some(code) => match MunicipalityCode::parse(code) {
                Ok(code) => Some(code),
                Err(_) => return Ok((None, None)),
            },
            None => None,
        };
        let Ok(id) = OperatorId::parse(operator_id) else { return Ok((None, None)) };
        let row = operators::find_by_login(self.read.pool(), self.read.sealer(), municipality.as_ref(), &id).await?;
        let acting = self.access.still_acting(row).await?.is_some();
        let named = Some((municipality, id));
        Ok((named.clone(), named.filter(|_| acting)))
    }

    /// Decides a verified assertion on the operator's streams: his authenticators (his stream) and his login record
    /// (his login stream, where the events go).
    async fn login_step(
        &self,
        municipality: Option<&MunicipalityCode>,
        operator_id: &OperatorId,
        credential_id: &CredentialId,
        sign_count: u32,
        at: Timestamp,
    ) -> Result<Vec<OperatorEvent>, OperatorError> {
        let ctx = CommandContext::system(CommandId::generate());
        let mut policy = self.access.policy.lockout;
        if municipality.is_none() {
            // Nobody could lift a permanent lock of the system administrator.
            policy.max_lockouts = 0;
        }
        self.access
            .decide_on_logins(&ctx, &[], municipality, operator_id, |op, login| {
                op.decide_biometric_login(login, at, credential_id, sign_count, policy)
            })
            .await
    }
}

/// Whether the municipality requires `operator_id` to log in biometrically (his password login is refused).
pub(crate) async fn requires_biometric(
    store: &Arc<dyn EventStore>,
    code: &MunicipalityCode,
    operator_id: &OperatorId,
) -> std::result::Result<bool, StoreError> {
    let loaded = CommandHandler::<BiometricPolicy>::new(store.clone()).load(&policy_stream(code)).await;
    match loaded {
        Ok(policy) => Ok(policy.state.requires_biometric(operator_id)),
        Err(CommandError::Store(e)) => Err(e),
        Err(e) => Err(StoreError::Corrupt(format!("biometric policy of {code}: {e}"))),
    }
}

/// The stream of a municipality's biometric policy.
pub fn policy_stream(code: &MunicipalityCode) -> StreamId {
    crate::ids::stream_of::<BiometricPolicy>(&biometric_policy::stream_key(code))
}

/// A municipality (`None`: the system administrator's) and an operator ID, parsed.
type Login = Option<(Option<MunicipalityCode>, OperatorId)>;

/// Whose failures a biometric login counts: the client's address and the login name as typed.
fn attempters(client: Option<IpAddr>, login: &str) -> Vec<Attempter> {
    client.map(Attempter::Address).into_iter().chain([Attempter::Login(login.to_owned())]).collect()
}

/// The model (AAGUID) and public key (COSE_Key) of a new credential, read from the authenticator data of its
/// attestation object — after WebAuthn verified that object, so both are what the authenticator signed (or, with
/// `none` attestation, what it stated).
fn attested_credential(answer: &RegisterPublicKeyCredential) -> std::result::Result<(Aaguid, CosePublicKey), String> {
    use serde_cbor_2::Value;
    let object: Value = serde_cbor_2::from_slice(&answer.response.attestation_object)
        .map_err(|e| format!("attestation object: {e}"))?;
    let Value::Map(object) = object else { return Err("the attestation object is not a map".into()) };
    let Some(Value::Bytes(auth_data)) = object.get(&Value::Text("authData".into())) else {
        return Err("the attestation object has no authData".into());
    };
    let data = AuthenticatorData::<Registration>::try_from(auth_data.as_slice()).map_err(|e| e.to_string())?;
    let acd = data.acd.ok_or("no attested credential data")?;
    let key = serde_cbor_2::to_vec(&acd.credential_pk).map_err(|e| format!("public key: {e}"))?;
    Ok((Aaguid::from_bytes(acd.aaguid), CosePublicKey::from_bytes(key).map_err(|e| e.to_string())?))
}

/// A registered authenticator as webauthn-rs verifies assertions with: its key, user verification required, and
/// counter 0 (the counter is the domain's to judge, see the module comment).
fn passkey_of(a: &RegisteredAuthenticator) -> std::result::Result<Passkey, String> {
    let value: serde_cbor_2::Value = serde_cbor_2::from_slice(a.public_key.as_bytes()).map_err(|e| e.to_string())?;
    let key = COSEKey::try_from(&value).map_err(|e| e.to_string())?;
    Ok(Passkey::from(Credential {
        cred_id: a.credential_id.as_bytes().to_vec(),
        cred: key,
        counter: 0,
        transports: None,
        user_verified: true,
        backup_eligible: a.backup_eligible,
        backup_state: false,
        registration_policy: UserVerificationPolicy::Required,
        extensions: RegisteredExtensions::none(),
        attestation: ParsedAttestation { data: ParsedAttestationData::None, metadata: AttestationMetadata::None },
        attestation_format: AttestationFormat::None,
    }))
}

fn timestamp(t: DateTime<Utc>) -> Timestamp {
    Timestamp::from_unix(t.timestamp())
}

fn internal<E: std::error::Error + 'static>(e: impl std::fmt::Display) -> CommandError<E> {
    CommandError::Internal(e.to_string())
}

fn failure(e: CommandError<OperatorError>) -> AccessFailure {
    match e {
        CommandError::Store(s) => AccessFailure::Store(s),
        other => AccessFailure::Internal(other.to_string()),
    }
}
