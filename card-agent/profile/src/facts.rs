//! The four basic facts (本人確認4情報) as EF 0002 of the text input assistance AP holds them: tag `20` around
//! `21` (offsets), `22` name, `23` address, `24` birth date (`YYYYMMDD`), `25` sex (ISO 5218 digit), UTF-8, BER
//! lengths.
//!
//! Owns their encoding (for the emulator) and parsing (for the agent). Personal data: `Debug` never prints it.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct FourFacts {
    pub name: String,
    pub address: String,
    /// `YYYYMMDD`, as the card has it.
    pub birth_date: String,
    /// ISO 5218 digit.
    pub sex: String,
}

impl fmt::Debug for FourFacts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FourFacts(<personal data>)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FactsError {
    #[error("the four facts are cut short")]
    Truncated,
    #[error("the four facts miss tag {0:02X}")]
    Missing(u8),
    #[error("the four facts are not UTF-8")]
    NotUtf8,
    #[error("the four facts do not start with tag 20")]
    Format,
}

fn push_tlv(out: &mut Vec<u8>, tag: u8, value: &[u8]) {
    out.push(tag);
    match value.len() {
        n if n < 0x80 => out.push(n as u8),
        n if n < 0x100 => out.extend_from_slice(&[0x81, n as u8]),
        // Facts are far below 64 KiB.
        n => out.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(value);
}

/// One TLV from the front of `bytes`: tag, value, rest.
fn take_tlv(bytes: &[u8]) -> Result<(u8, &[u8], &[u8]), FactsError> {
    let [tag, first, rest @ ..] = bytes else {
        return Err(FactsError::Truncated);
    };
    let (len, rest) = match *first {
        n if n < 0x80 => (n as usize, rest),
        0x81 => match rest {
            [n, rest @ ..] => (*n as usize, rest),
            _ => return Err(FactsError::Truncated),
        },
        0x82 => match rest {
            [hi, lo, rest @ ..] => ((*hi as usize) << 8 | *lo as usize, rest),
            _ => return Err(FactsError::Truncated),
        },
        _ => return Err(FactsError::Truncated),
    };
    if rest.len() < len {
        return Err(FactsError::Truncated);
    }
    let (value, rest) = rest.split_at(len);
    Ok((*tag, value, rest))
}

impl FourFacts {
    pub fn encode(&self) -> Vec<u8> {
        let mut inner = Vec::new();
        // The offsets the real card carries before the values; cardap reads the TLVs and ignores them.
        push_tlv(&mut inner, 0x21, &[0; 4]);
        push_tlv(&mut inner, 0x22, self.name.as_bytes());
        push_tlv(&mut inner, 0x23, self.address.as_bytes());
        push_tlv(&mut inner, 0x24, self.birth_date.as_bytes());
        push_tlv(&mut inner, 0x25, self.sex.as_bytes());
        let mut out = Vec::new();
        push_tlv(&mut out, 0x20, &inner);
        out
    }

    /// The facts from EF 0002's bytes (trailing padding after the TLV is ignored, as the card pads).
    pub fn parse(bytes: &[u8]) -> Result<FourFacts, FactsError> {
        let (tag, mut inner, _) = take_tlv(bytes)?;
        if tag != 0x20 {
            return Err(FactsError::Format);
        }
        let mut found: [Option<String>; 4] = Default::default();
        while !inner.is_empty() {
            let (tag, value, rest) = take_tlv(inner)?;
            inner = rest;
            if let 0x22..=0x25 = tag {
                let text = std::str::from_utf8(value).map_err(|_| FactsError::NotUtf8)?;
                found[(tag - 0x22) as usize] = Some(text.to_owned());
            }
        }
        let [name, address, birth_date, sex] = found;
        Ok(FourFacts {
            name: name.ok_or(FactsError::Missing(0x22))?,
            address: address.ok_or(FactsError::Missing(0x23))?,
            birth_date: birth_date.ok_or(FactsError::Missing(0x24))?,
            sex: sex.ok_or(FactsError::Missing(0x25))?,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_facts_round_trip_and_never_print() {
        let facts = FourFacts {
            name: "山田 太郎".into(),
            address: "東京都千代田区千代田1-1".repeat(8),
            birth_date: "19890107".into(),
            sex: "1".into(),
        };
        let mut bytes = facts.encode();
        bytes.extend_from_slice(&[0xFF; 10]);
        assert_eq!(FourFacts::parse(&bytes).unwrap(), facts);
        assert!(!format!("{facts:?}").contains("山田"));
        assert_eq!(FourFacts::parse(&bytes[..5]), Err(FactsError::Truncated));
    }
}
