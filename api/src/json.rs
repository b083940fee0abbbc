//! The JSON body extractor of the API: unlike axum's `Json`, every failure goes through [`ApiError`] and names
//! the failing field as a JSON pointer (malformed JSON → 400, wrong type or unknown field → 422).

use axum::extract::{FromRequest, Request};
use axum::http::header;
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, FieldError};
use crate::i18n::Text;

/// A JSON request body of type `T` (`T` should `deny_unknown_fields`).
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::unsupported_media_type("application/json"));
        }
        parse(&body_bytes(req, state).await?).map(ApiJson)
    }
}

/// Whether the request says its body is JSON (`application/json` or `…+json`).
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).and_then(|v| v.split(';').next()).is_some_and(|m| {
        let m = m.trim();
        m.eq_ignore_ascii_case("application/json") || m.ends_with("+json")
    })
}

/// The whole body, within the server's body limit.
async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::payload_too_large()
        } else {
            ApiError::malformed(Text::new("本文を読み取れません", format!("cannot read the body: {e}")), vec![])
        }
    })
}

/// A JSON request body that is read only when the handler asks for it, after the path was authorized: a caller who
/// may not see the municipality in the path gets 404 without his body being read or judged.
#[derive(Debug)]
pub struct DeferredJson(Request);

impl<S: Send + Sync> FromRequest<S> for DeferredJson {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(DeferredJson(req))
    }
}

impl DeferredJson {
    /// Reads and parses the body now, with the same checks and answers as [`ApiJson`].
    pub async fn parse<T: DeserializeOwned>(self) -> Result<T, ApiError> {
        ApiJson::<T>::from_request(self.0, &()).await.map(|ApiJson(t)| t)
    }

    /// Like [`DeferredJson::parse`], for an optional body: none (or whitespace only) is `None`, whatever the
    /// `Content-Type`; anything else must be JSON.
    pub async fn parse_optional<T: DeserializeOwned>(self) -> Result<Option<T>, ApiError> {
        let json = is_json(self.0.headers());
        let bytes = body_bytes(self.0, &()).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        if !json {
            return Err(ApiError::unsupported_media_type("application/json"));
        }
        parse(&bytes).map(Some)
    }
}

/// Query parameters of type `T`: a parameter of the wrong type is a 422 naming it (`/limit`).
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize::<_, T>(de).map(ApiQuery).map_err(|err| {
            let field = pointer(err.path());
            let message = err.into_inner().to_string();
            let field = match missing_field(&message).or_else(|| unknown_field(&message)) {
                Some(name) if !field.ends_with(&format!("/{name}")) => {
                    format!("{}/{}", field.trim_end_matches('/'), name)
                }
                _ => field,
            };
            ApiError::validation(vec![FieldError::new(field, Text::new("値が正しくありません", message))])
        })
    }
}

/// Deserializes `bytes`, turning serde's error into a field-level problem.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let result = serde_path_to_error::deserialize::<_, T>(&mut de);
    if result.is_ok()
        && let Err(e) = de.end()
    {
        let message = strip_position(&e.to_string());
        return Err(ApiError::malformed(
            Text::new("JSON の後に余分な文字があります", message.clone()),
            vec![FieldError::new("/", Text::new("JSON の構文が正しくありません", message))],
        ));
    }
    match result {
        Ok(v) => Ok(v),
        Err(err) => {
            let pointer = pointer(err.path());
            let inner = err.into_inner();
            let message = inner.to_string();
            match inner.classify() {
                serde_json::error::Category::Data => Err(data_error("", pointer, &message)),
                _ => Err(ApiError::malformed(
                    Text::new("JSON として読み取れません", strip_position(&message)),
                    vec![FieldError::new(pointer, Text::new("JSON の構文が正しくありません", message.clone()))],
                )),
            }
        }
    }
}

/// Deserializes one JSON value (e.g. an element of a batch), naming bad fields under `prefix` (`/3`).
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value, prefix: &str) -> Result<T, ApiError> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|err| {
        let pointer = pointer(err.path());
        data_error(prefix, pointer, &err.into_inner().to_string())
    })
}

/// A 422 for a value of the wrong shape: the field (with unknown or missing field names appended) and why.
fn data_error(prefix: &str, pointer: String, message: &str) -> ApiError {
    let named = unknown_field(message).or_else(|| missing_field(message));
    let field = match named {
        Some(name) if !pointer.ends_with(&format!("/{name}")) => format!("{}/{}", pointer.trim_end_matches('/'), name),
        _ => pointer,
    };
    let field = format!("{prefix}{}", if prefix.is_empty() { field.as_str() } else { field.trim_end_matches('/') });
    let text = if message.starts_with("unknown field") {
        Text::new("この項目は受け付けられません", strip_position(message))
    } else if message.starts_with("missing field") {
        Text::new("必須項目です", strip_position(message))
    } else {
        Text::new("値の型が正しくありません", strip_position(message))
    };
    ApiError::validation(vec![FieldError::new(field, text)])
}

fn pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        out.push('/');
        match segment {
            Segment::Seq { index } => out.push_str(&index.to_string()),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                out.push_str(&key.replace('~', "~0").replace('/', "~1"))
            }
            Segment::Unknown => {
                out.pop();
            }
        }
    }
    if out.is_empty() { "/".to_owned() } else { out }
}

fn unknown_field(message: &str) -> Option<&str> {
    message.strip_prefix("unknown field `")?.split('`').next()
}

fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}
