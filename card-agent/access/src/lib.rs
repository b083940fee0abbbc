//! カードAPアクセスモジュール (card AP access module): what a business system — a library counter, a
//! municipality's own system — uses to read the card AP data cardap wrote into a My Number card's local area
//! (`card-agent/PROFILE.md`): the card's FID, which APs the area holds, one AP's record, and the 標準ID of the
//! library AP first of all. Also the PC/SC plumbing the card agent builds on: listing readers, waiting for a
//! card, connecting, sending APDUs, and telling apart why that failed (no reader, reader unplugged, card pulled
//! out, not a My Number card).
//!
//! Owns reading. Must not write the card (writes need cardap's MAC, `cardap-agent`'s business), read the My
//! Number, or log an APDU's data.

use std::ffi::{CStr, CString};
use std::time::Duration;

use cardap_card_profile::{
    AID_LOCAL_AREA, AID_TEXT_AP, ApRecord, AreaImage, Command, EF_AREA_IMAGE, EF_CARD_ID, Response, ap_fid, sw,
};
use cardap_domain::BusinessId;
use cardap_domain::card::StandardId;
use cardap_domain::resident::CardFid;

pub use cardap_card_profile as profile;

/// Why reading a card failed; each with a message for the person at the counter.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("the PC/SC service (pcscd) is not running")]
    NoService,
    #[error("no card reader is connected")]
    NoReader,
    #[error("card reader {0} is not connected (unplugged?)")]
    ReaderGone(String),
    #[error("no card in the reader")]
    NoCard,
    #[error("the card was pulled out of the reader")]
    CardRemoved,
    #[error("this is not a My Number card (the text input assistance AP is missing)")]
    NotMyNumberCard,
    #[error("this card has no local-area slot for cardap (unknown card)")]
    UnknownCard,
    #[error("the card answered {0:04X}")]
    Card(u16),
    #[error("the card's data cannot be read: {0}")]
    Data(String),
    #[error("no card was inserted within {0:?}")]
    Timeout(Duration),
    #[error("PC/SC: {0}")]
    Pcsc(pcsc::Error),
}

impl AccessError {
    fn of(e: pcsc::Error, reader: &str) -> AccessError {
        use pcsc::Error as E;
        match e {
            E::NoService | E::ServiceStopped | E::NoReadersAvailable if reader.is_empty() => AccessError::NoService,
            E::NoReadersAvailable => AccessError::NoReader,
            E::NoService | E::ServiceStopped => AccessError::NoService,
            E::ReaderUnavailable | E::UnknownReader => AccessError::ReaderGone(reader.to_owned()),
            // vpcd reports a card pulled out in the middle of a command as a failed transaction.
            E::RemovedCard | E::ResetCard | E::NoSmartcard | E::NotTransacted | E::UnpoweredCard => {
                AccessError::CardRemoved
            }
            E::Timeout => AccessError::Timeout(Duration::ZERO),
            other => AccessError::Pcsc(other),
        }
    }
}

/// Sends APDUs to a card: a PC/SC card, or anything else that answers them (tests, the emulator in process).
pub trait Transport {
    fn transmit(&mut self, command: &Command) -> Result<Response, AccessError>;
}

/// The PC/SC context: the readers there are.
pub struct Readers {
    ctx: pcsc::Context,
}

impl std::fmt::Debug for Readers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Readers")
    }
}

impl Readers {
    pub fn establish() -> Result<Readers, AccessError> {
        let ctx = pcsc::Context::establish(pcsc::Scope::User).map_err(|e| AccessError::of(e, ""))?;
        Ok(Readers { ctx })
    }

    /// The names of the connected readers.
    pub fn list(&self) -> Result<Vec<String>, AccessError> {
        match self.ctx.list_readers_owned() {
            Ok(names) => Ok(names.into_iter().map(|n| n.to_string_lossy().into_owned()).collect()),
            Err(pcsc::Error::NoReadersAvailable) => Ok(vec![]),
            Err(e) => Err(AccessError::of(e, "")),
        }
    }

    /// `name`, or the first reader when `None`; `ReaderGone` when `name` is not connected.
    pub fn pick(&self, name: Option<&str>) -> Result<String, AccessError> {
        let readers = self.list()?;
        match name {
            Some(n) if readers.iter().any(|r| r == n) => Ok(n.to_owned()),
            Some(n) => Err(AccessError::ReaderGone(n.to_owned())),
            None => readers.into_iter().next().ok_or(AccessError::NoReader),
        }
    }

    /// Waits until a card is in `reader` (at most `timeout`).
    pub fn wait_for_card(&self, reader: &str, timeout: Duration) -> Result<(), AccessError> {
        self.wait_until(reader, timeout, |state| {
            state.contains(pcsc::State::PRESENT) && !state.contains(pcsc::State::MUTE)
        })
    }

    /// Waits until `reader` holds no card (at most `timeout`): the card taken out, and PC/SC knows it.
    pub fn wait_for_removal(&self, reader: &str, timeout: Duration) -> Result<(), AccessError> {
        self.wait_until(reader, timeout, |state| state.contains(pcsc::State::EMPTY))
    }

    /// Follows `reader`'s state changes until `reached` holds (at most `timeout`); a reader that goes away is
    /// `ReaderGone`.
    fn wait_until(
        &self,
        reader: &str,
        timeout: Duration,
        reached: impl Fn(pcsc::State) -> bool,
    ) -> Result<(), AccessError> {
        let name = CString::new(reader).map_err(|_| AccessError::ReaderGone(reader.to_owned()))?;
        let mut states = [pcsc::ReaderState::new(name.as_c_str(), pcsc::State::UNAWARE)];
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.ctx.get_status_change(left, &mut states) {
                Ok(()) => {}
                Err(pcsc::Error::Timeout) => return Err(AccessError::Timeout(timeout)),
                Err(e) => return Err(AccessError::of(e, reader)),
            }
            let state = states[0].event_state();
            if state.intersects(pcsc::State::UNKNOWN | pcsc::State::UNAVAILABLE) {
                return Err(AccessError::ReaderGone(reader.to_owned()));
            }
            if reached(state) {
                return Ok(());
            }
            states[0].sync_current_state();
        }
    }

    /// Connects to the card in `reader`.
    pub fn connect(&self, reader: &str) -> Result<PcscCard, AccessError> {
        let name = CString::new(reader).map_err(|_| AccessError::ReaderGone(reader.to_owned()))?;
        // Right after a card is inserted (again), pcscd may still be negotiating its protocol: a few retries.
        let mut attempts = 0;
        loop {
            match self.ctx.connect(name.as_c_str(), pcsc::ShareMode::Shared, pcsc::Protocols::ANY) {
                Ok(card) => return Ok(PcscCard { card, reader: reader.to_owned() }),
                Err(pcsc::Error::ProtoMismatch | pcsc::Error::ResetCard | pcsc::Error::NotTransacted)
                    if attempts < 20 =>
                {
                    attempts += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(AccessError::of(e, reader)),
            }
        }
    }

    /// The name as PC/SC wants it.
    pub fn c_name(name: &str) -> Option<CString> {
        CString::new(name).ok()
    }

    /// Whether `name` is a connected reader.
    pub fn has(&self, name: &CStr) -> bool {
        self.list().map(|r| r.iter().any(|n| n.as_bytes() == name.to_bytes())).unwrap_or(false)
    }
}

/// A card connected through PC/SC.
pub struct PcscCard {
    card: pcsc::Card,
    reader: String,
}

impl std::fmt::Debug for PcscCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcscCard").field("reader", &self.reader).finish()
    }
}

impl Transport for PcscCard {
    fn transmit(&mut self, command: &Command) -> Result<Response, AccessError> {
        let mut buffer = [0_u8; pcsc::MAX_BUFFER_SIZE_EXTENDED];
        let answer =
            self.card.transmit(&command.to_bytes(), &mut buffer).map_err(|e| AccessError::of(e, &self.reader))?;
        // No status word at all: the card left in the middle of the command (vpcd answers nothing then).
        Response::parse(answer).map_err(|_| AccessError::CardRemoved)
    }
}

/// Reads cardap's data from a card.
#[derive(Debug)]
pub struct CardReader<T> {
    transport: T,
}

impl<T: Transport> CardReader<T> {
    pub fn new(transport: T) -> CardReader<T> {
        CardReader { transport }
    }

    pub fn transport(&mut self) -> &mut T {
        &mut self.transport
    }

    /// Sends `command`; any status but `90 00` is an error.
    pub fn ok(&mut self, command: &Command) -> Result<Vec<u8>, AccessError> {
        let r = self.transport.transmit(command)?;
        if r.is_ok() { Ok(r.data) } else { Err(AccessError::Card(r.sw)) }
    }

    /// Checks that the card is a My Number card (its text input assistance AP answers).
    pub fn check_my_number_card(&mut self) -> Result<(), AccessError> {
        match self.transport.transmit(&Command::select_aid(&AID_TEXT_AP))?.sw {
            sw::OK => Ok(()),
            _ => Err(AccessError::NotMyNumberCard),
        }
    }

    /// Selects the local-area DF; `UnknownCard` when the card has none.
    pub fn select_local_area(&mut self) -> Result<(), AccessError> {
        match self.transport.transmit(&Command::select_aid(&AID_LOCAL_AREA))?.sw {
            sw::OK => Ok(()),
            _ => Err(AccessError::UnknownCard),
        }
    }

    /// Reads the selected EF to its end.
    pub fn read_ef(&mut self, fid: [u8; 2]) -> Result<Vec<u8>, AccessError> {
        self.ok(&Command::select_ef(fid))?;
        let mut out = Vec::new();
        loop {
            let offset = u16::try_from(out.len()).map_err(|_| AccessError::Data("an EF over 64 KiB".into()))?;
            let chunk = self.ok(&Command::read_binary(offset, 0))?;
            let done = chunk.len() < 256;
            out.extend_from_slice(&chunk);
            if done {
                return Ok(out);
            }
        }
    }

    /// The card's FID.
    pub fn fid(&mut self) -> Result<CardFid, AccessError> {
        self.select_local_area()?;
        let bytes = self.read_ef(EF_CARD_ID)?;
        let text = String::from_utf8(bytes).map_err(|_| AccessError::Data("the FID is not text".into()))?;
        CardFid::parse(&text).map_err(|_| AccessError::Data("the FID is not 1–32 letters and digits".into()))
    }

    /// The local area, `None` before it was created.
    pub fn local_area(&mut self) -> Result<Option<AreaImage>, AccessError> {
        self.select_local_area()?;
        let bytes = self.read_ef(EF_AREA_IMAGE)?;
        if bytes.is_empty() {
            return Ok(None);
        }
        AreaImage::decode(&bytes).map(Some).map_err(|e| AccessError::Data(e.to_string()))
    }

    /// The record of AP `id` (its own EF), `None` when the area does not hold it.
    pub fn ap(&mut self, id: &BusinessId) -> Result<Option<ApRecord>, AccessError> {
        self.select_local_area()?;
        match self.transport.transmit(&Command::select_ef(ap_fid(id)))?.sw {
            sw::OK => {}
            sw::FILE_NOT_FOUND => return Ok(None),
            other => return Err(AccessError::Card(other)),
        }
        let bytes = self.ok(&Command::read_binary(0, 0))?;
        ApRecord::decode(&bytes).map(Some).map_err(|e| AccessError::Data(e.to_string()))
    }

    /// The 標準ID of the library AP, `None` when the card has no library AP.
    pub fn standard_id(&mut self) -> Result<Option<StandardId>, AccessError> {
        Ok(self.ap(&BusinessId::LIBRARY)?.and_then(|r| r.standard_id))
    }
}

/// Connects to the card in `reader` (the first reader when `None`), waiting up to `wait` for one.
pub fn open(reader: Option<&str>, wait: Duration) -> Result<CardReader<PcscCard>, AccessError> {
    let readers = Readers::establish()?;
    let name = readers.pick(reader)?;
    readers.wait_for_card(&name, wait)?;
    Ok(CardReader::new(readers.connect(&name)?))
}
