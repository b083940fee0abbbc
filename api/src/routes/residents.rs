//! `/api/v1/municipalities/{code}/residents`: 利用者登録 (手引き I 1.1) at the counter — register a resident,
//! search (利用者検索: kana prefix, birth date, card FID), read, change (a merge) and move out; and 消去 (erase
//! him for good: the operations manager's, `POST …/erase`). An erased resident is `410` `/problems/resident-erased`.
//!
//! Owns the HTTP shape of a resident, the validation of every field (all problems of a body reported together,
//! each at its JSON pointer with the clerk's message), the resident id derived from the command id (so a retry
//! with the same `Idempotency-Key` registers nobody twice), and the mapping of every registration refusal to a
//! status and a stable problem `type`. Writes and single reads go through `ResidentServices` (the event store);
//! searches read the resident register. Every read and search is recorded in the read access log by its use case
//! (the terminal from `X-Cardap-Terminal`). Residents of another municipality do not exist for the caller (404).
//! Never logs personal data: the bodies' `Debug` shows no field values.
//!
//! Length: the resident's request, answer and search types with their OpenAPI annotations, and the parsing of
//! every screen field with the clerk's message; the use cases are in `commands::residents`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cardap_commands::residents::{RegistrationError, ResidentRow, ResidentSearch, ResidentSnapshot};
use cardap_commands::{Permission, authorize};
use cardap_domain::contact::{Email, Phone, Sex};
use cardap_domain::local_settings::{CustomFieldError, CustomValue, FieldKey};
use cardap_domain::registry::RegistryKey;
use cardap_domain::resident::{
    Address, CardFid, EraDate, Erasable, ErasureReason, ErasureReference, KanaName, KanjiName, NamePatch, Occupation,
    PersonName, PersonalChanges, PersonalData, PostalCode, ResidentError, ResidentId,
};
use cardap_domain::{BusinessId, MunicipalityCode, ParseError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Authenticated;
use crate::error::{ApiError, FieldError, ProblemDetails, ProblemType, command_error};
use crate::i18n::Text;
use crate::json::{ApiJson, ApiQuery, DeferredJson};
use crate::paging;
use crate::routes::municipality_in_path;
use crate::routes::{RequestMeta, etag, if_match};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/municipalities/{code}/residents", get(search).post(register))
        .route("/api/v1/municipalities/{code}/residents/{resident_id}", get(show).patch(change))
        .route("/api/v1/municipalities/{code}/residents/{resident_id}/move-out", post(move_out))
        .route("/api/v1/municipalities/{code}/residents/{resident_id}/erase", post(erase))
}

/// Namespace of resident ids derived from command ids: the same command (a retry) names the same resident.
const RESIDENT_NAMESPACE: Uuid = Uuid::from_u128(0x7265_7369_6465_6e74_4964_4e61_6d65_7370);

/// `Debug` that shows the type only: these values carry personal data, which is never logged.
macro_rules! redacted_debug {
    ($($t:ty),+) => {
        $(impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($t), " { .. }"))
            }
        })+
    };
}

/// A name in two parts, 姓 and 名.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"family": "ヤマダ", "given": "タロウ"}))]
pub struct NameInput {
    /// 姓.
    #[serde(default)]
    pub family: Option<String>,
    /// 名.
    #[serde(default)]
    pub given: Option<String>,
}

/// A resident to register (利用者登録画面). Required: `kana_name`, `kanji_name`, `birth_date`, `sex`, and the
/// municipality's required custom fields. An empty optional field is no value.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "kana_name": {"family": "ヤマダ", "given": "タロウ"},
    "kanji_name": {"family": "山田", "given": "太郎"},
    "birth_date": "3450101",
    "sex": "1",
    "postal_code": "100-0001",
    "address1": "東京都千代田区千代田１－１",
    "address2": "千代田ハイツ１０１",
    "phone": "03-3333-4444",
    "email": "taro@example.jp",
    "occupation": "会社員",
    "custom_fields": {"school_district": "第一"}}))]
pub struct ResidentInput {
    /// カナ氏名: full-width katakana (half-width katakana is converted).
    #[serde(default)]
    pub kana_name: Option<NameInput>,
    /// 漢字氏名: full-width.
    #[serde(default)]
    pub kanji_name: Option<NameInput>,
    /// 生年月日 `EYYMMDD`: era (1 明治 2 大正 3 昭和 4 平成 5 令和), year of the era, month, day.
    #[serde(default)]
    #[schema(example = "3450101")]
    pub birth_date: Option<String>,
    /// 性別, ISO 5218: `0` unknown, `1` male, `2` female, `9` not applicable.
    #[serde(default)]
    #[schema(example = "1")]
    pub sex: Option<String>,
    /// 郵便番号 `NNN-NNNN` (or 7 digits).
    #[serde(default)]
    pub postal_code: Option<String>,
    /// 住所1 (half-width characters are made full-width).
    #[serde(default)]
    pub address1: Option<String>,
    /// 住所2.
    #[serde(default)]
    pub address2: Option<String>,
    /// 連絡先.
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    /// 職業.
    #[serde(default)]
    pub occupation: Option<String>,
    /// The municipality's own fields (see `resident-settings`), by key.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub custom_fields: Option<Map<String, Value>>,
    /// The key of the registry entry (既存住基) the form was prefilled from, if any.
    #[serde(default)]
    pub registry_key: Option<String>,
}

/// A name part to change; `null` is refused (names are required).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NameChange {
    #[serde(default, deserialize_with = "crate::paging::nullable")]
    #[schema(value_type = Option<String>)]
    pub family: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::paging::nullable")]
    #[schema(value_type = Option<String>)]
    pub given: Option<Option<String>>,
}

/// A change, merged into the resident: an absent field stays as it is, `null` clears an optional field (required
/// fields cannot be cleared), a name may change one part only, and `custom_fields` is merged key by key (`null`
/// clears a field the municipality does not require).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"address1": "東京都千代田区丸の内１－１", "phone": null,
    "custom_fields": {"school_district": "第二"}}))]
pub struct ResidentChange {
    #[serde(default, deserialize_with = "crate::paging::nullable")]
    #[schema(value_type = Option<NameChange>)]
    pub kana_name: Option<Option<NameChange>>,
    #[serde(default, deserialize_with = "crate::paging::nullable")]
    #[schema(value_type = Option<NameChange>)]
    pub kanji_name: Option<Option<NameChange>>,
    #[serde(default, deserialize_with = "crate::paging::nullable")]
    #[schema(value_type = Option<String>)]
    pub birth_date: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::paging::nullable")]
    #[schema(value_type = Option<String>)]
    pub sex: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::paging::nullable")]
    #[schema(value_type = Option<String>)]
    pub postal_code: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::paging::nullable")]
    #[schema(value_type = Option<String>)]
    pub address1: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::paging::nullable")]
    #[schema(value_type = Option<String>)]
    pub address2: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::paging::nullable")]
    #[schema(value_type = Option<String>)]
    pub phone: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::paging::nullable")]
    #[schema(value_type = Option<String>)]
    pub email: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::paging::nullable")]
    #[schema(value_type = Option<String>)]
    pub occupation: Option<Option<String>>,
    /// Custom fields to set (or clear with `null`); the others stay.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub custom_fields: Option<Map<String, Value>>,
}

/// A name as shown.
#[derive(Serialize, ToSchema)]
pub struct NameView {
    pub family: String,
    pub given: String,
}

/// A resident as shown. Once his personal data was erased every personal field is `null` and `erased` is true;
/// his ids, card link and status stay.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "resident_id": "0b7a0c2e-3f7d-5a1e-9b8e-2d5c1f0a6e11",
    "kana_name": {"family": "ヤマダ", "given": "タロウ"},
    "kanji_name": {"family": "山田", "given": "太郎"},
    "birth_date": "3450101",
    "birth_date_label": "昭和45年1月1日",
    "sex": "1",
    "postal_code": "100-0001",
    "address1": "東京都千代田区千代田１－１",
    "address2": null,
    "phone": "03-3333-4444",
    "email": null,
    "occupation": null,
    "custom_fields": {"school_district": "第一"},
    "registry_key": null,
    "moved_out": false,
    "active_fid": "FID0000000000001",
    "erased": false,
    "version": 2}))]
pub struct ResidentView {
    /// 利用者ID.
    pub resident_id: String,
    pub kana_name: Option<NameView>,
    pub kanji_name: Option<NameView>,
    /// `EYYMMDD`.
    pub birth_date: Option<String>,
    /// The birth date as the screens write it, e.g. `昭和45年1月1日`.
    pub birth_date_label: Option<String>,
    /// ISO 5218 digit.
    pub sex: Option<String>,
    pub postal_code: Option<String>,
    pub address1: Option<String>,
    pub address2: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub occupation: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub custom_fields: Option<Map<String, Value>>,
    /// The registry entry (既存住基) he was prefilled from.
    pub registry_key: Option<String>,
    /// 転出済み.
    pub moved_out: bool,
    /// The FID of his card in use or suspended (one at a time); `null` when he has none.
    pub active_fid: Option<String>,
    /// His personal data was erased for good.
    pub erased: bool,
    /// The stream version, also sent as `ETag`.
    pub version: i64,
}

/// One page of 利用者検索.
#[derive(Serialize, ToSchema)]
pub struct ResidentPage {
    pub items: Vec<ResidentView>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// 利用者検索: every given condition must match.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ResidentQuery {
    /// The start of the kana name, family name then given name without a space (`ヤマダタ` finds ヤマダ タロウ);
    /// half-width katakana is converted.
    pub kana_prefix: Option<String>,
    /// 生年月日 `EYYMMDD`.
    pub birth_date: Option<String>,
    /// カードFID of a card registered to him (any status).
    pub fid: Option<String>,
    /// Opaque cursor from the previous page.
    pub cursor: Option<String>,
    /// 1–500, default 100.
    #[param(minimum = 1, maximum = 500, example = 100)]
    pub limit: Option<i64>,
}

redacted_debug!(
    NameInput,
    ResidentInput,
    NameChange,
    ResidentChange,
    NameView,
    ResidentView,
    ResidentPage,
    ResidentQuery
);

fn json_of(fields: &std::collections::BTreeMap<FieldKey, CustomValue>) -> Map<String, Value> {
    fields
        .iter()
        .map(|(k, v)| {
            let v = match v {
                CustomValue::Number(n) => Value::from(*n),
                CustomValue::Text(s) => Value::from(s.as_str()),
            };
            (k.as_str().to_owned(), v)
        })
        .collect()
}

fn label_of(birth_date: &str) -> Option<String> {
    EraDate::parse(birth_date).ok().map(|d| d.label_ja())
}

/// The view of a resident as a command left him.
pub fn view(s: &ResidentSnapshot) -> ResidentView {
    let r = &s.resident;
    let p = match &r.personal {
        Erasable::Known(p) => Some(p),
        Erasable::Erased => None,
    };
    let text = |f: fn(&PersonalData) -> Option<String>| p.and_then(f);
    ResidentView {
        resident_id: r.id.to_string(),
        kana_name: p.map(|p| NameView { family: p.kana_name.family.to_string(), given: p.kana_name.given.to_string() }),
        kanji_name: p
            .map(|p| NameView { family: p.kanji_name.family.to_string(), given: p.kanji_name.given.to_string() }),
        birth_date: p.map(|p| p.birth_date.to_string()),
        birth_date_label: p.map(|p| p.birth_date.label_ja()),
        sex: p.map(|p| p.sex.code().to_owned()),
        postal_code: text(|p| p.postal_code.as_ref().map(ToString::to_string)),
        address1: text(|p| p.address1.as_ref().map(ToString::to_string)),
        address2: text(|p| p.address2.as_ref().map(ToString::to_string)),
        phone: text(|p| p.phone.as_ref().map(ToString::to_string)),
        email: text(|p| p.email.as_ref().map(ToString::to_string)),
        occupation: text(|p| p.occupation.as_ref().map(ToString::to_string)),
        custom_fields: p.map(|p| json_of(&p.custom_fields)),
        registry_key: r.registry_key.as_ref().map(ToString::to_string),
        moved_out: r.moved_out,
        active_fid: r.active_card.as_ref().map(ToString::to_string),
        erased: p.is_none(),
        version: i64::try_from(s.version).unwrap_or(i64::MAX),
    }
}

/// The view of a row of the resident register.
fn row_view(r: ResidentRow) -> ResidentView {
    let name = |n: Option<PersonName<String>>| n.map(|n| NameView { family: n.family, given: n.given });
    ResidentView {
        resident_id: r.resident_id.to_string(),
        kana_name: name(r.kana_name),
        kanji_name: name(r.kanji_name),
        birth_date_label: r.birth_date.as_deref().and_then(label_of),
        birth_date: r.birth_date,
        sex: r.sex,
        postal_code: r.postal_code,
        address1: r.address1,
        address2: r.address2,
        phone: r.phone,
        email: r.email,
        occupation: r.occupation,
        custom_fields: if r.erased { None } else { Some(r.custom_fields.as_ref().map(json_of).unwrap_or_default()) },
        registry_key: r.registry_key.map(String::from),
        moved_out: r.moved_out,
        active_fid: r.active_fid.map(String::from),
        erased: r.erased,
        version: r.version,
    }
}

// ---- validation ----------------------------------------------------------------------------------------------

/// Collects the problems of one body.
#[derive(Default)]
struct Check {
    errors: Vec<FieldError>,
}

impl Check {
    /// A required value: absent or `null` is "required"; anything else must parse.
    fn required<T>(&mut self, at: &str, raw: Option<&str>, parse: impl Fn(&str) -> Result<T, ParseError>) -> Option<T> {
        match raw {
            None => {
                self.errors.push(FieldError::required(at));
                None
            }
            Some(raw) => self.parse(at, raw, parse),
        }
    }

    /// An optional value: absent, `null` or blank is no value.
    fn optional<T>(
        &mut self,
        at: &str,
        raw: Option<&str>,
        parse: impl Fn(&str) -> Result<T, ParseError>,
    ) -> Option<Option<T>> {
        match raw.map(str::trim).filter(|s| !s.is_empty()) {
            None => Some(None),
            Some(raw) => self.parse(at, raw, parse).map(Some),
        }
    }

    fn parse<T>(&mut self, at: &str, raw: &str, parse: impl Fn(&str) -> Result<T, ParseError>) -> Option<T> {
        parse(raw).map_err(|e| self.errors.push(FieldError::parse(at, &e))).ok()
    }

    fn name<T>(
        &mut self,
        at: &str,
        name: Option<&NameInput>,
        parse: impl Fn(&str) -> Result<T, ParseError> + Copy,
    ) -> Option<PersonName<T>> {
        let family = self.required(&format!("{at}/family"), name.and_then(|n| n.family.as_deref()), parse);
        let given = self.required(&format!("{at}/given"), name.and_then(|n| n.given.as_deref()), parse);
        Some(PersonName { family: family?, given: given? })
    }
}

fn trimmed<T>(parse: impl Fn(&str) -> Result<T, ParseError>) -> impl Fn(&str) -> Result<T, ParseError> {
    move |s| parse(s.trim())
}

/// The JSON pointer of a custom field (`~` and `/` escaped as RFC 6901 says).
fn custom_pointer(key: &str) -> String {
    format!("/custom_fields/{}", key.replace('~', "~0").replace('/', "~1"))
}

fn custom_field_errors(errors: Vec<(String, CustomFieldError)>) -> Vec<FieldError> {
    errors.into_iter().map(|(key, e)| FieldError::new(custom_pointer(&key), Text::of(&e))).collect()
}

/// The personal data of a registration, or every problem with it.
fn parse_input(input: &ResidentInput) -> (Option<PersonalData>, Option<RegistryKey>, Vec<FieldError>) {
    let mut c = Check::default();
    let kana_name = c.name("/kana_name", input.kana_name.as_ref(), KanaName::parse);
    let kanji_name = c.name("/kanji_name", input.kanji_name.as_ref(), KanjiName::parse);
    let birth_date = c.required("/birth_date", input.birth_date.as_deref(), trimmed(EraDate::parse));
    let sex = c.required("/sex", input.sex.as_deref(), trimmed(Sex::parse));
    let postal_code = c.optional("/postal_code", input.postal_code.as_deref(), PostalCode::parse);
    let address1 = c.optional("/address1", input.address1.as_deref(), Address::parse);
    let address2 = c.optional("/address2", input.address2.as_deref(), Address::parse);
    let phone = c.optional("/phone", input.phone.as_deref(), Phone::parse);
    let email = c.optional("/email", input.email.as_deref(), Email::parse);
    let occupation = c.optional("/occupation", input.occupation.as_deref(), Occupation::parse);
    let registry_key = c.optional("/registry_key", input.registry_key.as_deref(), RegistryKey::parse).flatten();
    let personal = match (kana_name, kanji_name, birth_date, sex, postal_code, address1, address2, phone, email) {
        (
            Some(kana_name),
            Some(kanji_name),
            Some(birth_date),
            Some(sex),
            Some(postal_code),
            Some(address1),
            Some(address2),
            Some(phone),
            Some(email),
        ) => occupation.map(|occupation| PersonalData {
            kana_name,
            kanji_name,
            birth_date,
            sex,
            postal_code,
            address1,
            address2,
            phone,
            email,
            occupation,
            custom_fields: Default::default(),
        }),
        _ => None,
    };
    (personal, registry_key, c.errors)
}

/// A parsed change: the fields (custom fields apart) and the names, which may name one half only (merged with
/// the current name inside the decision, so a concurrent change of the other half is never reverted).
type ParsedChange = (PersonalChanges, NamePatch<KanaName>, NamePatch<KanjiName>);

/// A change as `PersonalChanges` and name patches, or every problem with it.
fn parse_change(body: &ResidentChange) -> Result<ParsedChange, Vec<FieldError>> {
    let mut c = Check::default();
    fn name_change<T: Clone>(
        c: &mut Check,
        at: &str,
        change: &Option<Option<NameChange>>,
        parse: impl Fn(&str) -> Result<T, ParseError> + Copy,
    ) -> NamePatch<T> {
        let change = match change {
            None => return NamePatch::default(),
            Some(None) => {
                c.errors.push(FieldError::required(format!("{at}/family")));
                c.errors.push(FieldError::required(format!("{at}/given")));
                return NamePatch::default();
            }
            Some(Some(change)) => change,
        };
        let mut part = |name: &str, raw: &Option<Option<String>>| match raw {
            None => None,
            Some(raw) => c.required(&format!("{at}/{name}"), raw.as_deref(), parse),
        };
        NamePatch { family: part("family", &change.family), given: part("given", &change.given) }
    }
    fn optional<T>(
        c: &mut Check,
        at: &str,
        raw: &Option<Option<String>>,
        parse: impl Fn(&str) -> Result<T, ParseError>,
    ) -> Option<Option<T>> {
        match raw {
            None => None,
            Some(raw) => c.optional(at, raw.as_deref(), parse),
        }
    }
    let kana_name = name_change(&mut c, "/kana_name", &body.kana_name, KanaName::parse);
    let kanji_name = name_change(&mut c, "/kanji_name", &body.kanji_name, KanjiName::parse);
    let birth_date = match &body.birth_date {
        None => None,
        Some(raw) => c.required("/birth_date", raw.as_deref(), trimmed(EraDate::parse)),
    };
    let sex = match &body.sex {
        None => None,
        Some(raw) => c.required("/sex", raw.as_deref(), trimmed(Sex::parse)),
    };
    let changes = PersonalChanges {
        kana_name: None,
        kanji_name: None,
        birth_date,
        sex,
        postal_code: optional(&mut c, "/postal_code", &body.postal_code, PostalCode::parse),
        address1: optional(&mut c, "/address1", &body.address1, Address::parse),
        address2: optional(&mut c, "/address2", &body.address2, Address::parse),
        phone: optional(&mut c, "/phone", &body.phone, Phone::parse),
        email: optional(&mut c, "/email", &body.email, Email::parse),
        occupation: optional(&mut c, "/occupation", &body.occupation, Occupation::parse),
        custom_fields: Default::default(),
    };
    if c.errors.is_empty() { Ok((changes, kana_name, kanji_name)) } else { Err(c.errors) }
}

// ---- errors --------------------------------------------------------------------------------------------------

/// Maps a refusal of resident service registration. `business_ids` are the APs of the request, in order, so that
/// a refused AP is named by its index (`/business_ids/1`).
pub fn registration_error(e: RegistrationError, business_ids: &[BusinessId]) -> ApiError {
    match e {
        RegistrationError::Resident(r) => resident_error(r),
        RegistrationError::Card(c) => crate::routes::cards::card_error(c, business_ids),
        RegistrationError::Settings(s) => ApiError::validation(vec![FieldError::new("/", Text::of(&s))]),
        RegistrationError::CustomFields(errors) => ApiError::validation(custom_field_errors(errors)),
        RegistrationError::ResidentNotFound | RegistrationError::CardNotFound => ApiError::not_found(),
    }
}

pub fn resident_error(e: ResidentError) -> ApiError {
    let text = Text::of(&e);
    match e {
        ResidentError::AlreadyRegistered => ApiError::already_exists(text),
        ResidentError::NotRegistered => ApiError::not_found(),
        ResidentError::MovedOut => ApiError::state_conflict(ProblemType::ResidentMovedOut, text),
        ResidentError::Erased => ApiError::state_conflict(ProblemType::ResidentErased, text),
        ResidentError::AlreadyHasCard(_) => ApiError::state_conflict(ProblemType::ResidentHasCard, text),
        ResidentError::CardStillActive(_) | ResidentError::ErasureCardActive(_) => {
            ApiError::state_conflict(ProblemType::CardStillActive, text)
        }
        ResidentError::NotMovedOut => ApiError::state_conflict(ProblemType::ResidentNotMovedOut, text),
        ResidentError::RetentionNotPassed { .. } => ApiError::state_conflict(ProblemType::RetentionNotPassed, text),
        ResidentError::AlreadyErased => ApiError::state_conflict(ProblemType::ResidentErased, text),
    }
}

/// The answer to a read of an erased resident: he is gone for good.
fn gone_erased() -> ApiError {
    ApiError::gone_as(
        ProblemType::ResidentErased,
        Text::new("消去済みの利用者です", "The resident has been erased"),
        Text::new(
            "この利用者の個人情報は消去されました。照会・変更はできません",
            "This resident's personal data was erased for good; he can be neither read nor changed",
        ),
    )
}

fn mapped(e: cardap_commands::CommandError<RegistrationError>) -> ApiError {
    command_error(e, |d| registration_error(d, &[]))
}

// ---- handlers ------------------------------------------------------------------------------------------------

/// What the municipality's custom-field definitions refuse in `custom` (the rule the decision applies), to name
/// beside the fields that did not parse.
async fn custom_field_refusals(
    state: &AppState,
    code: &MunicipalityCode,
    custom: &Map<String, Value>,
    registering: bool,
) -> Result<Vec<FieldError>, ApiError> {
    let (settings, _) = state.residents.settings(code).await.map_err(mapped)?;
    Ok(settings.check_custom_fields(custom, registering).err().map(custom_field_errors).unwrap_or_default())
}

pub(crate) fn resident_in_path(resident_id: &str) -> Result<ResidentId, ApiError> {
    ResidentId::parse(resident_id).map_err(|_| ApiError::not_found())
}

async fn answered(
    state: &AppState,
    snapshot: &ResidentSnapshot,
    checkpoint: Option<cardap_commands::Checkpoint>,
) -> Response {
    if let Some(checkpoint) = checkpoint {
        state.residents.resident_shown(checkpoint).await;
        state.metrics.commands_applied.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    (etag(snapshot.version), Json(view(snapshot))).into_response()
}

/// 利用者登録. A retry with the same `Idempotency-Key` answers the same resident and registers nobody twice.
#[utoipa::path(post, operation_id = "registerResident",
    path = "/api/v1/municipalities/{code}/residents", tag = "residents",
    request_body = ResidentInput,
    params(("code" = String, Path, description = "全国地方公共団体コード"),
        ("Idempotency-Key" = Option<String>, Header,
            description = "A retry with the same key returns the first answer")),
    security(("bearer" = [])),
    responses((status = 201, body = ResidentView, headers(("ETag" = String), ("Location" = String))),
        (status = 400, body = ProblemDetails), (status = 401, body = ProblemDetails),
        (status = 403, body = ProblemDetails), (status = 404, body = ProblemDetails),
        (status = 422, body = ProblemDetails, description = "Every invalid field, e.g. `/kana_name/family`, \
            `/birth_date`, `/custom_fields/school_district`")))]
pub async fn register(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(code): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ResidentInput>,
) -> Result<Response, ApiError> {
    let code = municipality_in_path(&state, &auth, &code).await?;
    authorize(&auth.actor, &Permission::RegisterResidents(code.clone()))?;
    let (personal, registry_key, mut errors) = parse_input(&body);
    let custom = body.custom_fields.unwrap_or_default();
    // The decision checks the custom fields; asked here only to name them beside fields that did not parse.
    if !errors.is_empty() {
        errors.extend(custom_field_refusals(&state, &code, &custom, true).await?);
    }
    let Some(personal) = personal.filter(|_| errors.is_empty()) else {
        return Err(ApiError::validation(errors));
    };
    let meta = RequestMeta::from_headers(&headers);
    let ctx = meta.context(&auth, "residents.register", code.as_str());
    let id = ResidentId::from_uuid(Uuid::new_v5(&RESIDENT_NAMESPACE, ctx.command_id.as_uuid().as_bytes()));
    let (snapshot, checkpoint) =
        state.residents.register_resident(&ctx, &code, id, registry_key, personal, &custom).await.map_err(mapped)?;
    let mut response = answered(&state, &snapshot, checkpoint).await;
    *response.status_mut() = StatusCode::CREATED;
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/municipalities/{code}/residents/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// 利用者検索 (kana prefix, birth date, card FID; all given conditions must match): pages in registration order,
/// each page sorted by kana name (names are searched through blind indexes, which cannot sort them).
#[utoipa::path(get, operation_id = "searchResidents",
    path = "/api/v1/municipalities/{code}/residents", tag = "residents",
    params(("code" = String, Path, description = "全国地方公共団体コード"), ResidentQuery),
    security(("bearer" = [])),
    responses((status = 200, body = ResidentPage), (status = 401, body = ProblemDetails),
        (status = 403, body = ProblemDetails), (status = 404, body = ProblemDetails),
        (status = 422, body = ProblemDetails)))]
pub async fn search(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(code): Path<String>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ResidentQuery>,
) -> Result<Json<ResidentPage>, ApiError> {
    let code = municipality_in_path(&state, &auth, &code).await?;
    authorize(&auth.actor, &Permission::ViewResidents(code.clone()))?;
    let present = |v: &Option<String>| v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
    let mut c = Check::default();
    let kana_prefix = present(&q.kana_prefix).and_then(|p| {
        // The prefix may run from the family into the given name: spaces are not part of the key.
        let compact: String = p.chars().filter(|ch| !ch.is_whitespace()).collect();
        c.parse("/kana_prefix", &compact, KanaName::parse).map(String::from)
    });
    let birth_date = present(&q.birth_date).and_then(|d| c.parse("/birth_date", &d, EraDate::parse));
    let fid = present(&q.fid).and_then(|f| c.parse("/fid", &f, CardFid::parse));
    let limit = paging::limit(q.limit, 500).map_err(|e| c.errors.push(e)).unwrap_or(paging::DEFAULT_LIMIT as usize);
    let after = match present(&q.cursor) {
        Some(cursor) => paging::decode_cursor(&cursor).map_err(|e| c.errors.push(e)).ok(),
        None => None,
    };
    if !c.errors.is_empty() {
        return Err(ApiError::validation(c.errors));
    }
    let search = ResidentSearch { kana_prefix, birth_date, fid, after, limit: u32::try_from(limit).unwrap_or(100) };
    let ctx = RequestMeta::from_headers(&headers).context(&auth, "residents.search", code.as_str());
    let page = state.residents.search_residents(&ctx, &code, &search).await.map_err(mapped)?;
    let next_cursor = page.next.as_ref().map(paging::encode_cursor).transpose()?;
    Ok(Json(ResidentPage { items: page.rows.into_iter().map(row_view).collect(), next_cursor }))
}

#[utoipa::path(get, operation_id = "showResident",
    path = "/api/v1/municipalities/{code}/residents/{resident_id}", tag = "residents",
    params(("code" = String, Path, description = "全国地方公共団体コード"), ("resident_id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = ResidentView, headers(("ETag" = String))),
        (status = 401, body = ProblemDetails), (status = 403, body = ProblemDetails),
        (status = 404, body = ProblemDetails),
        (status = 410, body = ProblemDetails, description = "`/problems/resident-erased`: he was erased (消去)")))]
pub async fn show(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((code, resident_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let code = municipality_in_path(&state, &auth, &code).await?;
    authorize(&auth.actor, &Permission::ViewResidents(code.clone()))?;
    let id = resident_in_path(&resident_id)?;
    let ctx = RequestMeta::from_headers(&headers).context(&auth, "residents.read", &format!("{code}/{id}"));
    let snapshot = state.residents.read_resident(&ctx, &code, &id).await.map_err(|e| match e {
        cardap_commands::CommandError::Domain(RegistrationError::Resident(ResidentError::Erased)) => gone_erased(),
        e => mapped(e),
    })?;
    Ok((etag(snapshot.version), Json(view(&snapshot))).into_response())
}

/// Change a resident (a merge; see `ResidentChange`). Only what really differs is recorded.
#[utoipa::path(patch, operation_id = "changeResident",
    path = "/api/v1/municipalities/{code}/residents/{resident_id}", tag = "residents",
    request_body = ResidentChange,
    params(("code" = String, Path, description = "全国地方公共団体コード"), ("resident_id" = String, Path),
        ("If-Match" = Option<String>, Header, description = "The ETag last seen; 412 if it changed since"),
        ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key changes nothing")),
    security(("bearer" = [])),
    responses((status = 200, body = ResidentView, headers(("ETag" = String))),
        (status = 403, body = ProblemDetails), (status = 404, body = ProblemDetails),
        (status = 409, body = ProblemDetails,
            description = "`/problems/resident-moved-out`, `/problems/resident-erased`"),
        (status = 412, body = ProblemDetails), (status = 422, body = ProblemDetails)))]
pub async fn change(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((code, resident_id)): Path<(String, String)>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ResidentChange>,
) -> Result<Response, ApiError> {
    let code = municipality_in_path(&state, &auth, &code).await?;
    authorize(&auth.actor, &Permission::RegisterResidents(code.clone()))?;
    let id = resident_in_path(&resident_id)?;
    let custom = body.custom_fields.clone().unwrap_or_default();
    let mut errors = vec![];
    let changes = parse_change(&body).map_err(|e| errors.extend(e)).ok();
    if !errors.is_empty() {
        errors.extend(custom_field_refusals(&state, &code, &custom, false).await?);
    }
    let Some((changes, kana_name, kanji_name)) = changes.filter(|_| errors.is_empty()) else {
        return Err(ApiError::validation(errors));
    };
    let meta = RequestMeta::from_headers(&headers);
    let ctx = meta.context(&auth, "residents.change", &format!("{code}/{id}"));
    let (snapshot, checkpoint) = state
        .residents
        .change_resident(&ctx, &code, &id, if_match(&headers)?, (changes, kana_name, kanji_name), &custom)
        .await
        .map_err(mapped)?;
    Ok(answered(&state, &snapshot, checkpoint).await)
}

/// 転出: the resident left the municipality. His card must be abolished first (409 `/problems/card-still-active`).
#[utoipa::path(post, operation_id = "moveOutResident",
    path = "/api/v1/municipalities/{code}/residents/{resident_id}/move-out", tag = "residents",
    params(("code" = String, Path, description = "全国地方公共団体コード"), ("resident_id" = String, Path),
        ("If-Match" = Option<String>, Header, description = "The ETag last seen; 412 if it changed since"),
        ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key changes nothing")),
    security(("bearer" = [])),
    responses((status = 200, body = ResidentView, headers(("ETag" = String))),
        (status = 403, body = ProblemDetails), (status = 404, body = ProblemDetails),
        (status = 409, body = ProblemDetails,
            description = "`/problems/card-still-active`, `/problems/resident-moved-out`"),
        (status = 412, body = ProblemDetails)))]
pub async fn move_out(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((code, resident_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let code: MunicipalityCode = municipality_in_path(&state, &auth, &code).await?;
    authorize(&auth.actor, &Permission::RegisterResidents(code.clone()))?;
    let id = resident_in_path(&resident_id)?;
    let meta = RequestMeta::from_headers(&headers);
    let ctx = meta.context(&auth, "residents.move_out", &format!("{code}/{id}"));
    let (snapshot, checkpoint) =
        state.residents.move_out(&ctx, &code, &id, if_match(&headers)?).await.map_err(mapped)?;
    Ok(answered(&state, &snapshot, checkpoint).await)
}

// ---- erasure ------------------------------------------------------------------------------------------------

/// 消去 request: why the resident is erased.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"reason": "request", "reference": "R8-SOMU-0123"}))]
pub struct ErasureInput {
    /// `retention_expired`: he moved out and the retention period (`erasure.retention_days`) has passed since;
    /// `request`: a documented request (本人の申出・文書による請求), allowed before the move-out too.
    #[serde(default)]
    #[schema(example = "retention_expired")]
    pub reason: Option<String>,
    /// With `request` (required there, refused otherwise): the request document's reference number — half-width
    /// letters, digits and `-_/.#`, up to 40 characters. It stays readable for good: never a name or an address.
    #[serde(default)]
    #[schema(example = "R8-SOMU-0123")]
    pub reference: Option<String>,
}

redacted_debug!(ErasureInput);

/// What an erasure did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErasureView {
    pub resident_id: String,
    /// Always `true`: his personal data is gone for good, here and wherever the events went.
    pub erased: bool,
    /// `retention_expired` or `request`; `null` when this answers a retry of an erasure already applied.
    pub reason: Option<String>,
    /// The documented request's reference, with `request`.
    pub reference: Option<String>,
}

fn parse_erasure(body: &ErasureInput) -> Result<ErasureReason, ApiError> {
    let mut c = Check::default();
    let reference = c.optional("/reference", body.reference.as_deref(), ErasureReference::parse).flatten();
    let reason = match (body.reason.as_deref().map(str::trim), reference) {
        (Some("retention_expired"), None) => Some(ErasureReason::RetentionExpired),
        (Some("retention_expired"), Some(_)) => {
            c.errors.push(FieldError::new(
                "/reference",
                Text::new(
                    "参照番号は文書による請求（request）の場合にだけ指定します",
                    "a reference is given only with the reason `request`",
                ),
            ));
            None
        }
        (Some("request"), Some(reference)) => Some(ErasureReason::Request { reference }),
        (Some("request"), None) => {
            if c.errors.is_empty() {
                c.errors.push(FieldError::required("/reference"));
            }
            None
        }
        (None, _) => {
            c.errors.push(FieldError::required("/reason"));
            None
        }
        (Some(_), _) => {
            c.errors.push(FieldError::new(
                "/reason",
                Text::new(
                    "消去の理由は retention_expired（転出後の保存期間経過）または request（文書による請求）です",
                    "the reason is `retention_expired` (retention period after the move-out) or `request` \
                     (a documented request)",
                ),
            ));
            None
        }
    };
    match reason {
        Some(reason) if c.errors.is_empty() => Ok(reason),
        _ => Err(ApiError::validation(c.errors)),
    }
}

/// 消去: erase a resident's personal data for good (crypto-shredding: his data key is destroyed; the events stay,
/// his personal data in them reads as `null` everywhere). The operations manager of the municipality or the
/// system administrator; a clerk or an auditor gets `403`. Refused while he has an active card (`409`
/// `/problems/card-still-active`), before his move-out unless it is a documented request (`409`
/// `/problems/resident-not-moved-out`), before the retention period since the move-out has passed (`409`
/// `/problems/retention-not-passed`, the detail names the date), and when he is erased already (`409`
/// `/problems/resident-erased`). Afterwards `GET` of him answers `410`, no search finds him, and the registry
/// entry he was registered from is erased with him.
#[utoipa::path(post, operation_id = "eraseResident",
    path = "/api/v1/municipalities/{code}/residents/{resident_id}/erase", tag = "residents",
    request_body = ErasureInput,
    params(("code" = String, Path, description = "全国地方公共団体コード"), ("resident_id" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key erases nothing twice")),
    security(("bearer" = [])),
    responses((status = 200, body = ErasureView),
        (status = 400, body = ProblemDetails), (status = 401, body = ProblemDetails),
        (status = 403, body = ProblemDetails), (status = 404, body = ProblemDetails),
        (status = 409, body = ProblemDetails, description = "`/problems/card-still-active`, \
            `/problems/resident-not-moved-out`, `/problems/retention-not-passed`, `/problems/resident-erased`"),
        (status = 422, body = ProblemDetails, description = "`/reason`, `/reference`")))]
pub async fn erase(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((code, resident_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: DeferredJson,
) -> Result<Response, ApiError> {
    let code = municipality_in_path(&state, &auth, &code).await?;
    authorize(&auth.actor, &Permission::EraseResidents(code.clone()))?;
    let id = resident_in_path(&resident_id)?;
    let reason = parse_erasure(&body.parse::<ErasureInput>().await?)?;
    let meta = RequestMeta::from_headers(&headers);
    let ctx = meta.context(&auth, "residents.erase", &format!("{code}/{id}"));
    let (erased, checkpoint) = state.erasure.erase(&ctx, &code, &id, reason).await.map_err(mapped)?;
    if checkpoint.is_some() {
        state.metrics.commands_applied.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(Json(ErasureView {
        resident_id: erased.resident_id.to_string(),
        erased: true,
        reason: erased.reason.as_ref().map(|r| r.kind().to_owned()),
        reference: erased.reason.as_ref().and_then(|r| r.reference()).map(|r| r.as_str().to_owned()),
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use cardap_domain::resident::RegisteredResident;

    /// An erased resident answers his ids, card link and status, and nothing personal.
    #[test]
    fn an_erased_resident_shows_no_personal_field() {
        let id = ResidentId::from_uuid(Uuid::from_u128(7));
        let snapshot = ResidentSnapshot {
            resident: RegisteredResident {
                id,
                municipality: MunicipalityCode::parse("131016").unwrap(),
                registry_key: Some(RegistryKey::parse("000123456").unwrap()),
                personal: Erasable::Erased,
                moved_out: true,
                active_card: Some(CardFid::parse("FID0001").unwrap()),
                erased: false,
            },
            version: 5,
        };

        let shown = serde_json::to_value(view(&snapshot)).unwrap();

        assert_eq!(
            shown,
            serde_json::json!({
                "resident_id": id.to_string(), "kana_name": null, "kanji_name": null, "birth_date": null,
                "birth_date_label": null, "sex": null, "postal_code": null, "address1": null, "address2": null,
                "phone": null, "email": null, "occupation": null, "custom_fields": null,
                "registry_key": "000123456", "moved_out": true, "active_fid": "FID0001", "erased": true, "version": 5,
            })
        );
        assert_eq!(format!("{:?}", view(&snapshot)), "ResidentView { .. }", "never a personal field in a log");
    }
}
