//! The `LibraryLink` aggregate (図書館システム, 手引き II 2.2): one library system's link of a card's 標準ID to its
//! own user number (図書ID), so that the card serves as that library's card.
//!
//! Owns the 図書ID value type and the link's rules: a link is made only for a 標準ID that is currently assigned
//! (handed out to a card's library AP, on a card that is not abolished); linking again with another 図書ID
//! replaces it (linking with the same one changes nothing); unlinking needs a link. One stream per (library
//! business system, 標準ID): each library system numbers its users itself, so links of different libraries never
//! meet, and a card from city A is linked by city B's library in B's own stream. Whether the caller is a library
//! system and which municipality it acts for are the application layer's (`commands::library`); the standing of
//! the 標準ID (assigned, abolished, unknown) arrives in the command, looked up by the caller.
//!
//! Must not know how a link is looked up or how a reissued card's new 標準ID is resolved (the feeds' index and
//! `commands::library`).

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::aggregate::decode_payload;
use crate::card::StandardId;
use crate::{Aggregate, BusinessId, DomainEvent, EventDecodeError, ParseError};

/// The stream id of a link: the library system's 業務ID and the 標準ID, e.g. `02-1310161234567890`.
pub fn stream_key(business_id: &BusinessId, standard_id: &StandardId) -> String {
    format!("{}-{}", business_id.as_str(), standard_id.as_str())
}

/// 図書ID: the user number a library assigns and keeps in its own system (利用者番号). 1 to 32 half-width letters,
/// digits and hyphens (`-`), surrounding ASCII whitespace trimmed, case kept: libraries number their users in many
/// ways (barcode digits, a branch letter, hyphenated groups), and cardap only keeps it for the library.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LibraryId(String);

impl LibraryId {
    pub const MAX_LEN: usize = 32;

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let s = s.trim_matches(|c: char| c.is_ascii_whitespace());
        if s.is_empty() || s.len() > Self::MAX_LEN || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(ParseError::InvalidLibraryId);
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LibraryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for LibraryId {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<LibraryId> for String {
    fn from(id: LibraryId) -> Self {
        id.0
    }
}

/// Where a 標準ID stands now, as the caller found it (its allocation and the card it was installed on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandardIdStanding {
    /// Never handed out, or no longer on any card's library AP (the AP removed, the card registered anew).
    Unknown,
    /// On the library AP of a card that is abolished.
    Abolished,
    /// On the library AP of a card in use or suspended.
    Assigned,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LibraryLinkCommand {
    /// 関連付け: link the 標準ID to `library_id` (replacing another 図書ID of the same library).
    Link { business_id: BusinessId, standard_id: StandardId, library_id: LibraryId, standing: StandardIdStanding },
    /// 関連付けの解除.
    Unlink,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LibraryLinkEvent {
    Linked { business_id: BusinessId, standard_id: StandardId, library_id: LibraryId },
    Unlinked { business_id: BusinessId, standard_id: StandardId },
}

const LINKED: &str = "LibraryLinked";
const UNLINKED: &str = "LibraryUnlinked";

mod v1 {
    use super::*;

    #[derive(Deserialize)]
    pub(super) struct Linked {
        pub business_id: BusinessId,
        pub standard_id: StandardId,
        pub library_id: LibraryId,
    }

    #[derive(Deserialize)]
    pub(super) struct Unlinked {
        pub business_id: BusinessId,
        pub standard_id: StandardId,
    }
}

impl DomainEvent for LibraryLinkEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Linked { .. } => LINKED,
            Self::Unlinked { .. } => UNLINKED,
        }
    }

    fn event_version(&self) -> u32 {
        1
    }

    fn encode(&self) -> Value {
        match self {
            Self::Linked { business_id, standard_id, library_id } => json!({
                "business_id": business_id.as_str(),
                "standard_id": standard_id.as_str(),
                "library_id": library_id.as_str(),
            }),
            Self::Unlinked { business_id, standard_id } => {
                json!({ "business_id": business_id.as_str(), "standard_id": standard_id.as_str() })
            }
        }
    }

    fn decode(event_type: &str, event_version: u32, payload: &Value) -> Result<Self, EventDecodeError> {
        Ok(match (event_type, event_version) {
            (LINKED, 1) => {
                let v1::Linked { business_id, standard_id, library_id } =
                    decode_payload(event_type, event_version, payload)?;
                Self::Linked { business_id, standard_id, library_id }
            }
            (UNLINKED, 1) => {
                let v1::Unlinked { business_id, standard_id } = decode_payload(event_type, event_version, payload)?;
                Self::Unlinked { business_id, standard_id }
            }
            _ => return Err(EventDecodeError::unknown(event_type, event_version)),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LibraryLinkError {
    #[error("no card carries this 標準ID")]
    UnknownStandardId,
    #[error("the card carrying this 標準ID has been abolished")]
    StandardIdAbolished,
    #[error("this 標準ID is not linked by this library")]
    NotLinked,
}

impl crate::message::Localized for LibraryLinkError {
    fn message_ja(&self) -> String {
        match self {
            Self::UnknownStandardId => "この標準IDはどのカードにも割り当てられていません".to_owned(),
            Self::StandardIdAbolished => {
                "この標準IDのカードは廃止されています。新しいカードで登録してください".to_owned()
            }
            Self::NotLinked => "この標準IDは図書IDと関連付けられていません".to_owned(),
        }
    }
}

/// The link as it stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LibraryLinkState {
    /// `None`: not linked (never, or unlinked since).
    pub linked: Option<Linked>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Linked {
    pub business_id: BusinessId,
    pub standard_id: StandardId,
    pub library_id: LibraryId,
}

#[derive(Debug)]
pub struct LibraryLink;

impl Aggregate for LibraryLink {
    type State = LibraryLinkState;
    type Command = LibraryLinkCommand;
    type Event = LibraryLinkEvent;
    type Error = LibraryLinkError;

    const STREAM_TYPE: &'static str = "library_link";

    fn decide(state: &Self::State, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error> {
        use LibraryLinkCommand as C;
        use LibraryLinkEvent as E;
        match command {
            C::Link { standing: StandardIdStanding::Unknown, .. } => Err(LibraryLinkError::UnknownStandardId),
            C::Link { standing: StandardIdStanding::Abolished, .. } => Err(LibraryLinkError::StandardIdAbolished),
            C::Link { library_id, .. } if state.linked.as_ref().is_some_and(|l| l.library_id == library_id) => {
                Ok(vec![])
            }
            C::Link { business_id, standard_id, library_id, standing: StandardIdStanding::Assigned } => {
                Ok(vec![E::Linked { business_id, standard_id, library_id }])
            }
            C::Unlink => match &state.linked {
                Some(l) => {
                    Ok(vec![E::Unlinked { business_id: l.business_id.clone(), standard_id: l.standard_id.clone() }])
                }
                None => Err(LibraryLinkError::NotLinked),
            },
        }
    }

    fn evolve(mut state: Self::State, event: &Self::Event) -> Self::State {
        match event {
            LibraryLinkEvent::Linked { business_id, standard_id, library_id } => {
                state.linked = Some(Linked {
                    business_id: business_id.clone(),
                    standard_id: standard_id.clone(),
                    library_id: library_id.clone(),
                });
            }
            LibraryLinkEvent::Unlinked { .. } => state.linked = None,
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Localized;
    use crate::MunicipalityCode;
    use crate::testing::given;
    use LibraryLinkCommand as C;
    use LibraryLinkEvent as E;
    use proptest::prelude::*;

    fn library() -> BusinessId {
        BusinessId::LIBRARY
    }

    fn standard_id() -> StandardId {
        StandardId::new(&MunicipalityCode::parse("131016").unwrap(), 1234567890)
    }

    fn number(s: &str) -> LibraryId {
        LibraryId::parse(s).unwrap()
    }

    fn link(s: &str, standing: StandardIdStanding) -> C {
        C::Link { business_id: library(), standard_id: standard_id(), library_id: number(s), standing }
    }

    fn linked(s: &str) -> E {
        E::Linked { business_id: library(), standard_id: standard_id(), library_id: number(s) }
    }

    fn unlinked() -> E {
        E::Unlinked { business_id: library(), standard_id: standard_id() }
    }

    #[test]
    fn an_assigned_standard_id_is_linked() {
        let state =
            given::<LibraryLink>([]).when(link("0001234", StandardIdStanding::Assigned)).then([linked("0001234")]);
        assert_eq!(state.linked.map(|l| l.library_id), Some(number("0001234")));
    }

    #[test]
    fn an_unknown_standard_id_is_refused() {
        given::<LibraryLink>([])
            .when(link("0001234", StandardIdStanding::Unknown))
            .then_err(LibraryLinkError::UnknownStandardId);
    }

    #[test]
    fn an_abolished_cards_standard_id_is_refused_even_when_linked_before() {
        given::<LibraryLink>([linked("0001234")])
            .when(link("0001234", StandardIdStanding::Abolished))
            .then_err(LibraryLinkError::StandardIdAbolished);
    }

    #[test]
    fn linking_again_with_the_same_library_id_changes_nothing() {
        given::<LibraryLink>([linked("0001234")]).when(link("0001234", StandardIdStanding::Assigned)).then([]);
    }

    #[test]
    fn linking_with_another_library_id_replaces_it() {
        let state = given::<LibraryLink>([linked("0001234")])
            .when(link("B-77", StandardIdStanding::Assigned))
            .then([linked("B-77")]);
        assert_eq!(state.linked.map(|l| l.library_id), Some(number("B-77")));
    }

    #[test]
    fn a_link_is_unlinked() {
        let state = given::<LibraryLink>([linked("0001234")]).when(C::Unlink).then([unlinked()]);
        assert_eq!(state.linked, None);
    }

    #[test]
    fn unlinking_without_a_link_is_refused() {
        given::<LibraryLink>([]).when(C::Unlink).then_err(LibraryLinkError::NotLinked);
        given::<LibraryLink>([linked("1"), unlinked()]).when(C::Unlink).then_err(LibraryLinkError::NotLinked);
    }

    #[test]
    fn linking_after_unlinking_links_again() {
        given::<LibraryLink>([linked("1"), unlinked()])
            .when(link("2", StandardIdStanding::Assigned))
            .then([linked("2")]);
    }

    #[test]
    fn every_refusal_speaks_japanese() {
        for e in
            [LibraryLinkError::UnknownStandardId, LibraryLinkError::StandardIdAbolished, LibraryLinkError::NotLinked]
        {
            assert!(!e.message_ja().is_empty());
            assert!(!e.message_en().is_empty());
        }
        assert!(ParseError::InvalidLibraryId.message_ja().contains("図書ID"));
    }

    #[test]
    fn the_stream_key_names_the_library_and_the_standard_id() {
        assert_eq!(stream_key(&library(), &standard_id()), "02-1310161234567890");
    }

    #[test]
    fn library_ids_parse_as_documented() {
        assert_eq!(LibraryId::parse(" 0001234 ").unwrap().as_str(), "0001234");
        assert_eq!(LibraryId::parse("A-12-b").unwrap().as_str(), "A-12-b");
        for bad in ["", "   ", "１２３", "12 34", "12_34", "図書1", &"1".repeat(33)] {
            assert_eq!(LibraryId::parse(bad), Err(ParseError::InvalidLibraryId), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn every_short_alphanumeric_id_parses(s in "[A-Za-z0-9-]{1,32}") {
            let id = LibraryId::parse(&s).unwrap();
            prop_assert_eq!(id.as_str(), s.as_str());
            let json = serde_json::to_value(&id).unwrap();
            prop_assert_eq!(serde_json::from_value::<LibraryId>(json).unwrap(), id);
        }

        #[test]
        fn any_other_character_is_refused(
            s in "[A-Za-z0-9]{0,10}",
            ch in any::<char>().prop_filter("not allowed", |c| !c.is_ascii_alphanumeric() && *c != '-' && !c.is_ascii_whitespace()),
        ) {
            prop_assert_eq!(LibraryId::parse(&format!("{s}{ch}{s}")), Err(ParseError::InvalidLibraryId));
        }
    }
}
