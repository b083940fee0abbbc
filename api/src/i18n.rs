//! Messages in the clerk's language: Japanese by default, English when the request prefers it
//! (`Accept-Language: en`). The language of the current request is a task-local set by [`layer`].

use axum::extract::Request;
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;

/// The language of messages sent to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    Ja,
    En,
}

tokio::task_local! {
    static LANG: Lang;
}

impl Lang {
    /// The language of the request being handled (Japanese outside a request).
    pub fn current() -> Lang {
        LANG.try_with(|l| *l).unwrap_or_default()
    }

    /// Picks the first of `ja`/`en` that the `Accept-Language` header lists (q-values ignored beyond order).
    pub fn from_accept_language(value: &str) -> Lang {
        for part in value.split(',') {
            let tag = part.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
            if tag.starts_with("ja") {
                return Lang::Ja;
            }
            if tag.starts_with("en") {
                return Lang::En;
            }
        }
        Lang::Ja
    }
}

/// A message in both languages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text {
    pub ja: String,
    pub en: String,
}

impl Text {
    pub fn new(ja: impl Into<String>, en: impl Into<String>) -> Self {
        Text { ja: ja.into(), en: en.into() }
    }

    /// What a domain refusal says, in both languages.
    pub fn of(refusal: &impl cardap_domain::Localized) -> Self {
        Text { ja: refusal.message_ja(), en: refusal.message_en() }
    }

    pub fn get(&self, lang: Lang) -> &str {
        match lang {
            Lang::Ja => &self.ja,
            Lang::En => &self.en,
        }
    }
}

/// Middleware: runs the rest of the request with its language set.
pub async fn layer(request: Request, next: Next) -> Response {
    let lang = request
        .headers()
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .map(Lang::from_accept_language)
        .unwrap_or_default();
    LANG.scope(lang, next.run(request)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_first_supported() {
        assert_eq!(Lang::from_accept_language("en-US,en;q=0.9"), Lang::En);
        assert_eq!(Lang::from_accept_language("ja,en;q=0.5"), Lang::Ja);
        assert_eq!(Lang::from_accept_language("fr, en;q=0.8"), Lang::En);
        assert_eq!(Lang::from_accept_language("de"), Lang::Ja);
    }
}
