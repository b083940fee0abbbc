//! The `Card` aggregate (マイナンバーカード as cardap sees it, 手引き I 1.1–1.2): a card registered to a resident
//! by its FID, its カード運用状態, its local resident area (地域住民向け領域) and the card APs installed in it.
//!
//! Owns the card lifecycle (in use → suspended ↔ in use → abolished), the AP rules (no AP before the local
//! area; nothing installed on a suspended or abolished card; only APs the municipality offers and may use;
//! removing an AP that is not there is an error) and the 標準ID of the library AP. A card's stream is keyed by
//! its FID alone, so an FID is held by one municipality at a time. Abolishing a card releases it (a resident
//! moves out only once his card is abolished): the physical card goes with its holder, and a municipality —
//! his new one, or the same one again — may register it anew, a new registration with nothing of the old one.
//! What the municipality offers and may use arrives in the command (`ApOffer`); the random part of a 標準ID is
//! drawn by the caller.
//!
//! The certificate issuance AP (`01`, 証明書等自動交付, 手引き I 1.2) is installed only with the resident's consent to
//! his user info going to the issuance server (証明発行サーバ) through its replication feed: the clerk records it with
//! the install (`ConsentAnswer::Given`, when and by which operator), and `CardApInstalled` v2 carries it. An install
//! recorded before (v1) was made under the paper application of the earlier process: its consent counts as given
//! (`IssuanceConsent::OnPaper`).
//!
//! Length: about half of this file is its given/when/then tests, one per branch of `decide`; the code is under 600
//! lines.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::aggregate::decode_payload;
use crate::resident::{CardFid, ResidentId};
use crate::{
    Aggregate, BusinessId, DomainEvent, EventDecodeError, MunicipalityCode, OperatorKey, ParseError, Timestamp,
};

/// The stream id of a card: its FID (in upper case, as `CardFid` holds it: one card, one stream).
pub fn stream_key(fid: &CardFid) -> String {
    fid.as_str().to_owned()
}

/// 標準ID of the library AP (手引き II 2): the municipality code (6 digits) followed by a number of 10 digits
/// the municipality draws at random; unique nationwide and never reused (see [`StandardIdAllocation`]).
///
/// An association (任意団体) has no 全国地方公共団体コード; its 標準ID is formed the same way from its association
/// ID (`A` + 5 digits, see `MunicipalityCode`), e.g. `A000011234567890`: 16 half-width characters, the first a
/// letter, so it never equals a municipality's. It is unique within this installation (an association ID is
/// not assigned nationwide), and a library system that accepts only digits cannot take it: a card that must
/// serve libraries elsewhere is registered by its member municipality.
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
        // ASCII first, so that the byte offsets below are character boundaries.
        if s.len() != 16 || !s.is_ascii() || !s.bytes().skip(6).all(|b| b.is_ascii_digit()) {
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
    /// 廃止: this municipality's use of the card ended for good; the card is released (it may be registered again,
    /// as a new card).
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

/// The resident's consent, given at the counter: when the clerk recorded it, and which operator did (`None`: an
/// action of the system itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsentRecord {
    pub at: Timestamp,
    pub operator: Option<OperatorKey>,
}

/// The resident's consent to his user info going to the certificate issuance server, as an install of AP `01`
/// carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuanceConsent {
    /// Given at the counter and recorded with the install.
    Recorded(ConsentRecord),
    /// An install recorded before cardap recorded consent (`CardApInstalled` v1): the resident consented on the
    /// paper application of the process then in use, so it counts as given.
    OnPaper,
}

/// What an install request says of the resident's consent to his user info going to the issuance server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConsentAnswer {
    /// The request says nothing: AP `01` is refused ([`CardError::ConsentRequired`]), a preset `01` included.
    #[default]
    NotAsked,
    /// The resident declined: AP `01` is refused, and a preset `01` is left out of a new local area.
    Declined,
    Given(ConsentRecord),
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
    Register {
        fid: CardFid,
        municipality: MunicipalityCode,
        resident_id: ResidentId,
    },
    /// 地域住民向け領域設定; the municipality's preset APs that it may still use are installed with it (a preset
    /// `01` needs the resident's answer: given, it is installed; declined, left out; not asked, the area is refused).
    CreateLocalArea {
        presets: Vec<ApInstall>,
        offer: ApOffer,
        consent: ConsentAnswer,
    },
    /// カードAP搭載: several APs at once, all or none (`01` only with the resident's consent).
    InstallAps {
        aps: Vec<ApInstall>,
        offer: ApOffer,
        consent: ConsentAnswer,
    },
    RemoveAp {
        business_id: BusinessId,
    },
    Suspend,
    Resume,
    Abolish,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardEvent {
    Registered {
        fid: CardFid,
        municipality: MunicipalityCode,
        resident_id: ResidentId,
    },
    LocalAreaCreated,
    /// `CardApInstalled` v2; `consent` is the resident's consent for AP `01` (and `None` for every other AP).
    ApInstalled {
        business_id: BusinessId,
        standard_id: Option<StandardId>,
        consent: Option<IssuanceConsent>,
    },
    ApRemoved {
        business_id: BusinessId,
    },
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

mod v2 {
    use super::*;

    /// `CardApInstalled` v2: v1 with the resident's consent (`null` for every AP but `01`).
    #[derive(Deserialize)]
    pub(super) struct ApInstalled {
        pub business_id: BusinessId,
        pub standard_id: Option<StandardId>,
        pub issuance_consent: Option<Consent>,
    }

    #[derive(Deserialize)]
    #[serde(tag = "given", rename_all = "snake_case", deny_unknown_fields)]
    pub(super) enum Consent {
        AtCounter { at: Timestamp, operator: Option<OperatorKey> },
        OnPaper,
    }

    pub(super) fn encode_consent(consent: Option<&IssuanceConsent>) -> Value {
        match consent {
            None => Value::Null,
            Some(IssuanceConsent::Recorded(ConsentRecord { at, operator })) => {
                json!({ "given": "at_counter", "at": at.unix(), "operator": operator })
            }
            Some(IssuanceConsent::OnPaper) => json!({ "given": "on_paper" }),
        }
    }

    impl From<Consent> for IssuanceConsent {
        fn from(c: Consent) -> Self {
            match c {
                Consent::AtCounter { at, operator } => IssuanceConsent::Recorded(ConsentRecord { at, operator }),
                Consent::OnPaper => IssuanceConsent::OnPaper,
            }
        }
    }
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
        match self {
            Self::ApInstalled { .. } => 2,
            _ => 1,
        }
    }

    fn encode(&self) -> Value {
        match self {
            Self::Registered { fid, municipality, resident_id } => json!({
                "fid": fid.as_str(),
                "municipality": municipality.as_str(),
                "resident_id": resident_id,
            }),
            Self::ApInstalled { business_id, standard_id, consent } => json!({
                "business_id": business_id.as_str(),
                "standard_id": standard_id,
                "issuance_consent": v2::encode_consent(consent.as_ref()),
            }),
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
                // Installed under the paper process: the certificate issuance AP's consent counts as given.
                let consent = (business_id == BusinessId::CERTIFICATE_ISSUANCE).then_some(IssuanceConsent::OnPaper);
                Self::ApInstalled { business_id, standard_id, consent }
            }
            (AP_INSTALLED, 2) => {
                let v2::ApInstalled { business_id, standard_id, issuance_consent } =
                    decode_payload(event_type, event_version, payload)?;
                Self::ApInstalled { business_id, standard_id, consent: issuance_consent.map(Into::into) }
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
    /// The FID is held (registered and not abolished), here or in another municipality: the answer is the same
    /// for both, so that it never says where.
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
    /// AP `01` without the resident's consent to his user info going to the certificate issuance server.
    #[error(
        "the certificate issuance AP (01) is installed only with the resident's consent to his user info going to \
         the issuance server: ask him, and send issuance_consent: true"
    )]
    ConsentRequired,
    /// Every AP of one install that is refused, each with its place in the request (from 0) and why, so that the
    /// clerk hears of all of them at once.
    #[error("{} of the APs are refused", .0.len())]
    ApsRefused(Vec<(usize, CardError)>),
}

impl crate::message::Localized for CardError {
    fn message_ja(&self) -> String {
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
            Self::ConsentRequired => "証明書等自動交付のカードAP（業務ID 01）は、利用者情報を証明発行サーバへ提供する\
                ことへの本人の同意がなければ搭載できません。本人に確認し、同意を得たうえで issuance_consent に true を\
                指定してください"
                .to_owned(),
            Self::ApsRefused(refused) => format!("{}件のカードAPを搭載できません", refused.len()),
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

/// Checks one AP to install against the card, the offer and the resident's consent (asked last: only of an AP that
/// could be installed otherwise).
fn check_install(
    card: &RegisteredCard,
    ap: &ApInstall,
    offer: &ApOffer,
    consent: ConsentAnswer,
) -> Result<(), CardError> {
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
    if *id == BusinessId::CERTIFICATE_ISSUANCE && !matches!(consent, ConsentAnswer::Given(_)) {
        return Err(CardError::ConsentRequired);
    }
    Ok(())
}

/// The install of a checked AP; AP `01` carries the consent it was checked with.
fn installed(ap: ApInstall, consent: ConsentAnswer) -> CardEvent {
    let consent = match consent {
        ConsentAnswer::Given(record) if ap.business_id == BusinessId::CERTIFICATE_ISSUANCE => {
            Some(IssuanceConsent::Recorded(record))
        }
        _ => None,
    };
    CardEvent::ApInstalled { business_id: ap.business_id, standard_id: ap.standard_id, consent }
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
            // Released: the card may be registered again, in any municipality (a new registration).
            return match command {
                C::Register { fid, municipality, resident_id } => {
                    Ok(vec![E::Registered { fid, municipality, resident_id }])
                }
                _ => Err(CardError::Abolished),
            };
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
            C::CreateLocalArea { presets, offer, consent } => {
                let mut events = vec![E::LocalAreaCreated];
                let mut seen = BTreeSet::new();
                for ap in presets.into_iter().filter(|ap| seen.insert(ap.business_id.clone())) {
                    match check_install(card, &ap, &offer, consent) {
                        Ok(()) => events.push(installed(ap, consent)),
                        // The preset 01 would be installed, and the resident was not asked: the clerk asks first.
                        Err(CardError::ConsentRequired) if consent == ConsentAnswer::NotAsked => {
                            return Err(CardError::ConsentRequired);
                        }
                        // A preset the municipality may no longer use is skipped, not refused: the settings can lag
                        // a withdrawal of shared use, and the card must still get its area. So is a preset 01 the
                        // resident declined.
                        Err(_) => {}
                    }
                }
                Ok(events)
            }
            C::InstallAps { .. } if !card.local_area => Err(CardError::LocalAreaMissing),
            C::InstallAps { aps, .. } if aps.is_empty() => Err(CardError::NoAps),
            C::InstallAps { aps, offer, consent } => {
                // Every refused AP, not only the first: the clerk fixes them all in one go.
                let mut seen = BTreeSet::new();
                let mut refused = vec![];
                for (index, ap) in aps.iter().enumerate() {
                    let checked = if seen.insert(ap.business_id.clone()) {
                        check_install(card, ap, &offer, consent)
                    } else {
                        Err(CardError::DuplicateAp(ap.business_id.clone()))
                    };
                    if let Err(e) = checked {
                        refused.push((index, e));
                    }
                }
                if !refused.is_empty() {
                    return Err(CardError::ApsRefused(refused));
                }
                Ok(aps.into_iter().map(|ap| installed(ap, consent)).collect())
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
            (E::ApInstalled { business_id, standard_id, .. }, Some(c)) => {
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
        if *allocated {
            Err(StandardIdError::AlreadyAllocated)
        } else {
            Ok(vec![StandardIdEvent::Allocated { id, fid }])
        }
    }

    fn evolve(_: bool, _: &StandardIdEvent) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Localized;
    use crate::testing::given;
    use CardCommand as C;
    use CardEvent as E;
    use proptest::prelude::*;
    use uuid::Uuid;

    fn fid() -> CardFid {
        CardFid::parse("0A1B2C3D4E5F").unwrap()
    }

    fn chiyoda() -> MunicipalityCode {
        MunicipalityCode::parse("131016").unwrap()
    }

    fn resident() -> ResidentId {
        ResidentId::from_uuid(Uuid::from_u128(0x0192_5c4e_6a80_7000_8000_0000_0000_0042))
    }

    fn bid(s: &str) -> BusinessId {
        BusinessId::parse(s).unwrap()
    }

    fn ids(list: &[&str]) -> BTreeSet<BusinessId> {
        list.iter().map(|s| bid(s)).collect()
    }

    fn standard_id(n: u64) -> StandardId {
        StandardId::new(&chiyoda(), n)
    }

    /// An AP to install: the library (`02`) with a 標準ID, any other without.
    fn ap(s: &str) -> ApInstall {
        let business_id = bid(s);
        let standard_id = (business_id == BusinessId::LIBRARY).then(|| standard_id(1234567890));
        ApInstall { business_id, standard_id }
    }

    /// The resident's consent, recorded by operator 7 at 2023-11-14T22:13:20Z.
    fn consent() -> ConsentRecord {
        ConsentRecord {
            at: Timestamp::from_unix(1_700_000_000),
            operator: Some(OperatorKey::from_uuid(Uuid::from_u128(7))),
        }
    }

    /// An AP installed by a request with the resident's consent: `01` carries it.
    fn installed_ap(s: &str) -> E {
        let ApInstall { business_id, standard_id } = ap(s);
        let consent = (business_id == BusinessId::CERTIFICATE_ISSUANCE).then_some(IssuanceConsent::Recorded(consent()));
        E::ApInstalled { business_id, standard_id, consent }
    }

    /// The municipality offers 01, 02, 10 and 11 and may use 01, 02, 10 and 12.
    fn offer() -> ApOffer {
        ApOffer { catalog: ids(&["01", "02", "10", "11"]), permitted: ids(&["01", "02", "10", "12"]) }
    }

    fn register() -> C {
        C::Register { fid: fid(), municipality: chiyoda(), resident_id: resident() }
    }

    fn registered() -> E {
        E::Registered { fid: fid(), municipality: chiyoda(), resident_id: resident() }
    }

    /// An install with the resident's consent.
    fn install(list: &[&str]) -> C {
        install_with(list, ConsentAnswer::Given(consent()))
    }

    fn install_with(list: &[&str], consent: ConsentAnswer) -> C {
        C::InstallAps { aps: list.iter().map(|s| ap(s)).collect(), offer: offer(), consent }
    }

    /// The local area with `presets`, the resident's answer being `consent`.
    fn local_area(presets: Vec<ApInstall>, consent: ConsentAnswer) -> C {
        C::CreateLocalArea { presets, offer: offer(), consent }
    }

    /// Every command, for the branches that refuse them all alike.
    fn every_command() -> Vec<C> {
        vec![
            local_area(vec![ap("01")], ConsentAnswer::Given(consent())),
            install(&["01"]),
            C::RemoveAp { business_id: bid("01") },
            C::Suspend,
            C::Resume,
            C::Abolish,
        ]
    }

    fn card(state: &CardState) -> &RegisteredCard {
        state.registered.as_ref().unwrap()
    }

    #[test]
    fn register_a_card() {
        let state = given::<Card>([]).when(register()).then([registered()]);
        let c = card(&state);
        assert_eq!((&c.fid, &c.municipality, c.resident_id), (&fid(), &chiyoda(), resident()));
        assert_eq!(c.status, CardStatus::InUse);
        assert!(!c.local_area && c.aps.is_empty());
        assert_eq!(stream_key(&fid()), "0A1B2C3D4E5F");
    }

    #[test]
    fn register_an_existing_card_is_refused() {
        given::<Card>([registered()]).when(register()).then_err(CardError::AlreadyRegistered);
        given::<Card>([registered(), E::Suspended]).when(register()).then_err(CardError::AlreadyRegistered);
    }

    /// The holder moved (his municipality abolished the card first: a move-out requires it): the physical card
    /// goes with him, and his new municipality registers it afresh, with no local area and no APs.
    #[test]
    fn an_abolished_card_is_released_and_registered_afresh() {
        let sapporo = MunicipalityCode::parse("011002").unwrap();
        let moved = ResidentId::from_uuid(Uuid::from_u128(0x43));
        let history = [registered(), E::LocalAreaCreated, installed_ap("01"), E::Suspended, E::Abolished];
        let state = given::<Card>(history)
            .when(C::Register { fid: fid(), municipality: sapporo.clone(), resident_id: moved })
            .then([E::Registered { fid: fid(), municipality: sapporo.clone(), resident_id: moved }]);
        let c = card(&state);
        assert_eq!((&c.municipality, c.resident_id, c.status), (&sapporo, moved, CardStatus::InUse));
        assert!(!c.local_area && c.aps.is_empty());
    }

    #[test]
    fn every_other_command_on_an_unregistered_card_is_refused() {
        for command in every_command() {
            given::<Card>([]).when(command).then_err(CardError::NotRegistered);
        }
    }

    #[test]
    fn every_other_command_on_an_abolished_card_is_refused() {
        for command in every_command() {
            given::<Card>([registered(), E::LocalAreaCreated, installed_ap("01"), E::Abolished])
                .when(command)
                .then_err(CardError::Abolished);
        }
    }

    #[test]
    fn suspend() {
        let state = given::<Card>([registered()]).when(C::Suspend).then([E::Suspended]);
        assert_eq!(card(&state).status, CardStatus::Suspended);
    }

    #[test]
    fn suspend_a_suspended_card_is_refused() {
        given::<Card>([registered(), E::Suspended]).when(C::Suspend).then_err(CardError::AlreadySuspended);
    }

    #[test]
    fn resume() {
        let state = given::<Card>([registered(), E::Suspended]).when(C::Resume).then([E::Resumed]);
        assert_eq!(card(&state).status, CardStatus::InUse);
    }

    #[test]
    fn resume_a_card_in_use_is_refused() {
        given::<Card>([registered()]).when(C::Resume).then_err(CardError::NotSuspended);
        given::<Card>([registered(), E::Suspended, E::Resumed]).when(C::Resume).then_err(CardError::NotSuspended);
    }

    #[test]
    fn abolish_a_card_in_use() {
        let state = given::<Card>([registered(), E::LocalAreaCreated, installed_ap("02")])
            .when(C::Abolish)
            .then([E::Abolished]);
        assert_eq!(card(&state).status, CardStatus::Abolished);
    }

    #[test]
    fn abolish_a_suspended_card() {
        let state = given::<Card>([registered(), E::Suspended]).when(C::Abolish).then([E::Abolished]);
        assert_eq!(card(&state).status, CardStatus::Abolished);
    }

    #[test]
    fn remove_an_installed_ap() {
        let state = given::<Card>([registered(), E::LocalAreaCreated, installed_ap("01"), installed_ap("02")])
            .when(C::RemoveAp { business_id: bid("02") })
            .then([E::ApRemoved { business_id: bid("02") }]);
        assert_eq!(card(&state).aps, BTreeMap::from([(bid("01"), None)]));
    }

    #[test]
    fn remove_an_ap_that_is_not_installed_is_refused() {
        given::<Card>([registered(), E::LocalAreaCreated, installed_ap("01")])
            .when(C::RemoveAp { business_id: bid("10") })
            .then_err(CardError::ApNotInstalled(bid("10")));
        given::<Card>([registered()])
            .when(C::RemoveAp { business_id: bid("01") })
            .then_err(CardError::ApNotInstalled(bid("01")));
        given::<Card>([registered(), E::LocalAreaCreated, installed_ap("01"), E::ApRemoved { business_id: bid("01") }])
            .when(C::RemoveAp { business_id: bid("01") })
            .then_err(CardError::ApNotInstalled(bid("01")));
    }

    #[test]
    fn remove_an_ap_from_a_suspended_card_is_allowed() {
        let state = given::<Card>([registered(), E::LocalAreaCreated, installed_ap("01"), E::Suspended])
            .when(C::RemoveAp { business_id: bid("01") })
            .then([E::ApRemoved { business_id: bid("01") }]);
        assert!(card(&state).aps.is_empty());
        assert_eq!(card(&state).status, CardStatus::Suspended);
        given::<Card>([registered(), E::Suspended])
            .when(C::RemoveAp { business_id: bid("01") })
            .then_err(CardError::ApNotInstalled(bid("01")));
    }

    #[test]
    fn nothing_is_installed_on_a_suspended_card() {
        given::<Card>([registered(), E::LocalAreaCreated, E::Suspended])
            .when(install(&["01"]))
            .then_err(CardError::Suspended);
        given::<Card>([registered(), E::Suspended])
            .when(local_area(vec![], ConsentAnswer::NotAsked))
            .then_err(CardError::Suspended);
        // Suspension is reported before the missing local area and the empty list.
        given::<Card>([registered(), E::Suspended]).when(install(&[])).then_err(CardError::Suspended);
    }

    #[test]
    fn create_the_local_area() {
        let state =
            given::<Card>([registered()]).when(local_area(vec![], ConsentAnswer::NotAsked)).then([E::LocalAreaCreated]);
        assert!(card(&state).local_area && card(&state).aps.is_empty());
    }

    #[test]
    fn create_the_local_area_twice_is_refused() {
        given::<Card>([registered(), E::LocalAreaCreated])
            .when(local_area(vec![], ConsentAnswer::NotAsked))
            .then_err(CardError::LocalAreaExists);
    }

    #[test]
    fn the_local_area_comes_with_the_presets_that_may_still_be_installed() {
        let presets = vec![
            ap("01"),
            ap("11"), // in the catalog, no longer permitted
            ap("12"), // permitted, not in the catalog
            ap("02"),
            ap("01"),                                                                // duplicate
            ApInstall { business_id: bid("10"), standard_id: Some(standard_id(1)) }, // 標準ID on a non-library AP
            ap("00"),
        ];
        let state = given::<Card>([registered()]).when(local_area(presets, ConsentAnswer::Given(consent()))).then([
            E::LocalAreaCreated,
            installed_ap("01"),
            installed_ap("02"),
        ]);
        assert!(card(&state).local_area);
        assert_eq!(card(&state).aps, BTreeMap::from([(bid("01"), None), (bid("02"), Some(standard_id(1234567890)))]));
    }

    #[test]
    fn the_library_preset_without_a_standard_id_is_skipped() {
        given::<Card>([registered()])
            .when(local_area(
                vec![ApInstall { business_id: BusinessId::LIBRARY, standard_id: None }, ap("10")],
                ConsentAnswer::NotAsked,
            ))
            .then([E::LocalAreaCreated, installed_ap("10")]);
    }

    #[test]
    fn install_before_the_local_area_is_refused() {
        given::<Card>([registered()]).when(install(&["01"])).then_err(CardError::LocalAreaMissing);
        given::<Card>([registered()]).when(install(&[])).then_err(CardError::LocalAreaMissing);
    }

    #[test]
    fn install_nothing_is_refused() {
        given::<Card>([registered(), E::LocalAreaCreated]).when(install(&[])).then_err(CardError::NoAps);
    }

    #[test]
    fn install_an_ap() {
        let state =
            given::<Card>([registered(), E::LocalAreaCreated]).when(install(&["10"])).then([installed_ap("10")]);
        assert_eq!(card(&state).aps, BTreeMap::from([(bid("10"), None)]));
    }

    #[test]
    fn install_several_aps_at_once() {
        let state = given::<Card>([registered(), E::LocalAreaCreated, installed_ap("01")])
            .when(install(&["10", "02"]))
            .then([installed_ap("10"), installed_ap("02")]);
        assert_eq!(
            card(&state).aps,
            BTreeMap::from([(bid("01"), None), (bid("02"), Some(standard_id(1234567890))), (bid("10"), None)])
        );
    }

    #[test]
    fn install_the_same_ap_twice_in_one_request_is_refused() {
        given::<Card>([registered(), E::LocalAreaCreated])
            .when(install(&["10", "01", "10"]))
            .then_err(CardError::ApsRefused(vec![(2, CardError::DuplicateAp(bid("10")))]));
    }

    #[test]
    fn install_an_ap_that_is_not_permitted_is_refused() {
        given::<Card>([registered(), E::LocalAreaCreated])
            .when(install(&["01", "11"]))
            .then_err(CardError::ApsRefused(vec![(1, CardError::ApNotPermitted(bid("11")))]));
        // Not permitted is reported before not in the catalog.
        given::<Card>([registered(), E::LocalAreaCreated])
            .when(install(&["13"]))
            .then_err(CardError::ApsRefused(vec![(0, CardError::ApNotPermitted(bid("13")))]));
    }

    #[test]
    fn install_an_ap_that_is_not_in_the_catalog_is_refused() {
        given::<Card>([registered(), E::LocalAreaCreated])
            .when(install(&["12"]))
            .then_err(CardError::ApsRefused(vec![(0, CardError::ApNotInCatalog(bid("12")))]));
    }

    #[test]
    fn every_refused_ap_of_an_install_is_named_at_once() {
        given::<Card>([registered(), E::LocalAreaCreated, installed_ap("02")])
            .when(install(&["11", "01", "12", "02", "01"]))
            .then_err(CardError::ApsRefused(vec![
                (0, CardError::ApNotPermitted(bid("11"))),
                (2, CardError::ApNotInCatalog(bid("12"))),
                (3, CardError::ApAlreadyInstalled(bid("02"))),
                (4, CardError::DuplicateAp(bid("01"))),
            ]));
    }

    #[test]
    fn install_an_ap_that_is_already_installed_is_refused_all_or_none() {
        given::<Card>([registered(), E::LocalAreaCreated, installed_ap("02")])
            .when(install(&["01", "02"]))
            .then_err(CardError::ApsRefused(vec![(1, CardError::ApAlreadyInstalled(bid("02")))]));
    }

    #[test]
    fn the_library_ap_needs_a_standard_id() {
        given::<Card>([registered(), E::LocalAreaCreated])
            .when(C::InstallAps {
                aps: vec![ApInstall { business_id: BusinessId::LIBRARY, standard_id: None }],
                offer: offer(),
                consent: ConsentAnswer::NotAsked,
            })
            .then_err(CardError::ApsRefused(vec![(0, CardError::StandardIdMismatch(BusinessId::LIBRARY))]));
    }

    #[test]
    fn no_other_ap_takes_a_standard_id() {
        given::<Card>([registered(), E::LocalAreaCreated])
            .when(C::InstallAps {
                aps: vec![ApInstall { business_id: bid("01"), standard_id: Some(standard_id(7)) }],
                offer: offer(),
                consent: ConsentAnswer::Given(consent()),
            })
            .then_err(CardError::ApsRefused(vec![(0, CardError::StandardIdMismatch(bid("01")))]));
    }

    #[test]
    fn the_certificate_issuance_ap_is_installed_with_the_residents_consent() {
        let state = given::<Card>([registered(), E::LocalAreaCreated])
            .when(install(&["10", "01"]))
            .then([installed_ap("10"), installed_ap("01")]);
        assert_eq!(card(&state).aps.keys().collect::<Vec<_>>(), [&bid("01"), &bid("10")]);
    }

    #[test]
    fn the_certificate_issuance_ap_without_consent_is_refused_all_or_none() {
        for answer in [ConsentAnswer::NotAsked, ConsentAnswer::Declined] {
            given::<Card>([registered(), E::LocalAreaCreated])
                .when(install_with(&["10", "01"], answer))
                .then_err(CardError::ApsRefused(vec![(1, CardError::ConsentRequired)]));
        }
        // Other APs need no consent.
        given::<Card>([registered(), E::LocalAreaCreated])
            .when(install_with(&["10", "02"], ConsentAnswer::NotAsked))
            .then([installed_ap("10"), installed_ap("02")]);
        // Consent is asked last: an AP 01 that could not be installed anyway says why.
        given::<Card>([registered(), E::LocalAreaCreated, installed_ap("01")])
            .when(install_with(&["01"], ConsentAnswer::NotAsked))
            .then_err(CardError::ApsRefused(vec![(0, CardError::ApAlreadyInstalled(bid("01")))]));
    }

    #[test]
    fn a_preset_certificate_issuance_ap_needs_the_residents_answer() {
        let presets = || vec![ap("01"), ap("10")];
        given::<Card>([registered()])
            .when(local_area(presets(), ConsentAnswer::NotAsked))
            .then_err(CardError::ConsentRequired);
        // Declined: the area and the other presets, without 01.
        given::<Card>([registered()])
            .when(local_area(presets(), ConsentAnswer::Declined))
            .then([E::LocalAreaCreated, installed_ap("10")]);
        given::<Card>([registered()]).when(local_area(presets(), ConsentAnswer::Given(consent()))).then([
            E::LocalAreaCreated,
            installed_ap("01"),
            installed_ap("10"),
        ]);
        // A preset 01 the municipality may no longer use is skipped without asking.
        given::<Card>([registered()])
            .when(C::CreateLocalArea {
                presets: presets(),
                offer: ApOffer { catalog: ids(&["01", "10"]), permitted: ids(&["10"]) },
                consent: ConsentAnswer::NotAsked,
            })
            .then([E::LocalAreaCreated, installed_ap("10")]);
    }

    #[test]
    fn a_removed_ap_can_be_installed_again() {
        given::<Card>([
            registered(),
            E::LocalAreaCreated,
            installed_ap("02"),
            E::ApRemoved { business_id: BusinessId::LIBRARY },
        ])
        .when(install(&["02"]))
        .then([installed_ap("02")]);
    }

    #[test]
    fn a_resumed_card_takes_aps_again() {
        given::<Card>([registered(), E::LocalAreaCreated, E::Suspended, E::Resumed])
            .when(install(&["01"]))
            .then([installed_ap("01")]);
    }

    #[test]
    fn events_of_an_unregistered_stream_change_nothing() {
        let state = Card::fold(&[E::LocalAreaCreated, installed_ap("01"), E::Suspended]);
        assert!(state.registered.is_none());
    }

    #[test]
    fn the_payloads_have_the_documented_shape() {
        for (event, payload) in [
            (
                registered(),
                json!({ "fid": "0A1B2C3D4E5F", "municipality": "131016",
                        "resident_id": "01925c4e-6a80-7000-8000-000000000042" }),
            ),
            (
                installed_ap("02"),
                json!({ "business_id": "02", "standard_id": "1310161234567890", "issuance_consent": null }),
            ),
            (
                installed_ap("01"),
                json!({ "business_id": "01", "standard_id": null, "issuance_consent":
                        { "given": "at_counter", "at": 1_700_000_000, "operator": "00000000-0000-0000-0000-000000000007" } }),
            ),
            (
                E::ApInstalled { business_id: bid("01"), standard_id: None, consent: Some(IssuanceConsent::OnPaper) },
                json!({ "business_id": "01", "standard_id": null, "issuance_consent": { "given": "on_paper" } }),
            ),
            (E::ApRemoved { business_id: bid("01") }, json!({ "business_id": "01" })),
            (E::LocalAreaCreated, json!({})),
            (E::Suspended, json!({})),
            (E::Resumed, json!({})),
            (E::Abolished, json!({})),
        ] {
            assert_eq!(event.encode(), payload, "{event:?}");
            assert_eq!(CardEvent::decode(event.event_type(), event.event_version(), &payload), Ok(event));
        }
        assert_eq!(CardEvent::decode(REGISTERED, 2, &json!({})), Err(EventDecodeError::unknown(REGISTERED, 2)));
        assert_eq!(CardEvent::decode(AP_INSTALLED, 3, &json!({})), Err(EventDecodeError::unknown(AP_INSTALLED, 3)));
        for (event_type, payload) in [
            (REGISTERED, json!({ "fid": "0A1B", "municipality": "131017", "resident_id": resident() })),
            (AP_INSTALLED, json!({ "business_id": "02", "standard_id": "1310171234567890" })),
            (AP_REMOVED, json!({})),
            (SUSPENDED, json!(null)),
        ] {
            assert!(
                matches!(CardEvent::decode(event_type, 1, &payload), Err(EventDecodeError::Payload { .. })),
                "{event_type} {payload}"
            );
        }
        for payload in [
            json!({ "business_id": "01", "standard_id": null, "issuance_consent": { "given": "orally" } }),
            json!({ "business_id": "01", "standard_id": null, "issuance_consent": { "given": "at_counter" } }),
        ] {
            assert!(
                matches!(CardEvent::decode(AP_INSTALLED, 2, &payload), Err(EventDecodeError::Payload { .. })),
                "{payload}"
            );
        }
    }

    #[test]
    fn an_install_recorded_before_consent_was_recorded_counts_as_consented_on_paper() {
        for (business_id, consent) in [("01", Some(IssuanceConsent::OnPaper)), ("10", None)] {
            let v1 = json!({ "business_id": business_id, "standard_id": null });
            let event = CardEvent::decode(AP_INSTALLED, 1, &v1).unwrap();
            assert_eq!(event, E::ApInstalled { business_id: bid(business_id), standard_id: None, consent });
            assert_eq!(event.event_version(), 2);
        }
    }

    #[test]
    fn statuses_and_errors_have_japanese_labels() {
        for (status, code, label) in [
            (CardStatus::InUse, "in_use", "運用中"),
            (CardStatus::Suspended, "suspended", "一時停止"),
            (CardStatus::Abolished, "abolished", "廃止"),
        ] {
            assert_eq!((status.as_str(), status.label_ja()), (code, label));
            assert_eq!(serde_json::to_value(status).unwrap(), json!(code));
        }
        let b = bid("10");
        for e in [
            CardError::AlreadyRegistered,
            CardError::NotRegistered,
            CardError::Abolished,
            CardError::Suspended,
            CardError::AlreadySuspended,
            CardError::NotSuspended,
            CardError::LocalAreaMissing,
            CardError::LocalAreaExists,
            CardError::NoAps,
            CardError::DuplicateAp(b.clone()),
            CardError::ApNotInCatalog(b.clone()),
            CardError::ApNotPermitted(b.clone()),
            CardError::ApAlreadyInstalled(b.clone()),
            CardError::ApNotInstalled(b.clone()),
            CardError::StandardIdMismatch(b.clone()),
            CardError::ConsentRequired,
            CardError::ApsRefused(vec![(0, CardError::ApNotInCatalog(b))]),
        ] {
            assert!(!e.message_ja().is_empty() && !e.to_string().is_empty(), "{e:?}");
        }
        assert!(!StandardIdError::AlreadyAllocated.to_string().is_empty());
    }

    #[test]
    fn allocate_a_standard_id() {
        let id = standard_id(42);
        let allocated = given::<StandardIdAllocation>([])
            .when(StandardIdCommand::Allocate { id: id.clone(), fid: fid() })
            .then([StandardIdEvent::Allocated { id: id.clone(), fid: fid() }]);
        assert!(allocated);
        assert_eq!(allocation_stream_key(&id), "1310160000000042");
        assert_eq!(
            StandardIdEvent::Allocated { id, fid: fid() }.encode(),
            json!({ "standard_id": "1310160000000042", "fid": "0A1B2C3D4E5F" })
        );
    }

    #[test]
    fn a_standard_id_is_never_handed_out_twice() {
        let id = standard_id(42);
        let other = CardFid::parse("FFFF").unwrap();
        given::<StandardIdAllocation>([StandardIdEvent::Allocated { id: id.clone(), fid: fid() }])
            .when(StandardIdCommand::Allocate { id, fid: other })
            .then_err(StandardIdError::AlreadyAllocated);
        assert_eq!(StandardIdEvent::decode(ALLOCATED, 2, &json!({})), Err(EventDecodeError::unknown(ALLOCATED, 2)));
        assert!(matches!(
            StandardIdEvent::decode(ALLOCATED, 1, &json!({ "standard_id": "131016", "fid": "0A" })),
            Err(EventDecodeError::Payload { .. })
        ));
    }

    #[test]
    fn standard_id_examples() {
        let id = StandardId::parse("1310161234567890").unwrap();
        assert_eq!(id.municipality(), Some(chiyoda()));
        assert_eq!(id.to_string(), "1310161234567890");
        assert_eq!(StandardId::new(&chiyoda(), 12_345_678_901).as_str(), "1310162345678901");
        for bad in
            ["", "131016123456789", "13101612345678901", "1310171234567890", "131016123456789a", "１310161234567890"]
        {
            assert_eq!(StandardId::parse(bad), Err(ParseError::InvalidStandardId), "{bad}");
        }
        assert_eq!(serde_json::to_value(&id).unwrap(), json!("1310161234567890"));
        assert!(serde_json::from_value::<StandardId>(json!(1310161234567890u64)).is_err());
    }

    #[test]
    fn an_associations_standard_id_starts_with_its_association_id() {
        let association = MunicipalityCode::parse("A00001").unwrap();
        let id = StandardId::new(&association, 1_234_567_890);
        assert_eq!(id.as_str(), "A000011234567890");
        assert_eq!(id.municipality(), Some(association));
        assert_eq!(StandardId::parse("A000011234567890"), Ok(id));
        for bad in ["A00001123456789", "A0000112345678901", "A00001123456789A", "a000011234567890", "B000011234567890"]
        {
            assert_eq!(StandardId::parse(bad), Err(ParseError::InvalidStandardId), "{bad}");
        }
    }

    /// A valid municipality code: the five digits with the one check digit that parses.
    fn municipality_code() -> impl Strategy<Value = MunicipalityCode> {
        "[0-9]{5}"
            .prop_map(|prefix| (0..10).find_map(|d| MunicipalityCode::parse(&format!("{prefix}{d}")).ok()).unwrap())
    }

    proptest! {
        #[test]
        fn new_always_parses(code in municipality_code(), n in any::<u64>()) {
            let id = StandardId::new(&code, n);
            prop_assert_eq!(id.as_str().len(), 16);
            prop_assert!(id.as_str().bytes().all(|b| b.is_ascii_digit()));
            prop_assert_eq!(&id.as_str()[..6], code.as_str());
            prop_assert_eq!(id.as_str()[6..].parse::<u64>().unwrap(), n % StandardId::NUMBER_BOUND);
            prop_assert_eq!(id.municipality(), Some(code));
            prop_assert_eq!(StandardId::parse(id.as_str()), Ok(id.clone()));
            let json = serde_json::to_value(&id).unwrap();
            prop_assert_eq!(serde_json::from_value::<StandardId>(json).unwrap(), id);
        }

        #[test]
        fn a_bad_municipality_prefix_is_refused(code in municipality_code(), wrong in 1u8..10, number in "[0-9]{10}") {
            let digits = code.as_str().as_bytes();
            let check = (digits[5] - b'0' + wrong) % 10;
            let s = format!("{}{check}{number}", &code.as_str()[..5]);
            prop_assert_eq!(StandardId::parse(&s), Err(ParseError::InvalidStandardId));
        }

        #[test]
        fn only_16_digits_parse(s in "[0-9]{0,15}|[0-9]{17,24}") {
            prop_assert_eq!(StandardId::parse(&s), Err(ParseError::InvalidStandardId));
        }

        #[test]
        fn a_standard_id_with_any_other_character_is_refused(
            code in municipality_code(),
            number in "[0-9]{9}",
            ch in any::<char>().prop_filter("not a digit", |c| !c.is_ascii_digit()),
            at in 0usize..10,
        ) {
            let mut rest = number.clone();
            rest.insert(at, ch);
            prop_assert_eq!(StandardId::parse(&format!("{code}{rest}")), Err(ParseError::InvalidStandardId));
        }
    }
}
