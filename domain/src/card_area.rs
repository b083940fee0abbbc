//! The local resident area as cardap's own card profile holds it (`card-agent/PROFILE.md`): the area image (one
//! byte string, written to the card in one atomic commit), the record of each AP's EF, and the messages that the
//! card's and cardap's MACs cover.
//!
//! Owns the byte layout shared by cardap (which builds images and checks the card's MACs), the card emulator and
//! the card agent. Must not compute a MAC or hold a key: that is cardap's (`commands::card_writes`) and the card's.
//! Pure: no IO.

use std::collections::BTreeMap;

use crate::card::StandardId;
use crate::resident::CardFid;
use crate::{BusinessId, MunicipalityCode};

/// What the local area of a card holds: the municipality that created it, the card stream version cardap
/// wrote it from (reconciliation compares it), and the APs with their 標準ID (library only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AreaImage {
    pub municipality: MunicipalityCode,
    /// The version of the card's stream when cardap authorized this image: when the card holds an image that
    /// differs from cardap's record and cardap is still at this version, the write reached the card and its
    /// confirmation did not reach cardap (rolled forward); otherwise cardap moved on (the card is rewritten).
    pub base_version: u64,
    pub aps: BTreeMap<BusinessId, Option<StandardId>>,
}

/// Why bytes are not an area image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AreaImageError {
    #[error("not a cardap local area image (magic or format)")]
    Format,
    #[error("the local area image is cut short")]
    Truncated,
    #[error("the local area image has a bad field: {0}")]
    Field(&'static str),
    #[error("the local area image has bytes after its end")]
    Trailing,
    #[error("the local area image holds more than 255 APs")]
    TooManyAps,
}

/// The first bytes of every image: `LA` and the format 1.
const MAGIC: [u8; 3] = [b'L', b'A', 1];

/// Tags of an AP's EF record (BER-like, one-byte tag, one-byte length).
pub const TAG_BUSINESS_ID: u8 = 0xC1;
pub const TAG_STANDARD_ID: u8 = 0xC2;
pub const TAG_MUNICIPALITY: u8 = 0xC3;

impl AreaImage {
    /// The image as written to the card: `LA 01`, municipality (6 ASCII), base version (u64 big-endian), AP count
    /// (u8), then per AP in business-id order: business id (2 ASCII), 標準ID length (0 or 16), 標準ID (ASCII).
    pub fn encode(&self) -> Result<Vec<u8>, AreaImageError> {
        let count = u8::try_from(self.aps.len()).map_err(|_| AreaImageError::TooManyAps)?;
        let mut out = Vec::with_capacity(20 + self.aps.len() * 19);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(self.municipality.as_str().as_bytes());
        out.extend_from_slice(&self.base_version.to_be_bytes());
        out.push(count);
        for (id, standard_id) in &self.aps {
            out.extend_from_slice(id.as_str().as_bytes());
            match standard_id {
                Some(s) => {
                    out.push(16);
                    out.extend_from_slice(s.as_str().as_bytes());
                }
                None => out.push(0),
            }
        }
        Ok(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<AreaImage, AreaImageError> {
        let mut r = Reader(bytes);
        if r.take(3)? != MAGIC {
            return Err(AreaImageError::Format);
        }
        let municipality = MunicipalityCode::parse(r.ascii(6)?).map_err(|_| AreaImageError::Field("municipality"))?;
        let base_version = u64::from_be_bytes(r.take(8)?.try_into().map_err(|_| AreaImageError::Truncated)?);
        let count = r.take(1)?[0];
        let mut aps = BTreeMap::new();
        for _ in 0..count {
            let id = BusinessId::parse(r.ascii(2)?).map_err(|_| AreaImageError::Field("business id"))?;
            let standard_id = match r.take(1)?[0] {
                0 => None,
                16 => Some(StandardId::parse(r.ascii(16)?).map_err(|_| AreaImageError::Field("標準ID"))?),
                _ => return Err(AreaImageError::Field("標準ID length")),
            };
            if aps.insert(id, standard_id).is_some() {
                return Err(AreaImageError::Field("an AP given twice"));
            }
        }
        if !r.0.is_empty() {
            return Err(AreaImageError::Trailing);
        }
        Ok(AreaImage { municipality, base_version, aps })
    }

    /// The content of the EF of AP `id` (its FID: [`ap_fid`]): TLVs of the business id, the municipality and,
    /// for the library AP, the 標準ID. `None` when the AP is not in the area.
    pub fn ap_record(&self, id: &BusinessId) -> Option<Vec<u8>> {
        let standard_id = self.aps.get(id)?;
        let mut out = Vec::new();
        let mut tlv = |tag: u8, value: &[u8]| {
            out.push(tag);
            // Every value here is 2, 6 or 16 bytes.
            out.push(value.len() as u8);
            out.extend_from_slice(value);
        };
        tlv(TAG_BUSINESS_ID, id.as_str().as_bytes());
        tlv(TAG_MUNICIPALITY, self.municipality.as_str().as_bytes());
        if let Some(s) = standard_id {
            tlv(TAG_STANDARD_ID, s.as_str().as_bytes());
        }
        Some(out)
    }

    /// Whether this image says what cardap's record of the card says (same APs and 標準IDs); the base version
    /// and the municipality are not compared.
    pub fn same_aps(&self, aps: &BTreeMap<BusinessId, Option<StandardId>>) -> bool {
        self.aps == *aps
    }
}

/// The FID of the EF of AP `id` in the local-area DF: `01` followed by the business id as a BCD byte (`02` →
/// `01 02`).
pub fn ap_fid(id: &BusinessId) -> [u8; 2] {
    let b = id.as_str().as_bytes();
    [0x01, ((b[0].wrapping_sub(b'0')) << 4) | (b[1].wrapping_sub(b'0'))]
}

/// What one AP record's TLVs say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApRecord {
    pub business_id: BusinessId,
    pub municipality: MunicipalityCode,
    pub standard_id: Option<StandardId>,
}

impl ApRecord {
    pub fn decode(bytes: &[u8]) -> Result<ApRecord, AreaImageError> {
        let (mut business_id, mut municipality, mut standard_id) = (None, None, None);
        let mut r = Reader(bytes);
        while !r.0.is_empty() {
            let tag = r.take(1)?[0];
            let len = r.take(1)?[0] as usize;
            let value = r.ascii(len)?;
            match tag {
                TAG_BUSINESS_ID => {
                    business_id = Some(BusinessId::parse(value).map_err(|_| AreaImageError::Field("business id"))?)
                }
                TAG_MUNICIPALITY => {
                    municipality =
                        Some(MunicipalityCode::parse(value).map_err(|_| AreaImageError::Field("municipality"))?)
                }
                TAG_STANDARD_ID => {
                    standard_id = Some(StandardId::parse(value).map_err(|_| AreaImageError::Field("標準ID"))?)
                }
                _ => {}
            }
        }
        Ok(ApRecord {
            business_id: business_id.ok_or(AreaImageError::Field("business id"))?,
            municipality: municipality.ok_or(AreaImageError::Field("municipality"))?,
            standard_id,
        })
    }
}

/// What cardap MACs to let the card commit `image` (PROFILE.md, COMMIT): a label, the card's one-time challenge,
/// the FID and the image, each with its length, so that no two inputs share a message.
pub fn commit_message(fid: &CardFid, challenge: &[u8], image: &[u8]) -> Vec<u8> {
    framed(b"cardap-commit-v1", &[challenge, fid.as_str().as_bytes(), image])
}

/// What the card MACs to confirm that it holds `image` (empty: no local area): a label, cardap's nonce, the FID
/// and the image.
pub fn state_message(fid: &CardFid, nonce: &[u8], image: &[u8]) -> Vec<u8> {
    framed(b"cardap-state-v1", &[nonce, fid.as_str().as_bytes(), image])
}

fn framed(label: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut out = label.to_vec();
    for part in parts {
        out.extend_from_slice(&(part.len() as u32).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], AreaImageError> {
        if self.0.len() < n {
            return Err(AreaImageError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn ascii(&mut self, n: usize) -> Result<&'a str, AreaImageError> {
        let bytes = self.take(n)?;
        std::str::from_utf8(bytes).ok().filter(|s| s.is_ascii()).ok_or(AreaImageError::Field("not ASCII"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn image() -> AreaImage {
        let code = MunicipalityCode::parse("131016").unwrap();
        AreaImage {
            municipality: code.clone(),
            base_version: 7,
            aps: BTreeMap::from([
                (BusinessId::parse("01").unwrap(), None),
                (BusinessId::LIBRARY, Some(StandardId::new(&code, 1_234_567_890))),
            ]),
        }
    }

    #[test]
    fn an_image_round_trips() {
        let bytes = image().encode().unwrap();
        assert_eq!(&bytes[..3], b"LA\x01");
        assert_eq!(AreaImage::decode(&bytes), Ok(image()));
    }

    #[test]
    fn bad_images_are_refused() {
        let bytes = image().encode().unwrap();
        assert_eq!(AreaImage::decode(&bytes[..bytes.len() - 1]), Err(AreaImageError::Truncated));
        assert_eq!(AreaImage::decode(b"XX\x01"), Err(AreaImageError::Format));
        assert_eq!(AreaImage::decode(&[]), Err(AreaImageError::Truncated));
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(AreaImage::decode(&longer), Err(AreaImageError::Trailing));
    }

    #[test]
    fn the_library_record_carries_its_standard_id() {
        let record = image().ap_record(&BusinessId::LIBRARY).unwrap();
        let read = ApRecord::decode(&record).unwrap();
        assert_eq!(read.standard_id.unwrap().as_str(), "1310161234567890");
        assert_eq!(ap_fid(&BusinessId::LIBRARY), [0x01, 0x02]);
        assert_eq!(ap_fid(&BusinessId::parse("15").unwrap()), [0x01, 0x15]);
        assert!(image().ap_record(&BusinessId::parse("03").unwrap()).is_none());
    }

    #[test]
    fn messages_differ_by_label_and_framing() {
        let fid = CardFid::parse("AB").unwrap();
        assert_ne!(commit_message(&fid, b"12", b"3"), commit_message(&fid, b"1", b"23"));
        assert_ne!(commit_message(&fid, b"1", b"2"), state_message(&fid, b"1", b"2"));
    }
}
