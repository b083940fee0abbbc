//! A My Number card in software (`card-agent/PROFILE.md`): the text input assistance AP (SELECT by AID, VERIFY of
//! its 4-digit PIN with a retry counter of 3, READ BINARY of the four facts) and cardap's local-area profile (the
//! card's FID, the area image committed atomically under cardap's MAC, the AP EFs, READ STATE with the card's
//! MAC), plus the vpcd client that puts it into a virtual reader ([`vpcd`]).
//!
//! Owns the card's behaviour and its persisted state (PIN tries left, the committed area image), written to its
//! state file atomically (a new file renamed over the old one) before a COMMIT is answered. Power off, power on
//! and reset end the session (PIN verified, selected files, challenge, shadow). Must not hold or answer a My
//! Number: a read of EF 0001 is refused. Person data comes from a card file ([`CardData`]).

use std::fmt;
use std::path::{Path, PathBuf};

use cardap_card_profile::{
    AID_LOCAL_AREA, AID_TEXT_AP, AreaImage, CHALLENGE_LEN, Command, EF_AREA_IMAGE, EF_CARD_ID, EF_FOUR_FACTS,
    EF_MY_NUMBER, EF_TEXT_PIN, MAC_LEN, Response, commit_message, facts::FourFacts, state_message, sw,
};
use cardap_domain::resident::CardFid;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

pub mod vpcd;

/// PIN tries of the text input assistance AP.
pub const PIN_TRIES: u8 = 3;
/// The largest area image the card takes.
pub const MAX_IMAGE: usize = 4096;

/// The card as personalized: its FID, the key cardap derived for it (`cardap card-key`), the PIN and the four
/// facts. Read from a JSON card file; `Debug` prints none of it.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardData {
    pub fid: String,
    /// The 4-digit PIN of the text input assistance AP.
    pub pin: String,
    /// The card's local-area key (hex of 32 bytes), as cardap derives it from its master secret and the FID:
    /// written into the card when it is issued, never readable from it.
    pub card_key: String,
    pub name: String,
    pub address: String,
    /// `YYYYMMDD`.
    pub birth_date: String,
    /// ISO 5218 digit.
    pub sex: String,
    /// A card that is no My Number card (an IC card of something else): it has no text input assistance AP. For
    /// trying the agent's answer to one; absent in a card file means a My Number card.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub not_my_number_card: bool,
}

impl fmt::Debug for CardData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CardData").field("fid", &self.fid).finish_non_exhaustive()
    }
}

/// What the card keeps across power cycles.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Persisted {
    pin_tries_left: u8,
    /// The committed area image, hex (empty: no local area).
    area: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("card file: the FID is not 1–32 letters and digits")]
    Fid,
    #[error("card file: the card key is not 64 hex digits")]
    Key,
    #[error("card file: the PIN is not 4 digits")]
    Pin,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("state file: the area image is not hex")]
    State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Df {
    Master,
    TextAp,
    LocalArea,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ef {
    None,
    Pin,
    Facts,
    MyNumber,
    CardId,
    AreaImage,
    Ap([u8; 2]),
}

/// What a power cycle ends.
#[derive(Debug)]
struct Session {
    df: Df,
    ef: Ef,
    pin_verified: bool,
    challenge: Option<[u8; CHALLENGE_LEN]>,
    shadow: Vec<u8>,
}

impl Session {
    fn new() -> Session {
        Session { df: Df::Master, ef: Ef::None, pin_verified: false, challenge: None, shadow: vec![] }
    }
}

/// One emulated card.
pub struct Card {
    data: CardData,
    fid: CardFid,
    key: hmac::Key,
    persisted: Persisted,
    state_path: Option<PathBuf>,
    session: Session,
    random: SystemRandom,
}

impl fmt::Debug for Card {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Card").field("fid", &self.fid).finish_non_exhaustive()
    }
}

impl Card {
    /// The card of `data`, its state from `state_path` (created on the first change when missing; `None`: kept
    /// in memory only).
    pub fn open(data: CardData, state_path: Option<PathBuf>) -> Result<Card, EmulatorError> {
        let fid = CardFid::parse(&data.fid).map_err(|_| EmulatorError::Fid)?;
        let key = hex::decode(&data.card_key).ok().filter(|k| k.len() == 32).ok_or(EmulatorError::Key)?;
        if data.pin.len() != 4 || !data.pin.bytes().all(|b| b.is_ascii_digit()) {
            return Err(EmulatorError::Pin);
        }
        let persisted = match &state_path {
            Some(path) if path.exists() => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| EmulatorError::Io { path: path.clone(), source })?;
                let p: Persisted =
                    serde_json::from_str(&text).map_err(|source| EmulatorError::Json { path: path.clone(), source })?;
                hex::decode(&p.area).map_err(|_| EmulatorError::State)?;
                p
            }
            _ => Persisted { pin_tries_left: PIN_TRIES, area: String::new() },
        };
        Ok(Card {
            key: hmac::Key::new(hmac::HMAC_SHA256, &key),
            data,
            fid,
            persisted,
            state_path,
            session: Session::new(),
            random: SystemRandom::new(),
        })
    }

    /// Reads the card file at `path` (JSON, [`CardData`]).
    pub fn load(path: &Path, state_path: Option<PathBuf>) -> Result<Card, EmulatorError> {
        let text = std::fs::read_to_string(path).map_err(|source| EmulatorError::Io { path: path.into(), source })?;
        let data = serde_json::from_str(&text).map_err(|source| EmulatorError::Json { path: path.into(), source })?;
        Card::open(data, state_path)
    }

    /// Power off, power on or reset: the session ends.
    pub fn reset(&mut self) {
        self.session = Session::new();
    }

    pub fn fid(&self) -> &CardFid {
        &self.fid
    }

    /// The committed area image (empty: no local area).
    pub fn area(&self) -> Vec<u8> {
        hex::decode(&self.persisted.area).unwrap_or_default()
    }

    pub fn pin_tries_left(&self) -> u8 {
        self.persisted.pin_tries_left
    }

    /// Answers one command APDU.
    pub fn process(&mut self, apdu: &[u8]) -> Response {
        let Ok(c) = Command::parse(apdu) else {
            return Response::status(sw::WRONG_LENGTH);
        };
        match (c.cla, c.ins) {
            (0x00, Command::INS_SELECT) => self.select(&c),
            (0x00, Command::INS_READ_BINARY) => self.read_binary(&c),
            (0x00, Command::INS_VERIFY) => self.verify(&c),
            (0x00, Command::INS_GET_CHALLENGE) => self.get_challenge(&c),
            (0x80, ins) if self.session.df != Df::LocalArea => {
                let _ = ins;
                Response::status(sw::CONDITIONS_NOT_SATISFIED)
            }
            (0x80, Command::INS_STAGE) => self.stage(&c),
            (0x80, Command::INS_COMMIT) => self.commit(&c),
            (0x80, Command::INS_READ_STATE) => self.read_state(&c),
            (0x00 | 0x80, _) => Response::status(sw::INS_NOT_SUPPORTED),
            _ => Response::status(sw::CLA_NOT_SUPPORTED),
        }
    }

    fn select(&mut self, c: &Command) -> Response {
        match c.p1 {
            0x04 => {
                let df = match c.data.as_slice() {
                    aid if aid == AID_TEXT_AP && !self.data.not_my_number_card => Df::TextAp,
                    aid if aid == AID_LOCAL_AREA => Df::LocalArea,
                    _ => return Response::status(sw::FILE_NOT_FOUND),
                };
                self.session.df = df;
                self.session.ef = Ef::None;
                self.session.pin_verified &= df == Df::TextAp;
                Response::ok(vec![])
            }
            0x02 => {
                let Ok(fid) = <[u8; 2]>::try_from(c.data.as_slice()) else {
                    return Response::status(sw::WRONG_LENGTH);
                };
                let ef = match (self.session.df, fid) {
                    (Df::TextAp, f) if f == EF_TEXT_PIN => Ef::Pin,
                    (Df::TextAp, f) if f == EF_FOUR_FACTS => Ef::Facts,
                    (Df::TextAp, f) if f == EF_MY_NUMBER => Ef::MyNumber,
                    (Df::LocalArea, f) if f == EF_CARD_ID => Ef::CardId,
                    (Df::LocalArea, f) if f == EF_AREA_IMAGE => Ef::AreaImage,
                    (Df::LocalArea, f) if self.ap_record(f).is_some() => Ef::Ap(f),
                    _ => return Response::status(sw::FILE_NOT_FOUND),
                };
                self.session.ef = ef;
                Response::ok(vec![])
            }
            _ => Response::status(sw::WRONG_P1P2),
        }
    }

    fn image(&self) -> Option<AreaImage> {
        AreaImage::decode(&self.area()).ok()
    }

    fn ap_record(&self, fid: [u8; 2]) -> Option<Vec<u8>> {
        let image = self.image()?;
        let id = image.aps.keys().find(|id| cardap_card_profile::ap_fid(id) == fid)?.clone();
        image.ap_record(&id)
    }

    fn read_binary(&mut self, c: &Command) -> Response {
        let content = match self.session.ef {
            Ef::Facts if self.session.pin_verified => FourFacts {
                name: self.data.name.clone(),
                address: self.data.address.clone(),
                birth_date: self.data.birth_date.clone(),
                sex: self.data.sex.clone(),
            }
            .encode(),
            Ef::Facts => return Response::status(sw::SECURITY_NOT_SATISFIED),
            // The My Number: this card holds none and answers none, PIN or not.
            Ef::MyNumber | Ef::Pin => return Response::status(sw::COMMAND_NOT_ALLOWED),
            Ef::CardId => self.fid.as_str().as_bytes().to_vec(),
            Ef::AreaImage => self.area(),
            Ef::Ap(fid) => self.ap_record(fid).unwrap_or_default(),
            Ef::None => return Response::status(sw::COMMAND_NOT_ALLOWED),
        };
        let offset = u16::from_be_bytes([c.p1, c.p2]) as usize;
        let le = match c.le {
            Some(0) | None => 256,
            Some(n) => n as usize,
        };
        if offset > content.len() {
            return Response::status(sw::WRONG_P1P2);
        }
        Response::ok(content[offset..(offset + le).min(content.len())].to_vec())
    }

    fn verify(&mut self, c: &Command) -> Response {
        if self.session.df != Df::TextAp || self.session.ef != Ef::Pin || c.p2 != 0x80 {
            return Response::status(sw::CONDITIONS_NOT_SATISFIED);
        }
        let tries = self.persisted.pin_tries_left;
        if tries == 0 {
            return Response::status(sw::AUTH_METHOD_BLOCKED);
        }
        if c.data.is_empty() {
            return Response::status(sw::TRIES_LEFT | tries as u16);
        }
        // Compared in full whatever differs first.
        let pin = self.data.pin.as_bytes();
        let right = c.data.len() == pin.len() && c.data.iter().zip(pin).fold(0_u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        let left = if right { PIN_TRIES } else { tries - 1 };
        if left != tries {
            self.persisted.pin_tries_left = left;
            if self.save().is_err() {
                self.persisted.pin_tries_left = tries;
                return Response::status(sw::MEMORY_FAILURE);
            }
        }
        if right {
            self.session.pin_verified = true;
            Response::ok(vec![])
        } else {
            Response::status(sw::TRIES_LEFT | left as u16)
        }
    }

    fn get_challenge(&mut self, c: &Command) -> Response {
        if self.session.df != Df::LocalArea {
            return Response::status(sw::CONDITIONS_NOT_SATISFIED);
        }
        if c.le != Some(CHALLENGE_LEN as u8) {
            return Response::status(sw::WRONG_LENGTH);
        }
        let mut challenge = [0_u8; CHALLENGE_LEN];
        if self.random.fill(&mut challenge).is_err() {
            return Response::status(sw::MEMORY_FAILURE);
        }
        self.session.challenge = Some(challenge);
        Response::ok(challenge.to_vec())
    }

    fn stage(&mut self, c: &Command) -> Response {
        let offset = u16::from_be_bytes([c.p1, c.p2]) as usize;
        if offset == 0 {
            self.session.shadow.clear();
        }
        if offset != self.session.shadow.len() {
            return Response::status(sw::WRONG_P1P2);
        }
        if offset + c.data.len() > MAX_IMAGE {
            return Response::status(sw::WRONG_LENGTH);
        }
        self.session.shadow.extend_from_slice(&c.data);
        Response::ok(vec![])
    }

    fn commit(&mut self, c: &Command) -> Response {
        // The challenge serves one COMMIT, accepted or not.
        let Some(challenge) = self.session.challenge.take() else {
            return Response::status(sw::CONDITIONS_NOT_SATISFIED);
        };
        let [hi, lo, mac @ ..] = c.data.as_slice() else {
            return Response::status(sw::WRONG_LENGTH);
        };
        let len = u16::from_be_bytes([*hi, *lo]) as usize;
        if mac.len() != MAC_LEN || len != self.session.shadow.len() {
            return Response::status(sw::WRONG_LENGTH);
        }
        let image = std::mem::take(&mut self.session.shadow);
        let message = commit_message(&self.fid, &challenge, &image);
        if hmac::verify(&self.key, &message, mac).is_err() {
            return Response::status(sw::SECURITY_NOT_SATISFIED);
        }
        if AreaImage::decode(&image).is_err() {
            return Response::status(sw::WRONG_DATA);
        }
        let before = std::mem::replace(&mut self.persisted.area, hex::encode(&image));
        if self.save().is_err() {
            self.persisted.area = before;
            return Response::status(sw::MEMORY_FAILURE);
        }
        Response::ok(self.state_mac(&challenge, &image))
    }

    fn read_state(&mut self, c: &Command) -> Response {
        if c.data.is_empty() || c.data.len() > 32 {
            return Response::status(sw::WRONG_LENGTH);
        }
        let image = self.area();
        let mut out = image.clone();
        out.extend_from_slice(&self.state_mac(&c.data, &image));
        Response::ok(out)
    }

    fn state_mac(&self, nonce: &[u8], image: &[u8]) -> Vec<u8> {
        hmac::sign(&self.key, &state_message(&self.fid, nonce, image)).as_ref().to_vec()
    }

    /// Writes the persisted state: a new file, synced, renamed over the old one (all or nothing).
    fn save(&self) -> std::io::Result<()> {
        let Some(path) = &self.state_path else {
            return Ok(());
        };
        let text = serde_json::to_vec_pretty(&self.persisted).map_err(std::io::Error::other)?;
        let temp = path.with_extension("tmp");
        {
            use std::io::Write;
            let mut file = std::fs::File::create(&temp)?;
            file.write_all(&text)?;
            file.sync_all()?;
        }
        std::fs::rename(&temp, path)
    }
}

#[cfg(test)]
mod tests;
