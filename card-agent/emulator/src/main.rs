//! `cardap-card-emulator`: puts one emulated My Number card into vsmartcard's virtual reader (vpcd) until it is
//! pulled out (Ctrl-C, or `--pull-out-after N` APDUs) or pcscd goes away. The card file (JSON) holds the FID, the
//! card key (`cardap card-key FID`), the PIN and the four facts; the state file (PIN tries, the local area) is
//! kept beside it. Never prints a PIN, a fact or an APDU.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cardap_card_emulator::Card;
use cardap_card_emulator::vpcd::{self, PullOut};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "An emulated My Number card for cardap, in vsmartcard's virtual reader")]
struct Args {
    /// The card file (JSON: fid, pin, card_key, name, address, birth_date, sex).
    #[arg(long)]
    card: PathBuf,
    /// The card's state (PIN tries left, local area); default: the card file's name with `.state.json`.
    #[arg(long)]
    state: Option<PathBuf>,
    /// vpcd's address.
    #[arg(long, default_value = "127.0.0.1:35963")]
    vpcd: String,
    /// Pull the card out after this many APDUs (the last one processed, its answer never sent).
    #[arg(long)]
    pull_out_after: Option<u64>,
    /// Insert the card again after it was pulled out, this many times.
    #[arg(long, default_value_t = 0)]
    reinsert: u32,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let state = args.state.clone().unwrap_or_else(|| args.card.with_extension("state.json"));
    let card = match Card::load(&args.card, Some(state)) {
        Ok(card) => Arc::new(Mutex::new(card)),
        Err(e) => {
            eprintln!("cardap-card-emulator: {e}");
            return ExitCode::FAILURE;
        }
    };
    for round in 0..=args.reinsert {
        let pull_out = PullOut { after_apdus: if round == 0 { args.pull_out_after } else { None } };
        let inserted = match vpcd::insert(card.clone(), args.vpcd.as_str(), pull_out, Duration::from_secs(10)) {
            Ok(inserted) => inserted,
            Err(e) => {
                eprintln!(
                    "cardap-card-emulator: cannot reach vpcd at {}: {e} (is pcscd with vpcd running?)",
                    args.vpcd
                );
                return ExitCode::FAILURE;
            }
        };
        eprintln!("cardap-card-emulator: card inserted into the virtual reader ({})", args.vpcd);
        match inserted.wait() {
            Ok(ended) => eprintln!("cardap-card-emulator: card out ({ended:?})"),
            Err(e) => {
                eprintln!("cardap-card-emulator: {e}");
                return ExitCode::FAILURE;
            }
        }
        // Out for a moment, as a hand would take it: vpcd notices it gone at its next poll (~0.4 s), then pcscd
        // finishes with it (SETTLE) before it goes in again. The emulator cannot see the reader: twice SETTLE.
        std::thread::sleep(vpcd::SETTLE * 2);
    }
    ExitCode::SUCCESS
}
