//! The operator's events and their stored shapes. No event carries a password, a hash or any other secret.
//!
//! `OperatorRegistered` v1 (name only, before profiles and business systems) and v2 (the profile in clear) are
//! upcast on decode; so are `OperatorProfileUpdated` v1 and `OperatorRevoked` v1.
//!
//! His management information (the profile: name, phone, e-mail …) is personal data: from `OperatorRegistered` v3
//! and `OperatorProfileUpdated` v2 on it is the payload's top-level `personal`, which the sealed event store seals,
//! and `"personal_key": "r<n>"` names the key it is sealed under: the n-th registration of his login has a key of
//! its own (subject `<stream id>#r<n>`, see `cardap_store::personal_subject`). `OperatorRevoked` v2 names the
//! same key: revoking him destroys it (操作者の登録情報を削除), so his earlier profiles read as erased
//! (`personal: null`) while his ID and what he did stay, and a later registration starts with a new key.
//! Events written before (v1, v2) keep the profile in clear in the log; they carry registration 0.

use serde::Deserialize;
use serde_json::{Value, json};

use super::authenticators::{Aaguid, AuthenticatorLabel, CosePublicKey, CredentialId};
use super::values::{Extension, InternalId, OperatorId, OperatorName, OperatorProfile, Role};
use crate::aggregate::decode_payload;
use crate::contact::{Email, Phone, Sex, Text100, Text200};
use crate::resident::Erasable;
use crate::{BusinessId, DomainEvent, EventDecodeError, MunicipalityCode, OperatorKey, Timestamp};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperatorEvent {
    /// `OperatorRegistered` v3; also a re-registration after revocation, which starts the state afresh.
    Registered {
        key: OperatorKey,
        /// `None` for the system administrator.
        municipality: Option<MunicipalityCode>,
        operator_id: OperatorId,
        /// Which registration of his login this is (1, 2 … after revocations): the key his profile is sealed
        /// under. 0 in events written before registrations were numbered (profile in clear).
        registration: u32,
        /// `Erased` once his key was destroyed (he was revoked).
        profile: Erasable<OperatorProfile>,
        /// Deduplicated and sorted.
        roles: Vec<Role>,
        /// 許可業務, deduplicated and sorted.
        business_systems: Vec<BusinessId>,
    },
    ProfileUpdated {
        /// The registration whose key seals it (0 in events written before, in clear).
        registration: u32,
        profile: Erasable<OperatorProfile>,
    },
    RolesChanged {
        /// Deduplicated and sorted.
        roles: Vec<Role>,
    },
    BusinessSystemsChanged {
        /// Deduplicated and sorted.
        business_systems: Vec<BusinessId>,
    },
    /// The password changed; the password itself lives only as a hash outside the event log.
    PasswordChanged {
        at: Timestamp,
        /// `true` for a reset by an administrator (パスワード一括変更 included), `false` when he changed it himself.
        by_administrator: bool,
    },
    /// 失効: from now on the operator can do nothing, until a new registration. His management information is
    /// erased with it: the key of `registration` is destroyed after this event.
    Revoked {
        at: Timestamp,
        /// The registration whose key to destroy; 0 in events written before (nothing sealed to destroy).
        registration: u32,
    },
    LoginFailed {
        at: Timestamp,
        /// Failed logins since the last successful login, lock or unlock, this one included.
        failures_in_row: u32,
    },
    LoggedIn {
        at: Timestamp,
    },
    Locked {
        at: Timestamp,
        /// `None`: until an administrator unlocks.
        until: Option<Timestamp>,
    },
    Unlocked,
    InternalIdAssigned {
        business_id: BusinessId,
        internal_id: InternalId,
        /// That business system's role for him, as its administrator names it.
        role: Option<Text100>,
    },
    InternalIdRemoved {
        business_id: BusinessId,
    },
    /// 生体情報登録: an authenticator whose registration ceremony (user verification, attestation) was verified. Its
    /// public key only: the private key and the biometric template never leave the authenticator.
    AuthenticatorRegistered {
        credential_id: CredentialId,
        public_key: CosePublicKey,
        aaguid: Aaguid,
        /// The signature counter at registration: later assertions must count past it.
        sign_count: u32,
        /// A credential that may be synchronised to other devices (WebAuthn BE flag).
        backup_eligible: bool,
        label: AuthenticatorLabel,
        at: Timestamp,
    },
    /// The authenticator no longer logs him in.
    AuthenticatorRemoved {
        credential_id: CredentialId,
        at: Timestamp,
    },
    /// On his login stream, before `LoggedIn`: a biometric login with this authenticator and its counter.
    AuthenticatorUsed {
        at: Timestamp,
        credential_id: CredentialId,
        sign_count: u32,
    },
    /// On his login stream: a valid assertion whose signature counter did not move past the last one seen — the
    /// authenticator may have been cloned. The login was refused (and counted as failed).
    SignCountRegressed {
        at: Timestamp,
        credential_id: CredentialId,
        sign_count: u32,
        /// The highest counter seen before (registration or login).
        last_sign_count: u32,
    },
}

pub(super) const REGISTERED: &str = "OperatorRegistered";
pub(super) const PROFILE_UPDATED: &str = "OperatorProfileUpdated";
pub(super) const ROLES_CHANGED: &str = "OperatorRolesChanged";
pub(super) const BUSINESS_SYSTEMS_CHANGED: &str = "OperatorBusinessSystemsChanged";
pub(super) const PASSWORD_CHANGED: &str = "OperatorPasswordChanged";
pub(super) const REVOKED: &str = "OperatorRevoked";
pub(super) const LOGIN_FAILED: &str = "OperatorLoginFailed";
pub(super) const LOGGED_IN: &str = "OperatorLoggedIn";
pub(super) const LOCKED: &str = "OperatorLocked";
pub(super) const UNLOCKED: &str = "OperatorUnlocked";
pub(super) const INTERNAL_ID_ASSIGNED: &str = "OperatorInternalIdAssigned";
pub(super) const INTERNAL_ID_REMOVED: &str = "OperatorInternalIdRemoved";
pub(super) const AUTHENTICATOR_REGISTERED: &str = "OperatorAuthenticatorRegistered";
pub(super) const AUTHENTICATOR_REMOVED: &str = "OperatorAuthenticatorRemoved";
pub(super) const AUTHENTICATOR_USED: &str = "OperatorAuthenticatorUsed";
pub(super) const SIGN_COUNT_REGRESSED: &str = "OperatorAuthenticatorCounterRegressed";

/// Stored payload shapes, one per `(event_type, version)`; never edit a released one.
mod v1 {
    use super::*;

    /// `OperatorRegistered` v1, before profiles and business systems.
    #[derive(Deserialize)]
    pub(super) struct Registered {
        pub key: OperatorKey,
        pub municipality: Option<MunicipalityCode>,
        pub operator_id: OperatorId,
        pub name: OperatorName,
        pub roles: Vec<Role>,
    }

    /// The profile inside `OperatorRegistered` v2 and `OperatorProfileUpdated` v1; optional fields may be absent.
    #[derive(Deserialize)]
    pub(super) struct Profile {
        pub name: OperatorName,
        pub department: Option<Text100>,
        pub sex: Option<Sex>,
        pub phone: Option<Phone>,
        pub extension: Option<Extension>,
        pub email: Option<Email>,
        pub info: Option<Text200>,
        pub extra: Option<Text200>,
    }

    impl From<Profile> for OperatorProfile {
        fn from(p: Profile) -> Self {
            Self {
                name: p.name,
                department: p.department,
                sex: p.sex,
                phone: p.phone,
                extension: p.extension,
                email: p.email,
                info: p.info,
                extra: p.extra,
            }
        }
    }

    pub(super) fn encode_profile(p: &OperatorProfile) -> Value {
        json!({
            "name": p.name.as_str(),
            "department": p.department.as_ref().map(Text100::as_str),
            "sex": p.sex.map(Sex::code),
            "phone": p.phone.as_ref().map(Phone::as_str),
            "extension": p.extension.as_ref().map(Extension::as_str),
            "email": p.email.as_ref().map(Email::as_str),
            "info": p.info.as_ref().map(Text200::as_str),
            "extra": p.extra.as_ref().map(Text200::as_str),
        })
    }

    #[derive(Deserialize)]
    pub(super) struct ProfileUpdated {
        pub profile: Profile,
    }

    #[derive(Deserialize)]
    pub(super) struct RolesChanged {
        pub roles: Vec<Role>,
    }

    #[derive(Deserialize)]
    pub(super) struct BusinessSystemsChanged {
        pub business_systems: Vec<BusinessId>,
    }

    #[derive(Deserialize)]
    pub(super) struct PasswordChanged {
        pub at: Timestamp,
        pub by_administrator: bool,
    }

    /// `OperatorRevoked` v1 and `OperatorLoggedIn`.
    #[derive(Deserialize)]
    pub(super) struct At {
        pub at: Timestamp,
    }

    #[derive(Deserialize)]
    pub(super) struct LoginFailed {
        pub at: Timestamp,
        pub failures_in_row: u32,
    }

    #[derive(Deserialize)]
    pub(super) struct Locked {
        pub at: Timestamp,
        pub until: Option<Timestamp>,
    }

    #[derive(Deserialize)]
    pub(super) struct Unlocked {}

    #[derive(Deserialize)]
    pub(super) struct InternalIdAssigned {
        pub business_id: BusinessId,
        pub internal_id: InternalId,
        pub role: Option<Text100>,
    }

    #[derive(Deserialize)]
    pub(super) struct InternalIdRemoved {
        pub business_id: BusinessId,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct AuthenticatorRegistered {
        pub credential_id: CredentialId,
        pub public_key: CosePublicKey,
        pub aaguid: Aaguid,
        pub sign_count: u32,
        pub backup_eligible: bool,
        pub label: AuthenticatorLabel,
        pub at: Timestamp,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct AuthenticatorRemoved {
        pub credential_id: CredentialId,
        pub at: Timestamp,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct AuthenticatorUsed {
        pub at: Timestamp,
        pub credential_id: CredentialId,
        pub sign_count: u32,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct SignCountRegressed {
        pub at: Timestamp,
        pub credential_id: CredentialId,
        pub sign_count: u32,
        pub last_sign_count: u32,
    }
}

mod v2 {
    use super::*;

    /// `OperatorProfileUpdated` v2: the profile sealed (`null` once erased).
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct ProfileUpdated {
        pub personal_key: PersonalKey,
        pub personal: Option<v1::Profile>,
    }

    /// `OperatorRevoked` v2: names the key to destroy.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Revoked {
        pub at: Timestamp,
        pub personal_key: PersonalKey,
    }

    #[derive(Deserialize)]
    pub(super) struct Registered {
        pub key: OperatorKey,
        pub municipality: Option<MunicipalityCode>,
        pub operator_id: OperatorId,
        pub profile: v1::Profile,
        pub roles: Vec<Role>,
        pub business_systems: Vec<BusinessId>,
    }
}

mod v3 {
    use super::*;

    /// `OperatorRegistered` v3: the profile sealed (`null` once erased).
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Registered {
        pub key: OperatorKey,
        pub municipality: Option<MunicipalityCode>,
        pub operator_id: OperatorId,
        pub personal_key: PersonalKey,
        pub personal: Option<v1::Profile>,
        pub roles: Vec<Role>,
        pub business_systems: Vec<BusinessId>,
    }
}

/// `"personal_key": "r<n>"`: the n-th registration's key (n ≥ 1; `r0` only in an upcast of an event written
/// before registrations were numbered, which is never appended again).
#[derive(Debug, Clone, Copy)]
struct PersonalKey(u32);

impl<'de> Deserialize<'de> for PersonalKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.strip_prefix('r')
            .filter(|n| *n == "0" || !n.starts_with('0'))
            .and_then(|n| n.parse().ok())
            .map(PersonalKey)
            .ok_or_else(|| serde::de::Error::custom(format!("not a personal key r<n>: {text}")))
    }
}

fn personal_key(registration: u32) -> String {
    format!("r{registration}")
}

fn business_ids(ids: &[BusinessId]) -> Vec<&str> {
    ids.iter().map(BusinessId::as_str).collect()
}

impl DomainEvent for OperatorEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Registered { .. } => REGISTERED,
            Self::ProfileUpdated { .. } => PROFILE_UPDATED,
            Self::RolesChanged { .. } => ROLES_CHANGED,
            Self::BusinessSystemsChanged { .. } => BUSINESS_SYSTEMS_CHANGED,
            Self::PasswordChanged { .. } => PASSWORD_CHANGED,
            Self::Revoked { .. } => REVOKED,
            Self::LoginFailed { .. } => LOGIN_FAILED,
            Self::LoggedIn { .. } => LOGGED_IN,
            Self::Locked { .. } => LOCKED,
            Self::Unlocked => UNLOCKED,
            Self::InternalIdAssigned { .. } => INTERNAL_ID_ASSIGNED,
            Self::InternalIdRemoved { .. } => INTERNAL_ID_REMOVED,
            Self::AuthenticatorRegistered { .. } => AUTHENTICATOR_REGISTERED,
            Self::AuthenticatorRemoved { .. } => AUTHENTICATOR_REMOVED,
            Self::AuthenticatorUsed { .. } => AUTHENTICATOR_USED,
            Self::SignCountRegressed { .. } => SIGN_COUNT_REGRESSED,
        }
    }

    fn event_version(&self) -> u32 {
        match self {
            Self::Registered { .. } => 3,
            Self::ProfileUpdated { .. } | Self::Revoked { .. } => 2,
            _ => 1,
        }
    }

    fn encode(&self) -> Value {
        match self {
            Self::Registered { key, municipality, operator_id, registration, profile, roles, business_systems } => {
                json!({
                    "key": key.to_string(),
                    "municipality": municipality.as_ref().map(MunicipalityCode::as_str),
                    "operator_id": operator_id.as_str(),
                    "personal_key": personal_key(*registration),
                    "personal": profile.known().map(v1::encode_profile),
                    "roles": roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                    "business_systems": business_ids(business_systems),
                })
            }
            Self::ProfileUpdated { registration, profile } => json!({
                "personal_key": personal_key(*registration),
                "personal": profile.known().map(v1::encode_profile),
            }),
            Self::RolesChanged { roles } => json!({ "roles": roles.iter().map(|r| r.as_str()).collect::<Vec<_>>() }),
            Self::BusinessSystemsChanged { business_systems } => {
                json!({ "business_systems": business_ids(business_systems) })
            }
            Self::PasswordChanged { at, by_administrator } => {
                json!({ "at": at.unix(), "by_administrator": by_administrator })
            }
            Self::Revoked { at, registration } => {
                json!({ "at": at.unix(), "personal_key": personal_key(*registration) })
            }
            Self::LoggedIn { at } => json!({ "at": at.unix() }),
            Self::LoginFailed { at, failures_in_row } => json!({ "at": at.unix(), "failures_in_row": failures_in_row }),
            Self::Locked { at, until } => json!({ "at": at.unix(), "until": until.map(Timestamp::unix) }),
            Self::Unlocked => json!({}),
            Self::InternalIdAssigned { business_id, internal_id, role } => json!({
                "business_id": business_id.as_str(),
                "internal_id": internal_id.as_str(),
                "role": role.as_ref().map(Text100::as_str),
            }),
            Self::InternalIdRemoved { business_id } => json!({ "business_id": business_id.as_str() }),
            Self::AuthenticatorRegistered {
                credential_id,
                public_key,
                aaguid,
                sign_count,
                backup_eligible,
                label,
                at,
            } => json!({
                "credential_id": credential_id.to_string(),
                "public_key": String::from(public_key.clone()),
                "aaguid": aaguid.to_string(),
                "sign_count": sign_count,
                "backup_eligible": backup_eligible,
                "label": label.as_str(),
                "at": at.unix(),
            }),
            Self::AuthenticatorRemoved { credential_id, at } => {
                json!({ "credential_id": credential_id.to_string(), "at": at.unix() })
            }
            Self::AuthenticatorUsed { at, credential_id, sign_count } => json!({
                "at": at.unix(),
                "credential_id": credential_id.to_string(),
                "sign_count": sign_count,
            }),
            Self::SignCountRegressed { at, credential_id, sign_count, last_sign_count } => json!({
                "at": at.unix(),
                "credential_id": credential_id.to_string(),
                "sign_count": sign_count,
                "last_sign_count": last_sign_count,
            }),
        }
    }

    fn decode(event_type: &str, event_version: u32, payload: &Value) -> Result<Self, EventDecodeError> {
        let (t, v) = (event_type, event_version);
        Ok(match (event_type, event_version) {
            (REGISTERED, 1) => {
                // Upcast: before v2 an operator had only a name and no business systems.
                let v1::Registered { key, municipality, operator_id, name, roles } = decode_payload(t, v, payload)?;
                let profile = Erasable::Known(OperatorProfile::named(name));
                Self::Registered {
                    key,
                    municipality,
                    operator_id,
                    registration: 0,
                    profile,
                    roles,
                    business_systems: vec![],
                }
            }
            (REGISTERED, 2) => {
                let v2::Registered { key, municipality, operator_id, profile, roles, business_systems } =
                    decode_payload(t, v, payload)?;
                let profile = Erasable::Known(profile.into());
                Self::Registered { key, municipality, operator_id, registration: 0, profile, roles, business_systems }
            }
            (REGISTERED, 3) => {
                let v3::Registered { key, municipality, operator_id, personal_key, personal, roles, business_systems } =
                    decode_payload(t, v, payload)?;
                Self::Registered {
                    key,
                    municipality,
                    operator_id,
                    registration: personal_key.0,
                    profile: Erasable::from_option(personal.map(Into::into)),
                    roles,
                    business_systems,
                }
            }
            (PROFILE_UPDATED, 1) => {
                let v1::ProfileUpdated { profile } = decode_payload(t, v, payload)?;
                Self::ProfileUpdated { registration: 0, profile: Erasable::Known(profile.into()) }
            }
            (PROFILE_UPDATED, 2) => {
                let v2::ProfileUpdated { personal_key, personal } = decode_payload(t, v, payload)?;
                Self::ProfileUpdated {
                    registration: personal_key.0,
                    profile: Erasable::from_option(personal.map(Into::into)),
                }
            }
            (ROLES_CHANGED, 1) => {
                let v1::RolesChanged { roles } = decode_payload(t, v, payload)?;
                Self::RolesChanged { roles }
            }
            (BUSINESS_SYSTEMS_CHANGED, 1) => {
                let v1::BusinessSystemsChanged { business_systems } = decode_payload(t, v, payload)?;
                Self::BusinessSystemsChanged { business_systems }
            }
            (PASSWORD_CHANGED, 1) => {
                let v1::PasswordChanged { at, by_administrator } = decode_payload(t, v, payload)?;
                Self::PasswordChanged { at, by_administrator }
            }
            (REVOKED, 1) => {
                let v1::At { at } = decode_payload(t, v, payload)?;
                Self::Revoked { at, registration: 0 }
            }
            (REVOKED, 2) => {
                let v2::Revoked { at, personal_key } = decode_payload(t, v, payload)?;
                Self::Revoked { at, registration: personal_key.0 }
            }
            (LOGIN_FAILED, 1) => {
                let v1::LoginFailed { at, failures_in_row } = decode_payload(t, v, payload)?;
                Self::LoginFailed { at, failures_in_row }
            }
            (LOGGED_IN, 1) => {
                let v1::At { at } = decode_payload(t, v, payload)?;
                Self::LoggedIn { at }
            }
            (LOCKED, 1) => {
                let v1::Locked { at, until } = decode_payload(t, v, payload)?;
                Self::Locked { at, until }
            }
            (UNLOCKED, 1) => {
                let v1::Unlocked {} = decode_payload(t, v, payload)?;
                Self::Unlocked
            }
            (INTERNAL_ID_ASSIGNED, 1) => {
                let v1::InternalIdAssigned { business_id, internal_id, role } = decode_payload(t, v, payload)?;
                Self::InternalIdAssigned { business_id, internal_id, role }
            }
            (INTERNAL_ID_REMOVED, 1) => {
                let v1::InternalIdRemoved { business_id } = decode_payload(t, v, payload)?;
                Self::InternalIdRemoved { business_id }
            }
            (AUTHENTICATOR_REGISTERED, 1) => {
                let v1::AuthenticatorRegistered {
                    credential_id,
                    public_key,
                    aaguid,
                    sign_count,
                    backup_eligible,
                    label,
                    at,
                } = decode_payload(t, v, payload)?;
                Self::AuthenticatorRegistered {
                    credential_id,
                    public_key,
                    aaguid,
                    sign_count,
                    backup_eligible,
                    label,
                    at,
                }
            }
            (AUTHENTICATOR_REMOVED, 1) => {
                let v1::AuthenticatorRemoved { credential_id, at } = decode_payload(t, v, payload)?;
                Self::AuthenticatorRemoved { credential_id, at }
            }
            (AUTHENTICATOR_USED, 1) => {
                let v1::AuthenticatorUsed { at, credential_id, sign_count } = decode_payload(t, v, payload)?;
                Self::AuthenticatorUsed { at, credential_id, sign_count }
            }
            (SIGN_COUNT_REGRESSED, 1) => {
                let v1::SignCountRegressed { at, credential_id, sign_count, last_sign_count } =
                    decode_payload(t, v, payload)?;
                Self::SignCountRegressed { at, credential_id, sign_count, last_sign_count }
            }
            _ => return Err(EventDecodeError::unknown(event_type, event_version)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn key() -> OperatorKey {
        OperatorKey::from_uuid(Uuid::from_u128(0x0192_5c4e_6a80_7000_8000_0000_0000_0001))
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
            extra: None,
        }
    }

    fn registered_v3() -> OperatorEvent {
        OperatorEvent::Registered {
            key: key(),
            municipality: Some(MunicipalityCode::parse("131016").unwrap()),
            operator_id: OperatorId::parse("OP0501").unwrap(),
            registration: 2,
            profile: Erasable::Known(full_profile()),
            roles: vec![Role::Clerk],
            business_systems: vec![BusinessId::CERTIFICATE_ISSUANCE, BusinessId::LIBRARY],
        }
    }

    #[test]
    fn registered_v3_has_the_documented_shape_with_the_profile_as_its_personal_data() {
        let event = registered_v3();
        assert_eq!(event.event_version(), 3);
        assert_eq!(
            event.encode(),
            json!({
                "key": "01925c4e-6a80-7000-8000-000000000001",
                "municipality": "131016",
                "operator_id": "OP0501",
                "personal_key": "r2",
                "personal": {
                    "name": "ICS",
                    "department": "市民課",
                    "sex": "1",
                    "phone": "03-3333-4444",
                    "extension": "1234",
                    "email": "op0501@example.jp",
                    "info": "窓口担当",
                    "extra": null,
                },
                "roles": ["clerk"],
                "business_systems": ["01", "02"],
            })
        );
        assert_eq!(OperatorEvent::decode(REGISTERED, 3, &event.encode()), Ok(event));
    }

    #[test]
    fn an_erased_profile_reads_as_erased_and_keeps_the_rest() {
        let mut payload = registered_v3().encode();
        payload["personal"] = Value::Null;
        let OperatorEvent::Registered { registration, profile, operator_id, .. } =
            OperatorEvent::decode(REGISTERED, 3, &payload).unwrap()
        else {
            panic!("not a registration")
        };
        assert_eq!((registration, profile, operator_id.as_str()), (2, Erasable::Erased, "OP0501"));
        let updated = json!({ "personal_key": "r2", "personal": null });
        assert_eq!(
            OperatorEvent::decode(PROFILE_UPDATED, 2, &updated),
            Ok(OperatorEvent::ProfileUpdated { registration: 2, profile: Erasable::Erased })
        );
    }

    #[test]
    fn revoked_v2_names_the_key_it_destroys_and_v1_none() {
        let event = OperatorEvent::Revoked { at: Timestamp::from_unix(7), registration: 3 };
        assert_eq!((event.event_version(), event.encode()), (2, json!({ "at": 7, "personal_key": "r3" })));
        assert_eq!(OperatorEvent::decode(REVOKED, 2, &event.encode()), Ok(event));
        assert_eq!(
            OperatorEvent::decode(REVOKED, 1, &json!({ "at": 7 })),
            Ok(OperatorEvent::Revoked { at: Timestamp::from_unix(7), registration: 0 })
        );
        for bad in ["3", "r03", "r", "rx", "r-1", "R1"] {
            let payload = json!({ "at": 7, "personal_key": bad });
            assert!(
                matches!(OperatorEvent::decode(REVOKED, 2, &payload), Err(EventDecodeError::Payload { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn registered_v2_with_the_profile_in_clear_is_upcast_as_registration_0() {
        let v2 = json!({
            "key": "01925c4e-6a80-7000-8000-000000000001",
            "municipality": "131016",
            "operator_id": "OP0501",
            "profile": { "name": "ICS", "phone": "03-3333-4444" },
            "roles": ["clerk"],
            "business_systems": ["01"],
        });
        let mut profile = OperatorProfile::named(OperatorName::parse("ICS").unwrap());
        profile.phone = Some(Phone::parse("03-3333-4444").unwrap());
        assert_eq!(
            OperatorEvent::decode(REGISTERED, 2, &v2),
            Ok(OperatorEvent::Registered {
                key: key(),
                municipality: Some(MunicipalityCode::parse("131016").unwrap()),
                operator_id: OperatorId::parse("OP0501").unwrap(),
                registration: 0,
                profile: Erasable::Known(profile),
                roles: vec![Role::Clerk],
                business_systems: vec![BusinessId::CERTIFICATE_ISSUANCE],
            })
        );
    }

    #[test]
    fn registered_v1_is_upcast_with_a_name_only_profile() {
        let v1 = json!({
            "key": "01925c4e-6a80-7000-8000-000000000001",
            "municipality": null,
            "operator_id": "OP0501",
            "name": "ICS",
            "roles": ["system_admin"],
        });
        let event = OperatorEvent::decode(REGISTERED, 1, &v1).unwrap();
        assert_eq!(
            event,
            OperatorEvent::Registered {
                key: key(),
                municipality: None,
                operator_id: OperatorId::parse("OP0501").unwrap(),
                registration: 0,
                profile: Erasable::Known(OperatorProfile::named(OperatorName::parse("ICS").unwrap())),
                roles: vec![Role::SystemAdmin],
                business_systems: vec![],
            }
        );
        // A v1 payload is not a v2 one, nor the other way round.
        assert!(matches!(OperatorEvent::decode(REGISTERED, 2, &v1), Err(EventDecodeError::Payload { .. })));
        assert!(matches!(OperatorEvent::decode(REGISTERED, 1, &event.encode()), Err(EventDecodeError::Payload { .. })));
    }

    #[test]
    fn absent_optional_profile_fields_decode_as_none() {
        let payload = json!({ "profile": { "name": "ICS" } });
        assert_eq!(
            OperatorEvent::decode(PROFILE_UPDATED, 1, &payload),
            Ok(OperatorEvent::ProfileUpdated {
                registration: 0,
                profile: Erasable::Known(OperatorProfile::named(OperatorName::parse("ICS").unwrap()))
            })
        );
    }

    #[test]
    fn decode_refuses_unknown_types_versions_and_bad_payloads() {
        assert_eq!(OperatorEvent::decode(REGISTERED, 4, &json!({})), Err(EventDecodeError::unknown(REGISTERED, 4)));
        assert_eq!(
            OperatorEvent::decode("OperatorPasswordStored", 1, &json!({})),
            Err(EventDecodeError::unknown("OperatorPasswordStored", 1))
        );
        for (t, payload) in [
            (
                REGISTERED,
                json!({ "key": "x", "municipality": null, "operator_id": "OP0501", "name": "ICS", "roles": [] }),
            ),
            (PROFILE_UPDATED, json!({ "profile": { "name": "ICS", "sex": "3" } })),
            (BUSINESS_SYSTEMS_CHANGED, json!({ "business_systems": ["1"] })),
            (LOCKED, json!({ "at": "soon", "until": null })),
            (LOGIN_FAILED, json!({ "at": 1, "failures_in_row": -1 })),
            (INTERNAL_ID_ASSIGNED, json!({ "business_id": "01", "internal_id": "10-10", "role": null })),
        ] {
            assert!(matches!(OperatorEvent::decode(t, 1, &payload), Err(EventDecodeError::Payload { .. })), "{t}");
        }
    }

    #[test]
    fn no_event_carries_a_secret() {
        let events = [
            OperatorEvent::PasswordChanged { at: Timestamp::from_unix(1), by_administrator: true },
            OperatorEvent::LoginFailed { at: Timestamp::from_unix(1), failures_in_row: 1 },
        ];
        for event in events {
            let text = event.encode().to_string();
            for word in ["password\"", "hash", "secret"] {
                assert!(!text.to_lowercase().contains(word), "{text}");
            }
        }
    }
}
