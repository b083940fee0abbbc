//! `cardap-agent`: the card agent at the counter. Lists the readers, waits for a card, and runs the flow of
//! `cardap_card_agent::flow` against cardap over mutual TLS with the clerk's operator certificate, printing each
//! step. The PIN is read from the terminal without echo (or a line of standard input), used once, never printed.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use cardap_card_access::{CardReader, Readers};
use cardap_card_agent::{Agent, PinPrompt, Request, Server, ServerConfig};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "cardap-agent",
    about = "cardap card agent: register a resident's My Number card and write its local area"
)]
struct Args {
    /// cardap's base URL.
    #[arg(long, env = "CARDAP_AGENT_SERVER", default_value = "https://127.0.0.1:8443")]
    server: String,
    /// The installation's CA chain (PEM; `GET /pki/ca.pem`).
    #[arg(long, env = "CARDAP_AGENT_CA")]
    ca: Option<PathBuf>,
    /// The clerk's operator certificate (PEM).
    #[arg(long, env = "CARDAP_AGENT_CERT")]
    cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, env = "CARDAP_AGENT_KEY")]
    key: Option<PathBuf>,
    /// The reader (default: the first).
    #[arg(long)]
    reader: Option<String>,
    /// List the readers and exit.
    #[arg(long)]
    list_readers: bool,
    /// APs to install, comma-separated business ids (e.g. 01,02).
    #[arg(long, value_delimiter = ',')]
    install: Vec<String>,
    /// APs to remove, comma-separated.
    #[arg(long, value_delimiter = ',')]
    remove: Vec<String>,
    /// The resident's kana name (姓 名), when the registry has none.
    #[arg(long)]
    kana: Option<String>,
    /// The resident's answer, for the certificate issuance AP (01), about his user info going to the issuance
    /// server: true (he consents; recorded with the install) or false (he declines). AP 01 needs it.
    #[arg(long)]
    issuance_consent: Option<bool>,
    /// Seconds to wait for a card.
    #[arg(long, default_value_t = 60)]
    wait: u64,
}

/// Reads the PIN from the terminal with echo off (`stty`), or a line of standard input.
struct TerminalPin;

impl PinPrompt for TerminalPin {
    fn ask(&mut self, tries_left: u8) -> Option<String> {
        eprint!("resident's PIN (4 digits, {tries_left} tries left; empty to give up): ");
        let _ = std::io::stderr().flush();
        let terminal = std::io::stdin().is_terminal();
        if terminal {
            let _ = std::process::Command::new("stty").arg("-echo").status();
        }
        let mut line = String::new();
        let read = std::io::stdin().lock().read_line(&mut line);
        if terminal {
            let _ = std::process::Command::new("stty").arg("echo").status();
            eprintln!();
        }
        let pin = line.trim().to_owned();
        (read.is_ok() && !pin.is_empty()).then_some(pin)
    }
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("cardap-agent: {message}");
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    let args = Args::parse();
    let readers = match Readers::establish() {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    if args.list_readers {
        return match readers.list() {
            Ok(names) if names.is_empty() => fail("no card reader is connected"),
            Ok(names) => {
                names.iter().for_each(|n| println!("{n}"));
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        };
    }
    let Some(ca) = args.ca.as_deref() else {
        return fail("--ca (the installation's CA chain) is needed");
    };
    let config = match ServerConfig::from_files(&args.server, ca, args.cert.as_deref(), args.key.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let server = match Server::new(&config) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let reader = match readers.pick(args.reader.as_deref()) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    eprintln!("reader: {reader}; insert the card");
    if let Err(e) = readers.wait_for_card(&reader, Duration::from_secs(args.wait)) {
        return fail(e);
    }
    let card = match readers.connect(&reader) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let mut progress = |step: cardap_card_agent::Step| eprintln!("  ✓ {step}");
    let mut agent = Agent::new(CardReader::new(card), &server, &mut progress);
    let request = Request {
        install: args.install,
        remove: args.remove,
        kana: args.kana,
        issuance_consent: args.issuance_consent,
    };
    match agent.run(&request, &mut TerminalPin) {
        Ok(outcome) => {
            println!("{}", serde_json::to_string_pretty(&outcome.card).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}
