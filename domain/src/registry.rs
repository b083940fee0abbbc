//! The `RegistryEntry` aggregate (既存住基システム / 住基ネットCS の本人確認4情報): one person as the municipality's
//! resident registry knows him, imported from its CSV files so that 利用者登録 can be prefilled by registry key
//! or by the four facts read from a card.
//!
//! Owns the registry key, the registry's facts and their events. Importing the same row again yields no event;
//! a changed row yields `RegistryEntryChanged` with only the fields that changed. The facts are personal data:
//! they sit under the payload's `personal` key and are sealed by the store under the entry's own data key.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value, json};

use crate::aggregate::decode_payload;
use crate::contact::{Sex, string_newtype};
use crate::resident::{Address, EraDate, Erasable, KanaName, KanjiName, PersonName, PostalCode, ascii_to_full_width};
use crate::{Aggregate, DomainEvent, EventDecodeError, MunicipalityCode, ParseError};

/// The key of a person in the municipality's registry (宛名番号), e.g. `000123456`: 1..=20 half-width letters
/// and digits, as the registry exports it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RegistryKey(String);

impl RegistryKey {
    pub const MAX_CHARS: usize = 20;

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        crate::ids::parse_alphanumeric(s.trim(), Self::MAX_CHARS).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

string_newtype!(RegistryKey);

/// The stream id of a registry entry: `<municipality code>.<registry key>`.
pub fn stream_key(municipality: &MunicipalityCode, key: &RegistryKey) -> String {
    format!("{}.{}", municipality.as_str(), key.as_str())
}

/// A whole name as the registry holds it, e.g. `山田　太郎`: full-width text of 1..=101 characters, family and
/// given name separated by a full-width space. Half-width input is converted to full-width (a half-width space
/// included), control characters are refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FullName(String);

impl FullName {
    pub const MAX_CHARS: usize = 101;

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let s = s.trim_matches(|c: char| c.is_whitespace());
        if s.is_empty() {
            return Err(ParseError::Empty);
        }
        if let Some(ch) = s.chars().find(|c| c.is_control()) {
            return Err(ParseError::InvalidCharacter { ch });
        }
        let full: String = s.chars().map(ascii_to_full_width).collect();
        if full.chars().count() > Self::MAX_CHARS {
            return Err(ParseError::TooLong { max: Self::MAX_CHARS });
        }
        Ok(Self(full))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// 姓 and 名 split at the first full-width space, when both parts are valid 漢字氏名.
    pub fn split(&self) -> Option<PersonName<KanjiName>> {
        let (family, given) = self.0.split_once('\u{3000}')?;
        Some(PersonName { family: KanjiName::parse(family).ok()?, given: KanjiName::parse(given).ok()? })
    }
}

string_newtype!(FullName);

/// A whole name in katakana, e.g. `ヤマダ　タロウ` (a half-width space is taken as the full-width one).
pub fn parse_full_kana(s: &str) -> Result<KanaName, ParseError> {
    KanaName::parse(&s.trim().replace(' ', "\u{3000}"))
}

/// 姓 and 名 of a whole katakana name, split at the first full-width space.
pub fn split_kana(kana: &KanaName) -> Option<PersonName<KanaName>> {
    let (family, given) = kana.as_str().split_once('\u{3000}')?;
    Some(PersonName { family: KanaName::parse(family).ok()?, given: KanaName::parse(given).ok()? })
}

/// What the registry says about a person: the four facts (name, address, birth date, sex) and what the 住基
/// system adds (kana, postal code).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryFacts {
    pub name: FullName,
    pub kana: Option<KanaName>,
    pub birth_date: EraDate,
    pub sex: Sex,
    pub postal_code: Option<PostalCode>,
    pub address: Option<Address>,
}

/// The fields of a change: `None` = unchanged; `Some(None)` = an optional field was cleared.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryChanges {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<FullName>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "double_option")]
    pub kana: Option<Option<KanaName>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<EraDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sex: Option<Sex>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "double_option")]
    pub postal_code: Option<Option<PostalCode>>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "double_option")]
    pub address: Option<Option<Address>>,
}

/// A present key (even `null`) is `Some`; a missing one stays `None` through `#[serde(default)]`.
fn double_option<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

impl RegistryChanges {
    /// What differs between `old` and `new`; empty when they are equal.
    pub fn between(old: &RegistryFacts, new: &RegistryFacts) -> Self {
        fn diff<T: PartialEq + Clone>(o: &T, n: &T) -> Option<T> {
            (o != n).then(|| n.clone())
        }
        RegistryChanges {
            name: diff(&old.name, &new.name),
            kana: diff(&old.kana, &new.kana),
            birth_date: diff(&old.birth_date, &new.birth_date),
            sex: diff(&old.sex, &new.sex),
            postal_code: diff(&old.postal_code, &new.postal_code),
            address: diff(&old.address, &new.address),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    pub fn apply_to(&self, mut f: RegistryFacts) -> RegistryFacts {
        fn set<T: Clone>(field: &mut T, new: &Option<T>) {
            if let Some(v) = new {
                *field = v.clone();
            }
        }
        set(&mut f.name, &self.name);
        set(&mut f.kana, &self.kana);
        set(&mut f.birth_date, &self.birth_date);
        set(&mut f.sex, &self.sex);
        set(&mut f.postal_code, &self.postal_code);
        set(&mut f.address, &self.address);
        f
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum RegistryCommand {
    /// One row of a registry file.
    Import { municipality: MunicipalityCode, key: RegistryKey, facts: RegistryFacts },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryEvent {
    Imported { municipality: MunicipalityCode, key: RegistryKey, facts: Erasable<RegistryFacts> },
    Changed { changes: Erasable<RegistryChanges> },
}

const IMPORTED: &str = "RegistryEntryImported";
const CHANGED: &str = "RegistryEntryChanged";

mod v1 {
    use super::*;

    #[derive(Deserialize)]
    pub(super) struct Imported {
        pub municipality: MunicipalityCode,
        pub registry_key: RegistryKey,
        pub personal: Option<RegistryFacts>,
    }

    #[derive(Deserialize)]
    pub(super) struct Changed {
        pub personal: Option<RegistryChanges>,
    }
}

impl DomainEvent for RegistryEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Imported { .. } => IMPORTED,
            Self::Changed { .. } => CHANGED,
        }
    }

    fn event_version(&self) -> u32 {
        1
    }

    fn encode(&self) -> Value {
        match self {
            Self::Imported { municipality, key, facts } => json!({
                "municipality": municipality.as_str(),
                "registry_key": key.as_str(),
                "personal": facts.known(),
            }),
            Self::Changed { changes } => json!({
                "personal": changes.known().map(|c| serde_json::to_value(c).unwrap_or(Value::Object(Map::new()))),
            }),
        }
    }

    fn decode(event_type: &str, event_version: u32, payload: &Value) -> Result<Self, EventDecodeError> {
        match (event_type, event_version) {
            (IMPORTED, 1) => {
                let v1::Imported { municipality, registry_key, personal } =
                    decode_payload(event_type, event_version, payload)?;
                Ok(Self::Imported { municipality, key: registry_key, facts: Erasable::from_option(personal) })
            }
            (CHANGED, 1) => {
                let v1::Changed { personal } = decode_payload(event_type, event_version, payload)?;
                Ok(Self::Changed { changes: Erasable::from_option(personal) })
            }
            _ => Err(EventDecodeError::unknown(event_type, event_version)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("the registry entry's personal data has been erased")]
    Erased,
}

impl RegistryError {
    pub fn message_ja(&self) -> String {
        match self {
            Self::Erased => "この住基レコードの個人情報は消去されています".to_owned(),
        }
    }
}

/// The folded entry; `Default` is "never imported".
#[derive(Debug, Clone, Default)]
pub struct RegistryState {
    pub entry: Option<(MunicipalityCode, RegistryKey, Erasable<RegistryFacts>)>,
}

impl RegistryState {
    pub fn facts(&self) -> Option<&RegistryFacts> {
        self.entry.as_ref().and_then(|(_, _, f)| f.known())
    }
}

#[derive(Debug)]
pub struct RegistryEntry;

impl Aggregate for RegistryEntry {
    type State = RegistryState;
    type Command = RegistryCommand;
    type Event = RegistryEvent;
    type Error = RegistryError;

    const STREAM_TYPE: &'static str = "registry_entry";

    fn decide(state: &Self::State, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error> {
        let RegistryCommand::Import { municipality, key, facts } = command;
        match &state.entry {
            None => Ok(vec![RegistryEvent::Imported { municipality, key, facts: Erasable::Known(facts) }]),
            Some((_, _, Erasable::Erased)) => Err(RegistryError::Erased),
            Some((_, _, Erasable::Known(old))) => {
                let changes = RegistryChanges::between(old, &facts);
                if changes.is_empty() {
                    Ok(vec![])
                } else {
                    Ok(vec![RegistryEvent::Changed { changes: Erasable::Known(changes) }])
                }
            }
        }
    }

    fn evolve(mut state: Self::State, event: &Self::Event) -> Self::State {
        match (event, state.entry.as_mut()) {
            (RegistryEvent::Imported { municipality, key, facts }, _) => {
                state.entry = Some((municipality.clone(), key.clone(), facts.clone()));
            }
            (RegistryEvent::Changed { changes }, Some((_, _, facts))) => {
                *facts = match (std::mem::replace(facts, Erasable::Erased), changes) {
                    (Erasable::Known(f), Erasable::Known(c)) => Erasable::Known(c.apply_to(f)),
                    _ => Erasable::Erased,
                };
            }
            (RegistryEvent::Changed { .. }, None) => {}
        }
        state
    }
}
