//! `LocalSettings` (市町村設定 for 地域住民向けサービス): what one municipality decides about resident registration —
//! its own registration fields (チューニング項目, up to 20), the card AP catalog it offers, and the preset APs
//! installed on every card it registers.
//!
//! Owns the custom-field definitions and the rule that turns a clerk's raw custom-field input into checked
//! values (`LocalSettingsState::check_custom_fields`). The catalog may hold only business systems the
//! municipality is permitted to use (共同利用業務設定); that fact arrives in the command.
//!
//! Length: about half of this file is its given/when/then tests, one per branch of `decide`; the code is under 600
//! lines.

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

impl crate::message::Localized for CustomFieldError {
    fn message_ja(&self) -> String {
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
    // Digits only: `u32::from_str` would also take a sign (`2024-+4-01`).
    if !b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit()) {
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
    /// More than one of the above, in the order of the screen.
    #[error("{} problems with the settings", .0.len())]
    All(Vec<LocalSettingsError>),
}

impl crate::message::Localized for LocalSettingsError {
    fn message_ja(&self) -> String {
        match self {
            Self::TooManyCustomFields => format!("独自項目は{MAX_CUSTOM_FIELDS}項目まで定義できます"),
            Self::DuplicateField(k) => format!("独自項目「{k}」が重複しています"),
            Self::BadMaxLength(k) => format!("独自項目「{k}」の最大文字数は1〜{MAX_CUSTOM_TEXT}で指定してください"),
            Self::BadOptions(k) => format!("独自項目「{k}」の選択肢は1〜50個の重複しない値で指定してください"),
            Self::BadRange(k) => format!("独自項目「{k}」の最小値が最大値を超えています"),
            Self::NotACardAp(b) => format!("業務ID {b} はカードAPではありません"),
            Self::NotPermitted(b) => format!("業務ID {b} の共同利用が許可されていません"),
            Self::PresetNotInCatalog(b) => format!("プリセットAP（業務ID {b}）が搭載可能APに含まれていません"),
            Self::All(all) => format!("設定に{}件の誤りがあります", all.len()),
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
        // Every refusal at once, so the administrator fixes the whole screen in one go.
        let mut refused = vec![];
        if settings.custom_fields.len() > MAX_CUSTOM_FIELDS {
            refused.push(LocalSettingsError::TooManyCustomFields);
        }
        let mut keys = BTreeSet::new();
        for def in &settings.custom_fields {
            if !keys.insert(def.key.clone()) {
                refused.push(LocalSettingsError::DuplicateField(def.key.clone()));
            }
            match &def.field_type {
                CustomFieldType::Text { max_length } if *max_length == 0 || *max_length > MAX_CUSTOM_TEXT => {
                    refused.push(LocalSettingsError::BadMaxLength(def.key.clone()));
                }
                CustomFieldType::Choice { options } => {
                    let distinct: BTreeSet<&String> = options.iter().collect();
                    let bad = options.is_empty()
                        || options.len() > 50
                        || distinct.len() != options.len()
                        || options.iter().any(|o| o.trim().is_empty() || o.trim() != o);
                    if bad {
                        refused.push(LocalSettingsError::BadOptions(def.key.clone()));
                    }
                }
                CustomFieldType::Number { min: Some(lo), max: Some(hi) } if lo > hi => {
                    refused.push(LocalSettingsError::BadRange(def.key.clone()));
                }
                _ => {}
            }
        }
        for ap in &settings.catalog {
            if *ap == BusinessId::ADMINISTRATION {
                refused.push(LocalSettingsError::NotACardAp(ap.clone()));
            } else if !permitted.contains(ap) {
                refused.push(LocalSettingsError::NotPermitted(ap.clone()));
            }
        }
        for ap in settings.presets.iter().filter(|b| !settings.catalog.contains(*b)) {
            refused.push(LocalSettingsError::PresetNotInCatalog(ap.clone()));
        }
        match refused.len() {
            0 => {}
            1 => return Err(refused.remove(0)),
            _ => return Err(LocalSettingsError::All(refused)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Localized;
    use crate::testing::given;
    use LocalSettingsCommand as C;
    use LocalSettingsEvent as E;
    use proptest::prelude::*;
    use serde_json::Map;

    fn chiyoda() -> MunicipalityCode {
        MunicipalityCode::parse("131016").unwrap()
    }

    fn bid(s: &str) -> BusinessId {
        BusinessId::parse(s).unwrap()
    }

    fn ids(list: &[&str]) -> BTreeSet<BusinessId> {
        list.iter().map(|s| bid(s)).collect()
    }

    fn key(s: &str) -> FieldKey {
        FieldKey::parse(s).unwrap()
    }

    fn def(k: &str, field_type: CustomFieldType, required: bool) -> CustomFieldDefinition {
        CustomFieldDefinition {
            key: key(k),
            label: FieldLabel::parse(&format!("項目 {k}")).unwrap(),
            field_type,
            required,
        }
    }

    fn choice(options: &[&str]) -> CustomFieldType {
        CustomFieldType::Choice { options: options.iter().map(|o| (*o).to_owned()).collect() }
    }

    fn number(min: Option<i64>, max: Option<i64>) -> CustomFieldType {
        CustomFieldType::Number { min, max }
    }

    fn text(max_length: u32) -> CustomFieldType {
        CustomFieldType::Text { max_length }
    }

    fn fields() -> Vec<CustomFieldDefinition> {
        vec![
            def("school_district", choice(&["第一", "第二"]), true),
            def("household_size", number(Some(1), Some(20)), false),
            def("moved_in", CustomFieldType::Date, false),
            def("note", text(200), false),
        ]
    }

    fn settings() -> LocalSettingsValue {
        LocalSettingsValue { custom_fields: fields(), catalog: ids(&["01", "02", "10"]), presets: ids(&["01"]) }
    }

    fn permitted() -> BTreeSet<BusinessId> {
        ids(&["01", "02", "10", "11"])
    }

    fn configure(settings: LocalSettingsValue) -> C {
        C::Configure { municipality: chiyoda(), settings, permitted: permitted() }
    }

    fn configured(settings: LocalSettingsValue) -> E {
        E::Configured { municipality: chiyoda(), settings }
    }

    fn with_fields(custom_fields: Vec<CustomFieldDefinition>) -> LocalSettingsValue {
        LocalSettingsValue { custom_fields, ..settings() }
    }

    fn state() -> LocalSettingsState {
        LocalSettingsState { settings: settings() }
    }

    fn input(pairs: &[(&str, Value)]) -> Map<String, Value> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
    }

    #[test]
    fn configure_for_the_first_time() {
        let state = given::<LocalSettings>([]).when(configure(settings())).then([configured(settings())]);
        assert_eq!(state.settings, settings());
        assert_eq!(state.definition("household_size"), Some(&fields()[1]));
        assert_eq!(state.definition("nothing"), None);
        assert_eq!(stream_key(&chiyoda()), "131016");
    }

    #[test]
    fn configure_identical_settings_changes_nothing() {
        given::<LocalSettings>([configured(settings())]).when(configure(settings())).then([]);
    }

    #[test]
    fn configure_the_empty_settings_when_never_configured_changes_nothing() {
        given::<LocalSettings>([]).when(configure(LocalSettingsValue::default())).then([]);
    }

    #[test]
    fn configure_replaces_the_settings_whole() {
        let changed = LocalSettingsValue {
            custom_fields: vec![def("note", text(10), true)],
            catalog: ids(&["02", "11"]),
            presets: BTreeSet::new(),
        };
        let state = given::<LocalSettings>([configured(settings())])
            .when(configure(changed.clone()))
            .then([configured(changed.clone())]);
        assert_eq!(state.settings, changed);
        assert_eq!(state.definition("school_district"), None);
    }

    #[test]
    fn at_most_20_custom_fields() {
        let many = |n: usize| (0..n).map(|i| def(&format!("f{i}"), text(10), false)).collect::<Vec<_>>();
        given::<LocalSettings>([])
            .when(configure(with_fields(many(MAX_CUSTOM_FIELDS + 1))))
            .then_err(LocalSettingsError::TooManyCustomFields);
        given::<LocalSettings>([])
            .when(configure(with_fields(many(MAX_CUSTOM_FIELDS))))
            .then([configured(with_fields(many(MAX_CUSTOM_FIELDS)))]);
    }

    #[test]
    fn a_field_defined_twice_is_refused() {
        let mut twice = fields();
        twice.push(def("note", CustomFieldType::Date, false));
        given::<LocalSettings>([])
            .when(configure(with_fields(twice)))
            .then_err(LocalSettingsError::DuplicateField(key("note")));
    }

    #[test]
    fn a_text_field_allows_1_to_200_characters() {
        for bad in [0, MAX_CUSTOM_TEXT + 1] {
            given::<LocalSettings>([])
                .when(configure(with_fields(vec![def("note", text(bad), false)])))
                .then_err(LocalSettingsError::BadMaxLength(key("note")));
        }
        let ok = with_fields(vec![def("a", text(1), false), def("b", text(MAX_CUSTOM_TEXT), false)]);
        given::<LocalSettings>([]).when(configure(ok.clone())).then([configured(ok)]);
    }

    #[test]
    fn a_choice_needs_1_to_50_distinct_trimmed_options() {
        let fifty_one: Vec<String> = (0..51).map(|i| format!("選択{i}")).collect();
        let fifty_one: Vec<&str> = fifty_one.iter().map(String::as_str).collect();
        for bad in [&[][..], &fifty_one[..], &["甲", "甲"], &["甲", ""], &["甲", "\u{3000}"], &[" 甲"], &["甲 "]]
        {
            given::<LocalSettings>([])
                .when(configure(with_fields(vec![def("pick", choice(bad), false)])))
                .then_err(LocalSettingsError::BadOptions(key("pick")));
        }
        let ok = with_fields(vec![def("pick", choice(&fifty_one[..50]), false)]);
        given::<LocalSettings>([]).when(configure(ok.clone())).then([configured(ok)]);
    }

    #[test]
    fn a_number_range_must_not_be_reversed() {
        given::<LocalSettings>([])
            .when(configure(with_fields(vec![def("n", number(Some(2), Some(1)), false)])))
            .then_err(LocalSettingsError::BadRange(key("n")));
        let ok = with_fields(vec![
            def("a", number(Some(1), Some(1)), false),
            def("b", number(Some(5), None), false),
            def("c", number(None, Some(-5)), false),
            def("d", number(None, None), false),
        ]);
        given::<LocalSettings>([]).when(configure(ok.clone())).then([configured(ok)]);
    }

    #[test]
    fn every_refusal_of_a_screen_is_named_at_once() {
        let settings = LocalSettingsValue {
            catalog: ids(&["00", "12"]),
            presets: ids(&["01"]),
            custom_fields: vec![def("a", number(Some(9), Some(1)), false)],
        };
        given::<LocalSettings>([])
            .when(C::Configure { municipality: chiyoda(), settings, permitted: ids(&["00", "01"]) })
            .then_err(LocalSettingsError::All(vec![
                LocalSettingsError::BadRange(FieldKey::parse("a").unwrap()),
                LocalSettingsError::NotACardAp(BusinessId::ADMINISTRATION),
                LocalSettingsError::NotPermitted(bid("12")),
                LocalSettingsError::PresetNotInCatalog(bid("01")),
            ]));
    }

    #[test]
    fn administration_is_not_a_card_ap_even_when_permitted() {
        let settings = LocalSettingsValue { catalog: ids(&["00", "01"]), ..settings() };
        given::<LocalSettings>([])
            .when(C::Configure { municipality: chiyoda(), settings, permitted: ids(&["00", "01"]) })
            .then_err(LocalSettingsError::NotACardAp(BusinessId::ADMINISTRATION));
    }

    #[test]
    fn the_catalog_holds_only_permitted_business_systems() {
        let settings = LocalSettingsValue { catalog: ids(&["01", "12"]), ..settings() };
        given::<LocalSettings>([]).when(configure(settings)).then_err(LocalSettingsError::NotPermitted(bid("12")));
    }

    #[test]
    fn a_preset_must_be_in_the_catalog() {
        let settings = LocalSettingsValue { presets: ids(&["01", "11"]), ..settings() };
        given::<LocalSettings>([])
            .when(configure(settings))
            .then_err(LocalSettingsError::PresetNotInCatalog(bid("11")));
    }

    #[test]
    fn offered_is_the_catalog_less_what_is_no_longer_permitted() {
        assert_eq!(state().offered(&ids(&["02", "10", "11"])), ids(&["02", "10"]));
        assert_eq!(LocalSettingsState::default().offered(&permitted()), BTreeSet::new());
    }

    #[test]
    fn the_payload_has_the_documented_shape() {
        let event = configured(LocalSettingsValue {
            custom_fields: vec![
                def("school_district", choice(&["第一"]), true),
                def("household_size", number(Some(1), None), false),
                def("moved_in", CustomFieldType::Date, false),
                def("note", text(20), false),
            ],
            catalog: ids(&["10", "02"]),
            presets: ids(&["02"]),
        });
        let payload = json!({
            "municipality": "131016",
            "custom_fields": [
                { "key": "school_district", "label": "項目 school_district", "type": "choice", "options": ["第一"],
                  "required": true },
                { "key": "household_size", "label": "項目 household_size", "type": "number", "min": 1, "max": null,
                  "required": false },
                { "key": "moved_in", "label": "項目 moved_in", "type": "date", "required": false },
                { "key": "note", "label": "項目 note", "type": "text", "max_length": 20, "required": false },
            ],
            "catalog": ["02", "10"],
            "presets": ["02"],
        });
        assert_eq!(event.encode(), payload);
        assert_eq!(LocalSettingsEvent::decode(CONFIGURED, 1, &payload), Ok(event));
        // An absent min/max is "no bound".
        let mut short = payload.clone();
        short["custom_fields"][1] =
            json!({ "key": "household_size", "label": "x", "type": "number", "required": false });
        let E::Configured { settings, .. } = LocalSettingsEvent::decode(CONFIGURED, 1, &short).unwrap();
        assert_eq!(settings.custom_fields[1].field_type, number(None, None));
    }

    #[test]
    fn decode_errors_name_the_event() {
        assert_eq!(
            LocalSettingsEvent::decode(CONFIGURED, 2, &json!({})),
            Err(EventDecodeError::unknown(CONFIGURED, 2))
        );
        assert_eq!(LocalSettingsEvent::decode("Other", 1, &json!({})), Err(EventDecodeError::unknown("Other", 1)));
        let bad = json!({ "municipality": "131016", "custom_fields": [], "catalog": ["2"], "presets": [] });
        assert!(matches!(
            LocalSettingsEvent::decode(CONFIGURED, 1, &bad),
            Err(EventDecodeError::Payload { event_version: 1, .. })
        ));
    }

    #[test]
    fn every_error_has_a_japanese_message() {
        let k = key("note");
        for e in [
            LocalSettingsError::TooManyCustomFields,
            LocalSettingsError::DuplicateField(k.clone()),
            LocalSettingsError::BadMaxLength(k.clone()),
            LocalSettingsError::BadOptions(k.clone()),
            LocalSettingsError::BadRange(k),
            LocalSettingsError::NotACardAp(BusinessId::ADMINISTRATION),
            LocalSettingsError::NotPermitted(bid("10")),
            LocalSettingsError::PresetNotInCatalog(bid("10")),
        ] {
            assert!(!e.message_ja().is_empty() && !e.to_string().is_empty(), "{e:?}");
        }
        for e in [
            CustomFieldError::Unknown,
            CustomFieldError::Required,
            CustomFieldError::NotText,
            CustomFieldError::NotNumber,
            CustomFieldError::OutOfRange { min: 1, max: 2 },
            CustomFieldError::TooLong { max: 3 },
            CustomFieldError::NotDate,
            CustomFieldError::NotAnOption { options: vec!["甲".into(), "乙".into()] },
            CustomFieldError::ControlCharacter,
        ] {
            assert!(!e.message_ja().is_empty() && !e.to_string().is_empty(), "{e:?}");
        }
        assert_eq!(
            CustomFieldError::NotAnOption { options: vec!["甲".into(), "乙".into()] }.message_ja(),
            "次のいずれかを選択してください: 甲、乙"
        );
    }

    #[test]
    fn check_text() {
        let d = def("note", text(3), false);
        assert_eq!(d.check(&json!("\u{3000}あいう ")), Ok(CustomValue::Text("あいう".into())));
        assert_eq!(d.check(&json!("あいうえ")), Err(CustomFieldError::TooLong { max: 3 }));
        assert_eq!(d.check(&json!("あ\u{7}い")), Err(CustomFieldError::ControlCharacter));
        assert_eq!(d.check(&json!(12)), Err(CustomFieldError::NotText));
        assert_eq!(d.check(&json!(null)), Err(CustomFieldError::NotText));
    }

    #[test]
    fn check_number() {
        let d = def("n", number(Some(1), Some(20)), false);
        assert_eq!(d.check(&json!(20)), Ok(CustomValue::Number(20)));
        assert_eq!(d.check(&json!(" 7 ")), Ok(CustomValue::Number(7)));
        assert_eq!(d.check(&json!(0)), Err(CustomFieldError::OutOfRange { min: 1, max: 20 }));
        assert_eq!(d.check(&json!("21")), Err(CustomFieldError::OutOfRange { min: 1, max: 20 }));
        for bad in [json!(1.5), json!("1.5"), json!("三"), json!("１"), json!(true), json!(u64::MAX), json!(null)] {
            assert_eq!(d.check(&bad), Err(CustomFieldError::NotNumber), "{bad}");
        }
        let open = def("n", number(None, Some(0)), false);
        assert_eq!(open.check(&json!(1)), Err(CustomFieldError::OutOfRange { min: i64::MIN, max: 0 }));
        assert_eq!(open.check(&json!(i64::MIN)), Ok(CustomValue::Number(i64::MIN)));
    }

    #[test]
    fn check_date() {
        let d = def("d", CustomFieldType::Date, false);
        for ok in ["2024-02-29", "2000-02-29", " 2024-04-01 ", "1000-01-01", "9999-12-31"] {
            assert_eq!(d.check(&json!(ok)), Ok(CustomValue::Text(ok.trim().into())), "{ok}");
        }
        for bad in [
            "2023-02-29",
            "1900-02-29",
            "2024-04-31",
            "2024-13-01",
            "2024-00-10",
            "2024-01-00",
            "0999-12-31",
            "2024-4-01",
            "2024/04/01",
            "20240401",
            "2024-04-01T00:00",
            "２０２４-04-01",
            "2024-+4-01",
            "2024-04-+1",
            "2024-\u{3000}4-01",
        ] {
            assert_eq!(d.check(&json!(bad)), Err(CustomFieldError::NotDate), "{bad}");
        }
        assert_eq!(d.check(&json!(20240401)), Err(CustomFieldError::NotDate));
    }

    #[test]
    fn check_choice() {
        let d = def("pick", choice(&["第一", "第二"]), false);
        assert_eq!(d.check(&json!(" 第二 ")), Ok(CustomValue::Text("第二".into())));
        let not = Err(CustomFieldError::NotAnOption { options: vec!["第一".into(), "第二".into()] });
        assert_eq!(d.check(&json!("第三")), not);
        assert_eq!(d.check(&json!(1)), not);
    }

    #[test]
    fn check_custom_fields_for_a_registration() {
        let out = state()
            .check_custom_fields(
                &input(&[
                    ("household_size", json!("3")),
                    ("moved_in", json!(null)),
                    ("note", json!("  ")),
                    ("school_district", json!("第一")),
                ]),
                true,
            )
            .unwrap();
        assert_eq!(
            out,
            BTreeMap::from([
                (key("household_size"), Some(CustomValue::Number(3))),
                (key("moved_in"), None),
                (key("note"), None),
                (key("school_district"), Some(CustomValue::Text("第一".into()))),
            ])
        );
    }

    #[test]
    fn a_registration_reports_every_missing_required_field() {
        assert_eq!(
            state().check_custom_fields(&input(&[("note", json!("メモ"))]), true),
            Err(vec![("school_district".into(), CustomFieldError::Required)])
        );
        // A change does not need them.
        assert_eq!(
            state().check_custom_fields(&input(&[("note", json!("メモ"))]), false),
            Ok(BTreeMap::from([(key("note"), Some(CustomValue::Text("メモ".into())))]))
        );
        assert_eq!(state().check_custom_fields(&Map::new(), false), Ok(BTreeMap::new()));
    }

    #[test]
    fn a_required_field_cannot_be_cleared() {
        for blank in [json!(null), json!(""), json!(" \u{3000}")] {
            for complete in [true, false] {
                assert_eq!(
                    state().check_custom_fields(&input(&[("school_district", blank.clone())]), complete),
                    Err(vec![("school_district".into(), CustomFieldError::Required)]),
                    "{blank} {complete}"
                );
            }
        }
    }

    #[test]
    fn every_problem_is_reported_by_its_raw_key() {
        assert_eq!(
            state().check_custom_fields(
                &input(&[
                    ("Household_Size", json!(3)),
                    ("household_size", json!(21)),
                    ("moved_in", json!("2023-02-29")),
                    ("note", json!(1)),
                ]),
                true,
            ),
            Err(vec![
                ("Household_Size".into(), CustomFieldError::Unknown),
                ("household_size".into(), CustomFieldError::OutOfRange { min: 1, max: 20 }),
                ("moved_in".into(), CustomFieldError::NotDate),
                ("note".into(), CustomFieldError::NotText),
                ("school_district".into(), CustomFieldError::Required),
            ])
        );
    }

    #[test]
    fn a_never_configured_municipality_knows_no_field() {
        assert_eq!(
            LocalSettingsState::default().check_custom_fields(&input(&[("note", json!("x"))]), true),
            Err(vec![("note".into(), CustomFieldError::Unknown)])
        );
        assert_eq!(LocalSettingsState::default().check_custom_fields(&Map::new(), true), Ok(BTreeMap::new()));
    }

    /// Independent of `date_exists`: the length of a Gregorian month.
    fn month_length(y: u32, m: u32) -> u32 {
        match m {
            2 if y.is_multiple_of(400) || (y.is_multiple_of(4) && !y.is_multiple_of(100)) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        }
    }

    proptest! {
        #[test]
        fn field_keys_parse_and_round_trip(s in "[a-z][a-z0-9_]{0,31}") {
            let k = FieldKey::parse(&s).unwrap();
            prop_assert_eq!(k.as_str(), s.as_str());
            prop_assert_eq!(k.to_string(), s.clone());
            let json = serde_json::to_value(&k).unwrap();
            prop_assert_eq!(&json, &json!(s));
            prop_assert_eq!(serde_json::from_value::<FieldKey>(json).unwrap(), k);
        }

        #[test]
        fn field_keys_longer_than_32_are_rejected(s in "[a-z][a-z0-9_]{32,40}") {
            prop_assert_eq!(FieldKey::parse(&s), Err(ParseError::TooLong { max: 32 }));
        }

        #[test]
        fn field_keys_must_start_with_a_letter(s in "[0-9_][a-z0-9_]{0,31}") {
            prop_assert_eq!(FieldKey::parse(&s), Err(ParseError::InvalidFieldKey));
        }

        #[test]
        fn field_keys_with_any_other_character_are_rejected(
            left in "[a-z][a-z0-9_]{0,10}",
            ch in any::<char>().prop_filter("not a key character", |c| {
                !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            }),
            right in "[a-z0-9_]{0,10}",
        ) {
            let s = format!("{left}{ch}{right}");
            prop_assert_eq!(FieldKey::parse(&s), Err(ParseError::InvalidFieldKey));
            prop_assert!(serde_json::from_value::<FieldKey>(json!(s)).is_err());
        }

        #[test]
        fn field_labels_parse_trimmed_and_round_trip(
            core in "[^\\p{Cc}\\s]([^\\p{Cc}]{0,48}[^\\p{Cc}\\s])?",
            pad in "[ \u{3000}]{0,3}",
        ) {
            let label = FieldLabel::parse(&format!("{pad}{core}{pad}")).unwrap();
            prop_assert_eq!(label.as_str(), core.as_str());
            let json = serde_json::to_value(&label).unwrap();
            prop_assert_eq!(serde_json::from_value::<FieldLabel>(json).unwrap(), label);
        }

        #[test]
        fn field_labels_longer_than_50_or_with_a_control_character_are_rejected(
            long in "[^\\p{Cc}\\s]{51,70}",
            left in "[^\\p{Cc}\\s]{1,10}",
            ch in "\\p{Cc}",
            right in "[^\\p{Cc}\\s]{1,10}",
        ) {
            prop_assert_eq!(FieldLabel::parse(&long), Err(ParseError::TooLong { max: 50 }));
            let ch = ch.chars().next().unwrap();
            prop_assert_eq!(
                FieldLabel::parse(&format!("{left}{ch}{right}")),
                Err(ParseError::InvalidCharacter { ch })
            );
            prop_assert_eq!(FieldLabel::parse("\u{3000} "), Err(ParseError::Empty));
        }

        #[test]
        fn texts_up_to_max_length_are_accepted_trimmed(
            core in "[^\\p{Cc}\\s]([^\\p{Cc}]{0,18}[^\\p{Cc}\\s])?",
            pad in "[ \u{3000}]{0,2}",
            max_length in 1u32..=MAX_CUSTOM_TEXT,
        ) {
            let d = def("note", text(max_length), false);
            let len = core.chars().count();
            let got = d.check(&json!(format!("{pad}{core}{pad}")));
            if len <= max_length as usize {
                prop_assert_eq!(got, Ok(CustomValue::Text(core)));
            } else {
                prop_assert_eq!(got, Err(CustomFieldError::TooLong { max: max_length }));
            }
        }

        #[test]
        fn texts_with_a_control_character_inside_are_rejected(
            left in "[^\\p{Cc}\\s]{1,5}",
            ch in "\\p{Cc}",
            right in "[^\\p{Cc}\\s]{1,5}",
        ) {
            let d = def("note", text(MAX_CUSTOM_TEXT), false);
            prop_assert_eq!(d.check(&json!(format!("{left}{ch}{right}"))), Err(CustomFieldError::ControlCharacter));
        }

        #[test]
        fn numbers_are_accepted_exactly_in_range(
            lo in -1_000i64..1_000,
            span in 0i64..100,
            n in -1_200i64..1_200,
            as_text in any::<bool>(),
        ) {
            let hi = lo + span;
            let d = def("n", number(Some(lo), Some(hi)), false);
            let raw = if as_text { json!(format!(" {n} ")) } else { json!(n) };
            if (lo..=hi).contains(&n) {
                prop_assert_eq!(d.check(&raw), Ok(CustomValue::Number(n)));
            } else {
                prop_assert_eq!(d.check(&raw), Err(CustomFieldError::OutOfRange { min: lo, max: hi }));
            }
            prop_assert_eq!(def("n", number(None, None), false).check(&raw), Ok(CustomValue::Number(n)));
        }

        #[test]
        fn dates_are_accepted_exactly_when_the_day_exists(y in 1000u32..=9999, m in 0u32..=13, d in 0u32..=32) {
            let s = format!("{y:04}-{m:02}-{d:02}");
            let exists = (1..=12).contains(&m) && d >= 1 && d <= month_length(y, m);
            let got = def("d", CustomFieldType::Date, false).check(&json!(s));
            if exists {
                prop_assert_eq!(got, Ok(CustomValue::Text(s)));
            } else {
                prop_assert_eq!(got, Err(CustomFieldError::NotDate));
            }
        }

        #[test]
        fn a_date_with_a_sign_or_a_space_in_it_is_rejected(
            y in 1000u32..=9999,
            m in 1u32..=9,
            d in 1u32..=9,
            sign in "[+ \u{3000}]",
            in_day in any::<bool>(),
        ) {
            let s = if in_day { format!("{y}-{m:02}-{sign}{d}") } else { format!("{y}-{sign}{m}-{d:02}") };
            prop_assert_eq!(def("d", CustomFieldType::Date, false).check(&json!(s)), Err(CustomFieldError::NotDate));
        }

        #[test]
        fn a_choice_accepts_exactly_its_options(
            options in proptest::collection::btree_set("[ぁ-んa-z]{1,5}", 1..10),
            pick in any::<proptest::sample::Index>(),
            other in "[ぁ-んa-z]{1,5}",
        ) {
            let options: Vec<String> = options.into_iter().collect();
            let d = def("pick", CustomFieldType::Choice { options: options.clone() }, false);
            let chosen = pick.get(&options);
            prop_assert_eq!(d.check(&json!(format!(" {chosen}\u{3000}"))), Ok(CustomValue::Text(chosen.clone())));
            if !options.contains(&other) {
                prop_assert_eq!(d.check(&json!(other)), Err(CustomFieldError::NotAnOption { options }));
            }
        }

        /// A registration is refused exactly when a required field is missing, and names each missing one.
        #[test]
        fn a_registration_names_exactly_the_missing_required_fields(
            required in proptest::collection::vec(any::<bool>(), 6),
            given_keys in proptest::collection::vec(any::<bool>(), 6),
            values in proptest::collection::vec(-5i64..5, 6),
        ) {
            let defs = (0..6).map(|i| def(&format!("f{i}"), number(None, None), required[i])).collect();
            let state = LocalSettingsState { settings: with_fields(defs) };
            let raw: Map<String, Value> =
                (0..6).filter(|&i| given_keys[i]).map(|i| (format!("f{i}"), json!(values[i]))).collect();
            let missing: Vec<(String, CustomFieldError)> = (0..6)
                .filter(|&i| required[i] && !given_keys[i])
                .map(|i| (format!("f{i}"), CustomFieldError::Required))
                .collect();
            let checked: BTreeMap<FieldKey, Option<CustomValue>> = (0..6)
                .filter(|&i| given_keys[i])
                .map(|i| (key(&format!("f{i}")), Some(CustomValue::Number(values[i]))))
                .collect();
            let expected = if missing.is_empty() { Ok(checked.clone()) } else { Err(missing) };
            prop_assert_eq!(state.check_custom_fields(&raw, true), expected);
            prop_assert_eq!(state.check_custom_fields(&raw, false), Ok(checked));
        }
    }
}
