//! The `Card` aggregate (マイナンバーカード as cardap sees it, 手引き I 1.1–1.2): a card registered to a resident
//! by its FID, its カード運用状態, its local resident area (地域住民向け領域) and the card APs installed in it.
//!
//! Owns the card lifecycle (in use → suspended ↔ in use → abolished), the AP rules (no AP before the local
//! area; nothing installed on a suspended or abolished card; only APs the municipality offers and may use;
//! removing an AP that is not there is an error) and the 標準ID of the library AP. A card's stream is keyed by
//! its FID alone, so an FID is unique across all municipalities. What the municipality offers and may use
//! arrives in the command (`ApOffer`); the random part of a 標準ID is drawn by the caller.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::aggregate::decode_payload;
use crate::resident::{CardFid, ResidentId};
use crate::{Aggregate, BusinessId, DomainEvent, EventDecodeError, MunicipalityCode, ParseError};

/// The stream id of a card: its FID.
pub fn stream_key(fid: &CardFid) -> String {
    fid.as_str().to_owned()
}

/// 標準ID of the library AP (手引き II 2): the municipality code (6 digits) followed by a number of 10 digits
/// the municipality draws at random; unique nationwide and never reused (see [`StandardIdAllocation`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StandardId(String);

impl StandardId {
    /// The exclusive upper bound of the random part.
    pub const NUMBER_BOUND: u64 = 10_000_000_000;

    /// The 標準ID of `municipality` with the random part `number` (taken modulo 10^10).
    pub fn new(municipality: &MunicipalityCode, number: u64) -> Self {
        Self(format!("{}{:010}", municipality.as_str(), number % Self::NUMBER_BOUND))
    }

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::InvalidStandardId);
        }
        MunicipalityCode::parse(&s[..6]).map_err(|_| ParseError::InvalidStandardId)?;
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The municipality that assigned it.
    pub fn municipality(&self) -> Option<MunicipalityCode> {
        MunicipalityCode::parse(&self.0[..6]).ok()
    }
}

impl fmt::Display for StandardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for StandardId {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<StandardId> for String {
    fn from(id: StandardId) -> Self {
        id.0
    }
}

/// カード運用状態.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CardStatus {
    /// 運用中: registered or resumed.
    InUse,
    /// 一時停止: e.g. reported lost.
    Suspended,
    /// 廃止: for good.
    Abolished,
}

impl CardStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InUse => "in_use",
            Self::Suspended => "suspended",
            Self::Abolished => "abolished",
        }
    }

    pub fn label_ja(self) -> &'static str {
        match self {
            Self::InUse => "運用中",
            Self::Suspended => "一時停止",
            Self::Abolished => "廃止",
        }
    }
}

/// One AP to install; the library AP (`02`) carries its freshly allocated 標準ID, no other AP does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApInstall {
    pub business_id: BusinessId,
    pub standard_id: Option<StandardId>,
}

/// The looked-up facts an install is checked against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApOffer {
    /// The municipality's card AP catalog (its `LocalSettings`).
    pub catalog: BTreeSet<BusinessId>,
    /// The business systems the municipality is permitted to use now (共同利用業務設定).
    pub permitted: BTreeSet<BusinessId>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CardCommand {
    /// Registers the card `fid` to a resident of `municipality`; it is in use from now on.
    Register { fid: CardFid, municipality: MunicipalityCode, resident_id: ResidentId },
    /// 地域住民向け領域設定; the municipality's preset APs that it may still use are installed with it.
    CreateLocalArea { presets: Vec<ApInstall>, offer: ApOffer },
    /// カードAP搭載: several APs at once, all or none.
    InstallAps { aps: Vec<ApInstall>, offer: ApOffer },
    RemoveAp { business_id: BusinessId },
    Suspend,
    Resume,
    Abolish,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardEvent {
    Registered { fid: CardFid, municipality: MunicipalityCode, resident_id: ResidentId },
    LocalAreaCreated,
    ApInstalled { business_id: BusinessId, standard_id: Option<StandardId> },
    ApRemoved { business_id: BusinessId },
    Suspended,
    Resumed,
    Abolished,
}

const REGISTERED: &str = "CardRegistered";
const LOCAL_AREA_CREATED: &str = "CardLocalAreaCreated";
const AP_INSTALLED: &str = "CardApInstalled";
const AP_REMOVED: &str = "CardApRemoved";
const SUSPENDED: &str = "CardSuspended";
const RESUMED: &str = "CardResumed";
const ABOLISHED: &str = "CardAbolished";

mod v1 {
    use super::*;

    #[derive(Deserialize)]
    pub(super) struct Registered {
        pub fid: CardFid,
        pub municipality: MunicipalityCode,
        pub resident_id: ResidentId,
    }

    #[derive(Deserialize)]
    pub(super) struct ApInstalled {
        pub business_id: BusinessId,
        pub standard_id: Option<StandardId>,
    }

    #[derive(Deserialize)]
    pub(super) struct ApRemoved {
        pub business_id: BusinessId,
    }

    #[derive(Deserialize)]
    pub(super) struct Empty {}
}

impl DomainEvent for CardEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Registered { .. } => REGISTERED,
            Self::LocalAreaCreated => LOCAL_AREA_CREATED,
            Self::ApInstalled { .. } => AP_INSTALLED,
            Self::ApRemoved { .. } => AP_REMOVED,
            Self::Suspended => SUSPENDED,
            Self::Resumed => RESUMED,
            Self::Abolished => ABOLISHED,
        }
    }

    fn event_version(&self) -> u32 {
        1
    }

    fn encode(&self) -> Value {
        match self {
            Self::Registered { fid, municipality, resident_id } => json!({
                "fid": fid.as_str(),
                "municipality": municipality.as_str(),
                "resident_id": resident_id,
            }),
            Self::ApInstalled { business_id, standard_id } => {
                json!({ "business_id": business_id.as_str(), "standard_id": standard_id })
            }
            Self::ApRemoved { business_id } => json!({ "business_id": business_id.as_str() }),
            Self::LocalAreaCreated | Self::Suspended | Self::Resumed | Self::Abolished => json!({}),
        }
    }

    fn decode(event_type: &str, event_version: u32, payload: &Value) -> Result<Self, EventDecodeError> {
        let empty = || decode_payload::<v1::Empty>(event_type, event_version, payload);
        Ok(match (event_type, event_version) {
            (REGISTERED, 1) => {
                let v1::Registered { fid, municipality, resident_id } =
                    decode_payload(event_type, event_version, payload)?;
                Self::Registered { fid, municipality, resident_id }
            }
            (AP_INSTALLED, 1) => {
                let v1::ApInstalled { business_id, standard_id } = decode_payload(event_type, event_version, payload)?;
                Self::ApInstalled { business_id, standard_id }
            }
            (AP_REMOVED, 1) => {
                let v1::ApRemoved { business_id } = decode_payload(event_type, event_version, payload)?;
                Self::ApRemoved { business_id }
            }
            (LOCAL_AREA_CREATED, 1) => empty().map(|_| Self::LocalAreaCreated)?,
            (SUSPENDED, 1) => empty().map(|_| Self::Suspended)?,
            (RESUMED, 1) => empty().map(|_| Self::Resumed)?,
            (ABOLISHED, 1) => empty().map(|_| Self::Abolished)?,
            _ => return Err(EventDecodeError::unknown(event_type, event_version)),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CardError {
    #[error("a card with this FID is already registered")]
    AlreadyRegistered,
    #[error("no card with this FID is registered")]
    NotRegistered,
    #[error("the card has been abolished")]
    Abolished,
    #[error("the card is suspended")]
    Suspended,
    #[error("the card is already suspended")]
    AlreadySuspended,
    #[error("the card is not suspended")]
    NotSuspended,
    #[error("the card has no local resident area yet; create it first")]
    LocalAreaMissing,
    #[error("the card already has its local resident area")]
    LocalAreaExists,
    #[error("no AP was given")]
    NoAps,
    #[error("AP {0} is given more than once")]
    DuplicateAp(BusinessId),
    #[error("AP {0} is not in the municipality's card AP catalog")]
    ApNotInCatalog(BusinessId),
    #[error("the municipality is not permitted to use business system {0}")]
    ApNotPermitted(BusinessId),
    #[error("AP {0} is already installed")]
    ApAlreadyInstalled(BusinessId),
    #[error("AP {0} is not installed")]
    ApNotInstalled(BusinessId),
    #[error("AP {0}: the library AP needs a 標準ID, and no other AP takes one")]
    StandardIdMismatch(BusinessId),
}

impl CardError {
    pub fn message_ja(&self) -> String {
        match self {
            Self::AlreadyRegistered => "このカードFIDは既に登録されています".to_owned(),
            Self::NotRegistered => "カードが見つかりません".to_owned(),
            Self::Abolished => "このカードは廃止されています".to_owned(),
            Self::Suspended => "このカードは一時停止中です。再開してから操作してください".to_owned(),
            Self::AlreadySuspended => "このカードは既に一時停止中です".to_owned(),
            Self::NotSuspended => "このカードは一時停止中ではありません".to_owned(),
            Self::LocalAreaMissing => "地域住民向け領域が未設定です。先に領域を設定してください".to_owned(),
            Self::LocalAreaExists => "地域住民向け領域は既に設定されています".to_owned(),
            Self::NoAps => "搭載するカードAPを選択してください".to_owned(),
            Self::DuplicateAp(b) => format!("業務ID {b} が重複して指定されています"),
            Self::ApNotInCatalog(b) => format!("業務ID {b} はこの市町村の搭載可能APではありません"),
            Self::ApNotPermitted(b) => format!("業務ID {b} の共同利用が許可されていません"),
            Self::ApAlreadyInstalled(b) => format!("業務ID {b} のカードAPは既に搭載されています"),
            Self::ApNotInstalled(b) => format!("業務ID {b} のカードAPは搭載されていません"),
            Self::StandardIdMismatch(b) => format!("業務ID {b}: 標準IDは図書館APにのみ割り当てます"),
        }
    }
}

/// The folded state; `Default` is "not registered".
#[derive(Debug, Clone, Default)]
pub struct CardState {
    pub registered: Option<RegisteredCard>,
}

#[derive(Debug, Clone)]
pub struct RegisteredCard {
    pub fid: CardFid,
    pub municipality: MunicipalityCode,
    pub resident_id: ResidentId,
    pub status: CardStatus,
    pub local_area: bool,
    /// Installed APs with their 標準ID (library only).
    pub aps: BTreeMap<BusinessId, Option<StandardId>>,
}

/// Checks one AP to install against the card and the offer.
fn check_install(card: &RegisteredCard, ap: &ApInstall, offer: &ApOffer) -> Result<(), CardError> {
    let id = &ap.business_id;
    if !offer.permitted.contains(id) {
        return Err(CardError::ApNotPermitted(id.clone()));
    }
    if !offer.catalog.contains(id) {
        return Err(CardError::ApNotInCatalog(id.clone()));
    }
    if card.aps.contains_key(id) {
        return Err(CardError::ApAlreadyInstalled(id.clone()));
    }
    if (*id == BusinessId::LIBRARY) != ap.standard_id.is_some() {
        return Err(CardError::StandardIdMismatch(id.clone()));
    }
    Ok(())
}

fn installed(ap: ApInstall) -> CardEvent {
    CardEvent::ApInstalled { business_id: ap.business_id, standard_id: ap.standard_id }
}

#[derive(Debug)]
pub struct Card;

impl Aggregate for Card {
    type State = CardState;
    type Command = CardCommand;
    type Event = CardEvent;
    type Error = CardError;

    const STREAM_TYPE: &'static str = "card";

    fn decide(state: &Self::State, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error> {
        use CardCommand as C;
        use CardEvent as E;

        let Some(card) = &state.registered else {
            return match command {
                C::Register { fid, municipality, resident_id } => {
                    Ok(vec![E::Registered { fid, municipality, resident_id }])
                }
                _ => Err(CardError::NotRegistered),
            };
        };
        if card.status == CardStatus::Abolished {
            return Err(match command {
                C::Register { .. } => CardError::AlreadyRegistered,
                _ => CardError::Abolished,
            });
        }
        let suspended = card.status == CardStatus::Suspended;
        match command {
            C::Register { .. } => Err(CardError::AlreadyRegistered),
            C::Suspend if suspended => Err(CardError::AlreadySuspended),
            C::Suspend => Ok(vec![E::Suspended]),
            C::Resume if suspended => Ok(vec![E::Resumed]),
            C::Resume => Err(CardError::NotSuspended),
            C::Abolish => Ok(vec![E::Abolished]),
            C::RemoveAp { business_id } if card.aps.contains_key(&business_id) => {
                Ok(vec![E::ApRemoved { business_id }])
            }
            C::RemoveAp { business_id } => Err(CardError::ApNotInstalled(business_id)),
            _ if suspended => Err(CardError::Suspended),
            C::CreateLocalArea { .. } if card.local_area => Err(CardError::LocalAreaExists),
            C::CreateLocalArea { presets, offer } => {
                let mut events = vec![E::LocalAreaCreated];
                let mut seen = BTreeSet::new();
                events.extend(
                    presets
                        .into_iter()
                        .filter(|ap| seen.insert(ap.business_id.clone()))
                        // A preset the municipality may no longer use is skipped, not refused: the settings
                        // can lag a withdrawal of shared use, and the card must still get its area.
                        .filter(|ap| check_install(card, ap, &offer).is_ok())
                        .map(installed),
                );
                Ok(events)
            }
            C::InstallAps { .. } if !card.local_area => Err(CardError::LocalAreaMissing),
            C::InstallAps { aps, .. } if aps.is_empty() => Err(CardError::NoAps),
            C::InstallAps { aps, offer } => {
                let mut seen = BTreeSet::new();
                for ap in &aps {
                    if !seen.insert(ap.business_id.clone()) {
                        return Err(CardError::DuplicateAp(ap.business_id.clone()));
                    }
                    check_install(card, ap, &offer)?;
                }
                Ok(aps.into_iter().map(installed).collect())
            }
        }
    }

    fn evolve(mut state: Self::State, event: &Self::Event) -> Self::State {
        use CardEvent as E;
        match (event, state.registered.as_mut()) {
            (E::Registered { fid, municipality, resident_id }, _) => {
                state.registered = Some(RegisteredCard {
                    fid: fid.clone(),
                    municipality: municipality.clone(),
                    resident_id: *resident_id,
                    status: CardStatus::InUse,
                    local_area: false,
                    aps: BTreeMap::new(),
                });
            }
            (E::LocalAreaCreated, Some(c)) => c.local_area = true,
            (E::ApInstalled { business_id, standard_id }, Some(c)) => {
                c.aps.insert(business_id.clone(), standard_id.clone());
            }
            (E::ApRemoved { business_id }, Some(c)) => {
                c.aps.remove(business_id);
            }
            (E::Suspended, Some(c)) => c.status = CardStatus::Suspended,
            (E::Resumed, Some(c)) => c.status = CardStatus::InUse,
            (E::Abolished, Some(c)) => c.status = CardStatus::Abolished,
            // Events of a stream that was never registered cannot be stored; nothing to change.
            _ => {}
        }
        state
    }
}

/// The stream id of a 標準ID's allocation: the ID itself.
pub fn allocation_stream_key(id: &StandardId) -> String {
    id.as_str().to_owned()
}

/// A 標準ID's allocation: its stream exists once the ID was handed out, so an ID is never handed out twice.
#[derive(Debug)]
pub struct StandardIdAllocation;

#[derive(Debug, Clone, PartialEq)]
pub enum StandardIdCommand {
    Allocate { id: StandardId, fid: CardFid },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StandardIdEvent {
    Allocated { id: StandardId, fid: CardFid },
}

const ALLOCATED: &str = "StandardIdAllocated";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StandardIdError {
    #[error("this 標準ID was already handed out")]
    AlreadyAllocated,
}

impl DomainEvent for StandardIdEvent {
    fn event_type(&self) -> &'static str {
        ALLOCATED
    }

    fn event_version(&self) -> u32 {
        1
    }

    fn encode(&self) -> Value {
        let Self::Allocated { id, fid } = self;
        json!({ "standard_id": id.as_str(), "fid": fid.as_str() })
    }

    fn decode(event_type: &str, event_version: u32, payload: &Value) -> Result<Self, EventDecodeError> {
        #[derive(Deserialize)]
        struct V1 {
            standard_id: StandardId,
            fid: CardFid,
        }
        match (event_type, event_version) {
            (ALLOCATED, 1) => {
                let V1 { standard_id, fid } = decode_payload(event_type, event_version, payload)?;
                Ok(Self::Allocated { id: standard_id, fid })
            }
            _ => Err(EventDecodeError::unknown(event_type, event_version)),
        }
    }
}

impl Aggregate for StandardIdAllocation {
    type State = bool;
    type Command = StandardIdCommand;
    type Event = StandardIdEvent;
    type Error = StandardIdError;

    const STREAM_TYPE: &'static str = "standard_id";

    fn decide(allocated: &bool, command: StandardIdCommand) -> Result<Vec<StandardIdEvent>, StandardIdError> {
        let StandardIdCommand::Allocate { id, fid } = command;
        if *allocated { Err(StandardIdError::AlreadyAllocated) } else { Ok(vec![StandardIdEvent::Allocated { id, fid }]) }
    }

    fn evolve(_: bool, _: &StandardIdEvent) -> bool {
        true
    }
}
