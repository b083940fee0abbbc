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
use crate::resident::{Address, EraDate, Erasable, KanaName, KanjiName, PersonName, PostalCode, parse_full_width_text};
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
/// given name separated by a full-width space. Half-width input (katakana too, a half-width space included) is
/// converted to full-width; control characters are refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FullName(String);

impl FullName {
    pub const MAX_CHARS: usize = 101;

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        parse_full_width_text(s, Self::MAX_CHARS).map(Self)
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
    /// The resident registered from this entry was erased (消去): the entry's facts go with him. No event when the
    /// entry was never imported or is erased already.
    Erase,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryEvent {
    Imported {
        municipality: MunicipalityCode,
        key: RegistryKey,
        facts: Erasable<RegistryFacts>,
    },
    Changed {
        changes: Erasable<RegistryChanges>,
    },
    /// The entry's facts are erased for good (its data key is destroyed right after). No personal data: the
    /// payload is `{}`.
    Erased,
}

const IMPORTED: &str = "RegistryEntryImported";
const CHANGED: &str = "RegistryEntryChanged";
const ERASED: &str = "RegistryEntryErased";

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

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Erased {}
}

impl DomainEvent for RegistryEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Imported { .. } => IMPORTED,
            Self::Changed { .. } => CHANGED,
            Self::Erased => ERASED,
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
            Self::Erased => json!({}),
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
            (ERASED, 1) => {
                let v1::Erased {} = decode_payload(event_type, event_version, payload)?;
                Ok(Self::Erased)
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

impl crate::message::Localized for RegistryError {
    fn message_ja(&self) -> String {
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
        let (municipality, key, facts) = match command {
            RegistryCommand::Import { municipality, key, facts } => (municipality, key, facts),
            RegistryCommand::Erase => {
                return Ok(match &state.entry {
                    Some((_, _, Erasable::Known(_))) => vec![RegistryEvent::Erased],
                    _ => vec![],
                });
            }
        };
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
            (RegistryEvent::Erased, Some((_, _, facts))) => *facts = Erasable::Erased,
            (RegistryEvent::Changed { .. } | RegistryEvent::Erased, None) => {}
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Localized;
    use crate::testing::given;
    use RegistryCommand as C;
    use RegistryEvent as E;
    use proptest::prelude::*;

    fn chiyoda() -> MunicipalityCode {
        MunicipalityCode::parse("131016").unwrap()
    }

    fn key() -> RegistryKey {
        RegistryKey::parse("000123456").unwrap()
    }

    fn facts() -> RegistryFacts {
        RegistryFacts {
            name: FullName::parse("山田　太郎").unwrap(),
            kana: Some(parse_full_kana("ヤマダ タロウ").unwrap()),
            birth_date: EraDate::parse("3640107").unwrap(),
            sex: Sex::Male,
            postal_code: Some(PostalCode::parse("100-0001").unwrap()),
            address: Some(Address::parse("東京都千代田区千代田1-1").unwrap()),
        }
    }

    fn import(facts: RegistryFacts) -> C {
        C::Import { municipality: chiyoda(), key: key(), facts }
    }

    fn imported() -> E {
        E::Imported { municipality: chiyoda(), key: key(), facts: Erasable::Known(facts()) }
    }

    fn erased() -> E {
        E::Imported { municipality: chiyoda(), key: key(), facts: Erasable::Erased }
    }

    #[test]
    fn erase_an_entry_with_its_resident() {
        let state = given::<RegistryEntry>([imported()]).when(C::Erase).then([E::Erased]);
        assert_eq!(state.facts(), None);
        // Erased, it takes no import again.
        given::<RegistryEntry>([imported(), E::Erased]).when(import(facts())).then_err(RegistryError::Erased);
        assert_eq!(E::Erased.encode(), json!({}));
        assert_eq!(RegistryEvent::decode(ERASED, 1, &json!({})), Ok(E::Erased));
        assert!(RegistryEvent::decode(ERASED, 1, &json!({ "name": "山田" })).is_err());
    }

    #[test]
    fn erase_an_entry_never_imported_or_erased_already_records_nothing() {
        given::<RegistryEntry>([]).when(C::Erase).then([]);
        given::<RegistryEntry>([imported(), E::Erased]).when(C::Erase).then([]);
        given::<RegistryEntry>([erased()]).when(C::Erase).then([]);
    }

    #[test]
    fn import_a_new_entry() {
        let state = given::<RegistryEntry>([]).when(import(facts())).then([imported()]);
        assert_eq!(state.facts(), Some(&facts()));
        assert_eq!(state.entry.as_ref().map(|(m, k, _)| (m, k)), Some((&chiyoda(), &key())));
        assert_eq!(stream_key(&chiyoda(), &key()), "131016.000123456");
    }

    #[test]
    fn import_the_same_facts_changes_nothing() {
        given::<RegistryEntry>([imported()]).when(import(facts())).then([]);
    }

    #[test]
    fn import_changed_facts_records_only_what_changed() {
        let new = RegistryFacts {
            name: FullName::parse("山田 花子").unwrap(),
            kana: None,
            sex: Sex::Female,
            address: Some(Address::parse("東京都千代田区千代田２－２").unwrap()),
            ..facts()
        };
        let state = given::<RegistryEntry>([imported()]).when(import(new.clone())).then([E::Changed {
            changes: Erasable::Known(RegistryChanges {
                name: Some(FullName::parse("山田　花子").unwrap()),
                kana: Some(None),
                sex: Some(Sex::Female),
                address: Some(Some(Address::parse("東京都千代田区千代田２－２").unwrap())),
                ..Default::default()
            }),
        }]);
        assert_eq!(state.facts(), Some(&new));
    }

    #[test]
    fn a_later_import_compares_with_the_changed_facts() {
        let new = RegistryFacts { postal_code: None, ..facts() };
        let changed = E::Changed { changes: Erasable::Known(RegistryChanges::between(&facts(), &new)) };
        given::<RegistryEntry>([imported(), changed.clone()]).when(import(new)).then([]);
        given::<RegistryEntry>([imported(), changed]).when(import(facts())).then([E::Changed {
            changes: Erasable::Known(RegistryChanges {
                postal_code: Some(Some(PostalCode::parse("100-0001").unwrap())),
                ..Default::default()
            }),
        }]);
    }

    #[test]
    fn import_over_an_erased_entry_is_refused() {
        given::<RegistryEntry>([erased()]).when(import(facts())).then_err(RegistryError::Erased);
        given::<RegistryEntry>([imported(), E::Changed { changes: Erasable::Erased }])
            .when(import(facts()))
            .then_err(RegistryError::Erased);
    }

    #[test]
    fn events_whose_personal_is_null_decode_as_erased() {
        let payload = json!({ "municipality": "131016", "registry_key": "000123456", "personal": null });
        let event = RegistryEvent::decode(IMPORTED, 1, &payload).unwrap();
        assert_eq!(event, erased());
        assert_eq!(event.encode(), payload);
        let state = RegistryEntry::fold(&[event]);
        assert!(state.entry.is_some() && state.facts().is_none());

        let changed = RegistryEvent::decode(CHANGED, 1, &json!({ "personal": null })).unwrap();
        assert_eq!(changed, E::Changed { changes: Erasable::Erased });
        assert_eq!(changed.encode(), json!({ "personal": null }));
        let state = RegistryEntry::fold(&[imported(), changed]);
        assert!(state.entry.is_some() && state.facts().is_none());
        // A known change cannot bring erased facts back.
        let state = RegistryEntry::fold(&[
            erased(),
            E::Changed { changes: Erasable::Known(RegistryChanges { sex: Some(Sex::Male), ..Default::default() }) },
        ]);
        assert!(state.facts().is_none());
    }

    #[test]
    fn a_change_without_an_entry_changes_nothing() {
        let state = RegistryEntry::fold(&[E::Changed { changes: Erasable::Known(RegistryChanges::default()) }]);
        assert!(state.entry.is_none());
    }

    #[test]
    fn the_payloads_have_the_documented_shape() {
        assert_eq!(
            imported().encode(),
            json!({
                "municipality": "131016",
                "registry_key": "000123456",
                "personal": {
                    "name": "山田　太郎",
                    "kana": "ヤマダ　タロウ",
                    "birth_date": "3640107",
                    "sex": "1",
                    "postal_code": "100-0001",
                    "address": "東京都千代田区千代田１－１",
                },
            })
        );
        let changes = RegistryChanges { kana: Some(None), sex: Some(Sex::Female), ..Default::default() };
        let payload = json!({ "personal": { "kana": null, "sex": "2" } });
        assert_eq!(E::Changed { changes: Erasable::Known(changes.clone()) }.encode(), payload);
        assert_eq!(RegistryEvent::decode(CHANGED, 1, &payload), Ok(E::Changed { changes: Erasable::Known(changes) }));
        // An absent key is "unchanged", a null one "cleared".
        assert_eq!(
            RegistryEvent::decode(CHANGED, 1, &json!({ "personal": {} })),
            Ok(E::Changed { changes: Erasable::Known(RegistryChanges::default()) })
        );
        assert_eq!(RegistryEvent::decode(CHANGED, 2, &payload), Err(EventDecodeError::unknown(CHANGED, 2)));
        for (event_type, payload) in [
            (IMPORTED, json!({ "municipality": "131016", "registry_key": "0001-23", "personal": null })),
            (CHANGED, json!({ "personal": { "name": "" } })),
            (CHANGED, json!({ "personal": { "kana": "やまだ" } })),
        ] {
            assert!(
                matches!(RegistryEvent::decode(event_type, 1, &payload), Err(EventDecodeError::Payload { .. })),
                "{event_type} {payload}"
            );
        }
        assert!(!RegistryError::Erased.message_ja().is_empty());
    }

    #[test]
    fn registry_keys_and_names_as_exported() {
        assert_eq!(RegistryKey::parse(" 000123456 ").unwrap().as_str(), "000123456");
        assert_eq!(RegistryKey::parse(" "), Err(ParseError::Empty));
        assert_eq!(RegistryKey::parse("0001-23"), Err(ParseError::NotHalfWidthAlphanumeric));
        assert_eq!(RegistryKey::parse("０００１"), Err(ParseError::NotHalfWidthAlphanumeric));
        assert_eq!(RegistryKey::parse(&"1".repeat(21)), Err(ParseError::TooLong { max: 20 }));

        let name = FullName::parse(" 山田 太郎\u{3000}").unwrap();
        assert_eq!(name.as_str(), "山田　太郎");
        assert_eq!(name.split(), Some(PersonName { family: kanji("山田"), given: kanji("太郎") }));
        assert_eq!(FullName::parse("John Smith").unwrap().as_str(), "Ｊｏｈｎ　Ｓｍｉｔｈ");
        assert_eq!(FullName::parse("山田太郎").unwrap().split(), None);
        assert_eq!(
            FullName::parse("山田\u{3000}\u{3000}太郎").unwrap().split(),
            Some(PersonName { family: kanji("山田"), given: kanji("太郎") })
        );
        assert_eq!(FullName::parse(""), Err(ParseError::Empty));
        assert_eq!(FullName::parse("山田\t太郎"), Err(ParseError::InvalidCharacter { ch: '\t' }));
        assert!(FullName::parse(&"山".repeat(101)).is_ok());
        assert_eq!(FullName::parse(&"山".repeat(102)), Err(ParseError::TooLong { max: 101 }));

        let kana = parse_full_kana(" ﾔﾏﾀﾞ ﾀﾛｳ ").unwrap();
        assert_eq!(kana.as_str(), "ヤマダ　タロウ");
        assert_eq!(split_kana(&kana), Some(PersonName { family: kana_part("ヤマダ"), given: kana_part("タロウ") }));
        assert_eq!(split_kana(&kana_part("ヤマダタロウ")), None);
        assert_eq!(parse_full_kana("やまだ"), Err(ParseError::NotFullWidthKatakana { ch: 'や' }));
    }

    fn kanji(s: &str) -> KanjiName {
        KanjiName::parse(s).unwrap()
    }

    fn kana_part(s: &str) -> KanaName {
        KanaName::parse(s).unwrap()
    }

    prop_compose! {
        fn any_facts()(
            name in proptest::sample::select(vec!["山田　太郎", "山田　花子", "鈴木　一郎"]),
            kana in proptest::option::of(proptest::sample::select(vec!["ヤマダ　タロウ", "スズキ"])),
            birth in proptest::sample::select(vec!["3640107", "4010108"]),
            sex in proptest::sample::select(Sex::ALL.to_vec()),
            postal in proptest::option::of(proptest::sample::select(vec!["100-0001", "530-0001"])),
            address in proptest::option::of(proptest::sample::select(vec!["東京都", "大阪府"])),
        ) -> RegistryFacts {
            RegistryFacts {
                name: FullName::parse(name).unwrap(),
                kana: kana.map(|k| KanaName::parse(k).unwrap()),
                birth_date: EraDate::parse(birth).unwrap(),
                sex,
                postal_code: postal.map(|p| PostalCode::parse(p).unwrap()),
                address: address.map(|a| Address::parse(a).unwrap()),
            }
        }
    }

    proptest! {
        #[test]
        fn registry_keys_parse_trimmed_and_round_trip(s in "[A-Za-z0-9]{1,20}", pad in " {0,2}") {
            let k = RegistryKey::parse(&format!("{pad}{s}{pad}")).unwrap();
            prop_assert_eq!(k.as_str(), s.as_str());
            let json = serde_json::to_value(&k).unwrap();
            prop_assert_eq!(serde_json::from_value::<RegistryKey>(json).unwrap(), k);
        }

        #[test]
        fn registry_keys_longer_than_20_are_rejected(s in "[A-Za-z0-9]{21,30}") {
            prop_assert_eq!(RegistryKey::parse(&s), Err(ParseError::TooLong { max: 20 }));
        }

        #[test]
        fn registry_keys_with_any_other_character_are_rejected(
            left in "[A-Za-z0-9]{1,5}",
            ch in any::<char>().prop_filter("not alphanumeric", |c| !c.is_ascii_alphanumeric()),
            right in "[A-Za-z0-9]{1,5}",
        ) {
            prop_assert_eq!(
                RegistryKey::parse(&format!("{left}{ch}{right}")),
                Err(ParseError::NotHalfWidthAlphanumeric)
            );
        }

        #[test]
        fn full_names_split_back_into_their_parts(
            family in "[一-龥ぁ-んァ-ヶ々]{1,50}",
            given in "[一-龥ぁ-んァ-ヶ々]{1,50}",
            separator in "[ \u{3000}]",
        ) {
            let name = FullName::parse(&format!("{family}{separator}{given}")).unwrap();
            prop_assert_eq!(name.as_str(), format!("{family}\u{3000}{given}"));
            prop_assert_eq!(name.split(), Some(PersonName { family: kanji(&family), given: kanji(&given) }));
            let json = serde_json::to_value(&name).unwrap();
            prop_assert_eq!(serde_json::from_value::<FullName>(json).unwrap(), name);
        }

        #[test]
        fn full_names_are_full_width_and_at_most_101(s in "[!-~]([ -~]{0,120}[!-~])?") {
            match FullName::parse(&s) {
                Ok(name) => {
                    prop_assert!(s.chars().count() <= 101);
                    prop_assert!(!name.as_str().chars().any(|c| c.is_ascii()));
                    prop_assert_eq!(FullName::parse(name.as_str()), Ok(name.clone()));
                }
                Err(e) => {
                    prop_assert!(s.chars().count() > 101);
                    prop_assert_eq!(e, ParseError::TooLong { max: 101 });
                }
            }
        }

        #[test]
        fn full_names_with_a_control_character_inside_are_rejected(
            left in "[^\\p{Cc}\\s]{1,10}",
            ch in "\\p{Cc}",
            right in "[^\\p{Cc}\\s]{1,10}",
        ) {
            let ch = ch.chars().next().unwrap();
            prop_assert_eq!(FullName::parse(&format!("{left}{ch}{right}")), Err(ParseError::InvalidCharacter { ch }));
        }

        #[test]
        fn full_kana_names_split_back_into_their_parts(
            family in "[ァ-ヶー]{1,24}",
            given in "[ァ-ヶー]{1,25}",
            separator in "[ \u{3000}]",
        ) {
            let kana = parse_full_kana(&format!("{family}{separator}{given}")).unwrap();
            prop_assert_eq!(kana.as_str(), format!("{family}\u{3000}{given}"));
            prop_assert_eq!(split_kana(&kana), Some(PersonName { family: kana_part(&family), given: kana_part(&given) }));
        }

        /// `between` is exactly what `apply_to` needs, and nothing when the facts are equal.
        #[test]
        fn changes_between_two_facts_lead_from_one_to_the_other(old in any_facts(), new in any_facts()) {
            let changes = RegistryChanges::between(&old, &new);
            prop_assert_eq!(changes.apply_to(old.clone()), new.clone());
            prop_assert_eq!(changes.is_empty(), old == new);
            let json = serde_json::to_value(&changes).unwrap();
            prop_assert_eq!(serde_json::from_value::<RegistryChanges>(json).unwrap(), changes);
        }
    }
}
