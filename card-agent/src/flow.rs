//! One card at the counter (手引き I 1.1), step by step: the card's FID; the resident found on cardap (the card
//! registered here already, or the four facts read after the resident's PIN, looked up in the registry and
//! registered prefilled); cardap's record and the card reconciled; the local area created; the APs installed and
//! removed as asked — each write authorized by cardap, committed by the card atomically and recorded by cardap
//! only once the card confirmed it.
//!
//! Owns the order of the steps, what each failure means for the person at the counter ([`AgentError`]) and the
//! progress report ([`Step`]). Must not read the My Number, keep or log the PIN, or log the facts.

use std::collections::BTreeSet;
use std::fmt;

use cardap_card_access::{AccessError, CardReader, Transport};
use cardap_card_profile::facts::FourFacts;
use cardap_card_profile::{
    AID_LOCAL_AREA, AID_TEXT_AP, CHALLENGE_LEN, Command, EF_FOUR_FACTS, EF_TEXT_PIN, MAC_LEN, sw,
};
use cardap_domain::resident::EraDate;
use serde_json::{Value, json};

use crate::server::{Server, ServerError};

/// What the agent is asked to do with the card.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// APs to install (business ids); those already on the card are left as they are.
    pub install: Vec<String>,
    /// APs to remove.
    pub remove: Vec<String>,
    /// The resident's kana name (`姓 名`, full-width), for a registration the registry cannot prefill.
    pub kana: Option<String>,
    /// The resident's answer about his user info going to the certificate issuance server, which AP `01` needs
    /// (installed, or a preset of the local area): `Some(true)` consents, `Some(false)` declines, `None` not asked.
    pub issuance_consent: Option<bool>,
}

/// Asks the resident for his PIN. `None`: he gives up.
pub trait PinPrompt {
    fn ask(&mut self, tries_left: u8) -> Option<String>;
}

/// One step done, for the progress report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Server { operator: String, municipality: String },
    CardRead { fid: String },
    CardRegisteredHere { resident_id: String },
    PinWrong { tries_left: u8 },
    FactsRead,
    RegistryMatches(usize),
    ResidentRegistered { resident_id: String },
    CardRegistered,
    Reconciled { outcome: String, recorded: Vec<String> },
    Written { what: String, recorded: Vec<String> },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Server { operator, municipality } => {
                write!(f, "cardap: logged in as {operator} ({municipality}) with the operator certificate")
            }
            Step::CardRead { fid } => write!(f, "card: FID {fid}"),
            Step::CardRegisteredHere { resident_id } => write!(f, "card registered here, to resident {resident_id}"),
            Step::PinWrong { tries_left } => write!(f, "PIN wrong: {tries_left} tries left"),
            Step::FactsRead => f.write_str("card: the four facts read (name, address, birth date, sex)"),
            Step::RegistryMatches(0) => f.write_str("registry: no entry matches; registering from the card"),
            Step::RegistryMatches(n) => {
                write!(f, "registry: {n} entr{} match; prefilling from the first", if *n == 1 { "y" } else { "ies" })
            }
            Step::ResidentRegistered { resident_id } => write!(f, "resident registered: {resident_id}"),
            Step::CardRegistered => f.write_str("card registered to the resident"),
            Step::Reconciled { outcome, recorded } => match outcome.as_str() {
                "in_agreement" => f.write_str("card and cardap agree"),
                "recorded" => write!(
                    f,
                    "the card held a write cardap had not recorded (a crash before its confirmation): recorded now: {}",
                    recorded.join(", ")
                ),
                _ => f.write_str("the card is behind cardap's record: rewriting the card from cardap's record"),
            },
            Step::Written { what, recorded } => {
                write!(f, "card written ({what}); cardap recorded: {}", recorded.join(", "))
            }
        }
    }
}

/// The card and cardap at the end.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub fid: String,
    pub resident_id: String,
    /// cardap's card (`GET …/cards/{fid}`).
    pub card: Value,
}

/// Why the agent stopped; each says what happened and what to do.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Card(AccessError),
    #[error(
        "the card was pulled out while {step}: the card is unchanged or fully written; insert it again and the agent reconciles it with cardap"
    )]
    PulledOut { step: String },
    #[error("wrong PIN: {tries_left} tries left")]
    WrongPin { tries_left: u8 },
    #[error("the PIN is blocked (no tries left): the resident must have it reset at the municipality's counter")]
    PinBlocked,
    #[error("this card belongs to another municipality ({0}): it cannot be registered here")]
    OtherMunicipality(String),
    #[error(
        "this card is registered in another municipality (or not abolished there yet): it cannot be registered here"
    )]
    RegisteredElsewhere,
    #[error("this card has no local area yet: create it first")]
    NoLocalArea,
    #[error("the card's four facts cannot be read: {0}")]
    Facts(String),
    #[error("no registry entry matches the card and no kana name was given (--kana \"ヤマダ タロウ\")")]
    KanaNeeded,
    #[error("cardap cannot be reached: {0}; nothing was written to the card")]
    ServerUnreachable(String),
    #[error("{0}")]
    Server(ServerError),
    #[error("the card refused the write ({0:04X}); nothing was written")]
    WriteRefused(u16),
    #[error(
        "the certificate issuance AP (01) needs the resident's consent to his user info going to the issuance server: ask him, then run again with --issuance-consent true (or false if he declines); nothing was written to the card"
    )]
    ConsentRequired,
}

impl From<ServerError> for AgentError {
    fn from(e: ServerError) -> Self {
        match e {
            ServerError::Unreachable { url, reason } => AgentError::ServerUnreachable(format!("{url}: {reason}")),
            ServerError::Problem { ref kind, .. } if kind == "/problems/card-of-another-municipality" => {
                AgentError::OtherMunicipality("its local area was created by another municipality".into())
            }
            ServerError::Problem { ref kind, .. } if kind == "/problems/local-area-missing" => AgentError::NoLocalArea,
            ServerError::Problem { ref kind, .. } if kind == "/problems/consent-required" => {
                AgentError::ConsentRequired
            }
            other => AgentError::Server(other),
        }
    }
}

/// The agent: one card reader, one cardap.
pub struct Agent<'a, T: Transport> {
    pub card: CardReader<T>,
    pub server: &'a Server,
    pub progress: &'a mut dyn FnMut(Step),
    /// The step under way, for the message when the card is pulled out.
    doing: &'static str,
    /// The resident's answer about AP `01` ([`Request::issuance_consent`]), sent with every write and record.
    issuance_consent: Option<bool>,
}

impl<T: Transport> fmt::Debug for Agent<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Agent").field("doing", &self.doing).finish_non_exhaustive()
    }
}

impl<'a, T: Transport> Agent<'a, T> {
    pub fn new(card: CardReader<T>, server: &'a Server, progress: &'a mut dyn FnMut(Step)) -> Self {
        Agent { card, server, progress, doing: "starting", issuance_consent: None }
    }

    fn card_error(&self, e: AccessError) -> AgentError {
        match e {
            AccessError::CardRemoved => AgentError::PulledOut { step: self.doing.to_owned() },
            other => AgentError::Card(other),
        }
    }

    fn send(&mut self, command: &Command) -> Result<cardap_card_profile::Response, AgentError> {
        self.card.transport().transmit(command).map_err(|e| self.card_error(e))
    }

    fn ok(&mut self, command: &Command) -> Result<Vec<u8>, AgentError> {
        let r = self.send(command)?;
        if r.is_ok() { Ok(r.data) } else { Err(AgentError::Card(AccessError::Card(r.sw))) }
    }

    /// The whole flow for the card in the reader.
    pub fn run(&mut self, request: &Request, pin: &mut dyn PinPrompt) -> Result<Outcome, AgentError> {
        self.issuance_consent = request.issuance_consent;
        self.doing = "asking cardap who is logged in";
        let me = self.server.me()?;
        let code = me["municipality"].as_str().unwrap_or_default().to_owned();
        (self.progress)(Step::Server {
            operator: me["operator_id"].as_str().unwrap_or_default().into(),
            municipality: code.clone(),
        });

        self.doing = "reading the card's FID";
        self.card.check_my_number_card().map_err(|e| self.card_error(e))?;
        let fid = self.card.fid().map_err(|e| self.card_error(e))?.as_str().to_owned();
        (self.progress)(Step::CardRead { fid: fid.clone() });
        // The area's owner is told before anything is asked of the resident (unauthenticated here; cardap checks the
        // card's MAC when it matters).
        let area = self.card.local_area().map_err(|e| self.card_error(e))?;
        if let Some(area) = &area
            && area.municipality.as_str() != code
        {
            return Err(AgentError::OtherMunicipality(area.municipality.as_str().to_owned()));
        }

        let resident_id = match self.server.card(&code, &fid)? {
            Some(card) => {
                let id = card["resident_id"].as_str().unwrap_or_default().to_owned();
                (self.progress)(Step::CardRegisteredHere { resident_id: id.clone() });
                id
            }
            None => self.register(&code, &fid, request, pin)?,
        };

        self.reconcile(&code, &fid)?;
        let mut card = self.server.card(&code, &fid)?.unwrap_or(Value::Null);
        if !card["local_area"].as_bool().unwrap_or(false) {
            if request.install.is_empty() && request.remove.is_empty() {
                // Nothing asked: the local area is created all the same (with the municipality's presets).
            }
            self.write(&code, &fid, "create_local_area", &[], "creating the local area")?;
        }
        card = self.server.card(&code, &fid)?.unwrap_or(Value::Null);
        let installed: BTreeSet<String> = card["aps"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|ap| ap["business_id"].as_str().map(str::to_owned))
            .collect();
        let to_install: Vec<String> = request.install.iter().filter(|b| !installed.contains(*b)).cloned().collect();
        if !to_install.is_empty() {
            self.write(&code, &fid, "install_aps", &to_install, "installing the APs")?;
        }
        for id in &request.remove {
            self.write(&code, &fid, "remove_ap", std::slice::from_ref(id), "removing an AP")?;
        }
        let card = self.server.card(&code, &fid)?.unwrap_or(Value::Null);
        Ok(Outcome { fid, resident_id, card })
    }

    /// PIN, the four facts, the registry, the resident and the card registered.
    fn register(
        &mut self,
        code: &str,
        fid: &str,
        request: &Request,
        pin: &mut dyn PinPrompt,
    ) -> Result<String, AgentError> {
        let facts = self.read_facts(pin)?;
        self.doing = "looking the resident up";
        let lookup =
            json!({"name": facts.name, "address": facts.address, "birth_date": facts.birth_date, "sex": facts.sex});
        let matches = self.server.post(&format!("/api/v1/municipalities/{code}/registry/lookup"), &lookup)?;
        let items = matches["items"].as_array().cloned().unwrap_or_default();
        (self.progress)(Step::RegistryMatches(items.len()));
        let body = match items.first() {
            Some(draft) => {
                let mut body = draft.clone();
                if let Some(kana) = &request.kana {
                    body["kana_name"] = split(kana);
                }
                if body.get("kana_name").is_none() {
                    return Err(AgentError::KanaNeeded);
                }
                if body.get("kanji_name").is_none() {
                    body["kanji_name"] = split(&facts.name);
                }
                body
            }
            None => {
                let kana = request.kana.as_deref().ok_or(AgentError::KanaNeeded)?;
                json!({
                    "kana_name": split(kana),
                    "kanji_name": split(&facts.name),
                    "birth_date": era_date(&facts.birth_date)?,
                    "sex": facts.sex,
                    "address1": facts.address,
                })
            }
        };
        let resident = self.server.post(&format!("/api/v1/municipalities/{code}/residents"), &body)?;
        let resident_id = resident["resident_id"].as_str().unwrap_or_default().to_owned();
        (self.progress)(Step::ResidentRegistered { resident_id: resident_id.clone() });
        match self
            .server
            .post(&format!("/api/v1/municipalities/{code}/cards"), &json!({"fid": fid, "resident_id": resident_id}))
        {
            Ok(_) => {}
            Err(e) if e.kind() == Some("/problems/fid-taken") => return Err(AgentError::RegisteredElsewhere),
            Err(e) => return Err(e.into()),
        }
        (self.progress)(Step::CardRegistered);
        Ok(resident_id)
    }

    /// VERIFY with the tries left shown, then READ BINARY of EF 0002. The PIN lives only in this function.
    fn read_facts(&mut self, prompt: &mut dyn PinPrompt) -> Result<FourFacts, AgentError> {
        self.doing = "verifying the PIN";
        self.ok(&Command::select_aid(&AID_TEXT_AP))?;
        self.ok(&Command::select_ef(EF_TEXT_PIN))?;
        let tries = self.send(&Command::verify(None))?;
        let mut tries_left = match (tries.sw, tries.tries_left()) {
            (sw::AUTH_METHOD_BLOCKED, _) | (_, Some(0)) => return Err(AgentError::PinBlocked),
            (_, Some(n)) => n,
            (other, None) => return Err(AgentError::Card(AccessError::Card(other))),
        };
        loop {
            let Some(pin) = prompt.ask(tries_left) else {
                return Err(AgentError::WrongPin { tries_left });
            };
            let answer = self.send(&Command::verify(Some(pin.as_bytes())))?;
            drop(pin);
            match (answer.sw, answer.tries_left()) {
                (sw::OK, _) => break,
                (sw::AUTH_METHOD_BLOCKED, _) | (_, Some(0)) => return Err(AgentError::PinBlocked),
                (_, Some(n)) => {
                    tries_left = n;
                    (self.progress)(Step::PinWrong { tries_left: n });
                }
                (other, None) => return Err(AgentError::Card(AccessError::Card(other))),
            }
        }
        self.doing = "reading the four facts";
        let bytes = self.card.read_ef(EF_FOUR_FACTS).map_err(|e| self.card_error(e))?;
        let facts = FourFacts::parse(&bytes).map_err(|e| AgentError::Facts(e.to_string()))?;
        (self.progress)(Step::FactsRead);
        Ok(facts)
    }

    /// READ STATE with a fresh nonce; cardap compares, records an unconfirmed write, or has the card rewritten.
    fn reconcile(&mut self, code: &str, fid: &str) -> Result<(), AgentError> {
        self.doing = "reading the card's local area";
        self.ok(&Command::select_aid(&AID_LOCAL_AREA))?;
        let mut nonce = [0_u8; CHALLENGE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| AgentError::Facts(format!("no randomness: {e}")))?;
        let state = self.ok(&Command::read_state(&nonce))?;
        if state.len() < MAC_LEN {
            return Err(AgentError::Card(AccessError::Data("READ STATE answered too little".into())));
        }
        let (image, mac) = state.split_at(state.len() - MAC_LEN);
        let answer = self.server.record_state(code, fid, image, &nonce, mac, self.issuance_consent)?;
        let outcome = answer["outcome"].as_str().unwrap_or_default().to_owned();
        (self.progress)(Step::Reconciled { outcome: outcome.clone(), recorded: recorded(&answer) });
        if outcome == "card_outdated" {
            self.write(code, fid, "sync", &[], "rewriting the card from cardap's record")?;
        }
        Ok(())
    }

    /// GET CHALLENGE → cardap's image and MAC → STAGE… COMMIT → the card's MAC → cardap records.
    fn write(
        &mut self,
        code: &str,
        fid: &str,
        action: &str,
        ids: &[String],
        doing: &'static str,
    ) -> Result<(), AgentError> {
        self.doing = doing;
        self.ok(&Command::select_aid(&AID_LOCAL_AREA))?;
        let challenge = self.ok(&Command::get_challenge())?;
        let (image, mac) = self.server.prepare_write(code, fid, &challenge, action, ids, self.issuance_consent)?;
        for stage in Command::stages(&image) {
            self.ok(&stage)?;
        }
        let len = u16::try_from(image.len()).map_err(|_| AgentError::WriteRefused(sw::WRONG_LENGTH))?;
        let answer = self.send(&Command::commit(len, &mac))?;
        if !answer.is_ok() {
            return Err(AgentError::WriteRefused(answer.sw));
        }
        self.doing = "recording the write on cardap";
        let recorded_now =
            self.server.record_state(code, fid, &image, &challenge, &answer.data, self.issuance_consent)?;
        (self.progress)(Step::Written { what: action.to_owned(), recorded: recorded(&recorded_now) });
        Ok(())
    }
}

fn recorded(answer: &Value) -> Vec<String> {
    answer["recorded"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| match c["business_id"].as_str() {
            Some(b) => format!("{} {b}", c["change"].as_str().unwrap_or_default()),
            None => c["change"].as_str().unwrap_or_default().to_owned(),
        })
        .collect()
}

/// `姓 名` (a full-width or half-width space between) as `{family, given}`.
fn split(name: &str) -> Value {
    let name = name.trim();
    match name.split_once([' ', '\u{3000}']) {
        Some((family, given)) => json!({"family": family.trim(), "given": given.trim()}),
        None => json!({"family": name, "given": ""}),
    }
}

/// `YYYYMMDD` as `EYYMMDD`.
fn era_date(date: &str) -> Result<String, AgentError> {
    let bad = || AgentError::Facts("the birth date is not YYYYMMDD".into());
    if date.len() != 8 || !date.is_ascii() {
        return Err(bad());
    }
    let (y, m, d) = (
        date[..4].parse().map_err(|_| bad())?,
        date[4..6].parse().map_err(|_| bad())?,
        date[6..].parse().map_err(|_| bad())?,
    );
    EraDate::from_gregorian(y, m, d).map(|e| e.as_str().to_owned()).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_and_dates_from_the_card() {
        assert_eq!(split("山田　太郎"), json!({"family": "山田", "given": "太郎"}));
        assert_eq!(era_date("19890107").unwrap(), "3640107");
        assert_eq!(era_date("20190501").unwrap(), "5010501");
        assert!(era_date("1989017").is_err());
    }
}
