//! The login client of a business system (業務ログイン認証, 手引き II 3(3)): municipalities' own systems log
//! operators in through cardap with OpenID Connect. Owns the value types of that registration — where cardap may
//! send an operator back to (`RedirectUri`) — and the `LoginKeys` aggregate: the installation's ID-token signing
//! keys, whose public halves are events (the private halves are sealed beside them, never in an event).
//!
//! The business system's own events (`LoginConfigured`, `LoginSecretIssued`) are in [`crate::business_system`].

use serde::Deserialize;
use serde_json::{Value, json};

use crate::aggregate::decode_payload;
use crate::contact::string_newtype;
use crate::{Aggregate, DomainEvent, EventDecodeError, ParseError, Timestamp};

/// Where cardap may send an operator back with an authorization code: an absolute `https://` URL, or
/// `http://` to `localhost`, `127.0.0.1` or `[::1]` (a system under test on the same machine, RFC 8252 §7.3);
/// no fragment, no user info, printable ASCII without spaces, at most 500 characters. Compared exactly as
/// registered (OAuth 2.0 Security BCP §4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RedirectUri(String);

impl RedirectUri {
    pub const MAX_CHARS: usize = 500;

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if s.is_empty() {
            return Err(ParseError::Empty);
        }
        if s.len() > Self::MAX_CHARS {
            return Err(ParseError::TooLong { max: Self::MAX_CHARS });
        }
        if !s.bytes().all(|b| b.is_ascii_graphic()) || s.contains('#') {
            return Err(ParseError::InvalidRedirectUri);
        }
        let (scheme, rest) = s.split_once("://").ok_or(ParseError::InvalidRedirectUri)?;
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        if authority.is_empty() || authority.contains('@') {
            return Err(ParseError::InvalidRedirectUri);
        }
        let host = match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => authority.split(':').next().unwrap_or_default(),
        };
        let loopback = matches!(host.to_ascii_lowercase().as_str(), "localhost" | "127.0.0.1" | "::1");
        match scheme {
            "https" if !host.is_empty() => Ok(Self(s.to_owned())),
            "http" if loopback => Ok(Self(s.to_owned())),
            _ => Err(ParseError::InvalidRedirectUri),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

string_newtype!(RedirectUri);

/// A business system's registration as a login client: the URIs an authorization may return to (1..=10,
/// distinct).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginClient {
    pub redirect_uris: Vec<RedirectUri>,
}

impl LoginClient {
    pub const MAX_REDIRECT_URIS: usize = 10;

    /// Checks the list: at least one, at most ten, no repeats (kept in the given order).
    pub fn new(redirect_uris: Vec<RedirectUri>) -> Result<LoginClient, ParseError> {
        if redirect_uris.is_empty() {
            return Err(ParseError::Empty);
        }
        if redirect_uris.len() > Self::MAX_REDIRECT_URIS {
            return Err(ParseError::OutOfRange { min: 1, max: Self::MAX_REDIRECT_URIS as i64 });
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(dup) = redirect_uris.iter().find(|u| !seen.insert(*u)) {
            return Err(ParseError::UnknownValue { value: format!("{} (twice)", dup.as_str()) });
        }
        Ok(LoginClient { redirect_uris })
    }

    /// Whether `uri` is registered, compared exactly.
    pub fn allows(&self, uri: &str) -> bool {
        self.redirect_uris.iter().any(|u| u.as_str() == uri)
    }

    pub(crate) fn encode(&self) -> Value {
        json!({
            "redirect_uris": self.redirect_uris.iter().map(RedirectUri::as_str).collect::<Vec<_>>(),
        })
    }
}

/// Stored payload of a `LoginClient`, version 1.
#[derive(Deserialize)]
pub(crate) struct LoginClientV1 {
    redirect_uris: Vec<RedirectUri>,
}

impl From<LoginClientV1> for LoginClient {
    fn from(v: LoginClientV1) -> Self {
        LoginClient { redirect_uris: v.redirect_uris }
    }
}

/// The stream key of the installation's one `LoginKeys` stream.
pub const LOGIN_KEYS_STREAM_KEY: &str = "installation";

/// An ES256 (P-256) public key that signs ID tokens, as its JWK coordinates (base64url, no padding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKey {
    /// The JWS `kid`.
    pub kid: String,
    pub x: String,
    pub y: String,
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginKeysCommand {
    /// Add a signing key; the first key (or one whose kid exists) only once.
    Create(SigningKey),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginKeysEvent {
    SigningKeyCreated(SigningKey),
}

const SIGNING_KEY_CREATED: &str = "IdTokenSigningKeyCreated";

#[derive(Deserialize)]
struct SigningKeyV1 {
    kid: String,
    x: String,
    y: String,
    at: Timestamp,
}

impl DomainEvent for LoginKeysEvent {
    fn event_type(&self) -> &'static str {
        SIGNING_KEY_CREATED
    }

    fn event_version(&self) -> u32 {
        1
    }

    fn encode(&self) -> Value {
        let LoginKeysEvent::SigningKeyCreated(k) = self;
        json!({ "kid": k.kid, "x": k.x, "y": k.y, "at": k.at })
    }

    fn decode(event_type: &str, event_version: u32, payload: &Value) -> Result<Self, EventDecodeError> {
        match (event_type, event_version) {
            (SIGNING_KEY_CREATED, 1) => {
                let SigningKeyV1 { kid, x, y, at } = decode_payload(event_type, event_version, payload)?;
                Ok(LoginKeysEvent::SigningKeyCreated(SigningKey { kid, x, y, at }))
            }
            _ => Err(EventDecodeError::unknown(event_type, event_version)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginKeysError {
    #[error("a signing key with this kid exists already")]
    KidTaken,
}

impl crate::message::Localized for LoginKeysError {
    fn message_ja(&self) -> String {
        "この鍵IDの署名鍵は既に作成されています".to_owned()
    }
}

/// The signing keys, oldest first; the newest signs.
#[derive(Debug, Clone, Default)]
pub struct LoginKeysState {
    pub keys: Vec<SigningKey>,
}

impl LoginKeysState {
    pub fn current(&self) -> Option<&SigningKey> {
        self.keys.last()
    }
}

#[derive(Debug)]
pub struct LoginKeys;

impl Aggregate for LoginKeys {
    type State = LoginKeysState;
    type Command = LoginKeysCommand;
    type Event = LoginKeysEvent;
    type Error = LoginKeysError;

    const STREAM_TYPE: &'static str = "login_keys";

    fn decide(state: &Self::State, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error> {
        let LoginKeysCommand::Create(key) = command;
        if state.keys.iter().any(|k| k.kid == key.kid) {
            return Err(LoginKeysError::KidTaken);
        }
        Ok(vec![LoginKeysEvent::SigningKeyCreated(key)])
    }

    fn evolve(mut state: Self::State, event: &Self::Event) -> Self::State {
        let LoginKeysEvent::SigningKeyCreated(key) = event;
        state.keys.push(key.clone());
        state
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::testing::given;

    #[test]
    fn redirect_uris_are_https_or_loopback_http_without_fragment_or_user_info() {
        for ok in ["https://lib.example.jp/cb", "https://lib.example.jp:8443/oidc/cb?x=1", "http://127.0.0.1:9000/cb"] {
            assert!(RedirectUri::parse(ok).is_ok(), "{ok}");
        }
        assert!(RedirectUri::parse("http://localhost/cb").is_ok());
        assert!(RedirectUri::parse("http://[::1]:8080/cb").is_ok());
        for bad in [
            "http://lib.example.jp/cb",
            "https://lib.example.jp/cb#frag",
            "https://user@lib.example.jp/cb",
            "ftp://lib.example.jp/",
            "https:///cb",
            "https://lib.example.jp/a b",
            "/relative",
        ] {
            assert_eq!(RedirectUri::parse(bad), Err(ParseError::InvalidRedirectUri), "{bad}");
        }
        assert_eq!(RedirectUri::parse(""), Err(ParseError::Empty));
    }

    #[test]
    fn a_login_client_needs_one_to_ten_distinct_uris_and_allows_only_those_exactly() {
        let uri = |s: &str| RedirectUri::parse(s).unwrap();
        assert_eq!(LoginClient::new(vec![]), Err(ParseError::Empty));
        assert!(LoginClient::new(vec![uri("https://a.jp/cb"), uri("https://a.jp/cb")]).is_err());
        let many = (0..11).map(|i| uri(&format!("https://a.jp/{i}"))).collect();
        assert!(LoginClient::new(many).is_err());
        let client = LoginClient::new(vec![uri("https://a.jp/cb")]).unwrap();
        assert!(client.allows("https://a.jp/cb"));
        assert!(!client.allows("https://a.jp/cb/"));
        assert!(!client.allows("https://A.jp/cb"));
    }

    fn key(kid: &str) -> SigningKey {
        SigningKey { kid: kid.to_owned(), x: "x".to_owned(), y: "y".to_owned(), at: Timestamp::from_unix(1) }
    }

    #[test]
    fn the_newest_signing_key_signs_and_a_kid_is_never_reused() {
        let state = given::<LoginKeys>([LoginKeysEvent::SigningKeyCreated(key("k1"))])
            .when(LoginKeysCommand::Create(key("k2")))
            .then([LoginKeysEvent::SigningKeyCreated(key("k2"))]);
        assert_eq!(state.current().unwrap().kid, "k2");
        given::<LoginKeys>([LoginKeysEvent::SigningKeyCreated(key("k1"))])
            .when(LoginKeysCommand::Create(key("k1")))
            .then_err(LoginKeysError::KidTaken);
    }
}
