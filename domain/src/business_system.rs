//! The `BusinessSystem` aggregate (業務システム): an independent system that a card AP serves, with its 業務ID
//! and the profile its server certificate carries (手引き I 2.2), and the shared-use list (共同利用業務設定): the
//! municipalities permitted to use it.
//!
//! Owns the business system's value types and events. A municipality that is not permitted gets nothing of
//! that business system; enforcing that elsewhere (operators, APs, feeds) reads `permits`. The built-ins
//! `00`–`02` exist from the first start (`builtin_profiles`) and are never retired; a 業務ID is never reused.
//! Every other system is registered with the three URLs the source's screen marks required (`RequiredUrl`),
//! and none of them can be cleared later. Systems stored before that rule keep their events as they are (the
//! payload shape is unchanged): the rule is enforced in `decide`, not in the events.
//!
//! The feed's field list (データの最小化, what the system's replication feed may carry of a resident) is an event
//! here too (`SetFeedFields` → `FeedFieldsSet`); its values and defaults are in `feed_fields`. The certificate
//! issuance system's list always keeps the card status: the kiosk refuses a suspended or abolished card by it.
//!
//! The optional webhook push of the feed: its URL (`SetWebhook` → `WebhookSet`, `RemoveWebhook` →
//! `WebhookRemoved`) and the issuance of its signing secret (`IssueWebhookSecret` → `WebhookSecretIssued`; the
//! secret itself is sealed and stored beside the event, never in it).
//!
//! Length: about half of this file is its given/when/then tests, one per branch of `decide`; the code is under 600
//! lines.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::aggregate::decode_payload;
use crate::contact::{Email, Phone, Text100, Url, string_newtype};
use crate::feed_fields::{FeedField, FeedFields};
use crate::ids::parse_text;
use crate::login_client::LoginClient;
use crate::webhook::WebhookUrl;
use crate::{Aggregate, BusinessId, DomainEvent, EventDecodeError, MunicipalityCode, ParseError, Timestamp};

/// The stream id of a business system: its 業務ID.
pub fn stream_key(id: &BusinessId) -> String {
    id.as_str().to_owned()
}

/// 業務システム名, e.g. `証明書等自動交付`: trimmed, 1..=50 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BusinessSystemName(String);

impl BusinessSystemName {
    pub const MAX_CHARS: usize = 50;

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        parse_text(s, Self::MAX_CHARS).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

string_newtype!(BusinessSystemName);

/// What the business server certificate carries besides the 業務ID (手引き I 2.2): the name, and for every
/// system but the built-ins the three `RequiredUrl`s (`decide` enforces those, so that profiles stored before
/// the rule still decode); the rest is optional. The URLs are where the operator top page links to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusinessSystemProfile {
    /// 業務システム名.
    pub name: BusinessSystemName,
    /// 管理組織名: who runs the system and answers for it.
    pub organization: Option<Text100>,
    /// 業務画像: the icon on the operator top page.
    pub image: Option<Url>,
    /// 業務トップURL: where an operator lands after choosing the system.
    pub top_url: Option<Url>,
    /// オペレータ管理URL: where that system's administrator maps operators to 業務内ID.
    pub operator_admin_url: Option<Url>,
    /// パーソナライズURL: the system's own per-operator settings.
    pub personalize_url: Option<Url>,
    /// 連絡先電話.
    pub phone: Option<Phone>,
    /// E-mail.
    pub email: Option<Email>,
}

/// Some fields of a profile: `None` leaves a field as it is, `Some(None)` clears an optional one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProfilePatch {
    pub name: Option<BusinessSystemName>,
    pub organization: Option<Option<Text100>>,
    pub image: Option<Option<Url>>,
    pub top_url: Option<Option<Url>>,
    pub operator_admin_url: Option<Option<Url>>,
    pub personalize_url: Option<Option<Url>>,
    pub phone: Option<Option<Phone>>,
    pub email: Option<Option<Email>>,
}

impl ProfilePatch {
    /// The profile after this patch.
    pub fn apply(&self, current: &BusinessSystemProfile) -> BusinessSystemProfile {
        use crate::patch::merged as merge;
        BusinessSystemProfile {
            name: self.name.clone().unwrap_or_else(|| current.name.clone()),
            organization: merge(&current.organization, &self.organization),
            image: merge(&current.image, &self.image),
            top_url: merge(&current.top_url, &self.top_url),
            operator_admin_url: merge(&current.operator_admin_url, &self.operator_admin_url),
            personalize_url: merge(&current.personalize_url, &self.personalize_url),
            phone: merge(&current.phone, &self.phone),
            email: merge(&current.email, &self.email),
        }
    }
}

impl BusinessSystemProfile {
    /// A profile with only a name.
    pub fn named(name: BusinessSystemName) -> Self {
        Self {
            name,
            organization: None,
            image: None,
            top_url: None,
            operator_admin_url: None,
            personalize_url: None,
            phone: None,
            email: None,
        }
    }
}

/// One of the three URLs the source's business-system screen marks required (＊業務トップURL,
/// ＊オペレータ管理URL, ＊パーソナライズURL, 手引き I 2.2 (2) ①). The built-ins `00`–`02` have none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RequiredUrl {
    /// 業務トップURL.
    Top,
    /// オペレータ管理URL.
    OperatorAdmin,
    /// パーソナライズURL.
    Personalize,
}

impl RequiredUrl {
    /// In the order of the screen.
    pub const ALL: [RequiredUrl; 3] = [Self::Top, Self::OperatorAdmin, Self::Personalize];

    /// The field name in a body and in the stored profile.
    pub fn field(self) -> &'static str {
        match self {
            Self::Top => "top_url",
            Self::OperatorAdmin => "operator_admin_url",
            Self::Personalize => "personalize_url",
        }
    }

    /// The screen's label.
    pub fn label_ja(self) -> &'static str {
        match self {
            Self::Top => "業務トップURL",
            Self::OperatorAdmin => "オペレータ管理URL",
            Self::Personalize => "パーソナライズURL",
        }
    }

    fn of(self, profile: &BusinessSystemProfile) -> Option<&Url> {
        match self {
            Self::Top => profile.top_url.as_ref(),
            Self::OperatorAdmin => profile.operator_admin_url.as_ref(),
            Self::Personalize => profile.personalize_url.as_ref(),
        }
    }
}

impl BusinessSystemProfile {
    /// The required URLs this profile lacks, in the order of the screen.
    pub fn missing_urls(&self) -> Vec<RequiredUrl> {
        RequiredUrl::ALL.into_iter().filter(|u| u.of(self).is_none()).collect()
    }
}

/// The business systems present from the first start: `00` cardap管理, `01` 証明書等自動交付, `02` 図書館.
pub fn builtin_profiles() -> Vec<(BusinessId, BusinessSystemProfile)> {
    // The names are literals that satisfy `BusinessSystemName::parse` (a test checks it).
    [
        (BusinessId::ADMINISTRATION, "cardap管理"),
        (BusinessId::CERTIFICATE_ISSUANCE, "証明書等自動交付"),
        (BusinessId::LIBRARY, "図書館"),
    ]
    .into_iter()
    .map(|(id, name)| (id, BusinessSystemProfile::named(BusinessSystemName(name.to_owned()))))
    .collect()
}

#[derive(Debug, Clone, PartialEq)]
pub enum BusinessSystemCommand {
    Register {
        id: BusinessId,
        profile: BusinessSystemProfile,
    },
    /// Replace the profile; an identical profile yields no event.
    Update {
        profile: BusinessSystemProfile,
    },
    /// Change some fields of the profile (a PATCH), merged here with the profile as it is now, then decided as
    /// an `Update`: a concurrent change of another field is never reverted.
    Patch {
        patch: ProfilePatch,
    },
    /// Take the system out of service for good; the built-ins cannot be retired.
    Retire,
    /// 共同利用業務設定: let a municipality use this system; already permitted yields no event.
    Permit {
        municipality: MunicipalityCode,
    },
    /// Stop a municipality from using this system.
    Withdraw {
        municipality: MunicipalityCode,
    },
    /// Register (or change) the system as a login client of cardap (業務ログイン認証); the same registration
    /// yields no event.
    ConfigureLogin {
        client: LoginClient,
    },
    /// A new client secret replaces the old one (its hash is stored with the event, never in it); only for a
    /// system registered as a login client.
    IssueLoginSecret {
        at: Timestamp,
    },
    /// Replace the feed's field list (データの最小化); the list it has now (set, or its default) yields no event.
    SetFeedFields {
        fields: FeedFields,
    },
    /// Push the feed to this URL (replacing the one set before); the same URL yields no event.
    SetWebhook {
        url: WebhookUrl,
    },
    /// Stop pushing the feed; without a webhook, no event.
    RemoveWebhook,
    /// A new signing secret replaces the old one (sealed and stored with the event, never in it); only for a
    /// system with a webhook.
    IssueWebhookSecret {
        at: Timestamp,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusinessSystemEvent {
    Registered {
        id: BusinessId,
        profile: BusinessSystemProfile,
    },
    Updated {
        profile: BusinessSystemProfile,
    },
    Retired,
    MunicipalityPermitted {
        municipality: MunicipalityCode,
    },
    MunicipalityWithdrawn {
        municipality: MunicipalityCode,
    },
    LoginConfigured {
        client: LoginClient,
    },
    LoginSecretIssued {
        at: Timestamp,
    },
    /// The feed carries these fields from now on (items delivered after it).
    FeedFieldsSet {
        fields: FeedFields,
    },
    /// The feed is pushed to this URL from now on.
    WebhookSet {
        url: WebhookUrl,
    },
    WebhookRemoved,
    WebhookSecretIssued {
        at: Timestamp,
    },
}

const REGISTERED: &str = "BusinessSystemRegistered";
const UPDATED: &str = "BusinessSystemUpdated";
const RETIRED: &str = "BusinessSystemRetired";
const PERMITTED: &str = "SharedUsePermitted";
const WITHDRAWN: &str = "SharedUseWithdrawn";
const LOGIN_CONFIGURED: &str = "BusinessSystemLoginConfigured";
const LOGIN_SECRET_ISSUED: &str = "BusinessSystemLoginSecretIssued";
const FEED_FIELDS_SET: &str = "BusinessSystemFeedFieldsSet";
const WEBHOOK_SET: &str = "BusinessSystemWebhookSet";
const WEBHOOK_REMOVED: &str = "BusinessSystemWebhookRemoved";
const WEBHOOK_SECRET_ISSUED: &str = "BusinessSystemWebhookSecretIssued";

/// Stored payload shapes, one per `(event_type, version)`; never edit a released one.
mod v1 {
    use super::*;

    #[derive(Deserialize)]
    pub(super) struct Profile {
        pub name: BusinessSystemName,
        pub organization: Option<Text100>,
        pub image: Option<Url>,
        pub top_url: Option<Url>,
        pub operator_admin_url: Option<Url>,
        pub personalize_url: Option<Url>,
        pub phone: Option<Phone>,
        pub email: Option<Email>,
    }

    impl From<Profile> for BusinessSystemProfile {
        fn from(p: Profile) -> Self {
            Self {
                name: p.name,
                organization: p.organization,
                image: p.image,
                top_url: p.top_url,
                operator_admin_url: p.operator_admin_url,
                personalize_url: p.personalize_url,
                phone: p.phone,
                email: p.email,
            }
        }
    }

    pub(super) fn encode_profile(p: &BusinessSystemProfile) -> Value {
        json!({
            "name": p.name.as_str(),
            "organization": p.organization.as_ref().map(Text100::as_str),
            "image": p.image.as_ref().map(Url::as_str),
            "top_url": p.top_url.as_ref().map(Url::as_str),
            "operator_admin_url": p.operator_admin_url.as_ref().map(Url::as_str),
            "personalize_url": p.personalize_url.as_ref().map(Url::as_str),
            "phone": p.phone.as_ref().map(Phone::as_str),
            "email": p.email.as_ref().map(Email::as_str),
        })
    }

    #[derive(Deserialize)]
    pub(super) struct Registered {
        pub business_id: BusinessId,
        pub profile: Profile,
    }

    #[derive(Deserialize)]
    pub(super) struct Updated {
        pub profile: Profile,
    }

    #[derive(Deserialize)]
    pub(super) struct Retired {}

    #[derive(Deserialize)]
    pub(super) struct SharedUse {
        pub municipality: MunicipalityCode,
    }

    #[derive(Deserialize)]
    pub(super) struct LoginConfigured {
        pub client: crate::login_client::LoginClientV1,
    }

    #[derive(Deserialize)]
    pub(super) struct LoginSecretIssued {
        pub at: Timestamp,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct FeedFieldsSet {
        pub fields: Vec<FeedField>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct WebhookSet {
        pub url: WebhookUrl,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct WebhookRemoved {}

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct WebhookSecretIssued {
        pub at: Timestamp,
    }
}

impl DomainEvent for BusinessSystemEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Registered { .. } => REGISTERED,
            Self::Updated { .. } => UPDATED,
            Self::Retired => RETIRED,
            Self::MunicipalityPermitted { .. } => PERMITTED,
            Self::MunicipalityWithdrawn { .. } => WITHDRAWN,
            Self::LoginConfigured { .. } => LOGIN_CONFIGURED,
            Self::LoginSecretIssued { .. } => LOGIN_SECRET_ISSUED,
            Self::FeedFieldsSet { .. } => FEED_FIELDS_SET,
            Self::WebhookSet { .. } => WEBHOOK_SET,
            Self::WebhookRemoved => WEBHOOK_REMOVED,
            Self::WebhookSecretIssued { .. } => WEBHOOK_SECRET_ISSUED,
        }
    }

    fn event_version(&self) -> u32 {
        1
    }

    fn encode(&self) -> Value {
        match self {
            Self::Registered { id, profile } => {
                json!({ "business_id": id.as_str(), "profile": v1::encode_profile(profile) })
            }
            Self::Updated { profile } => json!({ "profile": v1::encode_profile(profile) }),
            Self::Retired => json!({}),
            Self::MunicipalityPermitted { municipality } | Self::MunicipalityWithdrawn { municipality } => {
                json!({ "municipality": municipality.as_str() })
            }
            Self::LoginConfigured { client } => json!({ "client": client.encode() }),
            Self::LoginSecretIssued { at } => json!({ "at": at }),
            Self::FeedFieldsSet { fields } => json!({ "fields": fields.names() }),
            Self::WebhookSet { url } => json!({ "url": url.as_str() }),
            Self::WebhookRemoved => json!({}),
            Self::WebhookSecretIssued { at } => json!({ "at": at }),
        }
    }

    fn decode(event_type: &str, event_version: u32, payload: &Value) -> Result<Self, EventDecodeError> {
        Ok(match (event_type, event_version) {
            (REGISTERED, 1) => {
                let v1::Registered { business_id, profile } = decode_payload(event_type, event_version, payload)?;
                Self::Registered { id: business_id, profile: profile.into() }
            }
            (UPDATED, 1) => {
                let v1::Updated { profile } = decode_payload(event_type, event_version, payload)?;
                Self::Updated { profile: profile.into() }
            }
            (RETIRED, 1) => {
                let v1::Retired {} = decode_payload(event_type, event_version, payload)?;
                Self::Retired
            }
            (PERMITTED, 1) => {
                let v1::SharedUse { municipality } = decode_payload(event_type, event_version, payload)?;
                Self::MunicipalityPermitted { municipality }
            }
            (WITHDRAWN, 1) => {
                let v1::SharedUse { municipality } = decode_payload(event_type, event_version, payload)?;
                Self::MunicipalityWithdrawn { municipality }
            }
            (LOGIN_CONFIGURED, 1) => {
                let v1::LoginConfigured { client } = decode_payload(event_type, event_version, payload)?;
                Self::LoginConfigured { client: client.into() }
            }
            (LOGIN_SECRET_ISSUED, 1) => {
                let v1::LoginSecretIssued { at } = decode_payload(event_type, event_version, payload)?;
                Self::LoginSecretIssued { at }
            }
            (FEED_FIELDS_SET, 1) => {
                let v1::FeedFieldsSet { fields } = decode_payload(event_type, event_version, payload)?;
                Self::FeedFieldsSet { fields: FeedFields::new(fields) }
            }
            (WEBHOOK_SET, 1) => {
                let v1::WebhookSet { url } = decode_payload(event_type, event_version, payload)?;
                Self::WebhookSet { url }
            }
            (WEBHOOK_REMOVED, 1) => {
                let v1::WebhookRemoved {} = decode_payload(event_type, event_version, payload)?;
                Self::WebhookRemoved
            }
            (WEBHOOK_SECRET_ISSUED, 1) => {
                let v1::WebhookSecretIssued { at } = decode_payload(event_type, event_version, payload)?;
                Self::WebhookSecretIssued { at }
            }
            _ => return Err(EventDecodeError::unknown(event_type, event_version)),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusinessSystemError {
    #[error("a business system with this business ID is already registered (business IDs are never reused)")]
    AlreadyRegistered,
    #[error("no business system with this business ID is registered")]
    NotRegistered,
    #[error("the business system has been retired")]
    Retired,
    #[error("the built-in business systems 00, 01 and 02 cannot be retired")]
    BuiltInCannotBeRetired,
    #[error("the municipality is not permitted to use this business system")]
    NotPermitted,
    /// Registering without (or changing to a profile that clears) any of the three required URLs; lists each.
    #[error("required: {}", fields(.0))]
    UrlsRequired(Vec<RequiredUrl>),
    #[error("the business system is not registered as a login client: register its redirect URIs first")]
    LoginNotConfigured,
    #[error("the business system has no webhook: register its URL first")]
    WebhookNotSet,
    /// A field list for the certificate issuance system (`01`) without `card_status`.
    #[error(
        "the certificate issuance system's field list must keep card_status: the kiosk refuses a suspended or abolished card by it"
    )]
    CardStatusRequired,
}

fn fields(urls: &[RequiredUrl]) -> String {
    urls.iter().map(|u| u.field()).collect::<Vec<_>>().join(", ")
}

impl crate::message::Localized for BusinessSystemError {
    fn message_ja(&self) -> String {
        let text: &'static str = match self {
            Self::AlreadyRegistered => "この業務IDは既に登録されています",
            Self::NotRegistered => "この業務IDは登録されていません",
            Self::Retired => "この業務システムは廃止されています",
            Self::BuiltInCannotBeRetired => "標準の業務システム（業務ID 00・01・02）は廃止できません",
            Self::NotPermitted => "この市町村・任意団体は共同利用を許可されていません",
            Self::UrlsRequired(_) => "業務トップURL・オペレータ管理URL・パーソナライズURLは必須項目です",
            Self::LoginNotConfigured => {
                "この業務システムはログイン連携（リダイレクトURI）が登録されていません。先に登録してください"
            }
            Self::WebhookNotSet => "この業務システムにはWebhookのURLが登録されていません。先に登録してください",
            Self::CardStatusRequired => {
                "証明書等自動交付の連携項目からカード運用状態は外せません（一時停止・廃止のカードをキオスク端末で拒否するため）"
            }
        };
        text.to_owned()
    }
}

/// The folded state; `Default` is "not registered".
#[derive(Debug, Clone, Default)]
pub struct BusinessSystemState {
    registered: Option<Registered>,
    retired: bool,
    /// Emptied on retirement: a retired system permits nobody.
    permitted: BTreeSet<MunicipalityCode>,
    /// Its registration as a login client of cardap, if any.
    login: Option<LoginClient>,
    /// When its current client secret was issued.
    login_secret_issued: Option<Timestamp>,
    /// The feed's field list as set; `None`: the default of its business ID.
    feed_fields: Option<FeedFields>,
    /// Where its feed is pushed, if anywhere.
    webhook: Option<WebhookUrl>,
    /// When the webhook's current signing secret was issued.
    webhook_secret_issued: Option<Timestamp>,
}

#[derive(Debug, Clone)]
struct Registered {
    id: BusinessId,
    profile: BusinessSystemProfile,
}

impl BusinessSystemState {
    pub fn is_registered(&self) -> bool {
        self.registered.is_some()
    }

    pub fn is_retired(&self) -> bool {
        self.retired
    }

    pub fn id(&self) -> Option<&BusinessId> {
        self.registered.as_ref().map(|r| &r.id)
    }

    pub fn profile(&self) -> Option<&BusinessSystemProfile> {
        self.registered.as_ref().map(|r| &r.profile)
    }

    /// The municipalities permitted to use the system now, in code order; empty once retired.
    pub fn permitted(&self) -> &BTreeSet<MunicipalityCode> {
        &self.permitted
    }

    /// Its registration as a login client (業務ログイン認証), if any.
    pub fn login(&self) -> Option<&LoginClient> {
        self.login.as_ref()
    }

    /// When its current client secret was issued; `None`: it has none.
    pub fn login_secret_issued(&self) -> Option<Timestamp> {
        self.login_secret_issued
    }

    /// The fields its replication feed may carry now: as set, else the default of its business ID (empty for a
    /// system never registered).
    /// Where the feed is pushed (`None`: it is only read).
    pub fn webhook(&self) -> Option<&WebhookUrl> {
        self.webhook.as_ref()
    }

    pub fn webhook_secret_issued(&self) -> Option<Timestamp> {
        self.webhook_secret_issued
    }

    pub fn feed_fields(&self) -> FeedFields {
        match (&self.feed_fields, self.id()) {
            (Some(fields), _) => fields.clone(),
            (None, Some(id)) => FeedFields::default_for(id),
            (None, None) => FeedFields::default(),
        }
    }

    /// Whether the field list was set (`false`: the default applies).
    pub fn feed_fields_set(&self) -> bool {
        self.feed_fields.is_some()
    }

    /// Whether `municipality` may use the system now (never once it is retired).
    pub fn permits(&self, municipality: &MunicipalityCode) -> bool {
        self.permitted.contains(municipality)
    }
}

#[derive(Debug)]
pub struct BusinessSystem;

impl Aggregate for BusinessSystem {
    type State = BusinessSystemState;
    type Command = BusinessSystemCommand;
    type Event = BusinessSystemEvent;
    type Error = BusinessSystemError;

    const STREAM_TYPE: &'static str = "business_system";

    fn decide(state: &Self::State, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error> {
        use BusinessSystemCommand as C;
        use BusinessSystemEvent as E;

        let Some(current) = &state.registered else {
            return match command {
                C::Register { id, profile } => {
                    let missing = if id.is_builtin() { vec![] } else { profile.missing_urls() };
                    if !missing.is_empty() {
                        return Err(BusinessSystemError::UrlsRequired(missing));
                    }
                    Ok(vec![E::Registered { id, profile }])
                }
                _ => Err(BusinessSystemError::NotRegistered),
            };
        };
        match command {
            C::Register { .. } => Err(BusinessSystemError::AlreadyRegistered),
            _ if state.retired => Err(BusinessSystemError::Retired),
            C::Patch { patch } => Self::decide(state, C::Update { profile: patch.apply(&current.profile) }),
            C::Update { profile } if profile == current.profile => Ok(vec![]),
            C::Update { profile } => {
                // A required URL may change but never be cleared; one that a system stored before the rule
                // never had may stay absent.
                let cleared: Vec<_> = RequiredUrl::ALL
                    .into_iter()
                    .filter(|u| u.of(&current.profile).is_some() && u.of(&profile).is_none())
                    .collect();
                if !cleared.is_empty() {
                    return Err(BusinessSystemError::UrlsRequired(cleared));
                }
                Ok(vec![E::Updated { profile }])
            }
            C::Retire if current.id.is_builtin() => Err(BusinessSystemError::BuiltInCannotBeRetired),
            C::Retire => Ok(vec![E::Retired]),
            C::Permit { municipality } if state.permits(&municipality) => Ok(vec![]),
            C::Permit { municipality } => Ok(vec![E::MunicipalityPermitted { municipality }]),
            C::Withdraw { municipality } if state.permits(&municipality) => {
                Ok(vec![E::MunicipalityWithdrawn { municipality }])
            }
            C::Withdraw { .. } => Err(BusinessSystemError::NotPermitted),
            C::ConfigureLogin { client } if state.login.as_ref() == Some(&client) => Ok(vec![]),
            C::ConfigureLogin { client } => Ok(vec![E::LoginConfigured { client }]),
            C::IssueLoginSecret { .. } if state.login.is_none() => Err(BusinessSystemError::LoginNotConfigured),
            C::IssueLoginSecret { at } => Ok(vec![E::LoginSecretIssued { at }]),
            C::SetFeedFields { fields }
                if current.id == BusinessId::CERTIFICATE_ISSUANCE && !fields.contains(FeedField::CardStatus) =>
            {
                Err(BusinessSystemError::CardStatusRequired)
            }
            C::SetFeedFields { fields } if fields == state.feed_fields() => Ok(vec![]),
            C::SetFeedFields { fields } => Ok(vec![E::FeedFieldsSet { fields }]),
            C::SetWebhook { url } if state.webhook.as_ref() == Some(&url) => Ok(vec![]),
            C::SetWebhook { url } => Ok(vec![E::WebhookSet { url }]),
            C::RemoveWebhook if state.webhook.is_none() => Ok(vec![]),
            C::RemoveWebhook => Ok(vec![E::WebhookRemoved]),
            C::IssueWebhookSecret { .. } if state.webhook.is_none() => Err(BusinessSystemError::WebhookNotSet),
            C::IssueWebhookSecret { at } => Ok(vec![E::WebhookSecretIssued { at }]),
        }
    }

    fn evolve(mut state: Self::State, event: &Self::Event) -> Self::State {
        use BusinessSystemEvent as E;
        match (event, state.registered.as_mut()) {
            (E::Registered { id, profile }, _) => {
                state.registered = Some(Registered { id: id.clone(), profile: profile.clone() });
            }
            (E::Updated { profile }, Some(r)) => r.profile = profile.clone(),
            (E::Retired, _) => {
                state.retired = true;
                state.permitted.clear();
            }
            (E::MunicipalityPermitted { municipality }, _) => {
                state.permitted.insert(municipality.clone());
            }
            (E::MunicipalityWithdrawn { municipality }, _) => {
                state.permitted.remove(municipality);
            }
            (E::LoginConfigured { client }, _) => state.login = Some(client.clone()),
            (E::LoginSecretIssued { at }, _) => state.login_secret_issued = Some(*at),
            (E::FeedFieldsSet { fields }, _) => state.feed_fields = Some(fields.clone()),
            (E::WebhookSet { url }, _) => state.webhook = Some(url.clone()),
            (E::WebhookRemoved, _) => state.webhook = None,
            (E::WebhookSecretIssued { at }, _) => state.webhook_secret_issued = Some(*at),
            // A change to a stream that was never registered cannot be stored; there is nothing to change.
            (E::Updated { .. }, None) => {}
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Localized;
    use crate::testing::given;
    use BusinessSystemCommand as C;
    use BusinessSystemEvent as E;
    use proptest::prelude::*;

    fn own() -> BusinessId {
        BusinessId::parse("10").unwrap()
    }

    fn chiyoda() -> MunicipalityCode {
        MunicipalityCode::parse("131016").unwrap()
    }

    fn minato() -> MunicipalityCode {
        MunicipalityCode::parse("131032").unwrap()
    }

    fn profile(name: &str) -> BusinessSystemProfile {
        BusinessSystemProfile {
            name: BusinessSystemName::parse(name).unwrap(),
            organization: Some(Text100::parse("南江戸市 情報政策課").unwrap()),
            image: Some(Url::parse("https://portal.example.jp/img/hall.png").unwrap()),
            top_url: Some(Url::parse("https://portal.example.jp/").unwrap()),
            operator_admin_url: Some(Url::parse("https://portal.example.jp/operators").unwrap()),
            personalize_url: Some(Url::parse("https://portal.example.jp/me").unwrap()),
            phone: Some(Phone::parse("03-3333-4444").unwrap()),
            email: Some(Email::parse("portal@example.jp").unwrap()),
        }
    }

    #[test]
    fn a_patch_is_merged_with_the_profile_as_it_is_when_decided() {
        // Someone renamed the system after this caller read it: the phone change keeps the new name.
        let mut renamed = profile("施設予約");
        renamed.name = BusinessSystemName::parse("施設予約システム").unwrap();
        let phone = Phone::parse("03-1234-5678").unwrap();
        let patch = ProfilePatch { phone: Some(Some(phone.clone())), ..Default::default() };
        let mut expected = renamed.clone();
        expected.phone = Some(phone);
        given::<BusinessSystem>([registered(), E::Updated { profile: renamed }])
            .when(C::Patch { patch })
            .then([E::Updated { profile: expected }]);
    }

    fn registered() -> E {
        E::Registered { id: own(), profile: profile("施設予約") }
    }

    fn builtin(id: BusinessId) -> E {
        let (id, profile) = builtin_profiles().into_iter().find(|(b, _)| *b == id).unwrap();
        E::Registered { id, profile }
    }

    fn login_client() -> LoginClient {
        let uri = crate::login_client::RedirectUri::parse("https://portal.example.jp/oidc/callback").unwrap();
        LoginClient::new(vec![uri]).unwrap()
    }

    #[test]
    fn a_login_client_is_registered_once_and_a_secret_needs_one() {
        let at = Timestamp::from_unix(1_700_000_000);
        given::<BusinessSystem>([registered()])
            .when(C::IssueLoginSecret { at })
            .then_err(BusinessSystemError::LoginNotConfigured);
        let state = given::<BusinessSystem>([registered()])
            .when(C::ConfigureLogin { client: login_client() })
            .then([E::LoginConfigured { client: login_client() }]);
        assert_eq!(state.login(), Some(&login_client()));
        given::<BusinessSystem>([registered(), E::LoginConfigured { client: login_client() }])
            .when(C::ConfigureLogin { client: login_client() })
            .then([]);
        let state = given::<BusinessSystem>([registered(), E::LoginConfigured { client: login_client() }])
            .when(C::IssueLoginSecret { at })
            .then([E::LoginSecretIssued { at }]);
        assert_eq!(state.login_secret_issued(), Some(at));
        given::<BusinessSystem>([registered(), E::Retired])
            .when(C::ConfigureLogin { client: login_client() })
            .then_err(BusinessSystemError::Retired);
    }

    fn webhook(url: &str) -> WebhookUrl {
        WebhookUrl::parse(url).unwrap()
    }

    #[test]
    fn a_webhook_is_set_changed_and_removed_by_events() {
        let hook = webhook("https://b05.example.jp/cardap");
        let state = given::<BusinessSystem>([registered()])
            .when(C::SetWebhook { url: hook.clone() })
            .then([E::WebhookSet { url: hook.clone() }]);
        assert_eq!(state.webhook(), Some(&hook));
        let set = E::WebhookSet { url: hook.clone() };
        given::<BusinessSystem>([registered(), set.clone()]).when(C::SetWebhook { url: hook.clone() }).then([]);
        let other = webhook("https://b05.example.jp/cardap/v2");
        given::<BusinessSystem>([registered(), set.clone()])
            .when(C::SetWebhook { url: other.clone() })
            .then([E::WebhookSet { url: other }]);
        let state =
            given::<BusinessSystem>([registered(), set.clone()]).when(C::RemoveWebhook).then([E::WebhookRemoved]);
        assert_eq!(state.webhook(), None);
        given::<BusinessSystem>([registered()]).when(C::RemoveWebhook).then([]);
        given::<BusinessSystem>([registered(), E::Retired])
            .when(C::SetWebhook { url: hook })
            .then_err(BusinessSystemError::Retired);
    }

    #[test]
    fn a_webhook_secret_needs_a_webhook() {
        let at = Timestamp::from_unix(1_700_000_000);
        given::<BusinessSystem>([registered()])
            .when(C::IssueWebhookSecret { at })
            .then_err(BusinessSystemError::WebhookNotSet);
        let set = E::WebhookSet { url: webhook("http://127.0.0.1:8080/hook") };
        let state = given::<BusinessSystem>([registered(), set])
            .when(C::IssueWebhookSecret { at })
            .then([E::WebhookSecretIssued { at }]);
        assert_eq!(state.webhook_secret_issued(), Some(at));
    }

    #[test]
    fn the_feed_fields_start_as_the_default_and_are_set_by_an_event() {
        use FeedField as F;
        let library = builtin(BusinessId::LIBRARY);
        let state = BusinessSystem::fold(std::slice::from_ref(&library));
        assert_eq!(state.feed_fields(), FeedFields::default_for(&BusinessId::LIBRARY));
        assert!(!state.feed_fields_set());
        let more = FeedFields::new([F::KanaName, F::KanjiName, F::StandardId, F::CardStatus, F::Email]);
        let state = given::<BusinessSystem>([library.clone()])
            .when(C::SetFeedFields { fields: more.clone() })
            .then([E::FeedFieldsSet { fields: more.clone() }]);
        assert_eq!(state.feed_fields(), more);
        assert!(state.feed_fields_set());
        // Fewer fields, down to none: the list is replaced as a whole.
        given::<BusinessSystem>([library.clone(), E::FeedFieldsSet { fields: more.clone() }])
            .when(C::SetFeedFields { fields: FeedFields::default() })
            .then([E::FeedFieldsSet { fields: FeedFields::default() }]);
    }

    #[test]
    fn setting_the_feed_fields_it_has_now_changes_nothing() {
        let library = builtin(BusinessId::LIBRARY);
        given::<BusinessSystem>([library.clone()])
            .when(C::SetFeedFields { fields: FeedFields::default_for(&BusinessId::LIBRARY) })
            .then([]);
        let some = FeedFields::new([FeedField::KanaName]);
        given::<BusinessSystem>([library, E::FeedFieldsSet { fields: some.clone() }])
            .when(C::SetFeedFields { fields: some })
            .then([]);
    }

    #[test]
    fn the_certificate_issuance_systems_list_keeps_the_card_status() {
        let issuance = builtin(BusinessId::CERTIFICATE_ISSUANCE);
        given::<BusinessSystem>([issuance.clone()])
            .when(C::SetFeedFields { fields: FeedFields::new([FeedField::KanaName, FeedField::BirthDate]) })
            .then_err(BusinessSystemError::CardStatusRequired);
        let fewer = FeedFields::new([FeedField::KanaName, FeedField::CardStatus]);
        given::<BusinessSystem>([issuance])
            .when(C::SetFeedFields { fields: fewer.clone() })
            .then([E::FeedFieldsSet { fields: fewer }]);
        // Any other system's list may leave it out.
        let none = FeedFields::new([FeedField::KanaName]);
        given::<BusinessSystem>([builtin(BusinessId::LIBRARY)])
            .when(C::SetFeedFields { fields: none.clone() })
            .then([E::FeedFieldsSet { fields: none }]);
    }

    #[test]
    fn the_feed_fields_of_an_unregistered_or_retired_system_cannot_be_set() {
        let fields = FeedFields::new([FeedField::KanaName]);
        given::<BusinessSystem>([])
            .when(C::SetFeedFields { fields: fields.clone() })
            .then_err(BusinessSystemError::NotRegistered);
        given::<BusinessSystem>([registered(), E::Retired])
            .when(C::SetFeedFields { fields })
            .then_err(BusinessSystemError::Retired);
    }

    #[test]
    fn feed_fields_set_has_the_documented_shape() {
        let fields = FeedFields::new([FeedField::StandardId, FeedField::KanaName]);
        let payload = E::FeedFieldsSet { fields: fields.clone() }.encode();
        assert_eq!(payload, json!({ "fields": ["kana_name", "standard_id"] }));
        assert_eq!(BusinessSystemEvent::decode(FEED_FIELDS_SET, 1, &payload), Ok(E::FeedFieldsSet { fields }));
        for bad in [json!({ "fields": ["my_number"] }), json!({}), json!({ "fields": [], "extra": 1 })] {
            assert!(matches!(
                BusinessSystemEvent::decode(FEED_FIELDS_SET, 1, &bad),
                Err(EventDecodeError::Payload { .. })
            ));
        }
    }

    #[test]
    fn register_a_business_system() {
        let state = given::<BusinessSystem>([])
            .when(C::Register { id: own(), profile: profile("施設予約") })
            .then([registered()]);
        assert!(state.is_registered() && !state.is_retired());
        assert_eq!(state.id(), Some(&own()));
        assert_eq!(state.profile(), Some(&profile("施設予約")));
        assert!(state.permitted().is_empty());
        assert_eq!(stream_key(&own()), "10");
    }

    #[test]
    fn business_ids_03_to_09_are_registrable_like_any_other_non_builtin() {
        // The source registers 業務ID 05 (手引き I 2.2 (2) ①); only 00–02 are built in.
        for n in 3..=9 {
            let id = BusinessId::parse(&format!("{n:02}")).unwrap();
            assert!(!id.is_builtin());
            given::<BusinessSystem>([])
                .when(C::Register { id: id.clone(), profile: profile("利用環境設定") })
                .then([E::Registered { id, profile: profile("利用環境設定") }]);
        }
    }

    #[test]
    fn register_without_the_required_urls_is_refused_naming_each_missing_one() {
        let mut none = profile("施設予約");
        none.top_url = None;
        none.operator_admin_url = None;
        none.personalize_url = None;
        given::<BusinessSystem>([])
            .when(C::Register { id: own(), profile: none.clone() })
            .then_err(BusinessSystemError::UrlsRequired(RequiredUrl::ALL.to_vec()));

        let mut only_top = none.clone();
        only_top.top_url = Some(Url::parse("https://portal.example.jp/").unwrap());
        given::<BusinessSystem>([])
            .when(C::Register { id: own(), profile: only_top })
            .then_err(BusinessSystemError::UrlsRequired(vec![RequiredUrl::OperatorAdmin, RequiredUrl::Personalize]));

        let mut no_personalize = profile("施設予約");
        no_personalize.personalize_url = None;
        given::<BusinessSystem>([])
            .when(C::Register { id: own(), profile: no_personalize })
            .then_err(BusinessSystemError::UrlsRequired(vec![RequiredUrl::Personalize]));
    }

    #[test]
    fn the_builtins_are_registered_without_urls() {
        for (id, profile) in builtin_profiles() {
            assert_eq!(profile.missing_urls(), RequiredUrl::ALL);
            given::<BusinessSystem>([])
                .when(C::Register { id: id.clone(), profile: profile.clone() })
                .then([E::Registered { id, profile }]);
        }
    }

    #[test]
    fn an_update_cannot_clear_a_required_url() {
        let mut cleared = profile("施設予約");
        cleared.top_url = None;
        cleared.personalize_url = None;
        given::<BusinessSystem>([registered()])
            .when(C::Update { profile: cleared })
            .then_err(BusinessSystemError::UrlsRequired(vec![RequiredUrl::Top, RequiredUrl::Personalize]));
    }

    #[test]
    fn a_system_stored_before_the_rule_still_decodes_and_changes_without_the_urls() {
        // A `BusinessSystemRegistered` v1 of a non-built-in without URLs, as stored before they were required.
        let stored = json!({ "business_id": "10", "profile": { "name": "施設予約", "top_url": null } });
        let old = BusinessSystemEvent::decode(REGISTERED, 1, &stored).unwrap();
        let mut renamed = BusinessSystemProfile::named(BusinessSystemName::parse("施設予約2").unwrap());
        renamed.top_url = Some(Url::parse("https://portal.example.jp/").unwrap());
        let state = given::<BusinessSystem>([old])
            .when(C::Update { profile: renamed.clone() })
            .then([E::Updated { profile: renamed.clone() }]);
        assert_eq!(
            state.profile().map(BusinessSystemProfile::missing_urls),
            Some(vec![RequiredUrl::OperatorAdmin, RequiredUrl::Personalize])
        );
    }

    #[test]
    fn required_urls_name_their_fields_and_labels() {
        let names: Vec<_> = RequiredUrl::ALL.iter().map(|u| (u.field(), u.label_ja())).collect();
        assert_eq!(
            names,
            [
                ("top_url", "業務トップURL"),
                ("operator_admin_url", "オペレータ管理URL"),
                ("personalize_url", "パーソナライズURL"),
            ]
        );
        assert_eq!(
            BusinessSystemError::UrlsRequired(vec![RequiredUrl::Top, RequiredUrl::Personalize]).to_string(),
            "required: top_url, personalize_url"
        );
    }

    #[test]
    fn register_twice_is_refused() {
        given::<BusinessSystem>([registered()])
            .when(C::Register { id: own(), profile: profile("別名") })
            .then_err(BusinessSystemError::AlreadyRegistered);
    }

    #[test]
    fn register_over_a_retired_system_is_refused_because_business_ids_are_never_reused() {
        given::<BusinessSystem>([registered(), E::Retired])
            .when(C::Register { id: own(), profile: profile("施設予約") })
            .then_err(BusinessSystemError::AlreadyRegistered);
    }

    #[test]
    fn any_other_command_before_register_is_refused() {
        for command in [
            C::Update { profile: profile("施設予約") },
            C::Retire,
            C::Permit { municipality: chiyoda() },
            C::Withdraw { municipality: chiyoda() },
        ] {
            given::<BusinessSystem>([]).when(command).then_err(BusinessSystemError::NotRegistered);
        }
    }

    #[test]
    fn any_command_after_retire_is_refused() {
        for command in [
            C::Update { profile: profile("施設予約2") },
            C::Retire,
            C::Permit { municipality: chiyoda() },
            C::Withdraw { municipality: chiyoda() },
        ] {
            given::<BusinessSystem>([registered(), E::MunicipalityPermitted { municipality: chiyoda() }, E::Retired])
                .when(command)
                .then_err(BusinessSystemError::Retired);
        }
    }

    #[test]
    fn update_the_profile() {
        let mut changed = profile("施設予約");
        changed.personalize_url = Some(Url::parse("https://portal.example.jp/v2/me").unwrap());
        changed.phone = None;
        let state = given::<BusinessSystem>([registered()])
            .when(C::Update { profile: changed.clone() })
            .then([E::Updated { profile: changed.clone() }]);
        assert_eq!(state.profile(), Some(&changed));
    }

    #[test]
    fn update_to_the_same_profile_changes_nothing() {
        given::<BusinessSystem>([registered()]).when(C::Update { profile: profile("施設予約") }).then([]);
    }

    #[test]
    fn retire() {
        let state = given::<BusinessSystem>([registered(), E::MunicipalityPermitted { municipality: chiyoda() }])
            .when(C::Retire)
            .then([E::Retired]);
        assert!(state.is_registered() && state.is_retired());
        assert!(!state.permits(&chiyoda()) && state.permitted().is_empty());
    }

    #[test]
    fn the_builtins_cannot_be_retired() {
        for id in BusinessId::BUILTIN {
            given::<BusinessSystem>([builtin(id)])
                .when(C::Retire)
                .then_err(BusinessSystemError::BuiltInCannotBeRetired);
        }
    }

    #[test]
    fn permit_a_municipality() {
        let state = given::<BusinessSystem>([registered(), E::MunicipalityPermitted { municipality: minato() }])
            .when(C::Permit { municipality: chiyoda() })
            .then([E::MunicipalityPermitted { municipality: chiyoda() }]);
        assert!(state.permits(&chiyoda()) && state.permits(&minato()));
        assert_eq!(state.permitted().iter().collect::<Vec<_>>(), [&chiyoda(), &minato()]);
    }

    #[test]
    fn permit_an_already_permitted_municipality_changes_nothing() {
        given::<BusinessSystem>([registered(), E::MunicipalityPermitted { municipality: chiyoda() }])
            .when(C::Permit { municipality: chiyoda() })
            .then([]);
    }

    #[test]
    fn withdraw_a_municipality() {
        let state = given::<BusinessSystem>([
            registered(),
            E::MunicipalityPermitted { municipality: chiyoda() },
            E::MunicipalityPermitted { municipality: minato() },
        ])
        .when(C::Withdraw { municipality: chiyoda() })
        .then([E::MunicipalityWithdrawn { municipality: chiyoda() }]);
        assert!(!state.permits(&chiyoda()) && state.permits(&minato()));
    }

    #[test]
    fn withdraw_a_municipality_that_is_not_permitted_is_refused() {
        given::<BusinessSystem>([
            registered(),
            E::MunicipalityPermitted { municipality: chiyoda() },
            E::MunicipalityWithdrawn { municipality: chiyoda() },
        ])
        .when(C::Withdraw { municipality: chiyoda() })
        .then_err(BusinessSystemError::NotPermitted);
    }

    #[test]
    fn builtin_profiles_are_the_three_with_japanese_names() {
        let builtins = builtin_profiles();
        let names: Vec<_> = builtins.iter().map(|(id, p)| (id.as_str(), p.name.as_str())).collect();
        assert_eq!(names, [("00", "cardap管理"), ("01", "証明書等自動交付"), ("02", "図書館")]);
        for (_, p) in &builtins {
            assert_eq!(BusinessSystemName::parse(p.name.as_str()).as_ref(), Ok(&p.name));
            assert_eq!(*p, BusinessSystemProfile::named(p.name.clone()));
        }
    }

    #[test]
    fn the_payload_has_the_documented_shape() {
        let payload = registered().encode();
        assert_eq!(
            payload,
            json!({
                "business_id": "10",
                "profile": {
                    "name": "施設予約",
                    "organization": "南江戸市 情報政策課",
                    "image": "https://portal.example.jp/img/hall.png",
                    "top_url": "https://portal.example.jp/",
                    "operator_admin_url": "https://portal.example.jp/operators",
                    "personalize_url": "https://portal.example.jp/me",
                    "phone": "03-3333-4444",
                    "email": "portal@example.jp",
                },
            })
        );
        // Optional fields may be absent in a stored payload.
        let minimal = json!({ "business_id": "02", "profile": { "name": "図書館" } });
        assert_eq!(BusinessSystemEvent::decode(REGISTERED, 1, &minimal), Ok(builtin(BusinessId::LIBRARY)));
        assert_eq!(E::MunicipalityWithdrawn { municipality: chiyoda() }.encode(), json!({ "municipality": "131016" }));
    }

    #[test]
    fn decode_refuses_unknown_types_versions_and_bad_payloads() {
        assert_eq!(
            BusinessSystemEvent::decode(PERMITTED, 2, &json!({ "municipality": "131016" })),
            Err(EventDecodeError::unknown(PERMITTED, 2))
        );
        for payload in [
            json!({ "business_id": "1", "profile": { "name": "x" } }),
            json!({ "business_id": "10", "profile": { "name": "" } }),
            json!({ "business_id": "10", "profile": { "name": "x", "top_url": "ftp://x" } }),
            json!({ "business_id": "10" }),
        ] {
            assert!(matches!(
                BusinessSystemEvent::decode(REGISTERED, 1, &payload),
                Err(EventDecodeError::Payload { .. })
            ));
        }
        assert!(matches!(
            BusinessSystemEvent::decode(WITHDRAWN, 1, &json!({ "municipality": "131017" })),
            Err(EventDecodeError::Payload { .. })
        ));
    }

    #[test]
    fn errors_have_japanese_messages() {
        for e in [
            BusinessSystemError::AlreadyRegistered,
            BusinessSystemError::NotRegistered,
            BusinessSystemError::Retired,
            BusinessSystemError::BuiltInCannotBeRetired,
            BusinessSystemError::NotPermitted,
            BusinessSystemError::UrlsRequired(vec![RequiredUrl::Top]),
            BusinessSystemError::CardStatusRequired,
        ] {
            assert!(!e.message_ja().is_empty() && !e.to_string().is_empty());
        }
    }

    #[test]
    fn name_errors() {
        assert_eq!(BusinessSystemName::parse(" \u{3000}"), Err(ParseError::Empty));
        assert_eq!(BusinessSystemName::parse(&"業".repeat(51)), Err(ParseError::TooLong { max: 50 }));
        assert_eq!(BusinessSystemName::parse("図書\n館"), Err(ParseError::InvalidCharacter { ch: '\n' }));
    }

    proptest! {
        #[test]
        fn names_parse_trimmed_and_round_trip(
            core in "[^\\p{Cc}\\s]([^\\p{Cc}]{0,48}[^\\p{Cc}\\s])?",
            pad in "[ \u{3000}]{0,3}",
        ) {
            let name = BusinessSystemName::parse(&format!("{pad}{core}{pad}")).unwrap();
            prop_assert_eq!(name.as_str(), core.as_str());
            let json = serde_json::to_value(&name).unwrap();
            prop_assert_eq!(serde_json::from_value::<BusinessSystemName>(json).unwrap(), name);
        }

        #[test]
        fn names_longer_than_50_are_rejected(core in "[^\\p{Cc}\\s]{51,80}") {
            prop_assert_eq!(BusinessSystemName::parse(&core), Err(ParseError::TooLong { max: 50 }));
        }

        #[test]
        fn the_permitted_set_follows_permits_and_withdrawals(
            steps in proptest::collection::vec((any::<bool>(), 0usize..3), 0..20),
        ) {
            let codes = [chiyoda(), minato(), MunicipalityCode::parse("011002").unwrap()];
            let mut state = BusinessSystem::fold(&[registered()]);
            let mut expected = BTreeSet::new();
            for (permit, i) in steps {
                let municipality = codes[i].clone();
                let command = if permit { C::Permit { municipality } } else { C::Withdraw { municipality } };
                match BusinessSystem::decide(&state, command) {
                    Ok(events) => state = events.iter().fold(state, BusinessSystem::evolve),
                    Err(e) => prop_assert_eq!(e, BusinessSystemError::NotPermitted),
                }
                if permit { expected.insert(codes[i].clone()); } else { expected.remove(&codes[i]); }
            }
            prop_assert_eq!(state.permitted(), &expected);
        }
    }
}
