//! A business system's webhook URL (issue 11 point 2, optional push of its replication feed): where cardap POSTs
//! the feed's items. Owns the URL's rule only; the push itself (signing, retries, the push cursor) is elsewhere.

use serde::{Deserialize, Serialize};

use crate::ParseError;
use crate::contact::string_newtype;

/// `https://…`, or `http://` to the loopback interface only (`127.0.0.1`, `[::1]`, `localhost`: a receiver on
/// the same host, for tests): feed items carry personal data and never travel in clear over a network. Printable
/// ASCII without spaces, at most 2048 characters, a host after the scheme.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WebhookUrl(String);

impl WebhookUrl {
    pub const MAX_CHARS: usize = 2048;

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if s.is_empty() {
            return Err(ParseError::Empty);
        }
        if s.len() > Self::MAX_CHARS {
            return Err(ParseError::TooLong { max: Self::MAX_CHARS });
        }
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ParseError::InvalidUrl);
        }
        let lower = s.to_ascii_lowercase();
        let rest = if let Some(rest) = lower.strip_prefix("https://") {
            rest
        } else if let Some(rest) = lower.strip_prefix("http://") {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
            let host = match authority.strip_prefix('[') {
                Some(v6) => v6.split(']').next().unwrap_or_default(),
                None => authority.split(':').next().unwrap_or_default(),
            };
            if !matches!(host, "127.0.0.1" | "::1" | "localhost") {
                return Err(ParseError::InvalidUrl);
            }
            rest
        } else {
            return Err(ParseError::InvalidUrl);
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if authority.is_empty() || authority.contains('@') {
            return Err(ParseError::InvalidUrl);
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

string_newtype!(WebhookUrl);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn https_anywhere_and_http_only_to_loopback() {
        for ok in [
            "https://b05.example.jp/cardap/feed",
            "http://127.0.0.1:8080/hook",
            "http://[::1]:9/x",
            "http://localhost/",
        ] {
            assert_eq!(WebhookUrl::parse(ok).unwrap().as_str(), ok);
        }
        for bad in ["http://b05.example.jp/hook", "ftp://x/", "https://", "https://user@host/", "https://a b/", ""] {
            assert!(WebhookUrl::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(WebhookUrl::parse("http://127.0.0.1.example.jp/"), Err(ParseError::InvalidUrl));
    }

    proptest! {
        #[test]
        fn an_http_url_to_another_host_is_refused(host in "[a-z][a-z0-9]{0,10}\\.[a-z]{2,3}", path in "[a-z/]{0,10}") {
            prop_assume!(host != "localhost");
            prop_assert_eq!(WebhookUrl::parse(&format!("http://{host}/{path}")), Err(ParseError::InvalidUrl));
            let https = format!("https://{host}/{path}");
            prop_assert!(WebhookUrl::parse(&https).is_ok());
        }
    }
}
