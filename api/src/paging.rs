//! The one toolkit of the edge for what every list and every PATCH shares: the page size (`limit`), the opaque
//! `cursor` (base64url of JSON, whatever the list orders by), and the absent-vs-`null` distinction of a PATCH
//! field. Owns the wording of their errors, so every route answers them alike.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{ApiError, FieldError};
use crate::i18n::Text;

/// The default page size, when the caller names none.
pub const DEFAULT_LIMIT: i64 = 100;

/// A PATCH field: absent → `None` (unchanged), `null` → `Some(None)` (cleared), a value → `Some(Some(v))`. Use with
/// `#[serde(default, deserialize_with = "nullable")]`.
pub fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// The page size: `limit` or the default, within 1..=`max`; else the error that names `/limit`.
pub fn limit(limit: Option<i64>, max: i64) -> Result<usize, FieldError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT.min(max));
    if !(1..=max).contains(&limit) {
        return Err(FieldError::new(
            "/limit",
            Text::new(format!("1から{max}の範囲で指定してください"), format!("must be between 1 and {max}")),
        ));
    }
    usize::try_from(limit).map_err(|_| FieldError::new("/limit", Text::new("不正な値です", "invalid value")))
}

/// [`limit`] as a whole answer (422).
pub fn limit_or_422(value: Option<i64>, max: i64) -> Result<usize, ApiError> {
    limit(value, max).map_err(|e| ApiError::validation(vec![e]))
}

/// The opaque cursor of a position in a list.
pub fn encode_cursor<T: Serialize>(position: &T) -> Result<String, ApiError> {
    serde_json::to_vec(position).map(|bytes| URL_SAFE_NO_PAD.encode(bytes)).map_err(ApiError::internal)
}

/// A cursor this server made; anything else names `/cursor`.
pub fn decode_cursor<T: DeserializeOwned>(cursor: &str) -> Result<T, FieldError> {
    let bad = || FieldError::new("/cursor", Text::new("カーソルが正しくありません", "invalid cursor"));
    let bytes = URL_SAFE_NO_PAD.decode(cursor.trim()).map_err(|_| bad())?;
    serde_json::from_slice(&bytes).map_err(|_| bad())
}

/// [`decode_cursor`] as a whole answer (422).
pub fn decode_cursor_or_422<T: DeserializeOwned>(cursor: &str) -> Result<T, ApiError> {
    decode_cursor(cursor).map_err(|e| ApiError::validation(vec![e]))
}

/// The first `limit` items, and the cursor after the last of them when more follow (`items` holds at most
/// `limit + 1`: ask the read model for one more than the page).
pub fn page<T, P: Serialize>(
    mut items: Vec<T>,
    limit: usize,
    position: impl Fn(&T) -> P,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    if items.len() <= limit {
        return Ok((items, None));
    }
    items.truncate(limit);
    let cursor = items.last().map(|last| encode_cursor(&position(last))).transpose()?;
    Ok((items, cursor))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_cursor_reads_back_as_written_and_a_foreign_one_is_named() {
        let c = encode_cursor(&(3_i64, "131016")).unwrap();
        assert_eq!(decode_cursor::<(i64, String)>(&c).unwrap(), (3, "131016".to_owned()));
        assert_eq!(decode_cursor::<(i64, String)>("not a cursor").unwrap_err().field, "/cursor");
        assert_eq!(decode_cursor::<(i64, String)>(&encode_cursor(&"x").unwrap()).unwrap_err().field, "/cursor");
    }

    #[test]
    fn the_limit_defaults_and_stays_in_range() {
        assert_eq!(limit(None, 500).unwrap(), 100);
        assert_eq!(limit(None, 50).unwrap(), 50);
        assert_eq!(limit(Some(500), 500).unwrap(), 500);
        for bad in [0, -1, 501] {
            assert_eq!(limit(Some(bad), 500).unwrap_err().field, "/limit");
        }
    }

    #[test]
    fn a_page_has_a_cursor_only_when_more_follow() {
        let (items, cursor) = page(vec![1, 2, 3], 3, |i| *i).unwrap();
        assert_eq!((items.len(), cursor), (3, None));
        let (items, cursor) = page(vec![1, 2, 3, 4], 3, |i| *i).unwrap();
        assert_eq!(items, [1, 2, 3]);
        assert_eq!(decode_cursor::<i32>(&cursor.unwrap()).unwrap(), 3);
    }
}
