//! An operator's authenticators for biometric login (生体認証, 手引き I 2.1(2)②, 生体情報登録): the value types of a
//! registered WebAuthn credential, and the rule for its signature counter.
//!
//! Owns what an authenticator is to cardap — its credential ID, its public key (a COSE_Key, as the authenticator
//! gave it), its model (AAGUID), the counter it was registered with and a label — and nothing of the ceremony that
//! proved it (that is WebAuthn's, in `commands`). None of these is a secret: the private key never leaves the
//! authenticator, and the biometric template never leaves it either.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ParseError;
use crate::ids::parse_text;
use crate::time::Timestamp;

/// The most authenticators one operator may have at once (a reader at his desk, one in reserve, …).
pub const MAX_AUTHENTICATORS: usize = 10;

/// Bytes as base64url without padding, the way WebAuthn JSON shows them.
fn base64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `bytes` if there are 1..=`max` of them.
fn bounded(bytes: Vec<u8>, max: usize) -> Result<Vec<u8>, ParseError> {
    match bytes.len() {
        0 => Err(ParseError::Empty),
        n if n > max => Err(ParseError::TooLong { max }),
        _ => Ok(bytes),
    }
}

fn from_base64url(s: &str) -> Result<Vec<u8>, ParseError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(ParseError::Empty);
    }
    URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).map_err(|_| ParseError::NotBase64Url)
}

/// A WebAuthn credential ID: 1..=1023 bytes chosen by the authenticator (WebAuthn §4 "Credential ID"); shown and
/// stored as base64url.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CredentialId(Vec<u8>);

impl CredentialId {
    pub const MAX_BYTES: usize = 1023;

    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, ParseError> {
        bounded(bytes, Self::MAX_BYTES).map(Self)
    }

    /// From its base64url text (padding tolerated).
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        Self::from_bytes(from_base64url(s)?)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for CredentialId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&base64url(&self.0))
    }
}

impl fmt::Debug for CredentialId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CredentialId({self})")
    }
}

impl TryFrom<String> for CredentialId {
    type Error = ParseError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<CredentialId> for String {
    fn from(id: CredentialId) -> Self {
        id.to_string()
    }
}

/// A credential's public key as the authenticator gave it: a CBOR COSE_Key (RFC 9052 §7), at most 2 KiB (an
/// RSA-2048 key is about 270 bytes). Verified against an assertion by WebAuthn; here it is only kept.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CosePublicKey(Vec<u8>);

impl CosePublicKey {
    pub const MAX_BYTES: usize = 2048;

    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, ParseError> {
        bounded(bytes, Self::MAX_BYTES).map(Self)
    }

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        Self::from_bytes(from_base64url(s)?)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for CosePublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CosePublicKey({} bytes)", self.0.len())
    }
}

impl TryFrom<String> for CosePublicKey {
    type Error = ParseError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<CosePublicKey> for String {
    fn from(key: CosePublicKey) -> Self {
        base64url(&key.0)
    }
}

/// An authenticator model (AAGUID, WebAuthn §6.5.1): the UUID a maker gives every authenticator of one model, e.g.
/// a fingerprint reader or a palm-vein reader. All zeros: the authenticator (or the browser) did not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Aaguid(Uuid);

impl Aaguid {
    /// The model left unsaid.
    pub const UNKNOWN: Aaguid = Aaguid(Uuid::nil());

    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(Uuid::from_bytes(bytes))
    }

    /// From its hyphenated form (any case), e.g. `0fb9bcbc-a0d4-4042-bbb0-559bc1631e28`.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(ParseError::Empty);
        }
        if s.len() != 36 {
            return Err(ParseError::InvalidAaguid);
        }
        Uuid::parse_str(s).map(Self).map_err(|_| ParseError::InvalidAaguid)
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for Aaguid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.hyphenated())
    }
}

impl TryFrom<String> for Aaguid {
    type Error = ParseError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Aaguid> for String {
    fn from(a: Aaguid) -> Self {
        a.to_string()
    }
}

/// What the operations manager calls an authenticator, e.g. `窓口3番 指静脈リーダー`: 1..=50 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AuthenticatorLabel(String);

impl AuthenticatorLabel {
    pub const MAX_CHARS: usize = 50;

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        parse_text(s, Self::MAX_CHARS).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

crate::contact::string_newtype!(AuthenticatorLabel);

/// A credential whose registration ceremony (attestation, user verification) WebAuthn has verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuthenticator {
    pub credential_id: CredentialId,
    pub public_key: CosePublicKey,
    pub aaguid: Aaguid,
    /// The signature counter the authenticator reported at registration: every later assertion must count past it
    /// (unless the authenticator keeps no counter, then it stays 0).
    pub sign_count: u32,
    /// The authenticator said the credential may be copied to other devices (a synchronised passkey): it must say
    /// the same at every login (WebAuthn §6.1 BE flag).
    pub backup_eligible: bool,
    pub label: AuthenticatorLabel,
}

/// An authenticator registered for an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredAuthenticator {
    pub credential_id: CredentialId,
    pub public_key: CosePublicKey,
    pub aaguid: Aaguid,
    /// The counter at registration (the baseline; the counters of logins are on his login stream).
    pub sign_count: u32,
    pub backup_eligible: bool,
    pub label: AuthenticatorLabel,
    pub registered_at: Timestamp,
}

/// WebAuthn §6.1.1: a signature counter that does not move past the last one seen (when either is not zero) means
/// the authenticator may have been cloned. `last` is the higher of the registration baseline and the counters of
/// the logins since.
pub fn counter_regressed(last: u32, asserted: u32) -> bool {
    (asserted != 0 || last != 0) && asserted <= last
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ids_and_keys_are_base64url() {
        let id = CredentialId::parse("AAEC_-8").unwrap();
        assert_eq!(id.as_bytes(), [0, 1, 2, 0xff, 0xef]);
        assert_eq!(id.to_string(), "AAEC_-8");
        assert_eq!(CredentialId::parse("AAEC_-8="), Ok(id));
        assert_eq!(CredentialId::parse("not base64!"), Err(ParseError::NotBase64Url));
        assert_eq!(CredentialId::parse(""), Err(ParseError::Empty));
        assert_eq!(CredentialId::from_bytes(vec![1; 1024]), Err(ParseError::TooLong { max: 1023 }));
        assert_eq!(CosePublicKey::from_bytes(vec![]), Err(ParseError::Empty));
        assert_eq!(format!("{:?}", CosePublicKey::from_bytes(vec![1; 77]).unwrap()), "CosePublicKey(77 bytes)");
    }

    #[test]
    fn aaguids_are_uuids() {
        let a = Aaguid::parse("0FB9BCBC-A0D4-4042-BBB0-559BC1631E28").unwrap();
        assert_eq!(a.to_string(), "0fb9bcbc-a0d4-4042-bbb0-559bc1631e28");
        assert_eq!(Aaguid::parse("0fb9bcbca0d44042bbb0559bc1631e28"), Err(ParseError::InvalidAaguid));
        assert_eq!(Aaguid::parse("fingerprint"), Err(ParseError::InvalidAaguid));
        assert_eq!(Aaguid::from_bytes([0; 16]), Aaguid::UNKNOWN);
    }

    #[test]
    fn labels_are_short_text() {
        assert_eq!(AuthenticatorLabel::parse(" 窓口3番 ").unwrap().as_str(), "窓口3番");
        assert_eq!(AuthenticatorLabel::parse(&"あ".repeat(51)), Err(ParseError::TooLong { max: 50 }));
    }

    #[test]
    fn a_counter_must_move_past_the_last_one_unless_the_authenticator_keeps_none() {
        assert!(!counter_regressed(0, 0), "no counter at all");
        assert!(!counter_regressed(0, 1));
        assert!(!counter_regressed(5, 6));
        assert!(counter_regressed(5, 5), "the same counter twice");
        assert!(counter_regressed(5, 4), "backwards");
        assert!(counter_regressed(5, 0), "a counter that stops counting");
    }

    proptest! {
        #[test]
        fn credential_ids_round_trip(bytes in proptest::collection::vec(any::<u8>(), 1..200)) {
            let id = CredentialId::from_bytes(bytes.clone()).unwrap();
            let again = CredentialId::parse(&id.to_string()).unwrap();
            prop_assert_eq!(again.as_bytes(), bytes.as_slice());
        }

        #[test]
        fn aaguids_round_trip(bytes in any::<[u8; 16]>()) {
            let a = Aaguid::from_bytes(bytes);
            prop_assert_eq!(Aaguid::parse(&a.to_string()), Ok(a));
        }
    }
}
