//! The `Operator` aggregate (オペレータ, 手引き I 2.1): registration with the management information and the
//! permitted business systems, profile and role changes, password changes and resets, revocation (失効),
//! business-internal IDs (業務内ID), his authenticators for biometric login (生体情報登録, `authenticators`), and
//! failed logins that lock him out. The claim that keeps a 業務内ID to one
//! operator per municipality and business system is its own small aggregate (`claim`).
//!
//! An operator's stream is keyed by his login (municipality + オペレータID), so that login is unique by
//! construction. Owns the operator's value types (`values`), the login rules (`login`) and the events
//! (`events`). No event carries a password, a hash or any other secret; the password hash lives outside the
//! event log. Facts from other aggregates (which business systems the municipality may use now) and the time
//! arrive inside the command.
//!
//! Length: about half of this file is its given/when/then tests, one per branch of `decide`; the code is under 600
//! lines.

pub mod authenticators;
mod claim;
mod events;
mod login;
mod logins;
mod values;

use std::collections::BTreeMap;

use uuid::Uuid;

pub use authenticators::{
    Aaguid, AuthenticatorLabel, CosePublicKey, CredentialId, MAX_AUTHENTICATORS, NewAuthenticator,
    RegisteredAuthenticator,
};
pub use claim::{ClaimCommand, ClaimEvent, ClaimState, InternalIdClaim, claim_stream_key};
pub use events::OperatorEvent;
pub use login::{AuthMethod, LockoutPolicy, Password, PasswordPolicy};
pub use logins::{LoginCommand, LoginState, OperatorLogins};
pub use values::{
    Extension, InternalId, InternalIdAssignment, OperatorId, OperatorName, OperatorProfile, OperatorProfilePatch, Role,
};

use crate::contact::Text100;
use crate::resident::Erasable;
use crate::{Aggregate, BusinessId, MunicipalityCode, OperatorKey, Timestamp};

/// The stream id of an operator: his login, `<municipality code>.<operator ID>` (`131016.OP0501`), or
/// `system.<operator ID>` for the system administrator, who belongs to no municipality.
pub fn stream_key(municipality: Option<&MunicipalityCode>, operator_id: &OperatorId) -> String {
    match municipality {
        Some(code) => format!("{code}.{operator_id}"),
        None => format!("system.{operator_id}"),
    }
}

/// The UUID v5 namespace of `OperatorKey::for_login`. Fixed forever: changing it changes every key.
pub const OPERATOR_KEY_NAMESPACE: Uuid = Uuid::from_u128(0xa7ed_d2ce_99cd_43e1_82fd_a667_7649_1e95);

impl OperatorKey {
    /// The key of the operator with this login: UUID v5 of `stream_key(municipality, operator_id)` in
    /// `OPERATOR_KEY_NAMESPACE`, so a login always maps to the same key, also across re-registration.
    pub fn for_login(municipality: Option<&MunicipalityCode>, operator_id: &OperatorId) -> OperatorKey {
        OperatorKey::from_uuid(Uuid::new_v5(&OPERATOR_KEY_NAMESPACE, stream_key(municipality, operator_id).as_bytes()))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum OperatorCommand {
    /// オペレータ登録, also the new registration decision that re-enables a revoked operator.
    Register {
        key: OperatorKey,
        /// `None` for the system administrator, who belongs to no municipality.
        municipality: Option<MunicipalityCode>,
        operator_id: OperatorId,
        profile: OperatorProfile,
        roles: Vec<Role>,
        /// 許可業務: the business systems he may use; any order, duplicates ignored.
        business_systems: Vec<BusinessId>,
        /// Fact: the business systems the municipality may use now (shared use); for the system administrator,
        /// all registered ones.
        usable: Vec<BusinessId>,
    },
    /// オペレータ登録 together with his 業務内IDs (an import, a migration): one decision that names every refusal
    /// of both at once, and whose events are the registration followed by one assignment per 業務内ID. Each
    /// 業務内ID must be in one of the business systems he is given.
    RegisterWithInternalIds {
        key: OperatorKey,
        municipality: Option<MunicipalityCode>,
        operator_id: OperatorId,
        profile: OperatorProfile,
        roles: Vec<Role>,
        business_systems: Vec<BusinessId>,
        internal_ids: BTreeMap<BusinessId, InternalIdAssignment>,
        /// Fact, as in `Register`.
        usable: Vec<BusinessId>,
    },
    /// Replace the management information; identical information yields no event.
    UpdateProfile {
        profile: OperatorProfile,
    },
    ChangeRoles {
        roles: Vec<Role>,
    },
    /// Replace the permitted business systems; a dropped one also loses its 業務内ID.
    ChangeBusinessSystems {
        business_systems: Vec<BusinessId>,
        /// Fact, as in `Register`.
        usable: Vec<BusinessId>,
    },
    /// One change of several parts (an HTTP PATCH): every part given is decided, and either all of them go
    /// through or none does. A part that is `None` is left as it is.
    Change {
        profile: Option<OperatorProfile>,
        roles: Option<Vec<Role>>,
        business_systems: Option<Vec<BusinessId>>,
        /// Fact, as in `Register` (needed when `business_systems` is given).
        usable: Vec<BusinessId>,
    },
    /// A PATCH: the profile fields it names are merged with his profile as it is now, inside the decision;
    /// then decided as `Change`.
    Patch {
        profile: OperatorProfilePatch,
        roles: Option<Vec<Role>>,
        business_systems: Option<Vec<BusinessId>>,
        /// Fact, as in `Register`.
        usable: Vec<BusinessId>,
    },
    /// He changed his own password (the new hash is stored outside the event log).
    ChangePassword {
        at: Timestamp,
    },
    /// An administrator set a new password (パスワード一括変更 included).
    ResetPassword {
        at: Timestamp,
    },
    /// 失効: from now on he can do nothing; only a new `Register` enables him again.
    Revoke {
        at: Timestamp,
    },
    /// A login with his ID and a wrong password.
    RecordLoginFailure {
        at: Timestamp,
        policy: LockoutPolicy,
    },
    /// A login with the right password; refused while he is locked.
    RecordLogin {
        at: Timestamp,
    },
    /// An administrator lifts a lock and forgets the failures and lockouts so far.
    Unlock,
    /// 操作者権限登録: a business-system administrator maps him to his 業務内ID and that system's role.
    AssignInternalId {
        business_id: BusinessId,
        internal_id: InternalId,
        role: Option<Text100>,
    },
    RemoveInternalId {
        business_id: BusinessId,
    },
    /// 生体情報登録: an authenticator whose registration ceremony WebAuthn verified.
    RegisterAuthenticator {
        authenticator: NewAuthenticator,
        at: Timestamp,
        /// Fact: the authenticator models his municipality allows (its biometric policy); empty: any.
        allowed_models: Vec<Aaguid>,
    },
    RemoveAuthenticator {
        credential_id: CredentialId,
        at: Timestamp,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OperatorError {
    #[error("the operator is already registered")]
    AlreadyRegistered,
    #[error("an operator needs at least one role")]
    NoRoles,
    #[error("a system administrator belongs to no municipality")]
    SystemAdminHasNoMunicipality,
    #[error("an operator other than a system administrator must belong to a municipality")]
    MunicipalityRequired,
    #[error("no operator with this ID is registered")]
    NotRegistered,
    #[error("the operator has been revoked")]
    Revoked,
    #[error("business system {0} is not usable by the operator's municipality")]
    BusinessSystemNotUsable(BusinessId),
    #[error("the operator is locked {}", locked_until_text(.until))]
    Locked {
        /// `None`: until an administrator unlocks.
        until: Option<Timestamp>,
    },
    #[error("the operator has no business-internal ID in this business system")]
    InternalIdNotAssigned,
    #[error("the operator is not permitted to use business system {0}")]
    BusinessSystemNotPermitted(BusinessId),
    /// Another operator (not revoked) holds this 業務内ID in this business system of the municipality (see
    /// [`InternalIdClaim`]).
    #[error("another operator holds this business-internal ID in business system {0}")]
    InternalIdTaken(BusinessId),
    /// More than one of the above about what a registration or a change asks for (its roles, business systems
    /// and 業務内IDs), in the order of the form, so that the clerk hears of all of them at once. A refusal about
    /// the operator as he stands (already registered, revoked, locked …) always comes alone.
    #[error("{} problems with the operator", .0.len())]
    Refused(Vec<OperatorError>),
    /// His municipality allows only some authenticator models (fingerprint or vein readers), and not this one.
    #[error("authenticator model {0} is not one the municipality allows")]
    AuthenticatorModelNotAllowed(Aaguid),
    #[error("this authenticator is already registered for the operator")]
    AuthenticatorAlreadyRegistered,
    #[error("no authenticator with this credential ID is registered for the operator")]
    AuthenticatorNotRegistered,
    #[error("an operator may have at most {max} authenticators")]
    TooManyAuthenticators { max: usize },
    /// His management information was erased (its key destroyed) while he is registered — a restored database,
    /// say: a change must give it whole again, starting with the name.
    #[error("the operator's management information was erased; give it again, with the name")]
    ProfileErased,
}

impl OperatorError {
    /// Each refusal on its own: the parts of `Refused`, or this one.
    pub fn into_refusals(self) -> Vec<OperatorError> {
        match self {
            OperatorError::Refused(all) => all,
            one => vec![one],
        }
    }

    /// No refusal, the one, or all of them as `Refused`.
    fn of(mut refused: Vec<OperatorError>) -> Result<(), OperatorError> {
        match refused.len() {
            0 => Ok(()),
            1 => Err(refused.remove(0)),
            _ => Err(OperatorError::Refused(refused)),
        }
    }
}

fn locked_until_text(until: &Option<Timestamp>) -> String {
    match until {
        Some(t) => format!("until {} (Unix seconds)", t.unix()),
        None => "until an administrator unlocks him".to_owned(),
    }
}

impl crate::message::Localized for OperatorError {
    fn message_ja(&self) -> String {
        let text: &'static str = match self {
            Self::AlreadyRegistered => "このオペレータは既に登録されています",
            Self::NoRoles => "権限を1つ以上選択してください",
            Self::SystemAdminHasNoMunicipality => "システム管理者には市町村・任意団体を指定できません",
            Self::MunicipalityRequired => "市町村・任意団体を選択してください",
            Self::NotRegistered => "このオペレータは登録されていません",
            Self::Revoked => "このオペレータは失効しています",
            Self::BusinessSystemNotUsable(_) => "共同利用が許可されていない業務システムは選択できません",
            Self::Locked { until: Some(_) } => {
                "ログインに続けて失敗したため、一時的にロックされています。しばらくしてから再度お試しください"
            }
            Self::Locked { until: None } => {
                "ログインに続けて失敗したため、ロックされています。管理者にロック解除を依頼してください"
            }
            Self::InternalIdNotAssigned => "この業務システムの業務内IDは登録されていません",
            Self::BusinessSystemNotPermitted(_) => "このオペレータに許可されていない業務システムです",
            Self::InternalIdTaken(_) => "この業務内IDは他のオペレータに割り当てられています",
            Self::Refused(all) => return format!("オペレータの登録内容に{}件の誤りがあります", all.len()),
            Self::AuthenticatorModelNotAllowed(_) => {
                "この認証器（生体認証装置）の機種は、この市町村・任意団体では使用が認められていません"
            }
            Self::AuthenticatorAlreadyRegistered => "この認証器は既に登録されています",
            Self::AuthenticatorNotRegistered => "この認証器は登録されていません",
            Self::TooManyAuthenticators { max } => return format!("認証器は1人{max}台まで登録できます"),
            Self::ProfileErased => "このオペレータの登録情報は消去されています。氏名・組織名から登録し直してください",
        };
        text.to_owned()
    }
}

/// The folded state; `Default` is "not registered".
#[derive(Debug, Clone, Default)]
pub struct OperatorState {
    registered: Option<Registered>,
    /// Registrations of this login so far, revoked ones included: the next one is `registrations + 1`.
    registrations: u32,
}

#[derive(Debug, Clone)]
struct Registered {
    key: OperatorKey,
    municipality: Option<MunicipalityCode>,
    operator_id: OperatorId,
    /// Which registration of his login this is: his management information is sealed under its own key.
    registration: u32,
    /// `Erased` once he was revoked (its key destroyed), or when the key is gone for another reason.
    profile: Erasable<OperatorProfile>,
    roles: Vec<Role>,
    business_systems: Vec<BusinessId>,
    internal_ids: BTreeMap<BusinessId, InternalIdAssignment>,
    revoked: bool,
    password_changed_at: Option<Timestamp>,
    /// Login bookkeeping recorded on this stream before it moved to [`OperatorLogins`]: the seed of the
    /// operator's login stream while that is still empty.
    login: LoginState,
    /// His authenticators for biometric login, by credential ID.
    authenticators: BTreeMap<CredentialId, RegisteredAuthenticator>,
}

static NO_INTERNAL_IDS: BTreeMap<BusinessId, InternalIdAssignment> = BTreeMap::new();

impl OperatorState {
    /// Whether he was ever registered (a revoked operator still is; see `is_revoked`).
    pub fn is_registered(&self) -> bool {
        self.registered.is_some()
    }

    pub fn is_revoked(&self) -> bool {
        self.registered.as_ref().is_some_and(|r| r.revoked)
    }

    /// Registered and not revoked.
    pub fn is_active(&self) -> bool {
        self.registered.as_ref().is_some_and(|r| !r.revoked)
    }

    pub fn key(&self) -> Option<OperatorKey> {
        self.registered.as_ref().map(|r| r.key)
    }

    /// `None` when not registered and for the system administrator.
    pub fn municipality(&self) -> Option<&MunicipalityCode> {
        self.registered.as_ref().and_then(|r| r.municipality.as_ref())
    }

    pub fn operator_id(&self) -> Option<&OperatorId> {
        self.registered.as_ref().map(|r| &r.operator_id)
    }

    /// 氏名・組織名; the same as `profile().name`. `None` also once his management information was erased.
    pub fn name(&self) -> Option<&OperatorName> {
        self.profile().map(|p| &p.name)
    }

    /// His management information; `None` when not registered or once it was erased (revocation erases it).
    pub fn profile(&self) -> Option<&OperatorProfile> {
        self.registered.as_ref().and_then(|r| r.profile.known())
    }

    /// Which registration of his login the current (or last) one is; 0 when never registered.
    pub fn registration(&self) -> u32 {
        self.registered.as_ref().map_or(0, |r| r.registration)
    }

    /// The roles as recorded (also for a revoked operator); empty when not registered.
    pub fn roles(&self) -> &[Role] {
        self.registered.as_ref().map_or(&[], |r| &r.roles)
    }

    /// Whether he may act in `role` now: never once revoked.
    pub fn has_role(&self, role: Role) -> bool {
        self.is_active() && self.roles().contains(&role)
    }

    /// 許可業務 as recorded, sorted; empty when not registered.
    pub fn business_systems(&self) -> &[BusinessId] {
        self.registered.as_ref().map_or(&[], |r| &r.business_systems)
    }

    /// His 業務内ID per business system.
    pub fn internal_ids(&self) -> &BTreeMap<BusinessId, InternalIdAssignment> {
        self.registered.as_ref().map_or(&NO_INTERNAL_IDS, |r| &r.internal_ids)
    }

    pub fn internal_id(&self, business_id: &BusinessId) -> Option<&InternalIdAssignment> {
        self.internal_ids().get(business_id)
    }

    /// Whether a login at `at` is refused because of a lock.
    pub fn is_locked_at(&self, at: Timestamp) -> bool {
        self.registered.as_ref().is_some_and(|r| r.login.is_locked_at(at))
    }

    /// The login bookkeeping on this stream (before it moved to its own stream; see [`OperatorLogins`]).
    pub fn legacy_login(&self) -> LoginState {
        self.registered.as_ref().map(|r| r.login.clone()).unwrap_or_default()
    }

    /// The recorded lock: `None` no lock; `Some(None)` until an administrator unlocks; `Some(Some(t))` until
    /// `t`, which may have passed already (use `is_locked_at` to decide a login).
    pub fn locked_until(&self) -> Option<Option<Timestamp>> {
        self.registered.as_ref().and_then(|r| r.login.lock())
    }

    /// Failed logins since the last successful login, lock or unlock.
    pub fn failures_in_row(&self) -> u32 {
        self.registered.as_ref().map_or(0, |r| r.login.failures_in_row())
    }

    /// Locks since registration or the last unlock by an administrator.
    pub fn lockouts(&self) -> u32 {
        self.registered.as_ref().map_or(0, |r| r.login.lockouts())
    }

    pub fn password_changed_at(&self) -> Option<Timestamp> {
        self.registered.as_ref().and_then(|r| r.password_changed_at)
    }

    pub fn last_login_at(&self) -> Option<Timestamp> {
        self.registered.as_ref().and_then(|r| r.login.last_login_at())
    }

    /// His authenticators for biometric login, in credential ID order; none when not registered.
    pub fn authenticators(&self) -> impl Iterator<Item = &RegisteredAuthenticator> {
        self.registered.iter().flat_map(|r| r.authenticators.values())
    }

    pub fn authenticator(&self, credential_id: &CredentialId) -> Option<&RegisteredAuthenticator> {
        self.registered.as_ref().and_then(|r| r.authenticators.get(credential_id))
    }

    /// A biometric login (手引き I 2.1(4)(b)) whose assertion WebAuthn verified with `credential_id`, decided on
    /// his login record `login` (the events go to his login stream): only an active operator, only with an
    /// authenticator still registered for him, and its signature counter must move past the last one seen
    /// ([`LoginCommand::RecordBiometricLogin`]).
    pub fn decide_biometric_login(
        &self,
        login: &LoginState,
        at: Timestamp,
        credential_id: &CredentialId,
        sign_count: u32,
        policy: LockoutPolicy,
    ) -> Result<Vec<OperatorEvent>, OperatorError> {
        let op = self.registered.as_ref().ok_or(OperatorError::NotRegistered)?;
        if op.revoked {
            return Err(OperatorError::Revoked);
        }
        let registered = op.authenticators.get(credential_id).ok_or(OperatorError::AuthenticatorNotRegistered)?;
        login.decide(LoginCommand::RecordBiometricLogin {
            at,
            credential_id: credential_id.clone(),
            sign_count,
            baseline: registered.sign_count,
            policy,
        })
    }
}

/// Roles deduplicated and sorted, and consistent with belonging (or not) to a municipality.
fn checked_roles(mut roles: Vec<Role>, municipality: Option<&MunicipalityCode>) -> Result<Vec<Role>, OperatorError> {
    roles.sort_unstable();
    roles.dedup();
    if roles.is_empty() {
        return Err(OperatorError::NoRoles);
    }
    let is_system_admin = roles.contains(&Role::SystemAdmin);
    let has_municipal_role = roles.iter().any(|&role| role != Role::SystemAdmin);
    if is_system_admin && municipality.is_some() {
        return Err(OperatorError::SystemAdminHasNoMunicipality);
    }
    if has_municipal_role && municipality.is_none() {
        return Err(OperatorError::MunicipalityRequired);
    }
    Ok(roles)
}

/// Business systems deduplicated and sorted, each one usable now; else every one that is not.
fn checked_business_systems(
    business_systems: Vec<BusinessId>,
    usable: &[BusinessId],
) -> Result<Vec<BusinessId>, OperatorError> {
    let business_systems = sorted_unique(business_systems);
    OperatorError::of(unusable(&business_systems, usable).collect())?;
    Ok(business_systems)
}

fn sorted_unique(mut business_systems: Vec<BusinessId>) -> Vec<BusinessId> {
    business_systems.sort_unstable();
    business_systems.dedup();
    business_systems
}

/// A refusal for each of `business_systems` that is not usable now.
fn unusable<'a>(
    business_systems: &'a [BusinessId],
    usable: &'a [BusinessId],
) -> impl Iterator<Item = OperatorError> + 'a {
    business_systems
        .iter()
        .filter(|id| !usable.contains(id))
        .map(|id| OperatorError::BusinessSystemNotUsable(id.clone()))
}

/// What a registration with these 業務内IDs asks for, checked: its roles and business systems (deduplicated,
/// sorted), or every refusal of its roles, business systems and 業務内IDs.
fn checked_registration(
    municipality: Option<&MunicipalityCode>,
    roles: Vec<Role>,
    business_systems: Vec<BusinessId>,
    internal_ids: &BTreeMap<BusinessId, InternalIdAssignment>,
    usable: &[BusinessId],
) -> Result<(Vec<Role>, Vec<BusinessId>), OperatorError> {
    let mut refused = vec![];
    let roles = checked_roles(roles, municipality).map_err(|e| refused.push(e)).unwrap_or_default();
    let business_systems = sorted_unique(business_systems);
    refused.extend(unusable(&business_systems, usable));
    let unpermitted = internal_ids.keys().filter(|b| !business_systems.contains(b));
    refused.extend(unpermitted.map(|b| OperatorError::BusinessSystemNotPermitted(b.clone())));
    OperatorError::of(refused)?;
    Ok((roles, business_systems))
}

#[derive(Debug)]
pub struct Operator;

impl Operator {
    /// Every command but `Register`, on an operator who is registered and not revoked.
    fn decide_active(op: &Registered, command: OperatorCommand) -> Result<Vec<OperatorEvent>, OperatorError> {
        use OperatorCommand as C;
        use OperatorEvent as E;

        match command {
            C::Register { .. } | C::RegisterWithInternalIds { .. } => Err(OperatorError::AlreadyRegistered),
            C::UpdateProfile { profile } if op.profile.known() == Some(&profile) => Ok(vec![]),
            C::UpdateProfile { profile } => {
                Ok(vec![E::ProfileUpdated { registration: op.registration, profile: Erasable::Known(profile) }])
            }
            C::ChangeRoles { roles } => {
                let roles = checked_roles(roles, op.municipality.as_ref())?;
                Ok(if roles == op.roles { vec![] } else { vec![E::RolesChanged { roles }] })
            }
            C::ChangeBusinessSystems { business_systems, usable } => {
                let business_systems = checked_business_systems(business_systems, &usable)?;
                if business_systems == op.business_systems {
                    return Ok(vec![]);
                }
                let dropped: Vec<E> = op
                    .internal_ids
                    .keys()
                    .filter(|id| !business_systems.contains(id))
                    .map(|id| E::InternalIdRemoved { business_id: id.clone() })
                    .collect();
                Ok(std::iter::once(E::BusinessSystemsChanged { business_systems }).chain(dropped).collect())
            }
            C::Change { profile, roles, business_systems, usable } => {
                // Every part is decided, so that a refusal of one does not hide the refusal of another.
                let mut events = vec![];
                let mut refused = vec![];
                let mut decide = |command| match Self::decide_active(op, command) {
                    Ok(decided) => events.extend(decided),
                    Err(e) => refused.extend(e.into_refusals()),
                };
                if let Some(profile) = profile {
                    decide(C::UpdateProfile { profile });
                }
                if let Some(roles) = roles {
                    decide(C::ChangeRoles { roles });
                }
                if let Some(business_systems) = business_systems {
                    decide(C::ChangeBusinessSystems { business_systems, usable });
                }
                OperatorError::of(refused)?;
                Ok(events)
            }
            C::Patch { profile, roles, business_systems, usable } => {
                let profile = match (&op.profile, profile.is_empty()) {
                    (_, true) => None,
                    (Erasable::Known(current), false) => Some(profile.apply(current)),
                    // Nothing to merge with: only a patch that names him can stand for the whole.
                    (Erasable::Erased, false) => match &profile.name {
                        Some(name) => Some(profile.apply(&OperatorProfile::named(name.clone()))),
                        None => return Err(OperatorError::ProfileErased),
                    },
                };
                Self::decide_active(op, C::Change { profile, roles, business_systems, usable })
            }
            C::ChangePassword { at } => Ok(vec![E::PasswordChanged { at, by_administrator: false }]),
            C::ResetPassword { at } => Ok(vec![E::PasswordChanged { at, by_administrator: true }]),
            C::Revoke { at } => Ok(vec![E::Revoked { at, registration: op.registration }]),
            C::RecordLoginFailure { at, policy } => op.login.decide(LoginCommand::RecordFailure { at, policy }),
            C::RecordLogin { at } => op.login.decide(LoginCommand::RecordLogin { at }),
            C::Unlock => op.login.decide(LoginCommand::Unlock),
            C::AssignInternalId { business_id, .. } if !op.business_systems.contains(&business_id) => {
                Err(OperatorError::BusinessSystemNotPermitted(business_id))
            }
            C::AssignInternalId { business_id, internal_id, role } => {
                let unchanged = op
                    .internal_ids
                    .get(&business_id)
                    .is_some_and(|current| current.internal_id == internal_id && current.role == role);
                Ok(if unchanged { vec![] } else { vec![E::InternalIdAssigned { business_id, internal_id, role }] })
            }
            C::RemoveInternalId { business_id } if op.internal_ids.contains_key(&business_id) => {
                Ok(vec![E::InternalIdRemoved { business_id }])
            }
            C::RemoveInternalId { .. } => Err(OperatorError::InternalIdNotAssigned),
            C::RegisterAuthenticator { authenticator, .. }
                if op.authenticators.contains_key(&authenticator.credential_id) =>
            {
                Err(OperatorError::AuthenticatorAlreadyRegistered)
            }
            C::RegisterAuthenticator { authenticator, allowed_models, .. }
                if !allowed_models.is_empty() && !allowed_models.contains(&authenticator.aaguid) =>
            {
                Err(OperatorError::AuthenticatorModelNotAllowed(authenticator.aaguid))
            }
            C::RegisterAuthenticator { .. } if op.authenticators.len() >= MAX_AUTHENTICATORS => {
                Err(OperatorError::TooManyAuthenticators { max: MAX_AUTHENTICATORS })
            }
            C::RegisterAuthenticator { authenticator, at, .. } => {
                let NewAuthenticator { credential_id, public_key, aaguid, sign_count, backup_eligible, label } =
                    authenticator;
                Ok(vec![E::AuthenticatorRegistered {
                    credential_id,
                    public_key,
                    aaguid,
                    sign_count,
                    backup_eligible,
                    label,
                    at,
                }])
            }
            C::RemoveAuthenticator { credential_id, at } if op.authenticators.contains_key(&credential_id) => {
                Ok(vec![E::AuthenticatorRemoved { credential_id, at }])
            }
            C::RemoveAuthenticator { .. } => Err(OperatorError::AuthenticatorNotRegistered),
        }
    }
}

impl Aggregate for Operator {
    type State = OperatorState;
    type Command = OperatorCommand;
    type Event = OperatorEvent;
    type Error = OperatorError;

    const STREAM_TYPE: &'static str = "operator";

    fn decide(state: &Self::State, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error> {
        match (command, &state.registered) {
            (
                OperatorCommand::Register { key, municipality, operator_id, profile, roles, business_systems, usable },
                _,
            ) => {
                let internal_ids = BTreeMap::new();
                let command = OperatorCommand::RegisterWithInternalIds {
                    key,
                    municipality,
                    operator_id,
                    profile,
                    roles,
                    business_systems,
                    internal_ids,
                    usable,
                };
                Self::decide(state, command)
            }
            // A revoked operator may be registered again: a new registration decision.
            (
                OperatorCommand::RegisterWithInternalIds {
                    key,
                    municipality,
                    operator_id,
                    profile,
                    roles,
                    business_systems,
                    internal_ids,
                    usable,
                },
                _,
            ) if !state.is_active() => {
                let (roles, business_systems) =
                    checked_registration(municipality.as_ref(), roles, business_systems, &internal_ids, &usable)?;
                let registered = OperatorEvent::Registered {
                    key,
                    municipality,
                    operator_id,
                    registration: state.registrations + 1,
                    profile: Erasable::Known(profile),
                    roles,
                    business_systems,
                };
                let assigned = internal_ids.into_iter().map(|(business_id, a)| OperatorEvent::InternalIdAssigned {
                    business_id,
                    internal_id: a.internal_id,
                    role: a.role,
                });
                Ok(std::iter::once(registered).chain(assigned).collect())
            }
            (_, None) => Err(OperatorError::NotRegistered),
            (OperatorCommand::RegisterWithInternalIds { .. }, Some(_)) => Err(OperatorError::AlreadyRegistered),
            (_, Some(op)) if op.revoked => Err(OperatorError::Revoked),
            (command, Some(op)) => Self::decide_active(op, command),
        }
    }

    fn evolve(mut state: Self::State, event: &Self::Event) -> Self::State {
        use OperatorEvent as E;

        if let E::Registered { key, municipality, operator_id, registration, profile, roles, business_systems } = event
        {
            // Also a re-registration after revocation: everything starts afresh. Registrations recorded before
            // they were numbered (0) count on from the ones before.
            state.registrations = if *registration > 0 { *registration } else { state.registrations + 1 };
            state.registered = Some(Registered {
                key: *key,
                municipality: municipality.clone(),
                operator_id: operator_id.clone(),
                registration: state.registrations,
                profile: profile.clone(),
                roles: roles.clone(),
                business_systems: business_systems.clone(),
                internal_ids: BTreeMap::new(),
                revoked: false,
                password_changed_at: None,
                login: LoginState::default(),
                authenticators: BTreeMap::new(),
            });
            return state;
        }
        // A change to a stream that was never registered cannot be stored; there is nothing to change.
        let Some(r) = state.registered.as_mut() else {
            return state;
        };
        match event {
            E::Registered { .. } => {}
            E::ProfileUpdated { profile, .. } => r.profile = profile.clone(),
            E::RolesChanged { roles } => r.roles = roles.clone(),
            E::BusinessSystemsChanged { business_systems } => r.business_systems = business_systems.clone(),
            E::PasswordChanged { at, .. } => r.password_changed_at = Some(*at),
            E::Revoked { .. } => {
                // 失効 erases his registration information (操作者の登録情報を削除): its key is destroyed after
                // this event; his ID and what he did stay.
                r.revoked = true;
                r.profile = Erasable::Erased;
                r.login.evolve(event);
            }
            E::LoginFailed { .. }
            | E::LoggedIn { .. }
            | E::Locked { .. }
            | E::Unlocked
            | E::AuthenticatorUsed { .. }
            | E::SignCountRegressed { .. } => r.login.evolve(event),
            E::InternalIdAssigned { business_id, internal_id, role } => {
                r.internal_ids.insert(
                    business_id.clone(),
                    InternalIdAssignment { internal_id: internal_id.clone(), role: role.clone() },
                );
            }
            E::InternalIdRemoved { business_id } => {
                r.internal_ids.remove(business_id);
            }
            E::AuthenticatorRegistered {
                credential_id,
                public_key,
                aaguid,
                sign_count,
                backup_eligible,
                label,
                at,
            } => {
                r.authenticators.insert(
                    credential_id.clone(),
                    RegisteredAuthenticator {
                        credential_id: credential_id.clone(),
                        public_key: public_key.clone(),
                        aaguid: *aaguid,
                        sign_count: *sign_count,
                        backup_eligible: *backup_eligible,
                        label: label.clone(),
                        registered_at: *at,
                    },
                );
            }
            E::AuthenticatorRemoved { credential_id, .. } => {
                r.authenticators.remove(credential_id);
            }
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Localized;
    use crate::contact::{Email, Phone, Sex, Text200};
    use crate::testing::given;
    use OperatorCommand as C;
    use OperatorEvent as E;
    use proptest::prelude::*;

    const T0: Timestamp = Timestamp::from_unix(1_700_000_000);

    fn t(seconds: i64) -> Timestamp {
        T0.plus_seconds(seconds)
    }

    fn chiyoda() -> Option<MunicipalityCode> {
        Some(MunicipalityCode::parse("131016").unwrap())
    }

    fn op_id() -> OperatorId {
        OperatorId::parse("OP0501").unwrap()
    }

    fn key(municipality: Option<&MunicipalityCode>) -> OperatorKey {
        OperatorKey::for_login(municipality, &op_id())
    }

    fn own() -> BusinessId {
        BusinessId::parse("10").unwrap()
    }

    fn all_usable() -> Vec<BusinessId> {
        vec![BusinessId::ADMINISTRATION, BusinessId::CERTIFICATE_ISSUANCE, BusinessId::LIBRARY, own()]
    }

    fn name_only() -> OperatorProfile {
        OperatorProfile::named(OperatorName::parse("ICS").unwrap())
    }

    fn full_profile() -> OperatorProfile {
        OperatorProfile {
            name: OperatorName::parse("ICS").unwrap(),
            department: Some(Text100::parse("市民課").unwrap()),
            sex: Some(Sex::Male),
            phone: Some(Phone::parse("03-3333-4444").unwrap()),
            extension: Some(Extension::parse("1234").unwrap()),
            email: Some(Email::parse("op0501@example.jp").unwrap()),
            info: Some(Text200::parse("窓口担当").unwrap()),
            extra: Some(Text200::parse("2024年度").unwrap()),
        }
    }

    fn register(municipality: Option<MunicipalityCode>, roles: Vec<Role>, business_systems: Vec<BusinessId>) -> C {
        C::Register {
            key: key(municipality.as_ref()),
            municipality,
            operator_id: op_id(),
            profile: name_only(),
            roles,
            business_systems,
            usable: all_usable(),
        }
    }

    fn registered(municipality: Option<MunicipalityCode>, roles: Vec<Role>, business_systems: Vec<BusinessId>) -> E {
        E::Registered {
            key: key(municipality.as_ref()),
            municipality,
            operator_id: op_id(),
            registration: 1,
            profile: Erasable::Known(name_only()),
            roles,
            business_systems,
        }
    }

    /// A clerk of 千代田区 permitted certificate issuance and the library.
    fn clerk() -> E {
        registered(chiyoda(), vec![Role::Clerk], vec![BusinessId::CERTIFICATE_ISSUANCE, BusinessId::LIBRARY])
    }

    fn internal_id(s: &str) -> InternalId {
        InternalId::parse(s).unwrap()
    }

    fn assigned(business_id: BusinessId, id: &str) -> E {
        E::InternalIdAssigned {
            business_id,
            internal_id: internal_id(id),
            role: Some(Text100::parse("窓口交付").unwrap()),
        }
    }

    fn failure(at: Timestamp) -> C {
        C::RecordLoginFailure { at, policy: LockoutPolicy::default() }
    }

    /// The history of `n` failures in a row (without the locks they cause).
    fn failed(n: u32, at: Timestamp) -> Vec<E> {
        (1..=n).map(|failures_in_row| E::LoginFailed { at, failures_in_row }).collect()
    }

    fn history(parts: impl IntoIterator<Item = Vec<E>>) -> Vec<E> {
        parts.into_iter().flatten().collect()
    }

    // ---- keys ----

    #[test]
    fn streams_and_keys_follow_the_login() {
        assert_eq!(stream_key(chiyoda().as_ref(), &op_id()), "131016.OP0501");
        assert_eq!(stream_key(None, &op_id()), "system.OP0501");
        assert_eq!(key(chiyoda().as_ref()), key(chiyoda().as_ref()));
        assert_ne!(key(chiyoda().as_ref()), key(None));
        assert_eq!(key(None).as_uuid(), Uuid::new_v5(&OPERATOR_KEY_NAMESPACE, b"system.OP0501"));
        assert_eq!(key(None).as_uuid().get_version_num(), 5);
        // Pinned: changing the namespace would orphan every stored key.
        assert_eq!(key(None).to_string(), "012109d1-5907-50c1-b865-cb6fd1ef7dc4");
    }

    // ---- Register ----

    #[test]
    fn register_the_system_administrator_without_a_municipality() {
        let state = given::<Operator>([])
            .when(register(None, vec![Role::SystemAdmin], vec![BusinessId::ADMINISTRATION]))
            .then([registered(None, vec![Role::SystemAdmin], vec![BusinessId::ADMINISTRATION])]);
        assert!(state.is_registered() && state.is_active() && !state.is_revoked());
        assert_eq!(state.key(), Some(key(None)));
        assert_eq!(state.municipality(), None);
        assert_eq!(state.operator_id().map(OperatorId::as_str), Some("OP0501"));
        assert_eq!(state.name().map(OperatorName::as_str), Some("ICS"));
        assert_eq!(state.profile(), Some(&name_only()));
        assert!(state.has_role(Role::SystemAdmin) && !state.has_role(Role::Clerk));
        assert_eq!(state.business_systems(), [BusinessId::ADMINISTRATION]);
        assert!(state.internal_ids().is_empty());
        assert_eq!((state.failures_in_row(), state.lockouts(), state.locked_until()), (0, 0, None));
    }

    #[test]
    fn register_a_municipal_operator_with_roles_and_business_systems_deduplicated_and_sorted() {
        let command = C::Register {
            key: key(chiyoda().as_ref()),
            municipality: chiyoda(),
            operator_id: op_id(),
            profile: full_profile(),
            roles: vec![Role::Clerk, Role::BusinessAdmin, Role::Clerk],
            business_systems: vec![BusinessId::LIBRARY, BusinessId::CERTIFICATE_ISSUANCE, BusinessId::LIBRARY],
            usable: vec![BusinessId::CERTIFICATE_ISSUANCE, BusinessId::LIBRARY],
        };
        let state = given::<Operator>([]).when(command).then([E::Registered {
            key: key(chiyoda().as_ref()),
            municipality: chiyoda(),
            operator_id: op_id(),
            registration: 1,
            profile: Erasable::Known(full_profile()),
            roles: vec![Role::BusinessAdmin, Role::Clerk],
            business_systems: vec![BusinessId::CERTIFICATE_ISSUANCE, BusinessId::LIBRARY],
        }]);
        assert_eq!(state.municipality(), chiyoda().as_ref());
        assert_eq!(state.roles(), [Role::BusinessAdmin, Role::Clerk]);
        assert_eq!(state.business_systems(), [BusinessId::CERTIFICATE_ISSUANCE, BusinessId::LIBRARY]);
        assert_eq!(state.profile(), Some(&full_profile()));
    }

    #[test]
    fn register_twice_is_refused() {
        given::<Operator>([clerk()])
            .when(register(chiyoda(), vec![Role::Clerk], vec![]))
            .then_err(OperatorError::AlreadyRegistered);
    }

    #[test]
    fn register_without_roles_is_refused() {
        given::<Operator>([]).when(register(chiyoda(), vec![], vec![])).then_err(OperatorError::NoRoles);
    }

    #[test]
    fn a_system_administrator_with_a_municipality_is_refused() {
        given::<Operator>([])
            .when(register(chiyoda(), vec![Role::SystemAdmin], vec![]))
            .then_err(OperatorError::SystemAdminHasNoMunicipality);
    }

    #[test]
    fn a_municipal_role_without_a_municipality_is_refused() {
        given::<Operator>([])
            .when(register(None, vec![Role::Clerk], vec![]))
            .then_err(OperatorError::MunicipalityRequired);
        given::<Operator>([])
            .when(register(None, vec![Role::SystemAdmin, Role::Auditor], vec![]))
            .then_err(OperatorError::MunicipalityRequired);
    }

    #[test]
    fn register_with_business_systems_the_municipality_may_not_use_is_refused_naming_each() {
        let command = C::Register {
            key: key(chiyoda().as_ref()),
            municipality: chiyoda(),
            operator_id: op_id(),
            profile: name_only(),
            roles: vec![Role::Clerk],
            business_systems: vec![own(), BusinessId::LIBRARY, BusinessId::CERTIFICATE_ISSUANCE, own()],
            usable: vec![BusinessId::CERTIFICATE_ISSUANCE],
        };
        given::<Operator>([]).when(command).then_err(OperatorError::Refused(vec![
            OperatorError::BusinessSystemNotUsable(BusinessId::LIBRARY),
            OperatorError::BusinessSystemNotUsable(own()),
        ]));
    }

    #[test]
    fn register_with_one_business_system_the_municipality_may_not_use_names_it_alone() {
        let command = C::Register {
            key: key(chiyoda().as_ref()),
            municipality: chiyoda(),
            operator_id: op_id(),
            profile: name_only(),
            roles: vec![Role::Clerk],
            business_systems: vec![BusinessId::LIBRARY, BusinessId::CERTIFICATE_ISSUANCE],
            usable: vec![BusinessId::CERTIFICATE_ISSUANCE],
        };
        given::<Operator>([]).when(command).then_err(OperatorError::BusinessSystemNotUsable(BusinessId::LIBRARY));
    }

    fn register_with_internal_ids(
        roles: Vec<Role>,
        business_systems: Vec<BusinessId>,
        internal_ids: &[(BusinessId, &str)],
    ) -> C {
        C::RegisterWithInternalIds {
            key: key(chiyoda().as_ref()),
            municipality: chiyoda(),
            operator_id: op_id(),
            profile: name_only(),
            roles,
            business_systems,
            internal_ids: internal_ids
                .iter()
                .map(|(b, id)| {
                    let role = Some(Text100::parse("窓口交付").unwrap());
                    (b.clone(), InternalIdAssignment { internal_id: internal_id(id), role })
                })
                .collect(),
            usable: vec![BusinessId::CERTIFICATE_ISSUANCE, BusinessId::LIBRARY],
        }
    }

    #[test]
    fn register_with_internal_ids_assigns_them_in_the_same_decision() {
        let business_systems = vec![BusinessId::CERTIFICATE_ISSUANCE, BusinessId::LIBRARY];
        let command = register_with_internal_ids(
            vec![Role::Clerk],
            business_systems.clone(),
            &[(BusinessId::LIBRARY, "L77"), (BusinessId::CERTIFICATE_ISSUANCE, "1000000010")],
        );
        let state = given::<Operator>([]).when(command).then([
            registered(chiyoda(), vec![Role::Clerk], business_systems),
            assigned(BusinessId::CERTIFICATE_ISSUANCE, "1000000010"),
            assigned(BusinessId::LIBRARY, "L77"),
        ]);
        assert_eq!(state.internal_ids().len(), 2);
    }

    #[test]
    fn a_registration_names_every_refusal_of_its_roles_business_systems_and_internal_ids_at_once() {
        let command = register_with_internal_ids(
            vec![Role::SystemAdmin],
            vec![own(), BusinessId::LIBRARY, BusinessId::ADMINISTRATION],
            &[(BusinessId::CERTIFICATE_ISSUANCE, "1000000010"), (BusinessId::LIBRARY, "L77")],
        );
        given::<Operator>([]).when(command).then_err(OperatorError::Refused(vec![
            OperatorError::SystemAdminHasNoMunicipality,
            OperatorError::BusinessSystemNotUsable(BusinessId::ADMINISTRATION),
            OperatorError::BusinessSystemNotUsable(own()),
            OperatorError::BusinessSystemNotPermitted(BusinessId::CERTIFICATE_ISSUANCE),
        ]));
    }

    #[test]
    fn registering_an_active_operator_again_is_refused_as_that_alone() {
        let command = register_with_internal_ids(vec![Role::SystemAdmin], vec![own()], &[(BusinessId::LIBRARY, "1")]);
        given::<Operator>([clerk()]).when(command).then_err(OperatorError::AlreadyRegistered);
    }

    #[test]
    fn register_again_after_revocation_starts_afresh() {
        let history = history([
            vec![clerk(), assigned(BusinessId::LIBRARY, "1000000010"), E::LoggedIn { at: t(0) }],
            failed(5, t(10)),
            vec![E::Locked { at: t(10), until: Some(t(910)) }, E::LoginFailed { at: t(20), failures_in_row: 1 }],
            vec![E::Revoked { at: t(30), registration: 1 }],
        ]);
        // The second registration of his login: his management information gets a key of its own.
        let mut second = registered(chiyoda(), vec![Role::Auditor], vec![BusinessId::CERTIFICATE_ISSUANCE]);
        if let E::Registered { registration, .. } = &mut second {
            *registration = 2;
        }
        let state = given::<Operator>(history)
            .when(register(chiyoda(), vec![Role::Auditor], vec![BusinessId::CERTIFICATE_ISSUANCE]))
            .then([second]);
        assert_eq!((state.registration(), state.profile()), (2, Some(&name_only())));
        assert!(state.is_active() && !state.is_revoked());
        assert_eq!(state.roles(), [Role::Auditor]);
        assert!(state.internal_ids().is_empty());
        assert_eq!((state.failures_in_row(), state.lockouts(), state.locked_until()), (0, 0, None));
        assert_eq!(state.last_login_at(), None);
    }

    // ---- every other command ----

    fn every_other_command() -> Vec<C> {
        vec![
            C::UpdateProfile { profile: full_profile() },
            C::ChangeRoles { roles: vec![Role::Auditor] },
            C::ChangeBusinessSystems { business_systems: vec![], usable: all_usable() },
            C::ChangePassword { at: t(0) },
            C::ResetPassword { at: t(0) },
            C::Revoke { at: t(0) },
            failure(t(0)),
            C::RecordLogin { at: t(0) },
            C::Unlock,
            C::AssignInternalId { business_id: BusinessId::LIBRARY, internal_id: internal_id("1"), role: None },
            C::RemoveInternalId { business_id: BusinessId::LIBRARY },
        ]
    }

    #[test]
    fn any_other_command_before_register_is_refused() {
        for command in every_other_command() {
            given::<Operator>([]).when(command).then_err(OperatorError::NotRegistered);
        }
    }

    #[test]
    fn any_other_command_after_revocation_is_refused() {
        for command in every_other_command() {
            given::<Operator>([clerk(), E::Revoked { at: t(0), registration: 1 }])
                .when(command)
                .then_err(OperatorError::Revoked);
        }
    }

    // ---- UpdateProfile ----

    #[test]
    fn update_the_profile() {
        let state = given::<Operator>([clerk()])
            .when(C::UpdateProfile { profile: full_profile() })
            .then([E::ProfileUpdated { registration: 1, profile: Erasable::Known(full_profile()) }]);
        assert_eq!(state.profile(), Some(&full_profile()));
    }

    #[test]
    fn update_to_the_same_profile_changes_nothing() {
        given::<Operator>([clerk()]).when(C::UpdateProfile { profile: name_only() }).then([]);
    }

    // ---- Change (one PATCH) ----

    #[test]
    fn a_patch_keeps_the_fields_it_does_not_name_as_they_are_when_decided() {
        // Another administrator set the full profile after this one read the operator: changing the phone only
        // keeps the department and the rest of now.
        let phone = Phone::parse("03-9999-0000").unwrap();
        let mut expected = full_profile();
        expected.phone = Some(phone.clone());
        given::<Operator>([clerk(), E::ProfileUpdated { registration: 1, profile: Erasable::Known(full_profile()) }])
            .when(C::Patch {
                profile: OperatorProfilePatch { phone: Some(Some(phone)), ..Default::default() },
                roles: None,
                business_systems: None,
                usable: vec![],
            })
            .then([E::ProfileUpdated { registration: 1, profile: Erasable::Known(expected) }]);
    }

    #[test]
    fn a_patch_of_an_erased_profile_must_give_the_name_and_stands_for_the_whole() {
        let mut erased = clerk();
        if let E::Registered { profile, .. } = &mut erased {
            *profile = Erasable::Erased;
        }
        let phone = Phone::parse("03-9999-0000").unwrap();
        let patch = |profile| C::Patch { profile, roles: None, business_systems: None, usable: vec![] };
        given::<Operator>([erased.clone()])
            .when(patch(OperatorProfilePatch { phone: Some(Some(phone.clone())), ..Default::default() }))
            .then_err(OperatorError::ProfileErased);
        let mut whole = name_only();
        whole.phone = Some(phone.clone());
        given::<Operator>([erased])
            .when(patch(OperatorProfilePatch {
                name: Some(name_only().name),
                phone: Some(Some(phone)),
                ..Default::default()
            }))
            .then([E::ProfileUpdated { registration: 1, profile: Erasable::Known(whole) }]);
    }

    #[test]
    fn a_change_of_several_parts_goes_through_together() {
        let renamed = OperatorProfile::named(OperatorName::parse("新しい名前").unwrap());
        given::<Operator>([clerk()])
            .when(C::Change {
                profile: Some(renamed.clone()),
                roles: Some(vec![Role::Auditor]),
                business_systems: None,
                usable: vec![],
            })
            .then([
                E::ProfileUpdated { registration: 1, profile: Erasable::Known(renamed) },
                E::RolesChanged { roles: vec![Role::Auditor] },
            ]);
    }

    #[test]
    fn a_change_with_one_refused_part_is_refused_whole() {
        let renamed = OperatorProfile::named(OperatorName::parse("新しい名前").unwrap());
        given::<Operator>([clerk()])
            .when(C::Change {
                profile: Some(renamed),
                roles: Some(vec![Role::SystemAdmin]),
                business_systems: None,
                usable: vec![],
            })
            .then_err(OperatorError::SystemAdminHasNoMunicipality);
    }

    #[test]
    fn a_change_names_the_refusals_of_every_part_at_once() {
        given::<Operator>([clerk()])
            .when(C::Patch {
                profile: OperatorProfilePatch::default(),
                roles: Some(vec![Role::SystemAdmin, Role::Clerk]),
                business_systems: Some(vec![own(), BusinessId::LIBRARY, BusinessId::ADMINISTRATION]),
                usable: vec![BusinessId::LIBRARY],
            })
            .then_err(OperatorError::Refused(vec![
                OperatorError::SystemAdminHasNoMunicipality,
                OperatorError::BusinessSystemNotUsable(BusinessId::ADMINISTRATION),
                OperatorError::BusinessSystemNotUsable(own()),
            ]));
    }

    #[test]
    fn a_change_of_nothing_changes_nothing() {
        given::<Operator>([clerk()])
            .when(C::Change { profile: Some(name_only()), roles: None, business_systems: None, usable: vec![] })
            .then([]);
    }

    // ---- ChangeRoles ----

    #[test]
    fn change_roles() {
        let state = given::<Operator>([clerk()])
            .when(C::ChangeRoles { roles: vec![Role::Clerk, Role::OperationsManager, Role::Clerk] })
            .then([E::RolesChanged { roles: vec![Role::OperationsManager, Role::Clerk] }]);
        assert!(state.has_role(Role::OperationsManager) && state.has_role(Role::Clerk));
    }

    #[test]
    fn change_roles_to_the_same_set_changes_nothing() {
        given::<Operator>([clerk()]).when(C::ChangeRoles { roles: vec![Role::Clerk, Role::Clerk] }).then([]);
    }

    #[test]
    fn change_roles_checks_them_as_register_does() {
        given::<Operator>([clerk()]).when(C::ChangeRoles { roles: vec![] }).then_err(OperatorError::NoRoles);
        given::<Operator>([clerk()])
            .when(C::ChangeRoles { roles: vec![Role::SystemAdmin] })
            .then_err(OperatorError::SystemAdminHasNoMunicipality);
        given::<Operator>([registered(None, vec![Role::SystemAdmin], vec![])])
            .when(C::ChangeRoles { roles: vec![Role::SystemAdmin, Role::Clerk] })
            .then_err(OperatorError::MunicipalityRequired);
    }

    // ---- ChangeBusinessSystems ----

    #[test]
    fn change_business_systems() {
        let state = given::<Operator>([clerk()])
            .when(C::ChangeBusinessSystems {
                business_systems: vec![own(), BusinessId::CERTIFICATE_ISSUANCE, BusinessId::LIBRARY],
                usable: all_usable(),
            })
            .then([E::BusinessSystemsChanged {
                business_systems: vec![BusinessId::CERTIFICATE_ISSUANCE, BusinessId::LIBRARY, own()],
            }]);
        assert_eq!(state.business_systems(), [BusinessId::CERTIFICATE_ISSUANCE, BusinessId::LIBRARY, own()]);
    }

    #[test]
    fn change_business_systems_to_the_same_set_changes_nothing() {
        given::<Operator>([clerk()])
            .when(C::ChangeBusinessSystems {
                business_systems: vec![BusinessId::LIBRARY, BusinessId::CERTIFICATE_ISSUANCE],
                usable: all_usable(),
            })
            .then([]);
    }

    #[test]
    fn change_business_systems_to_one_the_municipality_may_not_use_is_refused() {
        given::<Operator>([clerk()])
            .when(C::ChangeBusinessSystems {
                business_systems: vec![BusinessId::LIBRARY, own()],
                usable: vec![BusinessId::CERTIFICATE_ISSUANCE, BusinessId::LIBRARY],
            })
            .then_err(OperatorError::BusinessSystemNotUsable(own()));
    }

    #[test]
    fn change_business_systems_names_every_one_the_municipality_may_not_use() {
        given::<Operator>([clerk()])
            .when(C::ChangeBusinessSystems {
                business_systems: vec![own(), BusinessId::LIBRARY, BusinessId::ADMINISTRATION],
                usable: vec![BusinessId::CERTIFICATE_ISSUANCE, BusinessId::LIBRARY],
            })
            .then_err(OperatorError::Refused(vec![
                OperatorError::BusinessSystemNotUsable(BusinessId::ADMINISTRATION),
                OperatorError::BusinessSystemNotUsable(own()),
            ]));
    }

    #[test]
    fn dropping_a_business_system_drops_its_internal_id() {
        let state = given::<Operator>([
            clerk(),
            assigned(BusinessId::CERTIFICATE_ISSUANCE, "1000000010"),
            assigned(BusinessId::LIBRARY, "L77"),
        ])
        .when(C::ChangeBusinessSystems {
            business_systems: vec![BusinessId::CERTIFICATE_ISSUANCE],
            usable: all_usable(),
        })
        .then([
            E::BusinessSystemsChanged { business_systems: vec![BusinessId::CERTIFICATE_ISSUANCE] },
            E::InternalIdRemoved { business_id: BusinessId::LIBRARY },
        ]);
        assert_eq!(state.internal_ids().keys().collect::<Vec<_>>(), [&BusinessId::CERTIFICATE_ISSUANCE]);
    }

    // ---- passwords ----

    #[test]
    fn change_his_own_password() {
        let state = given::<Operator>([clerk()])
            .when(C::ChangePassword { at: t(5) })
            .then([E::PasswordChanged { at: t(5), by_administrator: false }]);
        assert_eq!(state.password_changed_at(), Some(t(5)));
    }

    #[test]
    fn an_administrator_resets_the_password() {
        let state = given::<Operator>([clerk()])
            .when(C::ResetPassword { at: t(5) })
            .then([E::PasswordChanged { at: t(5), by_administrator: true }]);
        assert_eq!(state.password_changed_at(), Some(t(5)));
    }

    // ---- Revoke ----

    #[test]
    fn revoke_ends_everything_including_a_lock() {
        let history = history([vec![clerk()], failed(5, t(0)), vec![E::Locked { at: t(0), until: None }]]);
        let state =
            given::<Operator>(history).when(C::Revoke { at: t(60) }).then([E::Revoked { at: t(60), registration: 1 }]);
        assert!(state.is_registered() && state.is_revoked() && !state.is_active());
        // 操作者の登録情報を削除: his management information is gone, his ID stays.
        assert_eq!((state.profile(), state.operator_id()), (None, Some(&op_id())));
        assert!(!state.has_role(Role::Clerk));
        assert_eq!(state.roles(), [Role::Clerk]);
        assert_eq!(state.locked_until(), None);
        assert!(!state.is_locked_at(t(61)));
    }

    // ---- RecordLoginFailure ----

    #[test]
    fn a_failed_login_is_counted() {
        let state = given::<Operator>(history([vec![clerk()], failed(1, t(0))]))
            .when(failure(t(1)))
            .then([E::LoginFailed { at: t(1), failures_in_row: 2 }]);
        assert_eq!(state.failures_in_row(), 2);
        assert!(!state.is_locked_at(t(1)));
    }

    #[test]
    fn the_fifth_failure_in_a_row_locks_for_a_while() {
        let state = given::<Operator>(history([vec![clerk()], failed(4, t(0))]))
            .when(failure(t(10)))
            .then([E::LoginFailed { at: t(10), failures_in_row: 5 }, E::Locked { at: t(10), until: Some(t(910)) }]);
        assert!(state.is_locked_at(t(10)) && state.is_locked_at(t(909)) && !state.is_locked_at(t(910)));
        assert_eq!(state.locked_until(), Some(Some(t(910))));
        assert_eq!((state.failures_in_row(), state.lockouts()), (0, 1));
    }

    #[test]
    fn by_default_no_lockout_is_permanent() {
        let history = history([
            vec![clerk()],
            failed(5, t(0)),
            vec![E::Locked { at: t(0), until: Some(t(900)) }],
            failed(5, t(1000)),
            vec![E::Locked { at: t(1000), until: Some(t(1900)) }],
            failed(4, t(2000)),
        ]);
        given::<Operator>(history).when(failure(t(2001))).then([
            E::LoginFailed { at: t(2001), failures_in_row: 5 },
            E::Locked { at: t(2001), until: Some(t(2901)) },
        ]);
    }

    #[test]
    fn the_last_allowed_lockout_is_permanent_when_the_installation_says_so() {
        let policy = LockoutPolicy { max_lockouts: 3, ..LockoutPolicy::default() };
        let history = history([
            vec![clerk()],
            failed(5, t(0)),
            vec![E::Locked { at: t(0), until: Some(t(900)) }],
            failed(5, t(1000)),
            vec![E::Locked { at: t(1000), until: Some(t(1900)) }],
            failed(4, t(2000)),
        ]);
        let state = given::<Operator>(history)
            .when(C::RecordLoginFailure { at: t(2001), policy })
            .then([E::LoginFailed { at: t(2001), failures_in_row: 5 }, E::Locked { at: t(2001), until: None }]);
        assert!(state.is_locked_at(t(i64::from(i32::MAX))));
        assert_eq!(state.locked_until(), Some(None));
        assert_eq!(state.lockouts(), 3);
    }

    #[test]
    fn a_failure_while_locked_is_counted_but_locks_no_further() {
        let locked = history([vec![clerk()], failed(5, t(0)), vec![E::Locked { at: t(0), until: Some(t(900)) }]]);
        let state = given::<Operator>(locked.clone())
            .when(failure(t(1)))
            .then([E::LoginFailed { at: t(1), failures_in_row: 1 }]);
        assert_eq!(state.lockouts(), 1);
        // Even the fifth failure during the lock adds no lock.
        given::<Operator>(history([locked, failed(4, t(2))]))
            .when(failure(t(3)))
            .then([E::LoginFailed { at: t(3), failures_in_row: 5 }]);
    }

    #[test]
    fn failures_during_a_lock_count_towards_the_next_one_once_it_expires() {
        let history = history([
            vec![clerk()],
            failed(5, t(0)),
            vec![E::Locked { at: t(0), until: Some(t(900)) }],
            failed(4, t(100)),
        ]);
        given::<Operator>(history)
            .when(failure(t(900)))
            .then([E::LoginFailed { at: t(900), failures_in_row: 5 }, E::Locked { at: t(900), until: Some(t(1800)) }]);
    }

    // ---- RecordLogin ----

    #[test]
    fn a_login_resets_the_failures() {
        let state = given::<Operator>(history([vec![clerk()], failed(3, t(0))]))
            .when(C::RecordLogin { at: t(1) })
            .then([E::LoggedIn { at: t(1) }]);
        assert_eq!(state.failures_in_row(), 0);
        assert_eq!(state.last_login_at(), Some(t(1)));
    }

    #[test]
    fn a_login_during_a_temporary_lock_is_refused() {
        let history = history([vec![clerk()], failed(5, t(0)), vec![E::Locked { at: t(0), until: Some(t(900)) }]]);
        given::<Operator>(history)
            .when(C::RecordLogin { at: t(899) })
            .then_err(OperatorError::Locked { until: Some(t(900)) });
    }

    #[test]
    fn a_login_during_a_permanent_lock_is_refused() {
        let history = history([vec![clerk()], failed(5, t(0)), vec![E::Locked { at: t(0), until: None }]]);
        given::<Operator>(history)
            .when(C::RecordLogin { at: t(1_000_000) })
            .then_err(OperatorError::Locked { until: None });
    }

    #[test]
    fn a_login_after_a_temporary_lock_expired_passes_and_clears_it() {
        let history = history([vec![clerk()], failed(5, t(0)), vec![E::Locked { at: t(0), until: Some(t(900)) }]]);
        let state = given::<Operator>(history).when(C::RecordLogin { at: t(900) }).then([E::LoggedIn { at: t(900) }]);
        assert_eq!(state.locked_until(), None);
        // The lockout still counts towards a permanent one: only an administrator forgets it.
        assert_eq!(state.lockouts(), 1);
    }

    // ---- Unlock ----

    #[test]
    fn unlock_lifts_the_lock_and_forgets_failures_and_lockouts() {
        let history = history([
            vec![clerk()],
            failed(5, t(0)),
            vec![E::Locked { at: t(0), until: Some(t(900)) }],
            failed(5, t(1000)),
            vec![E::Locked { at: t(1000), until: None }],
            failed(2, t(1001)),
        ]);
        let state = given::<Operator>(history).when(C::Unlock).then([E::Unlocked]);
        assert!(!state.is_locked_at(t(1002)));
        assert_eq!((state.failures_in_row(), state.lockouts(), state.locked_until()), (0, 0, None));
    }

    #[test]
    fn unlock_without_a_lock_changes_nothing() {
        given::<Operator>(history([vec![clerk()], failed(2, t(0))])).when(C::Unlock).then([]);
    }

    // ---- AssignInternalId ----

    #[test]
    fn assign_an_internal_id() {
        let role = Some(Text100::parse("窓口交付").unwrap());
        let state = given::<Operator>([clerk()])
            .when(C::AssignInternalId {
                business_id: BusinessId::CERTIFICATE_ISSUANCE,
                internal_id: internal_id("1000000010"),
                role: role.clone(),
            })
            .then([assigned(BusinessId::CERTIFICATE_ISSUANCE, "1000000010")]);
        assert_eq!(
            state.internal_id(&BusinessId::CERTIFICATE_ISSUANCE),
            Some(&InternalIdAssignment { internal_id: internal_id("1000000010"), role })
        );
    }

    #[test]
    fn assign_the_same_internal_id_and_role_changes_nothing() {
        given::<Operator>([clerk(), assigned(BusinessId::LIBRARY, "L77")])
            .when(C::AssignInternalId {
                business_id: BusinessId::LIBRARY,
                internal_id: internal_id("L77"),
                role: Some(Text100::parse("窓口交付").unwrap()),
            })
            .then([]);
    }

    #[test]
    fn assign_another_internal_id_or_role_replaces_it() {
        let state = given::<Operator>([clerk(), assigned(BusinessId::LIBRARY, "L77")])
            .when(C::AssignInternalId { business_id: BusinessId::LIBRARY, internal_id: internal_id("L77"), role: None })
            .then([E::InternalIdAssigned {
                business_id: BusinessId::LIBRARY,
                internal_id: internal_id("L77"),
                role: None,
            }]);
        assert_eq!(state.internal_id(&BusinessId::LIBRARY).and_then(|a| a.role.as_ref()), None);
    }

    #[test]
    fn assign_an_internal_id_in_a_business_system_he_is_not_permitted_is_refused() {
        given::<Operator>([clerk()])
            .when(C::AssignInternalId { business_id: own(), internal_id: internal_id("1"), role: None })
            .then_err(OperatorError::BusinessSystemNotPermitted(own()));
    }

    // ---- RemoveInternalId ----

    #[test]
    fn remove_an_internal_id() {
        let state = given::<Operator>([clerk(), assigned(BusinessId::LIBRARY, "L77")])
            .when(C::RemoveInternalId { business_id: BusinessId::LIBRARY })
            .then([E::InternalIdRemoved { business_id: BusinessId::LIBRARY }]);
        assert!(state.internal_ids().is_empty());
    }

    #[test]
    fn remove_an_internal_id_that_is_not_assigned_is_refused() {
        given::<Operator>([clerk()])
            .when(C::RemoveInternalId { business_id: BusinessId::LIBRARY })
            .then_err(OperatorError::InternalIdNotAssigned);
    }

    // ---- authenticators (生体情報登録) ----

    fn reader(n: u8) -> NewAuthenticator {
        NewAuthenticator {
            credential_id: CredentialId::from_bytes(vec![n; 32]).unwrap(),
            public_key: CosePublicKey::from_bytes(vec![0xa5, n]).unwrap(),
            aaguid: vein(),
            sign_count: 3,
            backup_eligible: false,
            label: AuthenticatorLabel::parse("窓口3番 指静脈").unwrap(),
        }
    }

    fn vein() -> Aaguid {
        Aaguid::parse("0fb9bcbc-a0d4-4042-bbb0-559bc1631e28").unwrap()
    }

    fn fingerprint() -> Aaguid {
        Aaguid::parse("ee882879-721c-4913-9775-3dfcce97072a").unwrap()
    }

    fn registered_reader(n: u8) -> E {
        let NewAuthenticator { credential_id, public_key, aaguid, sign_count, backup_eligible, label } = reader(n);
        E::AuthenticatorRegistered { credential_id, public_key, aaguid, sign_count, backup_eligible, label, at: t(1) }
    }

    fn register_reader(n: u8, allowed_models: Vec<Aaguid>) -> C {
        C::RegisterAuthenticator { authenticator: reader(n), at: t(1), allowed_models }
    }

    #[test]
    fn register_an_authenticator() {
        let state = given::<Operator>([clerk()]).when(register_reader(1, vec![])).then([registered_reader(1)]);
        let registered: Vec<&RegisteredAuthenticator> = state.authenticators().collect();
        assert_eq!(registered.len(), 1);
        assert_eq!((registered[0].aaguid, registered[0].sign_count, registered[0].registered_at), (vein(), 3, t(1)));
    }

    #[test]
    fn register_an_authenticator_of_an_allowed_model() {
        given::<Operator>([clerk()]).when(register_reader(1, vec![fingerprint(), vein()])).then([registered_reader(1)]);
    }

    #[test]
    fn register_an_authenticator_of_a_model_the_municipality_does_not_allow_is_refused() {
        given::<Operator>([clerk()])
            .when(register_reader(1, vec![fingerprint()]))
            .then_err(OperatorError::AuthenticatorModelNotAllowed(vein()));
    }

    #[test]
    fn register_the_same_authenticator_twice_is_refused() {
        given::<Operator>([clerk(), registered_reader(1)])
            .when(register_reader(1, vec![]))
            .then_err(OperatorError::AuthenticatorAlreadyRegistered);
    }

    #[test]
    fn register_more_authenticators_than_allowed_is_refused() {
        let history: Vec<E> = std::iter::once(clerk()).chain((1..=10).map(registered_reader)).collect();
        given::<Operator>(history)
            .when(register_reader(11, vec![]))
            .then_err(OperatorError::TooManyAuthenticators { max: MAX_AUTHENTICATORS });
    }

    #[test]
    fn register_an_authenticator_for_a_revoked_operator_is_refused() {
        given::<Operator>([clerk(), E::Revoked { at: t(0), registration: 1 }])
            .when(register_reader(1, vec![]))
            .then_err(OperatorError::Revoked);
    }

    #[test]
    fn remove_an_authenticator() {
        let id = reader(1).credential_id;
        let state = given::<Operator>([clerk(), registered_reader(1), registered_reader(2)])
            .when(C::RemoveAuthenticator { credential_id: id.clone(), at: t(2) })
            .then([E::AuthenticatorRemoved { credential_id: id.clone(), at: t(2) }]);
        assert!(state.authenticator(&id).is_none());
        assert_eq!(state.authenticators().count(), 1);
    }

    #[test]
    fn remove_an_authenticator_that_is_not_registered_is_refused() {
        given::<Operator>([clerk()])
            .when(C::RemoveAuthenticator { credential_id: reader(1).credential_id, at: t(2) })
            .then_err(OperatorError::AuthenticatorNotRegistered);
    }

    #[test]
    fn a_new_registration_after_revocation_starts_without_authenticators() {
        let state = Operator::fold(&[clerk(), registered_reader(1), E::Revoked { at: t(2), registration: 1 }, clerk()]);
        assert_eq!(state.authenticators().count(), 0);
    }

    // ---- biometric login (decided on his login record) ----

    fn biometric(state: &OperatorState, login: &LoginState, n: u8, sign_count: u32) -> Result<Vec<E>, OperatorError> {
        state.decide_biometric_login(login, t(5), &reader(n).credential_id, sign_count, LockoutPolicy::default())
    }

    #[test]
    fn a_biometric_login_counts_past_the_registered_counter() {
        let state = Operator::fold(&[clerk(), registered_reader(1)]);
        let id = reader(1).credential_id;
        assert_eq!(
            biometric(&state, &LoginState::default(), 1, 4),
            Ok(vec![
                E::AuthenticatorUsed { at: t(5), credential_id: id.clone(), sign_count: 4 },
                E::LoggedIn { at: t(5) }
            ])
        );
        assert_eq!(
            biometric(&state, &LoginState::default(), 1, 3),
            Ok(vec![
                E::SignCountRegressed { at: t(5), credential_id: id, sign_count: 3, last_sign_count: 3 },
                E::LoginFailed { at: t(5), failures_in_row: 1 },
            ]),
            "the counter of the registration is the baseline"
        );
    }

    #[test]
    fn a_biometric_login_with_a_removed_authenticator_or_as_a_revoked_operator_is_refused() {
        let id = reader(1).credential_id;
        let removed =
            Operator::fold(&[clerk(), registered_reader(1), E::AuthenticatorRemoved { credential_id: id, at: t(2) }]);
        assert_eq!(biometric(&removed, &LoginState::default(), 1, 9), Err(OperatorError::AuthenticatorNotRegistered));
        let revoked = Operator::fold(&[clerk(), registered_reader(1), E::Revoked { at: t(2), registration: 1 }]);
        assert_eq!(biometric(&revoked, &LoginState::default(), 1, 9), Err(OperatorError::Revoked));
        assert_eq!(
            biometric(&OperatorState::default(), &LoginState::default(), 1, 9),
            Err(OperatorError::NotRegistered)
        );
    }

    #[test]
    fn errors_have_japanese_messages() {
        let errors = [
            OperatorError::AlreadyRegistered,
            OperatorError::NoRoles,
            OperatorError::SystemAdminHasNoMunicipality,
            OperatorError::MunicipalityRequired,
            OperatorError::NotRegistered,
            OperatorError::Revoked,
            OperatorError::BusinessSystemNotUsable(own()),
            OperatorError::Locked { until: Some(t(900)) },
            OperatorError::Locked { until: None },
            OperatorError::InternalIdNotAssigned,
            OperatorError::BusinessSystemNotPermitted(own()),
            OperatorError::Refused(vec![OperatorError::NoRoles, OperatorError::BusinessSystemNotUsable(own())]),
            OperatorError::InternalIdTaken(own()),
            OperatorError::AuthenticatorModelNotAllowed(vein()),
            OperatorError::AuthenticatorAlreadyRegistered,
            OperatorError::AuthenticatorNotRegistered,
            OperatorError::TooManyAuthenticators { max: MAX_AUTHENTICATORS },
        ];
        for e in &errors {
            assert!(!e.message_ja().is_empty() && !e.to_string().is_empty());
        }
        assert_ne!(errors[7].message_ja(), errors[8].message_ja());
        assert_eq!(errors[6].to_string(), "business system 10 is not usable by the operator's municipality");
        assert_eq!(errors[11].message_ja(), "オペレータの登録内容に2件の誤りがあります");
    }

    #[test]
    fn refusals_come_apart_one_by_one() {
        let two = vec![OperatorError::NoRoles, OperatorError::BusinessSystemNotUsable(own())];
        assert_eq!(OperatorError::Refused(two.clone()).into_refusals(), two);
        assert_eq!(OperatorError::NoRoles.into_refusals(), [OperatorError::NoRoles]);
    }

    proptest! {
        #[test]
        fn role_sets_are_stored_sorted_and_unique(roles in proptest::collection::vec(
            prop::sample::select(&Role::ALL[1..]), 1..10,
        )) {
            let events = Operator::decide(&OperatorState::default(), register(chiyoda(), roles.clone(), vec![])).unwrap();
            let [E::Registered { roles: stored, .. }] = events.as_slice() else {
                panic!("expected one event, got {events:?}");
            };
            prop_assert!(stored.windows(2).all(|w| w[0] < w[1]));
            prop_assert!(roles.iter().all(|r| stored.contains(r)));
        }

        /// Failures spaced so that every temporary lock has expired by the next one: the k-th lock comes with
        /// the (k · max_failures)-th failure, and the `max_lockouts`-th is permanent (none when it is 0).
        #[test]
        fn failures_in_a_row_lock_as_the_policy_says(
            max_failures in 1u32..5,
            max_lockouts in 0u32..4,
            lock_seconds in 1i64..100,
            n in 0u32..30,
        ) {
            let policy = LockoutPolicy { max_failures, lock_seconds, max_lockouts };
            let mut state = Operator::fold(&[clerk()]);
            for i in 0..n {
                let at = t(i64::from(i) * (lock_seconds + 1));
                let events = Operator::decide(&state, C::RecordLoginFailure { at, policy }).unwrap();
                state = events.iter().fold(state, Operator::evolve);
            }
            let expected_lockouts =
                if max_lockouts == 0 { n / max_failures } else { (n / max_failures).min(max_lockouts) };
            prop_assert_eq!(state.lockouts(), expected_lockouts);
            let permanent = max_lockouts > 0 && n / max_failures >= max_lockouts;
            prop_assert_eq!(state.locked_until() == Some(None), permanent);
            prop_assert_eq!(state.is_locked_at(t(i64::MAX / 2)), permanent);
        }
    }
}
