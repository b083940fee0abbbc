//! The APDUs cardap speaks to a card (`card-agent/PROFILE.md`): command and response APDUs, the status words,
//! the public commands of the My Number card's text input assistance AP (券面事項入力補助AP: SELECT, VERIFY,
//! READ BINARY of the four facts) and cardap's own local-area profile (its DF, its EFs, GET CHALLENGE, STAGE,
//! COMMIT, READ STATE).
//!
//! Owns the bytes on the wire and their parsing, shared by the card agent, the card AP access module and the
//! card emulator. Must not do IO, hold a key or compute a MAC, and has no command for EF 0001 (the My Number):
//! cardap never reads it. The area image and the MAC messages are `cardap_domain::card_area`'s (cardap builds and
//! checks them too).

use std::fmt;

pub use cardap_domain::card_area::{ApRecord, AreaImage, AreaImageError, ap_fid, commit_message, state_message};

pub mod facts;

/// 券面事項入力補助AP (text input assistance AP).
pub const AID_TEXT_AP: [u8; 10] = [0xD3, 0x92, 0x10, 0x00, 0x31, 0x00, 0x01, 0x01, 0x04, 0x08];
/// Its 4-digit PIN.
pub const EF_TEXT_PIN: [u8; 2] = [0x00, 0x11];
/// Its four basic facts (after the PIN).
pub const EF_FOUR_FACTS: [u8; 2] = [0x00, 0x02];
/// Its My Number: cardap never reads it (no command here builds that read; the emulator refuses it).
pub const EF_MY_NUMBER: [u8; 2] = [0x00, 0x01];

/// cardap's local-area DF in the card's free area (地域住民向け領域): a proprietary AID (`F0` = not registered
/// with ISO), `cardapLA`.
pub const AID_LOCAL_AREA: [u8; 9] = [0xF0, 0x63, 0x61, 0x72, 0x64, 0x61, 0x70, 0x4C, 0x41];
/// The card's FID (ASCII), readable without a PIN once the local-area DF is selected.
pub const EF_CARD_ID: [u8; 2] = [0x0F, 0x00];
/// The committed area image (empty: no local area yet).
pub const EF_AREA_IMAGE: [u8; 2] = [0x0F, 0x01];

/// The most bytes one STAGE command carries.
pub const STAGE_CHUNK: usize = 200;
/// Bytes of a challenge (GET CHALLENGE) and of a READ STATE nonce.
pub const CHALLENGE_LEN: usize = 8;
/// Bytes of a MAC (HMAC-SHA-256, whole).
pub const MAC_LEN: usize = 32;

/// Status words.
pub mod sw {
    pub const OK: u16 = 0x9000;
    /// `63 Cx`: verification failed (or no data given), x tries left.
    pub const TRIES_LEFT: u16 = 0x63C0;
    pub const MEMORY_FAILURE: u16 = 0x6581;
    pub const WRONG_LENGTH: u16 = 0x6700;
    pub const SECURITY_NOT_SATISFIED: u16 = 0x6982;
    pub const AUTH_METHOD_BLOCKED: u16 = 0x6983;
    pub const CONDITIONS_NOT_SATISFIED: u16 = 0x6985;
    pub const COMMAND_NOT_ALLOWED: u16 = 0x6986;
    pub const WRONG_DATA: u16 = 0x6A80;
    pub const FILE_NOT_FOUND: u16 = 0x6A82;
    pub const WRONG_P1P2: u16 = 0x6B00;
    pub const INS_NOT_SUPPORTED: u16 = 0x6D00;
    pub const CLA_NOT_SUPPORTED: u16 = 0x6E00;
}

/// A command APDU (short lengths only).
#[derive(Clone, PartialEq, Eq)]
pub struct Command {
    pub cla: u8,
    pub ins: u8,
    pub p1: u8,
    pub p2: u8,
    pub data: Vec<u8>,
    /// Expected length; `Some(0)` means 256.
    pub le: Option<u8>,
}

/// Never prints the data: a VERIFY carries the PIN.
impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Command({:02X} {:02X} {:02X} {:02X}, {} bytes)",
            self.cla,
            self.ins,
            self.p1,
            self.p2,
            self.data.len()
        )
    }
}

/// Why bytes are not a command APDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed command APDU")]
pub struct MalformedApdu;

impl Command {
    pub const INS_SELECT: u8 = 0xA4;
    pub const INS_READ_BINARY: u8 = 0xB0;
    pub const INS_VERIFY: u8 = 0x20;
    pub const INS_GET_CHALLENGE: u8 = 0x84;
    /// cardap profile (CLA 80): write into the shadow of the area image.
    pub const INS_STAGE: u8 = 0xD6;
    /// cardap profile: replace the area image with the shadow, authorized by cardap's MAC.
    pub const INS_COMMIT: u8 = 0xE0;
    /// cardap profile: the area image and the card's MAC over it.
    pub const INS_READ_STATE: u8 = 0xCA;

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![self.cla, self.ins, self.p1, self.p2];
        if !self.data.is_empty() {
            // Short APDUs only: every command of the profile carries at most 255 bytes.
            out.push(self.data.len() as u8);
            out.extend_from_slice(&self.data);
        }
        if let Some(le) = self.le {
            out.push(le);
        }
        out
    }

    pub fn parse(bytes: &[u8]) -> Result<Command, MalformedApdu> {
        let [cla, ins, p1, p2, rest @ ..] = bytes else {
            return Err(MalformedApdu);
        };
        let (data, le) = match rest {
            [] => (vec![], None),
            [le] => (vec![], Some(*le)),
            [lc, body @ ..] => {
                let lc = *lc as usize;
                if lc == 0 {
                    return Err(MalformedApdu);
                }
                match body.len() {
                    n if n == lc => (body.to_vec(), None),
                    n if n == lc + 1 => (body[..lc].to_vec(), Some(body[lc])),
                    _ => return Err(MalformedApdu),
                }
            }
        };
        Ok(Command { cla: *cla, ins: *ins, p1: *p1, p2: *p2, data, le })
    }

    pub fn select_aid(aid: &[u8]) -> Command {
        Command { cla: 0x00, ins: Self::INS_SELECT, p1: 0x04, p2: 0x0C, data: aid.to_vec(), le: None }
    }

    pub fn select_ef(fid: [u8; 2]) -> Command {
        Command { cla: 0x00, ins: Self::INS_SELECT, p1: 0x02, p2: 0x0C, data: fid.to_vec(), le: None }
    }

    pub fn read_binary(offset: u16, le: u8) -> Command {
        let [p1, p2] = offset.to_be_bytes();
        Command { cla: 0x00, ins: Self::INS_READ_BINARY, p1, p2, data: vec![], le: Some(le) }
    }

    /// VERIFY of the selected PIN EF with `pin` (ASCII digits); `None` asks for the tries left (`63 Cx`).
    pub fn verify(pin: Option<&[u8]>) -> Command {
        Command {
            cla: 0x00,
            ins: Self::INS_VERIFY,
            p1: 0x00,
            p2: 0x80,
            data: pin.unwrap_or_default().to_vec(),
            le: None,
        }
    }

    pub fn get_challenge() -> Command {
        Command { cla: 0x00, ins: Self::INS_GET_CHALLENGE, p1: 0, p2: 0, data: vec![], le: Some(CHALLENGE_LEN as u8) }
    }

    /// STAGE `data` at `offset` of the shadow image (offset 0 empties the shadow first).
    pub fn stage(offset: u16, data: &[u8]) -> Command {
        let [p1, p2] = offset.to_be_bytes();
        Command { cla: 0x80, ins: Self::INS_STAGE, p1, p2, data: data.to_vec(), le: None }
    }

    /// COMMIT the first `len` bytes of the shadow, with cardap's MAC over them and the challenge.
    pub fn commit(len: u16, mac: &[u8]) -> Command {
        let mut data = len.to_be_bytes().to_vec();
        data.extend_from_slice(mac);
        Command { cla: 0x80, ins: Self::INS_COMMIT, p1: 0, p2: 0, data, le: Some(MAC_LEN as u8) }
    }

    /// READ STATE: the area image and the card's MAC over it with `nonce`.
    pub fn read_state(nonce: &[u8]) -> Command {
        Command { cla: 0x80, ins: Self::INS_READ_STATE, p1: 0, p2: 0, data: nonce.to_vec(), le: Some(0) }
    }

    /// The commands that write `image` to the shadow, chunk by chunk.
    pub fn stages(image: &[u8]) -> Vec<Command> {
        image
            .chunks(STAGE_CHUNK)
            .enumerate()
            // An image is far below 64 KiB (at most 255 APs of 19 bytes).
            .map(|(i, chunk)| Command::stage((i * STAGE_CHUNK) as u16, chunk))
            .collect()
    }
}

/// A response APDU: data and the status word.
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    pub data: Vec<u8>,
    pub sw: u16,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Response({:04X}, {} bytes)", self.sw, self.data.len())
    }
}

impl Response {
    pub fn ok(data: Vec<u8>) -> Response {
        Response { data, sw: sw::OK }
    }

    pub fn status(sw: u16) -> Response {
        Response { data: vec![], sw }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.data.clone();
        out.extend_from_slice(&self.sw.to_be_bytes());
        out
    }

    pub fn parse(bytes: &[u8]) -> Result<Response, MalformedApdu> {
        if bytes.len() < 2 {
            return Err(MalformedApdu);
        }
        let (data, sw) = bytes.split_at(bytes.len() - 2);
        Ok(Response { data: data.to_vec(), sw: u16::from_be_bytes([sw[0], sw[1]]) })
    }

    pub fn is_ok(&self) -> bool {
        self.sw == sw::OK
    }

    /// The tries left that a `63 Cx` answer tells.
    pub fn tries_left(&self) -> Option<u8> {
        (self.sw & 0xFFF0 == sw::TRIES_LEFT).then_some((self.sw & 0x000F) as u8)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn commands_round_trip() {
        for c in [
            Command::select_aid(&AID_TEXT_AP),
            Command::select_ef(EF_FOUR_FACTS),
            Command::read_binary(0x0102, 0),
            Command::verify(Some(b"1234")),
            Command::verify(None),
            Command::get_challenge(),
            Command::commit(20, &[7; MAC_LEN]),
            Command::read_state(&[1; CHALLENGE_LEN]),
        ] {
            assert_eq!(Command::parse(&c.to_bytes()).unwrap(), c);
        }
        assert_eq!(Command::select_aid(&AID_TEXT_AP).to_bytes()[..5], [0x00, 0xA4, 0x04, 0x0C, 10]);
        assert_eq!(Command::verify(None).to_bytes(), [0x00, 0x20, 0x00, 0x80]);
        assert!(Command::parse(&[0, 1, 2]).is_err());
        assert!(Command::parse(&[0, 1, 2, 3, 5, 1]).is_err());
    }

    #[test]
    fn a_command_never_prints_its_data() {
        assert!(!format!("{:?}", Command::verify(Some(b"1234"))).contains("1234"));
        assert!(!format!("{:?}", Command::verify(Some(b"1234"))).contains("31"));
    }

    #[test]
    fn tries_left_are_read_from_63cx() {
        assert_eq!(Response::status(0x63C2).tries_left(), Some(2));
        assert_eq!(Response::status(0x9000).tries_left(), None);
        assert_eq!(Response::parse(&[1, 0x90, 0x00]).unwrap(), Response::ok(vec![1]));
    }

    #[test]
    fn a_long_image_is_staged_in_chunks() {
        let stages = Command::stages(&[1; 450]);
        assert_eq!(stages.len(), 3);
        assert_eq!((stages[1].p1, stages[1].p2), (0, 200));
        assert_eq!(stages[2].data.len(), 50);
    }
}
