//! The rules of logging in: what a password must look like, and when failed logins lock an operator.
//!
//! A `Password` is parsed here and hashed elsewhere (`api`); it can never be serialized, and no event ever
//! carries it, its hash or any other secret: the operator's events record only *that* and *when* it changed.

use std::fmt;

use crate::ParseError;

/// How passwords are checked. `Default` is 8 characters at least, and the last 3 passwords not reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordPolicy {
    /// Shortest allowed password; the source only says パスワード(半角英数).
    pub min_length: usize,
    /// How many previous passwords may not be reused. Enforced where the hashes live, not in the domain.
    pub history: usize,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self { min_length: 8, history: 3 }
    }
}

/// A password as typed (パスワード(半角英数)): half-width letters and digits only, `min_length..=64` long.
///
/// Never printed (`Debug` shows `Password(***)`), never serialized: read it once with `expose` to hash it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(s: &str, policy: &PasswordPolicy) -> Result<Password, ParseError> {
        if s.is_empty() {
            return Err(ParseError::Empty);
        }
        if !s.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(ParseError::NotHalfWidthAlphanumeric);
        }
        if s.len() < policy.min_length {
            return Err(ParseError::TooShort { min: policy.min_length });
        }
        if s.len() > Self::MAX_CHARS {
            return Err(ParseError::TooLong { max: Self::MAX_CHARS });
        }
        Ok(Self(s.to_owned()))
    }

    /// The password itself, for hashing or checking; never log or store what this returns.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// When failed logins lock an operator. `Default`: 5 failures in a row lock for 15 minutes, and no lockout is
/// permanent (an installation may turn that on: a lock anyone can cause by guessing would otherwise keep an
/// operator out for good). A lock stops new password logins only; running sessions go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Failed logins in a row that lock the operator.
    pub max_failures: u32,
    /// How long a temporary lock lasts, in seconds.
    pub lock_seconds: i64,
    /// The lockout with this number is permanent (until an administrator unlocks); earlier ones are temporary.
    /// `0`: never permanent.
    pub max_lockouts: u32,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        Self { max_failures: 5, lock_seconds: 900, max_lockouts: 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn defaults() {
        assert_eq!(PasswordPolicy::default(), PasswordPolicy { min_length: 8, history: 3 });
        assert_eq!(LockoutPolicy::default(), LockoutPolicy { max_failures: 5, lock_seconds: 900, max_lockouts: 0 });
    }

    #[test]
    fn password_errors() {
        let policy = PasswordPolicy::default();
        assert_eq!(Password::parse("", &policy), Err(ParseError::Empty));
        assert_eq!(Password::parse("OP0501", &policy), Err(ParseError::TooShort { min: 8 }));
        assert_eq!(
            Password::parse("OP0501", &PasswordPolicy { min_length: 6, history: 0 }).unwrap().expose(),
            "OP0501"
        );
        assert_eq!(Password::parse("pass word1", &policy), Err(ParseError::NotHalfWidthAlphanumeric));
        assert_eq!(Password::parse("ｐａｓｓｗｏｒｄ１", &policy), Err(ParseError::NotHalfWidthAlphanumeric));
        assert_eq!(Password::parse(&"a".repeat(65), &policy), Err(ParseError::TooLong { max: 64 }));
    }

    #[test]
    fn a_password_never_prints() {
        let p = Password::parse("Secret123", &PasswordPolicy::default()).unwrap();
        assert_eq!(format!("{p:?}"), "Password(***)");
        assert_eq!(format!("{:?}", Some(&p)), "Some(Password(***))");
    }

    proptest! {
        #[test]
        fn alphanumeric_passwords_within_the_policy_parse(s in "[A-Za-z0-9]{8,64}") {
            let p = Password::parse(&s, &PasswordPolicy::default()).unwrap();
            prop_assert_eq!(p.expose(), s.as_str());
            let shown = format!("{:?}", p);
            prop_assert!(!shown.contains(&s));
        }

        #[test]
        fn passwords_shorter_than_the_policy_are_rejected(min in 1usize..20, s in "[A-Za-z0-9]{1,19}") {
            let policy = PasswordPolicy { min_length: min, history: 3 };
            let parsed = Password::parse(&s, &policy);
            if s.len() < min {
                prop_assert_eq!(parsed, Err(ParseError::TooShort { min }));
            } else {
                prop_assert!(parsed.is_ok());
            }
        }

        #[test]
        fn passwords_with_any_other_character_are_rejected(
            left in "[A-Za-z0-9]{4,10}",
            ch in any::<char>().prop_filter("not ASCII alphanumeric", |c| !c.is_ascii_alphanumeric()),
            right in "[A-Za-z0-9]{4,10}",
        ) {
            prop_assert_eq!(
                Password::parse(&format!("{left}{ch}{right}"), &PasswordPolicy::default()),
                Err(ParseError::NotHalfWidthAlphanumeric)
            );
        }
    }
}

/// How an operator proved who he is for a session (手引き I 2.1(4): password mode, or certificate and biometric
/// authentication in biometric mode). Business systems that log him in through cardap are told which
/// (OpenID Connect `amr`), so one may demand more than a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// Municipality + operator ID + password.
    Password,
    /// An operator certificate on a mutual-TLS connection.
    Certificate,
    /// A WebAuthn assertion with user verification (fingerprint, vein).
    Biometric,
}

impl AuthMethod {
    /// The stored and shown name: `password`, `certificate`, `biometric`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Password => "password",
            AuthMethod::Certificate => "certificate",
            AuthMethod::Biometric => "biometric",
        }
    }

    pub fn parse(s: &str) -> Result<AuthMethod, ParseError> {
        match s {
            "password" => Ok(AuthMethod::Password),
            "certificate" => Ok(AuthMethod::Certificate),
            "biometric" => Ok(AuthMethod::Biometric),
            other => Err(ParseError::UnknownValue { value: other.to_owned() }),
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
