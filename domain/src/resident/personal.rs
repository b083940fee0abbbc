//! A resident's personal data (個人情報) as one value: the part of every resident event that is sealed under the
//! resident's own data key, so that destroying the key erases it everywhere the events went.
//!
//! Owns `PersonalData` (what 利用者登録 records), `PersonalChanges` (what a change carries: only what changed),
//! `Address` (住所1・住所2), `PersonName` (姓・名) and `Erasable` (personal data that may have been erased).
//! Which JSON key holds the sealed part is a convention with the store: the top-level `personal` of a payload.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::values::{EraDate, KanaName, KanjiName, Occupation, PostalCode, to_full_width_katakana};
use crate::ParseError;
use crate::contact::{Email, Phone, Sex, string_newtype};
use crate::local_settings::{CustomValue, FieldKey};

/// 住所1 / 住所2, e.g. `東京都千代田区千代田１－１`: full-width text of 1..=100 characters.
///
/// Typed half-width characters are converted to their full-width forms (ASCII letters, digits and symbols to
/// U+FF01–U+FF5E, the space to U+3000, half-width katakana to full-width), because the screen asks for full-width
/// and clerks key addresses from mixed sources. Surrounding whitespace is trimmed; control characters are refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Address(String);

impl Address {
    pub const MAX_CHARS: usize = 100;

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        parse_full_width_text(s, Self::MAX_CHARS).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

string_newtype!(Address);

/// Text typed for a full-width field (住所, a registry name): trimmed, control characters refused, half-width
/// katakana and printable ASCII converted to their full-width forms, then 1..=`max` characters.
pub(crate) fn parse_full_width_text(s: &str, max: usize) -> Result<String, ParseError> {
    let s = s.trim_matches(|c: char| c.is_whitespace());
    if s.is_empty() {
        return Err(ParseError::Empty);
    }
    if let Some(ch) = s.chars().find(|c| c.is_control()) {
        return Err(ParseError::InvalidCharacter { ch });
    }
    let full: String = to_full_width_katakana(s).chars().map(ascii_to_full_width).collect();
    if full.chars().count() > max {
        return Err(ParseError::TooLong { max });
    }
    Ok(full)
}

/// The full-width form of a printable ASCII character (the space becomes U+3000); anything else unchanged.
fn ascii_to_full_width(c: char) -> char {
    match c {
        ' ' => '\u{3000}',
        '!'..='~' => char::from_u32(u32::from(c) - 0x21 + 0xFF01).unwrap_or(c),
        _ => c,
    }
}

/// A name in two parts, 姓 and 名, as the screen takes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PersonName<T> {
    pub family: T,
    pub given: T,
}

/// A name change that may name only one half. The other half is taken from the resident's name as it is when the
/// change is decided — never from an earlier read — so two clerks changing the two halves at once both keep theirs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamePatch<T> {
    pub family: Option<T>,
    pub given: Option<T>,
}

impl<T> Default for NamePatch<T> {
    fn default() -> Self {
        NamePatch { family: None, given: None }
    }
}

impl<T: Clone> NamePatch<T> {
    /// The whole name after this patch, or `None` when it names neither half.
    pub fn apply(&self, current: &PersonName<T>) -> Option<PersonName<T>> {
        if self.family.is_none() && self.given.is_none() {
            return None;
        }
        Some(PersonName {
            family: self.family.clone().unwrap_or_else(|| current.family.clone()),
            given: self.given.clone().unwrap_or_else(|| current.given.clone()),
        })
    }
}

/// What 利用者登録 records about a resident (手引き I 1.1 利用者登録画面), besides the card.
///
/// The 個人番号 is never part of it. Every field here is sealed in the events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonalData {
    pub kana_name: PersonName<KanaName>,
    pub kanji_name: PersonName<KanjiName>,
    pub birth_date: EraDate,
    pub sex: Sex,
    pub postal_code: Option<PostalCode>,
    pub address1: Option<Address>,
    pub address2: Option<Address>,
    pub phone: Option<Phone>,
    pub email: Option<Email>,
    pub occupation: Option<Occupation>,
    /// The municipality's own fields (チューニング項目), already checked against its definitions.
    #[serde(default)]
    pub custom_fields: BTreeMap<FieldKey, CustomValue>,
}

/// What a change sets: `None` leaves a field alone; for optional fields `Some(None)` clears it. Custom fields
/// map to `Some(value)` (set) or `None` (cleared).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PersonalChanges {
    pub kana_name: Option<PersonName<KanaName>>,
    pub kanji_name: Option<PersonName<KanjiName>>,
    pub birth_date: Option<EraDate>,
    pub sex: Option<Sex>,
    pub postal_code: Option<Option<PostalCode>>,
    pub address1: Option<Option<Address>>,
    pub address2: Option<Option<Address>>,
    pub phone: Option<Option<Phone>>,
    pub email: Option<Option<Email>>,
    pub occupation: Option<Option<Occupation>>,
    pub custom_fields: BTreeMap<FieldKey, Option<CustomValue>>,
}

impl PersonalChanges {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Only the changes that differ from `current`: what the change event carries.
    pub fn against(self, current: &PersonalData) -> PersonalChanges {
        fn keep<T: PartialEq>(new: Option<T>, old: &T) -> Option<T> {
            new.filter(|n| n != old)
        }
        PersonalChanges {
            kana_name: keep(self.kana_name, &current.kana_name),
            kanji_name: keep(self.kanji_name, &current.kanji_name),
            birth_date: keep(self.birth_date, &current.birth_date),
            sex: keep(self.sex, &current.sex),
            postal_code: keep(self.postal_code, &current.postal_code),
            address1: keep(self.address1, &current.address1),
            address2: keep(self.address2, &current.address2),
            phone: keep(self.phone, &current.phone),
            email: keep(self.email, &current.email),
            occupation: keep(self.occupation, &current.occupation),
            custom_fields: self
                .custom_fields
                .into_iter()
                .filter(|(k, v)| current.custom_fields.get(k) != v.as_ref())
                .collect(),
        }
    }

    /// `data` with these changes applied.
    pub fn apply_to(&self, mut data: PersonalData) -> PersonalData {
        fn set<T: Clone>(field: &mut T, new: &Option<T>) {
            if let Some(v) = new {
                *field = v.clone();
            }
        }
        set(&mut data.kana_name, &self.kana_name);
        set(&mut data.kanji_name, &self.kanji_name);
        set(&mut data.birth_date, &self.birth_date);
        set(&mut data.sex, &self.sex);
        set(&mut data.postal_code, &self.postal_code);
        set(&mut data.address1, &self.address1);
        set(&mut data.address2, &self.address2);
        set(&mut data.phone, &self.phone);
        set(&mut data.email, &self.email);
        set(&mut data.occupation, &self.occupation);
        for (k, v) in &self.custom_fields {
            match v {
                Some(v) => data.custom_fields.insert(k.clone(), v.clone()),
                None => data.custom_fields.remove(k),
            };
        }
        data
    }

    /// The stored form: only the fields that change, a cleared optional field as `null`.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        fn put<T: Serialize>(m: &mut Map<String, Value>, key: &str, v: &Option<T>) {
            if let Some(v) = v {
                m.insert(key.to_owned(), serde_json::to_value(v).unwrap_or(Value::Null));
            }
        }
        put(&mut m, "kana_name", &self.kana_name);
        put(&mut m, "kanji_name", &self.kanji_name);
        put(&mut m, "birth_date", &self.birth_date);
        put(&mut m, "sex", &self.sex);
        put(&mut m, "postal_code", &self.postal_code);
        put(&mut m, "address1", &self.address1);
        put(&mut m, "address2", &self.address2);
        put(&mut m, "phone", &self.phone);
        put(&mut m, "email", &self.email);
        put(&mut m, "occupation", &self.occupation);
        if !self.custom_fields.is_empty() {
            let custom = self
                .custom_fields
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), serde_json::to_value(v).unwrap_or(Value::Null)))
                .collect::<Map<_, _>>();
            m.insert("custom_fields".to_owned(), Value::Object(custom));
        }
        Value::Object(m)
    }

    /// Reads the stored form back (see [`to_json`](Self::to_json)).
    pub fn from_json(v: &Value) -> Result<Self, String> {
        let m = v.as_object().ok_or("changes must be an object")?;
        fn req<T: for<'de> Deserialize<'de>>(m: &Map<String, Value>, key: &str) -> Result<Option<T>, String> {
            m.get(key).map(|v| T::deserialize(v).map_err(|e| format!("{key}: {e}"))).transpose()
        }
        fn opt<T: for<'de> Deserialize<'de>>(m: &Map<String, Value>, key: &str) -> Result<Option<Option<T>>, String> {
            m.get(key).map(|v| Option::<T>::deserialize(v).map_err(|e| format!("{key}: {e}"))).transpose()
        }
        let custom_fields = match m.get("custom_fields") {
            None => BTreeMap::new(),
            Some(v) => {
                BTreeMap::<FieldKey, Option<CustomValue>>::deserialize(v).map_err(|e| format!("custom_fields: {e}"))?
            }
        };
        Ok(PersonalChanges {
            kana_name: req(m, "kana_name")?,
            kanji_name: req(m, "kanji_name")?,
            birth_date: req(m, "birth_date")?,
            sex: req(m, "sex")?,
            postal_code: opt(m, "postal_code")?,
            address1: opt(m, "address1")?,
            address2: opt(m, "address2")?,
            phone: opt(m, "phone")?,
            email: opt(m, "email")?,
            occupation: opt(m, "occupation")?,
            custom_fields,
        })
    }
}

/// Personal data in an event: known, or erased (its key was destroyed, so the store hands back `null`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Erasable<T> {
    Known(T),
    Erased,
}

impl<T> Erasable<T> {
    /// `None` (the store's `null` for an erased `personal`) is `Erased`.
    pub fn from_option(v: Option<T>) -> Self {
        v.map_or(Self::Erased, Self::Known)
    }

    pub fn known(&self) -> Option<&T> {
        match self {
            Self::Known(t) => Some(t),
            Self::Erased => None,
        }
    }
}
