//! `LocalSettings` (市町村設定 for 地域住民向けサービス): what one municipality decides about resident registration —
//! its own registration fields (チューニング項目, up to 20), the card AP catalog it offers, and the preset APs
//! installed on every card it registers.
//!
//! Owns the custom-field definitions and the rule that turns a clerk's raw custom-field input into checked
//! values (`LocalSettingsState::check_custom_fields`). The catalog may hold only business systems the
//! municipality is permitted to use (共同利用業務設定); that fact arrives in the command.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::aggregate::decode_payload;
use crate::contact::string_newtype;
use crate::ids::parse_text;
use crate::{Aggregate, BusinessId, DomainEvent, EventDecodeError, MunicipalityCode, ParseError};

/// The stream id of a municipality's settings: its code.
pub fn stream_key(code: &MunicipalityCode) -> String {
    code.as_str().to_owned()
}

/// The most custom fields one municipality may define.
pub const MAX_CUSTOM_FIELDS: usize = 20;

/// The key of a custom field in `custom_fields`, e.g. `school_district`: 1..=32 of `a-z`, `0-9`, `_`, starting
/// with a letter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FieldKey(String);

impl FieldKey {
    pub const MAX_CHARS: usize = 32;

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if s.is_empty() {
            return Err(ParseError::Empty);
        }
        if s.len() > Self::MAX_CHARS {
            return Err(ParseError::TooLong { max: Self::MAX_CHARS });
        }
        let valid = s.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Err(ParseError::InvalidFieldKey);
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

string_newtype!(FieldKey);

/// The label of a custom field on the registration screen, e.g. `学区`: 1..=50 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FieldLabel(String);

impl FieldLabel {
    pub const MAX_CHARS: usize = 50;

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        parse_text(s, Self::MAX_CHARS).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

string_newtype!(FieldLabel);

/// What a custom field holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CustomFieldType {
    /// Free text of at most `max_length` characters (at most 200).
    Text { max_length: u32 },
    /// A whole number (no fractions: nothing counted is a float).
    Number { min: Option<i64>, max: Option<i64> },
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// One of the listed options.
    Choice { options: Vec<String> },
}

/// The longest text a custom text field may allow.
pub const MAX_CUSTOM_TEXT: u32 = 200;

/// One field the municipality added to its registration screen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomFieldDefinition {
    pub key: FieldKey,
    pub label: FieldLabel,
    #[serde(flatten)]
    pub field_type: CustomFieldType,
    pub required: bool,
}

/// A checked custom-field value as stored: dates and choices are kept as their text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CustomValue {
    Number(i64),
    Text(String),
}

/// Why a custom-field value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CustomFieldError {
    #[error("no such field is defined by the municipality")]
    Unknown,
    #[error("the field is required")]
    Required,
    #[error("the value must be text")]
    NotText,
    #[error("the value must be a whole number")]
    NotNumber,
    #[error("the value must be between {min} and {max}")]
    OutOfRange { min: i64, max: i64 },
    #[error("the value must be at most {max} characters long")]
    TooLong { max: u32 },
    #[error("the value must be a date YYYY-MM-DD")]
    NotDate,
    #[error("the value must be one of the options")]
    NotAnOption { options: Vec<String> },
    #[error("the value contains a control character")]
    ControlCharacter,
}

impl CustomFieldError {
    pub fn message_ja(&self) -> String {
        match self {
            Self::Unknown => "この項目は市町村で定義されていません".to_owned(),
            Self::Required => "入力してください".to_owned(),
            Self::NotText => "文字で入力してください".to_owned(),
            Self::NotNumber => "整数で入力してください".to_owned(),
            Self::OutOfRange { min, max } => format!("{min}から{max}までの数値で入力してください"),
            Self::TooLong { max } => format!("{max}文字以内で入力してください"),
            Self::NotDate => "日付（例: 2024-04-01）で入力してください".to_owned(),
            Self::NotAnOption { options } => format!("次のいずれかを選択してください: {}", options.join("、")),
            Self::ControlCharacter => "使用できない文字が含まれています".to_owned(),
        }
    }
}

impl CustomFieldDefinition {
    /// Checks one raw value (JSON from the clerk or a CSV cell as a string) against this definition.
    pub fn check(&self, raw: &Value) -> Result<CustomValue, CustomFieldError> {
        match &self.field_type {
            CustomFieldType::Text { max_length } => {
                let s = raw.as_str().ok_or(CustomFieldError::NotText)?.trim();
                if s.chars().any(char::is_control) {
                    return Err(CustomFieldError::ControlCharacter);
                }
                if s.chars().count() > *max_length as usize {
                    return Err(CustomFieldError::TooLong { max: *max_length });
                }
                Ok(CustomValue::Text(s.to_owned()))
            }
            CustomFieldType::Number { min, max } => {
                let n = match raw {
                    Value::Number(n) => n.as_i64(),
                    Value::String(s) => s.trim().parse::<i64>().ok(),
                    _ => None,
                }
                .ok_or(CustomFieldError::NotNumber)?;
                let (lo, hi) = (min.unwrap_or(i64::MIN), max.unwrap_or(i64::MAX));
                if n < lo || n > hi {
                    return Err(CustomFieldError::OutOfRange { min: lo, max: hi });
                }
                Ok(CustomValue::Number(n))
            }
            CustomFieldType::Date => {
                let s = raw.as_str().ok_or(CustomFieldError::NotDate)?.trim();
                if is_iso_date(s) { Ok(CustomValue::Text(s.to_owned())) } else { Err(CustomFieldError::NotDate) }
            }
            CustomFieldType::Choice { options } => {
                let s = raw.as_str().map(str::trim);
                match s {
                    Some(s) if options.iter().any(|o| o == s) => Ok(CustomValue::Text(s.to_owned())),
                    _ => Err(CustomFieldError::NotAnOption { options: options.clone() }),
                }
            }
        }
    }
}

/// `YYYY-MM-DD` naming a day that exists (years 1000–9999).
fn is_iso_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|p| p.parse::<u32>().ok());
    match (num(0..4), num(5..7), num(8..10)) {
        (Some(y), Some(m), Some(d)) if y >= 1000 => crate::resident::date_exists(y as i32, m, d),
        _ => false,
    }
}

/// A municipality's settings as one value; the command replaces them whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalSettingsValue {
    pub custom_fields: Vec<CustomFieldDefinition>,
    /// The card APs the municipality offers (カードAP).
    pub catalog: BTreeSet<BusinessId>,
    /// Installed automatically with the local area on every card; a subset of the catalog.
    pub presets: BTreeSet<BusinessId>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LocalSettingsCommand {
    /// Replaces the settings. `permitted` is the looked-up fact: the business systems the municipality may use
    /// under shared use now. Identical settings yield no event.
    Configure { municipality: MunicipalityCode, settings: LocalSettingsValue, permitted: BTreeSet<BusinessId> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalSettingsEvent {
    Configured { municipality: MunicipalityCode, settings: LocalSettingsValue },
}

const CONFIGURED: &str = "LocalSettingsConfigured";

mod v1 {
    use super::*;

    #[derive(Deserialize)]
    pub(super) struct Configured {
        pub municipality: MunicipalityCode,
        pub custom_fields: Vec<CustomFieldDefinition>,
        pub catalog: BTreeSet<BusinessId>,
        pub presets: BTreeSet<BusinessId>,
    }
}

impl DomainEvent for LocalSettingsEvent {
    fn event_type(&self) -> &'static str {
        CONFIGURED
    }

    fn event_version(&self) -> u32 {
        1
    }

    fn encode(&self) -> Value {
        let Self::Configured { municipality, settings } = self;
        json!({
            "municipality": municipality.as_str(),
            "custom_fields": settings.custom_fields,
            "catalog": settings.catalog,
            "presets": settings.presets,
        })
    }

    fn decode(event_type: &str, event_version: u32, payload: &Value) -> Result<Self, EventDecodeError> {
        match (event_type, event_version) {
            (CONFIGURED, 1) => {
                let v1::Configured { municipality, custom_fields, catalog, presets } =
                    decode_payload(event_type, event_version, payload)?;
                Ok(Self::Configured { municipality, settings: LocalSettingsValue { custom_fields, catalog, presets } })
            }
            _ => Err(EventDecodeError::unknown(event_type, event_version)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocalSettingsError {
    #[error("at most {MAX_CUSTOM_FIELDS} custom fields may be defined")]
    TooManyCustomFields,
    #[error("custom field {0} is defined twice")]
    DuplicateField(FieldKey),
    #[error("custom field {0}: a text field allows 1..={MAX_CUSTOM_TEXT} characters")]
    BadMaxLength(FieldKey),
    #[error("custom field {0}: a choice needs 1..=50 distinct, non-empty options")]
    BadOptions(FieldKey),
    #[error("custom field {0}: min is greater than max")]
    BadRange(FieldKey),
    #[error("business system {0} is not a card AP (00 is cardap's own administration)")]
    NotACardAp(BusinessId),
    #[error("the municipality is not permitted to use business system {0}")]
    NotPermitted(BusinessId),
    #[error("preset AP {0} is not in the catalog")]
    PresetNotInCatalog(BusinessId),
}

impl LocalSettingsError {
    pub fn message_ja(&self) -> String {
        match self {
            Self::TooManyCustomFields => format!("独自項目は{MAX_CUSTOM_FIELDS}項目まで定義できます"),
            Self::DuplicateField(k) => format!("独自項目「{k}」が重複しています"),
            Self::BadMaxLength(k) => format!("独自項目「{k}」の最大文字数は1〜{MAX_CUSTOM_TEXT}で指定してください"),
            Self::BadOptions(k) => format!("独自項目「{k}」の選択肢は1〜50個の重複しない値で指定してください"),
            Self::BadRange(k) => format!("独自項目「{k}」の最小値が最大値を超えています"),
            Self::NotACardAp(b) => format!("業務ID {b} はカードAPではありません"),
            Self::NotPermitted(b) => format!("業務ID {b} の共同利用が許可されていません"),
            Self::PresetNotInCatalog(b) => format!("プリセットAP（業務ID {b}）が搭載可能APに含まれていません"),
        }
    }
}

/// Checked custom-field input: a value to set, or `None` to clear the field.
pub type CustomInput = BTreeMap<FieldKey, Option<CustomValue>>;

/// The folded settings; `Default` is "never configured": no custom fields, an empty catalog.
#[derive(Debug, Clone, Default)]
pub struct LocalSettingsState {
    pub settings: LocalSettingsValue,
}

impl LocalSettingsState {
    pub fn definition(&self, key: &str) -> Option<&CustomFieldDefinition> {
        self.settings.custom_fields.iter().find(|d| d.key.as_str() == key)
    }

    /// Checks a clerk's custom-field input. With `complete` (a registration) every required field must be
    /// there; otherwise (a change) only the given fields are checked and `null` clears a field that is not
    /// required. Every problem is reported, keyed by the raw key as typed.
    pub fn check_custom_fields(
        &self,
        input: &serde_json::Map<String, Value>,
        complete: bool,
    ) -> Result<CustomInput, Vec<(String, CustomFieldError)>> {
        let mut out = BTreeMap::new();
        let mut errors = Vec::new();
        for (key, raw) in input {
            let Some(def) = self.definition(key) else {
                errors.push((key.clone(), CustomFieldError::Unknown));
                continue;
            };
            let blank = raw.is_null() || raw.as_str().is_some_and(|s| s.trim().is_empty());
            if blank {
                if def.required {
                    errors.push((key.clone(), CustomFieldError::Required));
                } else {
                    out.insert(def.key.clone(), None);
                }
                continue;
            }
            match def.check(raw) {
                Ok(v) => {
                    out.insert(def.key.clone(), Some(v));
                }
                Err(e) => errors.push((key.clone(), e)),
            }
        }
        if complete {
            for def in self.settings.custom_fields.iter().filter(|d| d.required) {
                if !input.contains_key(def.key.as_str()) {
                    errors.push((def.key.as_str().to_owned(), CustomFieldError::Required));
                }
            }
        }
        if errors.is_empty() { Ok(out) } else { Err(errors) }
    }

    /// The APs a card of this municipality may get now: the catalog, less what is no longer `permitted`.
    pub fn offered(&self, permitted: &BTreeSet<BusinessId>) -> BTreeSet<BusinessId> {
        self.settings.catalog.intersection(permitted).cloned().collect()
    }
}

#[derive(Debug)]
pub struct LocalSettings;

impl Aggregate for LocalSettings {
    type State = LocalSettingsState;
    type Command = LocalSettingsCommand;
    type Event = LocalSettingsEvent;
    type Error = LocalSettingsError;

    const STREAM_TYPE: &'static str = "local_settings";

    fn decide(state: &Self::State, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error> {
        let LocalSettingsCommand::Configure { municipality, settings, permitted } = command;
        if settings.custom_fields.len() > MAX_CUSTOM_FIELDS {
            return Err(LocalSettingsError::TooManyCustomFields);
        }
        let mut keys = BTreeSet::new();
        for def in &settings.custom_fields {
            if !keys.insert(def.key.clone()) {
                return Err(LocalSettingsError::DuplicateField(def.key.clone()));
            }
            match &def.field_type {
                CustomFieldType::Text { max_length } if *max_length == 0 || *max_length > MAX_CUSTOM_TEXT => {
                    return Err(LocalSettingsError::BadMaxLength(def.key.clone()));
                }
                CustomFieldType::Choice { options } => {
                    let distinct: BTreeSet<&String> = options.iter().collect();
                    let bad = options.is_empty()
                        || options.len() > 50
                        || distinct.len() != options.len()
                        || options.iter().any(|o| o.trim().is_empty() || o.trim() != o);
                    if bad {
                        return Err(LocalSettingsError::BadOptions(def.key.clone()));
                    }
                }
                CustomFieldType::Number { min: Some(lo), max: Some(hi) } if lo > hi => {
                    return Err(LocalSettingsError::BadRange(def.key.clone()));
                }
                _ => {}
            }
        }
        if let Some(ap) = settings.catalog.iter().find(|b| **b == BusinessId::ADMINISTRATION) {
            return Err(LocalSettingsError::NotACardAp(ap.clone()));
        }
        if let Some(ap) = settings.catalog.iter().find(|b| !permitted.contains(*b)) {
            return Err(LocalSettingsError::NotPermitted(ap.clone()));
        }
        if let Some(ap) = settings.presets.iter().find(|b| !settings.catalog.contains(*b)) {
            return Err(LocalSettingsError::PresetNotInCatalog(ap.clone()));
        }
        if settings == state.settings {
            return Ok(vec![]);
        }
        Ok(vec![LocalSettingsEvent::Configured { municipality, settings }])
    }

    fn evolve(_state: Self::State, event: &Self::Event) -> Self::State {
        let LocalSettingsEvent::Configured { settings, .. } = event;
        LocalSettingsState { settings: settings.clone() }
    }
}
