//! The card AP access module at a library counter: wait for a card, print its 標準ID (or say there is none).
//!
//! `cargo run -p cardap-card-access --example read_standard_id -- [READER]`

use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let reader = std::env::args().nth(1);
    let mut card = match cardap_card_access::open(reader.as_deref(), Duration::from_secs(30)) {
        Ok(card) => card,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match card.standard_id() {
        Ok(Some(id)) => {
            println!("標準ID {id}");
            ExitCode::SUCCESS
        }
        Ok(None) => {
            eprintln!("this card has no library AP (no 標準ID)");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
