//! What a business system may receive of a resident through its replication feed (データの最小化): its field list.
//!
//! Owns the names of the fields a feed can carry (`FeedField`), the list a business system holds (`FeedFields`)
//! and the built-in defaults per business system. The list is changed by an event on the business system's stream
//! (`BusinessSystemEvent::FeedFieldsSet`, decided in `business_system`); enforcing it at delivery is the feed's
//! (`commands::feeds`). Must not know how a feed is read or stored.
//!
//! Defaults, when the system administrator never set a list (the smallest set each kind of system needs):
//! - `01` 証明書等自動交付: the names, birth date and sex (to match the person the kiosk serves with the registry it
//!   prints from) and the card status (a suspended or abolished card is refused at the kiosk);
//! - `02` 図書館: the names, the 標準ID of its AP and the card status — no address, no contact, no occupation;
//! - every other system (`00`, `03`–`99`, the municipalities' own): the names and the card status; anything more
//!   is granted explicitly.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{BusinessId, ParseError};

/// One field a feed item's `data` can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedField {
    /// カナ氏名.
    KanaName,
    /// 漢字氏名.
    KanjiName,
    /// 生年月日.
    BirthDate,
    /// 性別.
    Sex,
    /// 郵便番号.
    PostalCode,
    /// 住所1.
    Address1,
    /// 住所2.
    Address2,
    /// 連絡先.
    Phone,
    /// メールアドレス.
    Email,
    /// 職業.
    Occupation,
    /// The municipality's own fields (チューニング項目), all of them.
    CustomFields,
    /// The 標準ID of the system's own AP on the resident's card (the library AP's).
    StandardId,
    /// カード運用状態 of the card carrying the system's AP.
    CardStatus,
}

impl FeedField {
    /// Every field, in the order of the 利用者登録 screen.
    pub const ALL: [FeedField; 13] = [
        Self::KanaName,
        Self::KanjiName,
        Self::BirthDate,
        Self::Sex,
        Self::PostalCode,
        Self::Address1,
        Self::Address2,
        Self::Phone,
        Self::Email,
        Self::Occupation,
        Self::CustomFields,
        Self::StandardId,
        Self::CardStatus,
    ];

    /// The field's name in a feed item's `data` and in the field list (the resident API's names).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::KanaName => "kana_name",
            Self::KanjiName => "kanji_name",
            Self::BirthDate => "birth_date",
            Self::Sex => "sex",
            Self::PostalCode => "postal_code",
            Self::Address1 => "address1",
            Self::Address2 => "address2",
            Self::Phone => "phone",
            Self::Email => "email",
            Self::Occupation => "occupation",
            Self::CustomFields => "custom_fields",
            Self::StandardId => "standard_id",
            Self::CardStatus => "card_status",
        }
    }

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        Self::ALL.into_iter().find(|f| f.as_str() == s).ok_or_else(|| ParseError::UnknownValue { value: s.to_owned() })
    }

    /// Whether it is the resident's personal data (sealed at rest; its delivery is recorded in the read access
    /// log), not a fact about his card.
    pub fn is_personal(self) -> bool {
        !matches!(self, Self::StandardId | Self::CardStatus)
    }
}

impl fmt::Display for FeedField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A business system's field list: the fields its feed may carry, nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FeedFields(BTreeSet<FeedField>);

impl FeedFields {
    pub fn new(fields: impl IntoIterator<Item = FeedField>) -> Self {
        Self(fields.into_iter().collect())
    }

    /// The list a business system has until the system administrator sets one (see the module's defaults).
    pub fn default_for(id: &BusinessId) -> Self {
        use FeedField as F;
        let names = [F::KanaName, F::KanjiName, F::CardStatus];
        if *id == BusinessId::CERTIFICATE_ISSUANCE {
            Self::new(names.into_iter().chain([F::BirthDate, F::Sex]))
        } else if *id == BusinessId::LIBRARY {
            Self::new(names.into_iter().chain([F::StandardId]))
        } else {
            Self::new(names)
        }
    }

    pub fn contains(&self, field: FeedField) -> bool {
        self.0.contains(&field)
    }

    /// In the order of [`FeedField::ALL`].
    pub fn iter(&self) -> impl Iterator<Item = FeedField> + '_ {
        self.0.iter().copied()
    }

    /// The names, in the order of [`FeedField::ALL`].
    pub fn names(&self) -> Vec<&'static str> {
        self.iter().map(FeedField::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_library_gets_names_and_its_standard_id_not_the_occupation() {
        let library = FeedFields::default_for(&BusinessId::LIBRARY);
        assert_eq!(library.names(), ["kana_name", "kanji_name", "standard_id", "card_status"]);
        assert!(!library.contains(FeedField::Occupation) && !library.contains(FeedField::Address1));
        let issuance = FeedFields::default_for(&BusinessId::CERTIFICATE_ISSUANCE);
        assert_eq!(issuance.names(), ["kana_name", "kanji_name", "birth_date", "sex", "card_status"]);
        assert!(!issuance.contains(FeedField::Occupation) && !issuance.contains(FeedField::StandardId));
        let own = FeedFields::default_for(&BusinessId::parse("05").unwrap());
        assert_eq!(own.names(), ["kana_name", "kanji_name", "card_status"]);
    }

    #[test]
    fn only_card_facts_are_not_personal() {
        let personal: Vec<_> = FeedField::ALL.into_iter().filter(|f| !f.is_personal()).collect();
        assert_eq!(personal, [FeedField::StandardId, FeedField::CardStatus]);
    }

    #[test]
    fn unknown_names_are_refused() {
        for name in ["my_number", "Kana_Name", ""] {
            assert_eq!(FeedField::parse(name), Err(ParseError::UnknownValue { value: name.to_owned() }));
        }
    }

    proptest! {
        #[test]
        fn every_field_parses_back_from_its_name_and_serde_agrees(i in 0usize..13) {
            let field = FeedField::ALL[i];
            prop_assert_eq!(FeedField::parse(field.as_str()), Ok(field));
            let json = serde_json::to_value(field).unwrap();
            prop_assert_eq!(json.as_str(), Some(field.as_str()));
        }

        #[test]
        fn anything_else_is_refused(s in "\\PC{0,20}") {
            prop_assume!(!FeedField::ALL.iter().any(|f| f.as_str() == s));
            prop_assert_eq!(FeedField::parse(&s), Err(ParseError::UnknownValue { value: s.clone() }));
        }
    }
}
