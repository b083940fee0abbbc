//! Login bookkeeping of one operator on a stream of its own (`operator_login-<login>`): failed logins, locks,
//! successful logins and an administrator's unlock. Kept apart from the operator's own stream so that logging in
//! never changes the operator's version (his `ETag`), and no command on the operator loads his login history.
//!
//! Owns the lockout rules ([`LoginState::decide`]); the operator aggregate's older streams, which still hold
//! such events from before this split, fold them with the same [`LoginState`]. The time and the policy arrive in
//! the command.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::operator::authenticators::{CredentialId, counter_regressed};
use crate::operator::{LockoutPolicy, OperatorError, OperatorEvent};
use crate::{Aggregate, Snapshotted, Timestamp};

/// What a login decision needs to know of the past (snapshotted as [`LoginSnapshot`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoginState {
    /// Failed logins since the last successful login, lock or unlock.
    failures_in_row: u32,
    /// Locks since the last unlock by an administrator (or revocation).
    lockouts: u32,
    /// `Some(None)`: locked until unlocked; `Some(Some(t))`: locked until `t` (possibly past already).
    lock: Option<Option<Timestamp>>,
    last_login_at: Option<Timestamp>,
    /// The highest signature counter each authenticator showed in a biometric login.
    sign_counts: BTreeMap<CredentialId, u32>,
}

/// The snapshot form of a [`LoginState`], [`OperatorLogins::SNAPSHOT_KIND`]: a change of these fields changes that
/// kind. (Not the state itself: JSON cannot tell `Some(None)`, locked until unlocked, from `None`.)
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginSnapshot {
    failures_in_row: u32,
    lockouts: u32,
    locked: bool,
    locked_until: Option<Timestamp>,
    last_login_at: Option<Timestamp>,
    /// Credential ID (base64url) → the highest signature counter seen in a biometric login.
    sign_counts: BTreeMap<CredentialId, u32>,
}

/// A login fact to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginCommand {
    /// A login with his ID and a wrong password.
    RecordFailure { at: Timestamp, policy: LockoutPolicy },
    /// A login with the right password; refused while he is locked.
    RecordLogin { at: Timestamp },
    /// A biometric login whose assertion WebAuthn verified (signature, user verification, challenge, origin):
    /// refused while he is locked; a signature counter that does not move past the last one seen (`baseline`, the
    /// counter at registration, or a later login's) is recorded as [`OperatorEvent::SignCountRegressed`] and
    /// counted as a failed login.
    RecordBiometricLogin {
        at: Timestamp,
        credential_id: CredentialId,
        sign_count: u32,
        baseline: u32,
        policy: LockoutPolicy,
    },
    /// An administrator lifts a lock and forgets the failures and lockouts so far; nothing when not locked.
    Unlock,
    /// A revocation: whatever was recorded is forgotten, so a registration after it starts afresh.
    Forget,
}

impl LoginState {
    /// Whether a login at `at` is refused because of a lock.
    pub fn is_locked_at(&self, at: Timestamp) -> bool {
        match self.lock {
            None => false,
            Some(None) => true,
            Some(Some(until)) => at < until,
        }
    }

    /// The recorded lock: `None` no lock; `Some(None)` until an administrator unlocks; `Some(Some(t))` until `t`.
    pub fn lock(&self) -> Option<Option<Timestamp>> {
        self.lock
    }

    pub fn failures_in_row(&self) -> u32 {
        self.failures_in_row
    }

    pub fn lockouts(&self) -> u32 {
        self.lockouts
    }

    pub fn last_login_at(&self) -> Option<Timestamp> {
        self.last_login_at
    }

    /// The highest signature counter this authenticator showed in a biometric login (0: none yet).
    pub fn sign_count(&self, credential_id: &CredentialId) -> u32 {
        self.sign_counts.get(credential_id).copied().unwrap_or(0)
    }

    /// Whether there is anything an unlock would forget.
    pub fn is_clean(&self) -> bool {
        self.lock.is_none() && self.failures_in_row == 0 && self.lockouts == 0
    }

    pub fn decide(&self, command: LoginCommand) -> Result<Vec<OperatorEvent>, OperatorError> {
        use OperatorEvent as E;
        match command {
            LoginCommand::RecordFailure { at, policy } => {
                let failures_in_row = self.failures_in_row.saturating_add(1);
                let mut events = vec![E::LoginFailed { at, failures_in_row }];
                if !self.is_locked_at(at) && failures_in_row >= policy.max_failures {
                    let permanent = policy.max_lockouts > 0 && self.lockouts.saturating_add(1) >= policy.max_lockouts;
                    let until = (!permanent).then(|| at.plus_seconds(policy.lock_seconds));
                    events.push(E::Locked { at, until });
                }
                Ok(events)
            }
            LoginCommand::RecordLogin { at } if self.is_locked_at(at) => {
                Err(OperatorError::Locked { until: self.lock.flatten() })
            }
            LoginCommand::RecordLogin { at } => Ok(vec![E::LoggedIn { at }]),
            LoginCommand::RecordBiometricLogin { at, .. } if self.is_locked_at(at) => {
                Err(OperatorError::Locked { until: self.lock.flatten() })
            }
            LoginCommand::RecordBiometricLogin { at, credential_id, sign_count, baseline, policy } => {
                let last_sign_count = baseline.max(self.sign_count(&credential_id));
                if counter_regressed(last_sign_count, sign_count) {
                    let regressed = E::SignCountRegressed { at, credential_id, sign_count, last_sign_count };
                    let failed = self.decide(LoginCommand::RecordFailure { at, policy })?;
                    return Ok(std::iter::once(regressed).chain(failed).collect());
                }
                Ok(vec![E::AuthenticatorUsed { at, credential_id, sign_count }, E::LoggedIn { at }])
            }
            LoginCommand::Unlock if self.lock.is_none() => Ok(vec![]),
            LoginCommand::Forget if self.is_clean() => Ok(vec![]),
            LoginCommand::Unlock | LoginCommand::Forget => Ok(vec![E::Unlocked]),
        }
    }

    /// Folds one event; events that are not about logins change nothing.
    pub fn evolve(&mut self, event: &OperatorEvent) {
        use OperatorEvent as E;
        match event {
            E::LoginFailed { failures_in_row, .. } => self.failures_in_row = *failures_in_row,
            E::LoggedIn { at } => {
                self.last_login_at = Some(*at);
                self.failures_in_row = 0;
                self.lock = None;
            }
            E::Locked { until, .. } => {
                self.lock = Some(*until);
                self.lockouts = self.lockouts.saturating_add(1);
                self.failures_in_row = 0;
            }
            E::Unlocked => {
                self.lock = None;
                self.lockouts = 0;
                self.failures_in_row = 0;
            }
            E::Revoked { .. } => self.lock = None,
            E::AuthenticatorUsed { credential_id, sign_count, .. } => {
                let seen = self.sign_counts.entry(credential_id.clone()).or_insert(0);
                *seen = (*seen).max(*sign_count);
            }
            _ => {}
        }
    }
}

/// The login stream of one operator, keyed like his operator stream
/// ([`crate::operator::stream_key`]).
#[derive(Debug, Clone, Copy)]
pub struct OperatorLogins;

impl Aggregate for OperatorLogins {
    type State = LoginState;
    type Command = LoginCommand;
    type Event = OperatorEvent;
    type Error = OperatorError;

    const STREAM_TYPE: &'static str = "operator_login";

    fn decide(state: &Self::State, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error> {
        state.decide(command)
    }

    fn evolve(mut state: Self::State, event: &Self::Event) -> Self::State {
        state.evolve(event);
        state
    }
}

/// A login stream gets one event per failed login for as long as anyone guesses: every failure stays on it for the
/// auditors, and a login decision folds only the events after the last snapshot.
impl Snapshotted for OperatorLogins {
    const SNAPSHOT_KIND: &'static str = "operator_login/2";
    const SNAPSHOT_EVERY: u64 = 16;

    fn to_snapshot(state: &LoginState) -> serde_json::Value {
        let form = LoginSnapshot {
            failures_in_row: state.failures_in_row,
            lockouts: state.lockouts,
            locked: state.lock.is_some(),
            locked_until: state.lock.flatten(),
            last_login_at: state.last_login_at,
            sign_counts: state.sign_counts.clone(),
        };
        // Plain numbers and booleans always serialize; `Null` would only make the next reader fold from the start.
        serde_json::to_value(form).unwrap_or(serde_json::Value::Null)
    }

    fn from_snapshot(value: serde_json::Value) -> Option<LoginState> {
        let form: LoginSnapshot = serde_json::from_value(value).ok()?;
        Some(LoginState {
            failures_in_row: form.failures_in_row,
            lockouts: form.lockouts,
            lock: form.locked.then_some(form.locked_until),
            last_login_at: form.last_login_at,
            sign_counts: form.sign_counts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::given;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_unix(1_700_000_000 + s)
    }

    fn cred() -> CredentialId {
        CredentialId::from_bytes(vec![1, 2, 3]).unwrap()
    }

    fn biometric(at: Timestamp, sign_count: u32, baseline: u32) -> LoginCommand {
        LoginCommand::RecordBiometricLogin {
            at,
            credential_id: cred(),
            sign_count,
            baseline,
            policy: LockoutPolicy::default(),
        }
    }

    #[test]
    fn given_a_registered_counter_when_a_login_counts_past_it_then_it_is_recorded_with_the_login() {
        let state = given::<OperatorLogins>([]).when(biometric(t(1), 4, 3)).then([
            OperatorEvent::AuthenticatorUsed { at: t(1), credential_id: cred(), sign_count: 4 },
            OperatorEvent::LoggedIn { at: t(1) },
        ]);
        assert_eq!(state.sign_count(&cred()), 4);
        // The next login must count past 4, whatever the registration said.
        given::<OperatorLogins>([OperatorEvent::AuthenticatorUsed { at: t(1), credential_id: cred(), sign_count: 4 }])
            .when(biometric(t(2), 4, 3))
            .then([
                OperatorEvent::SignCountRegressed {
                    at: t(2),
                    credential_id: cred(),
                    sign_count: 4,
                    last_sign_count: 4,
                },
                OperatorEvent::LoginFailed { at: t(2), failures_in_row: 1 },
            ]);
    }

    #[test]
    fn given_a_counter_when_an_assertion_goes_backwards_then_it_is_recorded_and_counts_as_a_failure() {
        let failures: Vec<OperatorEvent> =
            (1..=4).map(|n| OperatorEvent::LoginFailed { at: t(0), failures_in_row: n }).collect();
        given::<OperatorLogins>(failures).when(biometric(t(1), 2, 9)).then([
            OperatorEvent::SignCountRegressed { at: t(1), credential_id: cred(), sign_count: 2, last_sign_count: 9 },
            OperatorEvent::LoginFailed { at: t(1), failures_in_row: 5 },
            OperatorEvent::Locked { at: t(1), until: Some(t(901)) },
        ]);
    }

    #[test]
    fn given_an_authenticator_without_a_counter_then_every_login_passes() {
        given::<OperatorLogins>([OperatorEvent::AuthenticatorUsed { at: t(1), credential_id: cred(), sign_count: 0 }])
            .when(biometric(t(2), 0, 0))
            .then([
                OperatorEvent::AuthenticatorUsed { at: t(2), credential_id: cred(), sign_count: 0 },
                OperatorEvent::LoggedIn { at: t(2) },
            ]);
    }

    #[test]
    fn given_a_lock_when_a_valid_assertion_comes_then_it_is_refused() {
        given::<OperatorLogins>([OperatorEvent::Locked { at: t(0), until: None }])
            .when(biometric(t(1), 5, 0))
            .then_err(OperatorError::Locked { until: None });
    }

    #[test]
    fn five_failures_lock_for_the_policy_time_and_a_login_then_is_refused() {
        let policy = LockoutPolicy::default();
        let failures: Vec<OperatorEvent> =
            (1..=4).map(|n| OperatorEvent::LoginFailed { at: t(0), failures_in_row: n }).collect();
        given::<OperatorLogins>(failures.clone()).when(LoginCommand::RecordFailure { at: t(1), policy }).then([
            OperatorEvent::LoginFailed { at: t(1), failures_in_row: 5 },
            OperatorEvent::Locked { at: t(1), until: Some(t(901)) },
        ]);
        let mut locked = failures;
        locked.push(OperatorEvent::Locked { at: t(1), until: Some(t(901)) });
        given::<OperatorLogins>(locked.clone())
            .when(LoginCommand::RecordLogin { at: t(2) })
            .then_err(OperatorError::Locked { until: Some(t(901)) });
        given::<OperatorLogins>(locked)
            .when(LoginCommand::RecordLogin { at: t(901) })
            .then([OperatorEvent::LoggedIn { at: t(901) }]);
    }

    #[test]
    fn an_unlock_lifts_a_lock_and_a_revocation_forgets_even_failures() {
        let failed = OperatorEvent::LoginFailed { at: t(0), failures_in_row: 1 };
        given::<OperatorLogins>([]).when(LoginCommand::Unlock).then([]);
        given::<OperatorLogins>([failed.clone()]).when(LoginCommand::Unlock).then([]);
        given::<OperatorLogins>([OperatorEvent::Locked { at: t(0), until: None }])
            .when(LoginCommand::Unlock)
            .then([OperatorEvent::Unlocked]);
        given::<OperatorLogins>([]).when(LoginCommand::Forget).then([]);
        given::<OperatorLogins>([failed]).when(LoginCommand::Forget).then([OperatorEvent::Unlocked]);
    }

    #[test]
    fn a_snapshot_gives_back_the_state_it_was_taken_of() {
        let policy = LockoutPolicy::default();
        let history = [
            OperatorEvent::LoggedIn { at: t(0) },
            OperatorEvent::LoginFailed { at: t(1), failures_in_row: 1 },
            OperatorEvent::Locked { at: t(2), until: Some(t(902)) },
            OperatorEvent::LoginFailed { at: t(903), failures_in_row: 1 },
        ];
        let state = OperatorLogins::fold(&history);
        let again = OperatorLogins::from_snapshot(OperatorLogins::to_snapshot(&state)).unwrap();
        assert_eq!(again, state);
        // Decisions after the snapshot are the decisions after the whole history.
        let command = LoginCommand::RecordFailure { at: t(904), policy };
        assert_eq!(again.decide(command.clone()), state.decide(command));
    }

    #[test]
    fn the_snapshot_form_is_the_one_its_kind_names() {
        // Saved snapshots of kind `operator_login/2` have this form: a change here must change SNAPSHOT_KIND, or
        // old snapshots would be read as the new shape (`operator_login/1` had no `sign_counts`).
        let state = OperatorLogins::fold(&[
            OperatorEvent::LoggedIn { at: t(0) },
            OperatorEvent::Locked { at: t(2), until: None },
            OperatorEvent::AuthenticatorUsed { at: t(3), credential_id: cred(), sign_count: 7 },
        ]);
        assert_eq!(OperatorLogins::SNAPSHOT_KIND, "operator_login/2");
        assert_eq!(
            OperatorLogins::to_snapshot(&state),
            serde_json::json!({"failures_in_row": 0, "lockouts": 1, "locked": true, "locked_until": null,
                "last_login_at": 1_700_000_000, "sign_counts": {"AQID": 7}})
        );
        assert_eq!(OperatorLogins::from_snapshot(serde_json::json!({"failures": 3})), None);
    }
}
