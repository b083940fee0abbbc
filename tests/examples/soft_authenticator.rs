//! A software FIDO2 authenticator on the command line, for trying biometric login with curl (README "Biometric
//! login"): it answers the WebAuthn options cardap gives, as a browser with a reader would. Test support only —
//! its keys sit in a file and it "verifies" its user by claiming to.
//!
//! ```text
//! soft_authenticator TOKEN_FILE register ORIGIN < creation-options.json > credential.json
//! soft_authenticator TOKEN_FILE login    ORIGIN < request-options.json  > assertion.json
//! ```
//! `register` creates `TOKEN_FILE` when it does not exist; each answer saves the token again (its counter moves).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;

use webauthn_authenticator_rs::prelude::{
    CreationChallengeResponse, RequestChallengeResponse, Url, WebauthnAuthenticator,
};
use webauthn_authenticator_rs::softtoken::SoftToken;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, file, command, origin] = args.as_slice() else {
        eprintln!("usage: soft_authenticator TOKEN_FILE register|login ORIGIN < options.json > answer.json");
        std::process::exit(2);
    };
    let origin = Url::parse(origin).expect("ORIGIN is a URL such as http://localhost:8080");
    let mut options = String::new();
    std::io::stdin().read_to_string(&mut options).expect("the options on standard input");
    let options: serde_json::Value = serde_json::from_str(&options).expect("JSON options");
    // The whole answer of cardap's begin, or just its `options`.
    let options = options.get("options").cloned().unwrap_or(options);
    let mut token = match std::fs::read(file) {
        Ok(bytes) => SoftToken::from_cbor(&bytes).expect("a token file of this program"),
        Err(_) if command == "register" => SoftToken::new(true).expect("a new software token").0,
        Err(e) => panic!("{file}: {e}"),
    };
    let answer = match command.as_str() {
        "register" => {
            let options: CreationChallengeResponse = serde_json::from_value(options).expect("creation options");
            serde_json::to_value(token.do_registration(origin, options).expect("registered")).unwrap()
        }
        "login" => {
            let options: RequestChallengeResponse = serde_json::from_value(options).expect("request options");
            serde_json::to_value(token.do_authentication(origin, options).expect("asserted")).unwrap()
        }
        other => panic!("unknown command {other}: register or login"),
    };
    std::fs::write(file, token.to_cbor().unwrap()).expect("the token file");
    println!("{answer}");
}
