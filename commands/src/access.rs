//! Login, sessions and passwords (手引き I 2.1(4)(a)): log in with municipality + operator ID + password, turn a
//! session token back into the acting operator, log out, change one's own password, and an administrator's
//! password reset, bulk change and the passwords of a batch registration.
//!
//! Owns the rules around the secrets: an attempt that comes too early after failures is refused before any work
//! ([`crate::throttle`]); every other attempt costs one Argon2id verification on the password workers (known
//! operator or not; [`LoginError::Busy`] when they are full); while an operator is locked every password gets the
//! same answer; a wrong password is recorded towards the lockout; a lock stops new logins only; the last passwords
//! may not be reused; and a password event is appended with its hash and the end of the operator's (other)
//! sessions in one transaction ([`Companion`]), so a change happens whole or not at all. Reads the operator
//! directory view; never logs a password or a token.
//!
//! Length: login, sessions and the four password use cases share these rules and their error types.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cardap_domain::operator::{
    self, AuthMethod, LockoutPolicy, LoginCommand, LoginState, Operator, OperatorCommand, OperatorError, OperatorEvent,
    OperatorId, OperatorLogins, OperatorState, Password, PasswordPolicy,
};
use cardap_domain::{Aggregate, DomainEvent, MunicipalityCode, OperatorKey, ParseError, Timestamp};
use cardap_projections::municipalities;
use cardap_projections::operators::{self, OperatorRow};
use cardap_projections::{ProjectionError, ReadModels};
use cardap_store::{CommandId, Companion, EventStore, StoreError, StreamId};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::authz::{Actor, Permission};
use crate::clock::Clock;
use crate::context::CommandContext;
use crate::engine::{Tx, transact};
use crate::handler::{CommandError, CommandHandler, Loaded};
use crate::passwords::{self, Admission, HashingError, Secret};
use crate::ports::{Credentials, DataKeys};
use crate::throttle::{Attempter, Throttle, ThrottlePolicy};
use crate::views::Views;

/// Session lifetimes.
#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    /// A session unused this long ends.
    pub idle: Duration,
    /// A session ends this long after login, used or not.
    pub absolute: Duration,
}

/// The rules of authentication, from the settings.
#[derive(Debug, Clone, Copy)]
pub struct AccessPolicy {
    pub sessions: SessionPolicy,
    pub passwords: PasswordPolicy,
    pub lockout: LockoutPolicy,
    pub throttle: ThrottlePolicy,
}

/// Why a login was refused. Both answers take the same work, so neither tells whether the operator exists.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("wrong municipality, operator ID or password")]
    InvalidCredentials,
    /// The password was right but the operator is locked (`None`: until an administrator unlocks him).
    #[error("the operator is locked")]
    Locked { until: Option<Timestamp> },
    /// Every password worker is busy: try again in a moment (nothing was checked or recorded).
    #[error("too many logins at once")]
    Busy,
    /// Too many failures from this address or for this login name: try again after `retry_after` (nothing was
    /// checked or recorded).
    #[error("too many failed logins; wait before trying again")]
    Throttled { retry_after: Duration },
    /// The password was right, but his municipality requires him to log in biometrically (or with his operator
    /// certificate): no session. Told only after a right password, so it says no more than a login would.
    #[error("this operator must log in biometrically")]
    BiometricRequired,
    #[error(transparent)]
    Failed(#[from] AccessFailure),
}

/// Why a password change or reset was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("the current password is wrong")]
    WrongCurrent,
    /// The new password breaks the password policy.
    #[error("the new password is not acceptable: {0}")]
    Weak(ParseError),
    /// The new password is one of the last `history` ones.
    #[error("may not be one of the last {history} passwords")]
    Reused { history: usize },
    #[error(transparent)]
    Operator(#[from] OperatorError),
}

/// A failure of the machinery, not of the caller: the database, a view, the hashing threads.
#[derive(Debug, thiserror::Error)]
pub enum AccessFailure {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    View(#[from] ProjectionError),
    #[error(transparent)]
    Hashing(#[from] HashingError),
    #[error("{0}")]
    Internal(String),
}

/// A new session's token (shown once to the client) and its absolute expiry.
#[derive(Debug)]
pub struct NewSession {
    pub token: Secret,
    pub expires_at: DateTime<Utc>,
    /// The session may do nothing but change the password until it is changed.
    pub password_change_required: bool,
}

/// The operator behind a live session.
#[derive(Debug, Clone)]
pub struct SessionOf {
    pub actor: Actor,
    /// The operator's login ID (for `/me`).
    pub operator_id: String,
    /// How he proved who he is: the session's login, or the certificate of the connection.
    pub method: AuthMethod,
}

/// What a request presented to say who it is: a session token (password mode), or the operator certificate
/// its TLS connection was authenticated with (mutual TLS: the listener verified its chain, validity and
/// revocation before the request was read).
#[derive(Debug, Clone)]
pub enum Presented {
    Token(Secret),
    /// The client certificate's DER.
    Certificate(Arc<[u8]>),
}

/// What [`Access::session_permits`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionCheck {
    /// The session is live and its operator may still do it.
    Live,
    /// Logged out, expired, revoked, or his municipality abolished.
    Ended,
    /// Live, but he may no longer do it (his roles changed).
    Forbidden,
}

/// A password set by a use case: the generated one is shown once, a given one never again.
#[derive(Debug)]
pub struct PasswordSet {
    pub operator_id: OperatorId,
    pub key: OperatorKey,
    /// The generated password; `None` when the caller chose it, or when this was a retry of an applied command
    /// (the password was shown in the first answer and is kept nowhere).
    pub generated: Option<Secret>,
    /// This answer replays an already applied command: nothing was changed now.
    pub replayed: bool,
}

/// Login, sessions and passwords over the event store, the credential adapter and the operator view.
#[derive(Debug, Clone)]
pub struct Access {
    store: Arc<dyn EventStore>,
    read: ReadModels,
    credentials: Arc<dyn Credentials>,
    clock: Arc<dyn Clock>,
    views: Views,
    throttle: Throttle,
    /// Destroys the key of a revoked operator's management information.
    keys: Arc<dyn DataKeys>,
    pub policy: AccessPolicy,
}

type Result<T, E> = std::result::Result<T, CommandError<E>>;

impl Access {
    /// `credentials` is the adapter of the [`Credentials`] port (`cardap_store::CredentialStore` on the read-model
    /// database, where the companions of the event appends write too); `keys` destroys the key of a revoked
    /// operator's management information (the process's key vault).
    pub fn new(
        store: Arc<dyn EventStore>,
        read: ReadModels,
        credentials: Arc<dyn Credentials>,
        clock: Arc<dyn Clock>,
        views: Views,
        keys: Arc<dyn DataKeys>,
        policy: AccessPolicy,
    ) -> Self {
        let throttle = Throttle::new(policy.throttle, clock.clone());
        Access { store, read, credentials, clock, views, throttle, keys, policy }
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Logs an operator in from `client` (the caller's address, when known). An attempt that comes too early
    /// after failures from the same address or for the same login name is refused before any work
    /// ([`LoginError::Throttled`]); otherwise one Argon2id verification whatever the input. While the operator is
    /// locked every password gets the same answer after the same work; a lock stops new logins only.
    pub async fn login(
        &self,
        municipality: Option<&str>,
        operator_id: &str,
        password: Secret,
        client: Option<IpAddr>,
    ) -> std::result::Result<NewSession, LoginError> {
        let operator = self.check_password(municipality, operator_id, password, client).await?;
        let session = self.open_session(operator.key, AuthMethod::Password).await?;
        tracing::info!(operator = %operator.key, "login");
        Ok(session)
    }

    /// The checks of a password login without the session: the throttle, one Argon2id verification, the lock
    /// and the record of the attempt (a success resets the failures). The operator may act when it answers
    /// `Ok`. Used by [`Access::login`] and by the login form of business systems (`crate::oidc`), which starts
    /// no cardap session.
    pub async fn check_password(
        &self,
        municipality: Option<&str>,
        operator_id: &str,
        password: Secret,
        client: Option<IpAddr>,
    ) -> std::result::Result<OperatorRow, LoginError> {
        let name = Attempter::Login(format!("{}/{}", municipality.unwrap_or(""), operator_id.trim()));
        let attempters: Vec<Attempter> = client.map(Attempter::Address).into_iter().chain([name.clone()]).collect();
        if let Err(retry_after) = self.throttle.check(&attempters) {
            return Err(LoginError::Throttled { retry_after });
        }
        // A login that names nothing valid is refused exactly like a wrong password, after the same work.
        let municipality = match municipality {
            Some(code) => MunicipalityCode::parse(code).ok().map(Some),
            None => Some(None),
        };
        let login = match (municipality, OperatorId::parse(operator_id).ok()) {
            (Some(municipality), Some(id)) => Some((municipality, id)),
            _ => None,
        };
        let operator = match &login {
            Some((municipality, id)) => {
                operators::find_by_login(self.read.pool(), self.read.sealer(), municipality.as_ref(), id)
                    .await
                    .map_err(AccessFailure::from)?
            }
            None => None,
        };
        // An operator of an abolished municipality is refused like a revoked one: no password is compared (the
        // dummy verification keeps the time), nothing is recorded against him.
        let operator = match operator {
            Some(op) if self.municipality_abolished(op.municipality.as_ref()).await? => None,
            other => other,
        };
        let stored = match &operator {
            Some(op) if !op.revoked => self.credentials.password_hash(op.key).await.map_err(AccessFailure::from)?,
            _ => None,
        };
        let verified = match passwords::verify_password(password, stored, Admission::TurnAway).await {
            Ok(verified) => verified,
            Err(HashingError::Busy) => return Err(LoginError::Busy),
            Err(e) => return Err(AccessFailure::from(e).into()),
        };
        let (Some(operator), Some((municipality, operator_id))) = (operator, login) else {
            self.throttle.failed(&attempters);
            return Err(LoginError::InvalidCredentials);
        };
        let now = self.clock.timestamp();
        // Locked: the same answer for every password (it does not tell a right guess), nothing more recorded.
        let locked_until = operator.locked_until.map(Timestamp::from_unix);
        if operator.locked && !operator.revoked && locked_until.is_none_or(|until| now < until) {
            tracing::info!(operator = %operator.key, "login refused: locked");
            return Err(LoginError::Locked { until: locked_until });
        }
        if !verified {
            tracing::info!(operator = %operator.key, "login refused: wrong password");
            self.throttle.failed(&attempters);
            if !operator.revoked {
                self.record_failure(municipality, operator_id, now);
            }
            return Err(LoginError::InvalidCredentials);
        }
        self.throttle.succeeded(&name);
        // The password is right: his municipality may require him to log in biometrically instead.
        if let Some(code) = &municipality
            && crate::biometric::requires_biometric(&self.store, code, &operator_id)
                .await
                .map_err(AccessFailure::from)?
        {
            tracing::info!(operator = %operator.key, "password login refused: biometric login required");
            return Err(LoginError::BiometricRequired);
        }
        // The lock decides (a temporary lock that has run out simply passes).
        let ctx = CommandContext::system(CommandId::generate());
        let step = self.login_step(
            &ctx,
            &Permission::ChangeOwnPassword,
            municipality.as_ref(),
            &operator_id,
            LoginCommand::RecordLogin { at: now },
        );
        match step.await {
            Ok(_) => {}
            Err(CommandError::Domain(OperatorError::Locked { until })) => return Err(LoginError::Locked { until }),
            Err(CommandError::Store(e)) => return Err(AccessFailure::Store(e).into()),
            Err(e) => return Err(AccessFailure::Internal(e.to_string()).into()),
        }
        Ok(operator)
    }

    /// The failed-login counters of this node (per address and per login name).
    pub(crate) fn throttle(&self) -> &Throttle {
        &self.throttle
    }

    /// A new session of `operator`, proved by `method`, and whether his password must be changed first.
    pub(crate) async fn open_session(
        &self,
        operator: OperatorKey,
        method: AuthMethod,
    ) -> std::result::Result<NewSession, AccessFailure> {
        let mut raw = [0_u8; 32];
        getrandom::fill(&mut raw).map_err(|e| HashingError::Failed(e.to_string()))?;
        let token = URL_SAFE_NO_PAD.encode(raw);
        let now = self.clock.now();
        let absolute = chrono::Duration::from_std(self.policy.sessions.absolute)
            .map_err(|e| StoreError::Corrupt(format!("session lifetime: {e}")))?;
        let expires_at = now + absolute;
        self.credentials
            .create_session(&token_hash(&token), operator, method, now.timestamp(), expires_at.timestamp())
            .await?;
        let password_change_required = self.credentials.password_change_required(operator).await?;
        Ok(NewSession { token: Secret::new(token), expires_at, password_change_required })
    }

    /// Records a failed login without making the answer wait for it. Failures that arrive together contend for
    /// the operator's stream: each is retried (with jitter) until it is recorded, so a burst cannot outrun the
    /// lockout. A lock leaves his sessions alone. The system administrator's lock is never permanent (nobody
    /// could lift it).
    pub(crate) fn record_failure(
        &self,
        municipality: Option<MunicipalityCode>,
        operator_id: OperatorId,
        at: Timestamp,
    ) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut policy = this.policy.lockout;
            if municipality.is_none() {
                policy.max_lockouts = 0;
            }
            for _ in 0..200 {
                let command = LoginCommand::RecordFailure { at, policy };
                let ctx = CommandContext::system(CommandId::generate());
                let permission = Permission::ChangeOwnPassword;
                match this.login_step(&ctx, &permission, municipality.as_ref(), &operator_id, command).await {
                    Ok(events) => {
                        if events.iter().any(|e| matches!(e, OperatorEvent::Locked { .. })) {
                            // His running sessions go on: a lock anyone can cause must not throw him out.
                            tracing::warn!(operator_id = %operator_id, "operator locked after failed logins");
                        }
                        return;
                    }
                    Err(CommandError::Contended) => {
                        let jitter = u64::from(getrandom::u32().unwrap_or(0) % 45) + 5;
                        tokio::time::sleep(Duration::from_millis(jitter)).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not record a failed login");
                        return;
                    }
                }
            }
            tracing::warn!("could not record a failed login: the operator's stream stayed contended");
        });
    }

    /// Records a login fact on the operator's login stream (never his own stream: his version stays), seeded
    /// from the bookkeeping his own stream held before the split while the login stream is empty; waits for the
    /// views.
    pub async fn login_step(
        &self,
        ctx: &CommandContext,
        permission: &Permission,
        municipality: Option<&MunicipalityCode>,
        operator_id: &OperatorId,
        command: LoginCommand,
    ) -> Result<Vec<OperatorEvent>, OperatorError> {
        let permissions = std::slice::from_ref(permission);
        self.decide_on_logins(ctx, permissions, municipality, operator_id, |_, login| login.decide(command.clone()))
            .await
    }

    /// Decides on the operator's login stream with his own stream's state beside it (a biometric login needs his
    /// authenticators), appends there, and waits for the views.
    pub(crate) async fn decide_on_logins<F>(
        &self,
        ctx: &CommandContext,
        permissions: &[Permission],
        municipality: Option<&MunicipalityCode>,
        operator_id: &OperatorId,
        decide: F,
    ) -> Result<Vec<OperatorEvent>, OperatorError>
    where
        F: Fn(&OperatorState, &LoginState) -> std::result::Result<Vec<OperatorEvent>, OperatorError> + Sync,
    {
        let (operator, logins) = (operator_stream(municipality, operator_id), login_stream(municipality, operator_id));
        let (operator, logins, decide) = (&operator, &logins, &decide);
        let done = transact(&self.store, ctx, permissions, municipality.cloned(), |mut tx: Tx| async move {
            let op = tx.load::<Operator, OperatorError>(operator).await?;
            let login = load_logins(&mut tx, logins, &op).await?;
            let events = decide(&op.state, &login.state).map_err(CommandError::Domain)?;
            tx.append_snapshotted::<OperatorLogins>(logins, &login, &events);
            Ok((events, tx))
        })
        .await?;
        if let Some(checkpoint) = done.checkpoint {
            self.views.wait_for_view(checkpoint, operators::NAME).await;
        }
        Ok(done.value.unwrap_or_default())
    }

    /// The operator behind a session token, if the session is live and he may still act. Touches the session
    /// (at most once a minute: the idle timeout needs no finer grain).
    pub async fn authenticate(&self, token: &Secret) -> std::result::Result<Option<SessionOf>, AccessFailure> {
        let now = self.clock.now().timestamp();
        let idle = i64::try_from(self.policy.sessions.idle.as_secs()).unwrap_or(i64::MAX);
        let hash = token_hash(token.expose());
        let Some(session) = self.credentials.live_session(&hash, now, now.saturating_sub(idle)).await? else {
            return Ok(None);
        };
        let operator = operators::get(self.read.pool(), self.read.sealer(), session.operator).await?;
        let Some(operator) = self.still_acting(operator).await? else {
            return Ok(None);
        };
        if now - session.last_seen_at >= 60 {
            self.credentials.touch_session(&hash, now).await?;
        }
        Ok(Some(session_of(operator, session.password_change_required, session.method)))
    }

    /// `operator` if he may still act. A revoked operator's sessions and certificates stop at once, and so do
    /// those of an abolished municipality's. A lock does not stop them: it stops new password logins only.
    pub(crate) async fn still_acting(
        &self,
        operator: Option<OperatorRow>,
    ) -> std::result::Result<Option<OperatorRow>, AccessFailure> {
        match operator {
            Some(op) if !op.revoked && !self.municipality_abolished(op.municipality.as_ref()).await? => Ok(Some(op)),
            _ => Ok(None),
        }
    }

    /// The operator behind what a request presented: a live session's token, or a verified operator
    /// certificate.
    pub async fn authenticate_presented(
        &self,
        presented: &Presented,
    ) -> std::result::Result<Option<SessionOf>, AccessFailure> {
        match presented {
            Presented::Token(token) => self.authenticate(token).await,
            Presented::Certificate(der) => self.authenticate_certificate(der).await,
        }
    }

    /// The operator an operator certificate names (`urn:cardap:operator:<municipality code or system>:<operator
    /// ID>`, see `crate::pki::ca`), if he exists and may still act. The certificate's chain, validity and
    /// revocation were checked by the TLS listener; a certificate that names no operator (a business server's)
    /// authenticates nobody here.
    pub async fn authenticate_certificate(&self, der: &[u8]) -> std::result::Result<Option<SessionOf>, AccessFailure> {
        let Some((municipality, operator_id)) = crate::pki::operator_named_by(der) else {
            return Ok(None);
        };
        let operator =
            operators::find_by_login(self.read.pool(), self.read.sealer(), municipality.as_ref(), &operator_id).await?;
        let Some(operator) = self.still_acting(operator).await? else {
            return Ok(None);
        };
        let password_change_required = self.credentials.password_change_required(operator.key).await?;
        Ok(Some(session_of(operator, password_change_required, AuthMethod::Certificate)))
    }

    /// Whether what a request presented still authenticates its operator and he may still do `permission`:
    /// checked now and then by work that outlives its request (an import), which stops when he logs out, his
    /// session expires, he is revoked or loses the permission. Touches the session like any request of his.
    pub async fn session_permits(
        &self,
        presented: &Presented,
        permission: &Permission,
    ) -> std::result::Result<SessionCheck, AccessFailure> {
        Ok(match self.authenticate_presented(presented).await? {
            None => SessionCheck::Ended,
            Some(session) if crate::authz::authorize(&session.actor, permission).is_err() => SessionCheck::Forbidden,
            Some(_) => SessionCheck::Live,
        })
    }

    /// Whether `municipality` (an operator's; `None` for the system administrator) has been abolished.
    pub(crate) async fn municipality_abolished(
        &self,
        municipality: Option<&MunicipalityCode>,
    ) -> std::result::Result<bool, AccessFailure> {
        let Some(code) = municipality else { return Ok(false) };
        Ok(municipalities::get(self.read.pool(), code).await?.is_some_and(|m| m.abolished))
    }

    /// Ends the session of this token (a certificate has no session to end: its connection is the session).
    pub async fn logout(&self, presented: &Presented) -> std::result::Result<(), AccessFailure> {
        match presented {
            Presented::Token(token) => Ok(self.credentials.end_session(&token_hash(token.expose())).await?),
            Presented::Certificate(_) => Ok(()),
        }
    }

    /// Changes one's own password: the current one is required and the last few may not be reused. The event,
    /// the new hash and the end of his other sessions (`presented` is what he is using) are stored together.
    /// A wrong current password counts as a failed login: a stolen session cannot search for the password.
    pub async fn change_own_password(
        &self,
        ctx: &CommandContext,
        me: &SessionOf,
        presented: &Presented,
        current: Secret,
        new: &str,
    ) -> Result<(), PasswordError> {
        let key = me.actor.operator;
        let operator_id = OperatorId::parse(&me.operator_id).map_err(|e| internal(e.to_string()))?;
        let municipality = me.actor.municipality.clone();
        let stored = self.credentials.password_hash(key).await?;
        if !passwords::verify_password(current, stored, Admission::Wait).await.map_err(internal)? {
            self.record_failure(municipality, operator_id, self.clock.timestamp());
            return Err(CommandError::Domain(PasswordError::WrongCurrent));
        }
        let new = self.acceptable(key, new).await?;
        let hash = passwords::hash_password(new).await.map_err(internal)?;
        let at = self.clock.now();
        // His other sessions end; the one he is using goes on (with a certificate every session is another).
        let keep = match presented {
            Presented::Token(token) => token_hash(token.expose()),
            Presented::Certificate(_) => String::new(),
        };
        CommandHandler::<Operator>::new(self.store.clone())
            .execute_with(
                ctx,
                &Permission::ChangeOwnPassword,
                &operator_stream(municipality.as_ref(), &operator_id),
                municipality.clone(),
                None,
                OperatorCommand::ChangePassword { at: Timestamp::from_unix(at.timestamp()) },
                |events| {
                    if events.is_empty() {
                        return vec![];
                    }
                    vec![
                        Companion::SetPassword { operator: key, hash: hash.clone(), at },
                        Companion::EndOtherSessions { operator: key, keep: keep.clone() },
                    ]
                },
            )
            .await
            .map_err(operator_error)?;
        Ok(())
    }

    /// A password an administrator chose for an operator: the policy holds and it is not a recent one.
    pub async fn acceptable(&self, operator: OperatorKey, password: &str) -> Result<Secret, PasswordError> {
        let parsed = Password::parse(password, &self.policy.passwords)
            .map_err(|e| CommandError::Domain(PasswordError::Weak(e)))?;
        let secret = Secret::new(parsed.expose());
        let history = self.policy.passwords.history;
        let recent = self.credentials.recent_hashes(operator, history).await?;
        if passwords::matches_any(secret.clone(), recent).await.map_err(internal)? {
            return Err(CommandError::Domain(PasswordError::Reused { history }));
        }
        Ok(secret)
    }

    /// Resets an operator's password (an administrator's decision): `chosen` (already [`Access::acceptable`]), or
    /// a generated one shown once. The event, the hash and the end of his sessions commit together.
    pub async fn reset_password(
        &self,
        ctx: &CommandContext,
        code: &MunicipalityCode,
        operator: &OperatorRow,
        chosen: Option<Secret>,
    ) -> Result<PasswordSet, OperatorError> {
        let operator_id = OperatorId::parse(&operator.operator_id).map_err(|e| internal(e.to_string()))?;
        let mut set = self.reset_many(ctx, code, vec![(operator_id, operator.key, chosen)]).await?;
        set.pop().ok_or_else(|| internal("no password was set"))
    }

    /// パスワード一括変更: new passwords for several operators of one municipality, all or none.
    pub async fn reset_many(
        &self,
        ctx: &CommandContext,
        code: &MunicipalityCode,
        targets: Vec<(OperatorId, OperatorKey, Option<Secret>)>,
    ) -> Result<Vec<PasswordSet>, OperatorError> {
        let at = self.clock.now();
        let chosen = targets.iter().map(|(_, _, chosen)| chosen.clone()).collect();
        let secrets = self.passwords_for(chosen).await.map_err(|e| internal(e.to_string()))?;
        let items = targets
            .iter()
            .map(|(id, _, _)| {
                (
                    operator_stream(Some(code), id),
                    OperatorCommand::ResetPassword { at: Timestamp::from_unix(at.timestamp()) },
                )
            })
            .collect();
        let keys: Vec<OperatorKey> = targets.iter().map(|(_, key, _)| *key).collect();
        let executed = CommandHandler::<Operator>::new(self.store.clone())
            .execute_many_with(
                ctx,
                &Permission::ManageOperators(code.clone()),
                Some(code.clone()),
                items,
                |i, events| match (keys.get(i), secrets.get(i)) {
                    (Some(key), Some((_, _, hash))) if !events.is_empty() => vec![
                        Companion::SetPassword { operator: *key, hash: hash.clone(), at },
                        Companion::EndSessions { operator: *key },
                    ],
                    _ => vec![],
                },
            )
            .await?;
        let replayed = executed.iter().all(|e| e.outcome.is_none());
        if let Some(checkpoint) = executed.iter().filter_map(|e| e.outcome).map(|o| o.checkpoint).max() {
            self.views.wait_for_view(checkpoint, operators::NAME).await;
        }
        Ok(targets
            .into_iter()
            .zip(secrets)
            .map(|((operator_id, key, _), (secret, generated, _))| PasswordSet {
                operator_id,
                key,
                generated: (generated && !replayed).then_some(secret),
                replayed,
            })
            .collect())
    }

    /// The hashes to store with a batch registration, in input order: the chosen passwords, or generated ones.
    pub async fn passwords_for(
        &self,
        chosen: Vec<Option<Secret>>,
    ) -> std::result::Result<Vec<(Secret, bool, String)>, AccessFailure> {
        self.passwords_reporting(chosen, &|| {}).await
    }

    /// [`Access::passwords_for`], calling `hashed` as each hash is done.
    pub async fn passwords_reporting(
        &self,
        chosen: Vec<Option<Secret>>,
        hashed: &(dyn Fn() + Send + Sync),
    ) -> std::result::Result<Vec<(Secret, bool, String)>, AccessFailure> {
        let mut secrets = Vec::with_capacity(chosen.len());
        let mut generated = Vec::with_capacity(chosen.len());
        for c in chosen {
            generated.push(c.is_none());
            secrets.push(match c {
                Some(s) => s,
                None => passwords::generate_password(12)?,
            });
        }
        let hashes = passwords::hash_all_reporting(secrets.clone(), hashed).await?;
        Ok(secrets.into_iter().zip(generated).zip(hashes).map(|((s, g), h)| (s, g, h)).collect())
    }

    /// 失効: revokes an operator. With it, in one transaction, his login record is forgotten (a registration
    /// after it starts afresh) and his sessions end. Then his management information is erased (操作者の登録情報を
    /// 削除): the key of this registration's profile is destroyed — after the event, as for a resident's erasure
    /// (`crate::erasure`), and made sure of by every node's erasure follower, which also destroys it when this
    /// process dies in between. His ID, roles and what he did stay. Answers his version after the revocation.
    pub async fn revoke(
        &self,
        ctx: &CommandContext,
        code: &MunicipalityCode,
        operator_id: &OperatorId,
        key: OperatorKey,
        if_match: Option<u64>,
    ) -> Result<u64, OperatorError> {
        let (operator, logins) = (operator_stream(Some(code), operator_id), login_stream(Some(code), operator_id));
        let (operator, logins) = (&operator, &logins);
        let at = self.clock.timestamp();
        let permission = [Permission::ManageOperators(code.clone())];
        let read = &self.read;
        let done = transact(&self.store, ctx, &permission, Some(code.clone()), |mut tx: Tx| async move {
            let op = tx.load::<Operator, OperatorError>(operator).await?;
            if let Some(expected) = if_match
                && expected != op.version
            {
                return Err(CommandError::PreconditionFailed { expected, current: op.version });
            }
            let events = Operator::decide(&op.state, OperatorCommand::Revoke { at }).map_err(CommandError::Domain)?;
            tx.append::<Operator>(operator, op.version, &events);
            if !events.is_empty() {
                let login = load_logins(&mut tx, logins, &op).await?;
                let forgotten = login.state.decide(LoginCommand::Forget).map_err(CommandError::Domain)?;
                tx.append_snapshotted::<OperatorLogins>(logins, &login, &forgotten);
                // His password, its history and his sessions go: an operator registered later under this ID (the
                // same key) starts with none of them.
                tx.companion(Companion::Forget { operator: key });
                // His certificates are revoked with him (affiliationChanged), in the same transaction.
                crate::pki::stage_operator_revocations(&mut tx, read, Some(code), operator_id, None, at).await?;
            }
            Ok((op.version + events.len() as u64, tx))
        })
        .await?;
        // His management information's key: the one the revocation names (also on a retry of this command).
        let revoked = CommandHandler::<Operator>::new(self.store.clone()).load(operator).await?;
        let erased = revoked.state.is_revoked().then(|| profile_subject(operator, revoked.state.registration()));
        if let Some(subject) = erased.flatten()
            && let Err(e) = self.keys.destroy(&subject).await
        {
            // The revocation stands; every node's erasure follower destroys the key it names.
            tracing::warn!(error = %e, "the revoked operator's profile key is left to the erasure follower");
        }
        if let Some(checkpoint) = done.checkpoint {
            self.views.wait_for_view(checkpoint, operators::NAME).await;
            // His certificates' revocations: the next CRL lists them.
            self.views.wait_for_view(checkpoint, cardap_projections::certificates::NAME).await;
        }
        Ok(done.value.unwrap_or(revoked.version))
    }

    /// Deletes the sessions that can never be used again (ended, expired, idle too long); how many. Run now and
    /// then by the server.
    pub async fn purge_sessions(&self) -> std::result::Result<u64, AccessFailure> {
        let now = self.clock.now().timestamp();
        let idle = i64::try_from(self.policy.sessions.idle.as_secs()).unwrap_or(i64::MAX);
        Ok(self.credentials.purge_sessions(now, now.saturating_sub(idle)).await?)
    }

    /// Ends every session of an operator now (an administrator's decision; not tied to an event).
    pub async fn end_sessions_of(&self, operator: OperatorKey) -> std::result::Result<u64, AccessFailure> {
        Ok(self.credentials.end_sessions_of(operator).await?)
    }

    /// The stored hash of an operator (for moving him to another municipality with his password).
    pub async fn password_hash(&self, operator: OperatorKey) -> std::result::Result<Option<String>, AccessFailure> {
        Ok(self.credentials.password_hash(operator).await?)
    }
}

/// The subject of the key that seals the management information of `registration` on his operator stream, as
/// the sealed event store and the erasure follower name it; `None` for a registration written before they had keys
/// of their own (0).
fn profile_subject(operator: &StreamId, registration: u32) -> Option<StreamId> {
    let encoded = OperatorEvent::Revoked { at: Timestamp::from_unix(0), registration }.encode();
    (registration > 0).then(|| cardap_store::personal_subject(operator, &encoded).ok()).flatten()
}

/// An operator's login record (`op` is his operator stream, loaded in the same decision): from its own stream,
/// read from its last snapshot, or — while that stream is empty — from the bookkeeping his operator stream held
/// before the split.
pub(crate) async fn load_logins(
    tx: &mut Tx,
    logins: &StreamId,
    op: &Loaded<Operator>,
) -> Result<Loaded<OperatorLogins>, OperatorError> {
    let mut login = tx.load_snapshotted::<OperatorLogins, OperatorError>(logins).await?;
    if login.version == 0 {
        login.state = op.state.legacy_login();
    }
    Ok(login)
}

/// The stream of one operator; ids are parsed values, which always make a valid stream id.
pub fn operator_stream(municipality: Option<&MunicipalityCode>, operator_id: &OperatorId) -> StreamId {
    crate::ids::stream_of::<Operator>(&operator::stream_key(municipality, operator_id))
}

/// The login stream of one operator (failed logins, locks, logins), keyed like his own stream.
pub fn login_stream(municipality: Option<&MunicipalityCode>, operator_id: &OperatorId) -> StreamId {
    crate::ids::stream_of::<OperatorLogins>(&operator::stream_key(municipality, operator_id))
}

/// The acting operator as the use cases know him.
pub(crate) fn session_of(operator: OperatorRow, password_change_required: bool, method: AuthMethod) -> SessionOf {
    SessionOf {
        actor: Actor {
            operator: operator.key,
            municipality: operator.municipality,
            roles: operator.roles,
            business_systems: operator.business_systems,
            password_change_required,
        },
        operator_id: operator.operator_id,
        method,
    }
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn internal<E: std::error::Error + 'static>(e: impl std::fmt::Display) -> CommandError<E> {
    CommandError::Internal(e.to_string())
}

fn operator_error(e: CommandError<OperatorError>) -> CommandError<PasswordError> {
    e.map_domain(PasswordError::Operator)
}

impl From<AccessFailure> for CommandError<PasswordError> {
    fn from(e: AccessFailure) -> Self {
        match e {
            AccessFailure::Store(s) => CommandError::Store(s),
            other => internal(other),
        }
    }
}
