//! `/api/v1/municipalities/{code}/resident-settings`: what a municipality decides about resident service
//! registration (市町村設定, 手引き I 1.1 チューニング): its own registration fields (up to 20), the card AP catalog
//! it offers, and the preset APs installed with every local area.
//!
//! Owns the HTTP shape of the settings and the mapping of every settings refusal to a field pointer
//! (`/custom_fields/3/key`, `/catalog/0`, `/presets/1`). The settings are replaced whole (`PUT`) under `If-Match`;
//! the decision itself is `ResidentServices::configure`. Shared use is checked against the business systems' own
//! streams, the same facts the command decides on.

use std::collections::BTreeSet;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use cardap_commands::residents::RegistrationError;
use cardap_commands::{Permission, authorize};
use cardap_domain::BusinessId;
use cardap_domain::local_settings::{
    CustomFieldDefinition, CustomFieldType, FieldKey, FieldLabel, LocalSettingsError, LocalSettingsValue,
    MAX_CUSTOM_FIELDS, MAX_CUSTOM_TEXT,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Authenticated;
use crate::error::{ApiError, FieldError, ProblemDetails, command_error};
use crate::i18n::Text;
use crate::json::DeferredJson;
use crate::routes::municipality_in_path;
use crate::routes::residents::registration_error;
use crate::routes::{RequestMeta, etag, if_match};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/municipalities/{code}/resident-settings", get(show).put(replace))
}

/// The most options a choice field may offer.
const MAX_OPTIONS: usize = 50;

/// One field the municipality added to its registration screen (独自項目).
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"key": "school_district", "label": "学区", "type": "choice", "options": ["第一", "第二"],
    "required": true}))]
pub struct CustomFieldInput {
    /// The key in a resident's `custom_fields`: 1–32 of `a-z`, `0-9`, `_`, starting with a letter.
    pub key: String,
    /// The label on the registration screen, 1–50 characters.
    pub label: String,
    /// `text`, `number` (a whole number), `date` (`YYYY-MM-DD`) or `choice`.
    #[serde(rename = "type")]
    #[schema(example = "choice")]
    pub field_type: String,
    /// `text` only: the longest value, 1–200 (default 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<i64>,
    /// `number` only: the smallest value allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i64>,
    /// `number` only: the largest value allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
    /// `choice` only (and required there): 1–50 distinct options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<String>>,
    /// Whether registration needs a value (default false).
    #[serde(default)]
    pub required: bool,
}

/// The settings, replaced whole by `PUT`. Every list must be given (an empty list clears it).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "custom_fields": [
        {"key": "school_district", "label": "学区", "type": "choice", "options": ["第一", "第二"], "required": true},
        {"key": "household_size", "label": "世帯人数", "type": "number", "min": 1, "max": 20, "required": false}
    ],
    "catalog": ["01", "02"],
    "presets": ["01"]}))]
pub struct ResidentSettingsInput {
    /// At most 20 fields, keys distinct.
    pub custom_fields: Vec<CustomFieldInput>,
    /// The card APs (business ids) the municipality offers; each must be permitted to it (shared use), `00` never.
    pub catalog: Vec<String>,
    /// Installed automatically with the local area of every card; each must be in the catalog.
    pub presets: Vec<String>,
}

/// The settings as they stand; a municipality that never configured any has none (version 0).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "custom_fields": [
        {"key": "school_district", "label": "学区", "type": "choice", "options": ["第一", "第二"], "required": true}
    ],
    "catalog": ["01", "02"],
    "presets": ["01"],
    "version": 3}))]
pub struct ResidentSettingsView {
    pub custom_fields: Vec<CustomFieldInput>,
    pub catalog: Vec<String>,
    pub presets: Vec<String>,
    /// The stream version, also sent as `ETag` (`"0"` before the first `PUT`).
    pub version: u64,
}

fn view(settings: &LocalSettingsValue, version: u64) -> ResidentSettingsView {
    let custom_fields = settings
        .custom_fields
        .iter()
        .map(|d| {
            let mut field = CustomFieldInput {
                key: d.key.as_str().to_owned(),
                label: d.label.as_str().to_owned(),
                field_type: String::new(),
                max_length: None,
                min: None,
                max: None,
                options: None,
                required: d.required,
            };
            match &d.field_type {
                CustomFieldType::Text { max_length } => {
                    field.field_type = "text".into();
                    field.max_length = Some(i64::from(*max_length));
                }
                CustomFieldType::Number { min, max } => {
                    field.field_type = "number".into();
                    field.min = *min;
                    field.max = *max;
                }
                CustomFieldType::Date => field.field_type = "date".into(),
                CustomFieldType::Choice { options } => {
                    field.field_type = "choice".into();
                    field.options = Some(options.clone());
                }
            }
            field
        })
        .collect();
    ResidentSettingsView {
        custom_fields,
        catalog: settings.catalog.iter().map(|b| b.as_str().to_owned()).collect(),
        presets: settings.presets.iter().map(|b| b.as_str().to_owned()).collect(),
        version,
    }
}

/// The municipality's resident-registration settings (every operator of it may read them).
#[utoipa::path(get, operation_id = "showResidentSettings",
    path = "/api/v1/municipalities/{code}/resident-settings", tag = "residents",
    params(("code" = String, Path, description = "全国地方公共団体コード")),
    security(("bearer" = [])),
    responses((status = 200, body = ResidentSettingsView, headers(("ETag" = String))),
        (status = 401, body = ProblemDetails), (status = 404, body = ProblemDetails)))]
pub async fn show(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(code): Path<String>,
) -> Result<Response, ApiError> {
    let code = municipality_in_path(&state, &auth, &code).await?;
    authorize(&auth.actor, &Permission::ViewResidentSettings(code.clone()))?;
    let (settings, version) =
        state.residents.settings(&code).await.map_err(|e| command_error(e, |d| registration_error(d, &[])))?;
    Ok((etag(version), Json(view(&settings.settings, version))).into_response())
}

/// Replace the settings (運用管理部門). Refusals name the field: `/custom_fields/{i}/key`, `/catalog/{i}`,
/// `/presets/{i}` …; every problem of the body is reported at once.
#[utoipa::path(put, operation_id = "replaceResidentSettings",
    path = "/api/v1/municipalities/{code}/resident-settings", tag = "residents",
    request_body = ResidentSettingsInput,
    params(("code" = String, Path, description = "全国地方公共団体コード"),
        ("If-Match" = Option<String>, Header, description = "The ETag last seen; 412 if it changed since"),
        ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key changes nothing")),
    security(("bearer" = [])),
    responses((status = 200, body = ResidentSettingsView, headers(("ETag" = String))),
        (status = 403, body = ProblemDetails), (status = 404, body = ProblemDetails),
        (status = 412, body = ProblemDetails), (status = 422, body = ProblemDetails)))]
pub async fn replace(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(code): Path<String>,
    headers: HeaderMap,
    body: DeferredJson,
) -> Result<Response, ApiError> {
    let code = municipality_in_path(&state, &auth, &code).await?;
    authorize(&auth.actor, &Permission::ConfigureResidentServices(code.clone()))?;
    let body: ResidentSettingsInput = body.parse().await?;
    // What the body's shape refuses here; what the settings refuse (shared use, presets …) the decision names.
    // Both at once: with fields that do not parse, the decision is asked about the rest, writing nothing.
    let (value, mut errors) = parse(&body);
    if !errors.is_empty() {
        let refusals = state
            .residents
            .settings_refusals(&code, &value)
            .await
            .map_err(|e| command_error(e, |d| settings_error(d, &body)))?;
        for refusal in &refusals {
            let field = field_of(refusal, &body);
            if !errors.iter().any(|e| e.field == field) {
                errors.push(settings_field(field, refusal));
            }
        }
        errors.sort_by_key(|e| order_of(&e.field));
        return Err(ApiError::validation(errors));
    }
    let meta = RequestMeta::from_headers(&headers);
    let ctx = meta.context(&auth, "residents.configure", code.as_str());
    let done = state
        .residents
        .configure(&ctx, &code, if_match(&headers)?, value.clone())
        .await
        .map_err(|e| command_error(e, |d| settings_error(d, &body)))?;
    if let Some(checkpoint) = done.checkpoint {
        state.residents.settings_shown(checkpoint).await;
        state.metrics.commands_applied.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    // The settings are now exactly what was sent; only a retry of an applied command reads them back.
    if let Some(version) = done.value {
        return Ok((etag(version), Json(view(&value, version))).into_response());
    }
    let (settings, version) =
        state.residents.settings(&code).await.map_err(|e| command_error(e, |d| registration_error(d, &[])))?;
    Ok((etag(version), Json(view(&settings.settings, version))).into_response())
}

/// Errors in the order of the body: custom fields, then catalog, then presets, each by index.
fn order_of(field: &str) -> (usize, usize, String) {
    let mut parts = field.trim_start_matches('/').splitn(3, '/');
    let section = match parts.next() {
        Some("custom_fields") => 0,
        Some("catalog") => 1,
        _ => 2,
    };
    let index = parts.next().and_then(|i| i.parse().ok()).unwrap_or(0);
    (section, index, field.to_owned())
}

fn settings_field(field: String, e: &LocalSettingsError) -> FieldError {
    FieldError::new(field, Text::of(&e))
}

fn not_for_type(field: String) -> FieldError {
    FieldError::new(field, Text::new("この型では指定できません", "not allowed for this type"))
}

/// Checks the whole body, collecting every problem; the value holds what could be parsed.
fn parse(body: &ResidentSettingsInput) -> (LocalSettingsValue, Vec<FieldError>) {
    let mut errors = vec![];
    let mut custom_fields = vec![];
    if body.custom_fields.len() > MAX_CUSTOM_FIELDS {
        errors.push(settings_field("/custom_fields".into(), &LocalSettingsError::TooManyCustomFields));
    }
    let mut keys = BTreeSet::new();
    for (i, f) in body.custom_fields.iter().enumerate() {
        let at = |name: &str| format!("/custom_fields/{i}/{name}");
        let key = match FieldKey::parse(&f.key) {
            Ok(key) if !keys.insert(key.clone()) => {
                errors.push(settings_field(at("key"), &LocalSettingsError::DuplicateField(key)));
                None
            }
            Ok(key) => Some(key),
            Err(e) => {
                errors.push(FieldError::parse(at("key"), &e));
                None
            }
        };
        let label = FieldLabel::parse(&f.label).map_err(|e| errors.push(FieldError::parse(at("label"), &e))).ok();
        let mut extras = |given: bool, name: &str| {
            if given {
                errors.push(not_for_type(at(name)));
            }
        };
        let field_type = match f.field_type.as_str() {
            "text" => {
                extras(f.min.is_some(), "min");
                extras(f.max.is_some(), "max");
                extras(f.options.is_some(), "options");
                match f.max_length {
                    None => Some(CustomFieldType::Text { max_length: MAX_CUSTOM_TEXT }),
                    Some(n) => match u32::try_from(n) {
                        Ok(n) if (1..=MAX_CUSTOM_TEXT).contains(&n) => Some(CustomFieldType::Text { max_length: n }),
                        _ => {
                            errors.push(FieldError::new(
                                at("max_length"),
                                Text::new(
                                    format!("最大文字数は1〜{MAX_CUSTOM_TEXT}で指定してください"),
                                    format!("must be between 1 and {MAX_CUSTOM_TEXT}"),
                                ),
                            ));
                            None
                        }
                    },
                }
            }
            "number" => {
                extras(f.max_length.is_some(), "max_length");
                extras(f.options.is_some(), "options");
                match (f.min, f.max) {
                    (Some(lo), Some(hi)) if lo > hi => {
                        errors.push(FieldError::new(
                            at("min"),
                            Text::new("最小値が最大値を超えています", "min is greater than max"),
                        ));
                        None
                    }
                    (min, max) => Some(CustomFieldType::Number { min, max }),
                }
            }
            "date" => {
                extras(f.max_length.is_some(), "max_length");
                extras(f.min.is_some(), "min");
                extras(f.max.is_some(), "max");
                extras(f.options.is_some(), "options");
                Some(CustomFieldType::Date)
            }
            "choice" => {
                extras(f.max_length.is_some(), "max_length");
                extras(f.min.is_some(), "min");
                extras(f.max.is_some(), "max");
                parse_options(f.options.as_deref(), &at("options"), &mut errors)
                    .map(|options| CustomFieldType::Choice { options })
            }
            _ => {
                errors.push(FieldError::new(
                    at("type"),
                    Text::new(
                        "text・number・date・choice のいずれかを指定してください",
                        "must be one of text, number, date, choice",
                    ),
                ));
                None
            }
        };
        if let (Some(key), Some(label), Some(field_type)) = (key, label, field_type) {
            custom_fields.push(CustomFieldDefinition { key, label, field_type, required: f.required });
        }
    }
    let catalog = business_ids(&body.catalog, "/catalog", &mut errors, |i, id| {
        (*id == BusinessId::ADMINISTRATION)
            .then(|| settings_field(format!("/catalog/{i}"), &LocalSettingsError::NotACardAp(id.clone())))
    });
    let presets = business_ids(&body.presets, "/presets", &mut errors, |i, id| {
        (!catalog.contains(id))
            .then(|| settings_field(format!("/presets/{i}"), &LocalSettingsError::PresetNotInCatalog(id.clone())))
    });
    (LocalSettingsValue { custom_fields, catalog, presets }, errors)
}

/// The options of a choice: trimmed, 1–50, none empty, none twice.
fn parse_options(options: Option<&[String]>, at: &str, errors: &mut Vec<FieldError>) -> Option<Vec<String>> {
    let bad = || {
        FieldError::new(
            at,
            Text::new(
                format!("選択肢は1〜{MAX_OPTIONS}個の重複しない値で指定してください"),
                format!("a choice needs 1 to {MAX_OPTIONS} distinct, non-empty options"),
            ),
        )
    };
    let Some(options) = options else {
        errors.push(FieldError::required(at));
        return None;
    };
    if options.is_empty() || options.len() > MAX_OPTIONS {
        errors.push(bad());
        return None;
    }
    let before = errors.len();
    let mut seen = BTreeSet::new();
    let mut out = vec![];
    for (j, o) in options.iter().enumerate() {
        let o = o.trim();
        if o.is_empty() || o.chars().any(char::is_control) {
            errors.push(FieldError::new(
                format!("{at}/{j}"),
                Text::new(
                    "空の選択肢や制御文字は使用できません",
                    "an option must not be empty or hold control characters",
                ),
            ));
        } else if !seen.insert(o.to_owned()) {
            errors.push(FieldError::new(
                format!("{at}/{j}"),
                Text::new("同じ選択肢が重複しています", "the same option appears twice"),
            ));
        } else {
            out.push(o.to_owned());
        }
    }
    (errors.len() == before).then_some(out)
}

/// A list of business ids: each parsed, none twice, and `extra` for the list's own rule.
fn business_ids(
    raw: &[String],
    at: &str,
    errors: &mut Vec<FieldError>,
    extra: impl Fn(usize, &BusinessId) -> Option<FieldError>,
) -> BTreeSet<BusinessId> {
    let mut out = BTreeSet::new();
    for (i, r) in raw.iter().enumerate() {
        match BusinessId::parse(r) {
            Ok(id) if out.contains(&id) => errors.push(FieldError::new(
                format!("{at}/{i}"),
                Text::new("同じ業務IDが重複しています", "the same business ID appears twice"),
            )),
            Ok(id) => {
                if let Some(e) = extra(i, &id) {
                    errors.push(e);
                }
                out.insert(id);
            }
            Err(e) => errors.push(FieldError::parse(format!("{at}/{i}"), &e)),
        }
    }
    out
}

/// A refusal of the command (the settings or shared use changed since the checks above), at its field.
fn settings_error(e: RegistrationError, body: &ResidentSettingsInput) -> ApiError {
    let RegistrationError::Settings(s) = e else { return registration_error(e, &[]) };
    let all = match s {
        LocalSettingsError::All(all) => all,
        one => vec![one],
    };
    let mut errors: Vec<FieldError> = all.iter().map(|s| settings_field(field_of(s, body), s)).collect();
    errors.sort_by_key(|e| order_of(&e.field));
    ApiError::validation(errors)
}

/// The field of the screen a refusal is about (`/` when it names none).
fn field_of(s: &LocalSettingsError, body: &ResidentSettingsInput) -> String {
    let field_of = |key: &FieldKey| body.custom_fields.iter().rposition(|f| f.key == key.as_str());
    let id_in = |list: &[String], id: &BusinessId| list.iter().position(|r| r == id.as_str());
    let field = match s {
        LocalSettingsError::TooManyCustomFields => Some("/custom_fields".to_owned()),
        LocalSettingsError::DuplicateField(k) => field_of(k).map(|i| format!("/custom_fields/{i}/key")),
        LocalSettingsError::BadMaxLength(k) => field_of(k).map(|i| format!("/custom_fields/{i}/max_length")),
        LocalSettingsError::BadOptions(k) => field_of(k).map(|i| format!("/custom_fields/{i}/options")),
        LocalSettingsError::BadRange(k) => field_of(k).map(|i| format!("/custom_fields/{i}/min")),
        LocalSettingsError::NotACardAp(b) | LocalSettingsError::NotPermitted(b) => {
            id_in(&body.catalog, b).map(|i| format!("/catalog/{i}"))
        }
        LocalSettingsError::PresetNotInCatalog(b) => id_in(&body.presets, b).map(|i| format!("/presets/{i}")),
        LocalSettingsError::All(_) => None,
    };
    field.unwrap_or_else(|| "/".to_owned())
}
