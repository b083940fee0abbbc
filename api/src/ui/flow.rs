//! The steps every screen takes around a call of the API, written once: an answer accepted or the page of its
//! refusal, one resource or every page of a list, the municipalities to choose from, the business systems a
//! municipality may use; and after a change, the way back: a redirect to a page whose `?done=` says what was done
//! (from each screen's fixed list, [`Done`]), or the problem for the form shown again, placed at its fields.
//!
//! Owns these steps only: no page of its own. Each screen still decides which refusals belong on its form and
//! renders that form, with the data it shows, itself. An `Err` here is always the page to answer with at once.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::Value;

use cardap_commands::{AuthzError, Permission, authorize};
use cardap_domain::MunicipalityCode;

use super::api::{Answer, Call, InProcessApi, Problem, items, segment, text};
use super::form::{FieldErrors, Form};
use super::{CHANGED_MEANWHILE, UiSession, not_found, page, pages, refused};

/// The answer, when the API did what was asked; else the page of its refusal.
pub fn accepted(answer: Answer) -> Result<Answer, Response> {
    match answer.problem() {
        None => Ok(answer),
        Some(problem) => Err(refused(&problem)),
    }
}

/// One resource of the API (with its version), or the page of the API's refusal (another municipality's is its
/// 404).
pub async fn one(api: &InProcessApi, ui: &UiSession, path: &str) -> Result<Answer, Response> {
    accepted(api.call(ui, Call::get(path)).await)
}

/// Every item of a paged API list (following `next_cursor`), with the first page's version (`ETag`).
pub async fn all_items(api: &InProcessApi, ui: &UiSession, path: &str) -> Result<(Vec<Value>, Option<u64>), Response> {
    let mut all = Vec::new();
    let mut version = None;
    let mut cursor: Option<String> = None;
    // A bound on the pages read, against an API that would never say it is done.
    for _ in 0..100 {
        let at = match &cursor {
            None => path.to_owned(),
            Some(c) => format!("{path}{}cursor={}", if path.contains('?') { '&' } else { '?' }, segment(c)),
        };
        let answer = one(api, ui, &at).await?;
        version = version.or(answer.version);
        all.extend(items(&answer.body).iter().cloned());
        match answer.body.get("next_cursor").and_then(Value::as_str).filter(|c| !c.is_empty()) {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    Ok((all, version))
}

/// Every municipality and association the operator may see, `(code, name)` in the API's (display) order.
pub async fn municipalities(api: &InProcessApi, ui: &UiSession) -> Result<Vec<(String, String)>, Response> {
    let (all, _) = all_items(api, ui, "/api/v1/municipalities?limit=500").await?;
    Ok(all.iter().map(|m| (text(m, "code").to_owned(), text(m, "name").to_owned())).collect())
}

/// The business systems municipality `code` may use (shared use), `(business_id, name)` in business ID order.
pub async fn permitted_systems(
    api: &InProcessApi,
    ui: &UiSession,
    code: &str,
) -> Result<Vec<(String, String)>, Response> {
    let (systems, _) = all_items(api, ui, "/api/v1/business-systems?limit=100").await?;
    let mut usable = vec![];
    for system in &systems {
        let id = text(system, "business_id");
        let path = format!("/api/v1/business-systems/{}/permitted-municipalities?limit=500", segment(id));
        let (permitted, _) = all_items(api, ui, &path).await?;
        if permitted.iter().any(|m| text(m, "code") == code) {
            usable.push((id.to_owned(), text(system, "name").to_owned()));
        }
    }
    Ok(usable)
}

/// What a change left to say on the page it returns to (`?done=`), from the screen's fixed list of `(done,
/// text)`: nothing typed is ever echoed.
pub struct Done(pub &'static [(&'static str, &'static str)]);

impl Done {
    pub fn text(&self, done: &str) -> Option<&'static str> {
        self.0.iter().find(|(name, _)| *name == done).map(|(_, text)| *text)
    }

    /// The text the address's `done` names.
    pub fn of(&self, query: &Form) -> Option<&'static str> {
        self.text(query.get("done"))
    }
}

/// The refusals most forms show on themselves, next to the fields: invalid fields (422), a conflict with what is
/// there (409), and a change by someone else since the page was shown (412, under `If-Match`).
pub const ON_THE_FORM: &[StatusCode] =
    &[StatusCode::UNPROCESSABLE_ENTITY, StatusCode::CONFLICT, StatusCode::PRECONDITION_FAILED];

/// The problem of a change that its form shows (its status one of `on_the_form`); `None` when the API did it. Any
/// other refusal is its page at once.
pub fn problem_for_the_form(answer: &Answer, on_the_form: &[StatusCode]) -> Result<Option<Problem>, Response> {
    match answer.problem() {
        None => Ok(None),
        Some(problem) if on_the_form.contains(&problem.status) => Ok(Some(problem)),
        Some(problem) => Err(refused(&problem)),
    }
}

/// Whether the session may do `permission` in the municipality `code` (a link or a form is shown only then).
pub fn may(ui: &UiSession, code: &str, permission: fn(MunicipalityCode) -> Permission) -> bool {
    MunicipalityCode::parse(code).is_ok_and(|code| authorize(&ui.session.actor, &permission(code)).is_ok())
}

/// A screen only for who may do what it does (`permission` in the municipality `code`, the same `authorize` as
/// the API's): another municipality's is "not found", as in the API; anyone else gets the page `title` saying that
/// `who` does it.
pub fn allowed(
    ui: &UiSession,
    code: &str,
    permission: fn(MunicipalityCode) -> Permission,
    title: &str,
    who: &str,
) -> Result<(), Response> {
    let Ok(code) = MunicipalityCode::parse(code) else { return Err(not_found()) };
    let why = match authorize(&ui.session.actor, &permission(code)) {
        Ok(()) => return Ok(()),
        Err(AuthzError::NotVisible) => return Err(not_found()),
        Err(AuthzError::PasswordChangeRequired) => {
            "初期パスワードのままです。先にパスワードを変更してください。".to_owned()
        }
        Err(_) => format!("{title}は{who}が行います。この画面を使う権限がありません。"),
    };
    Err((StatusCode::FORBIDDEN, page(pages::message(title, &why))).into_response())
}

/// After a change that returns to a page: done, the redirect to `done` (to answer with at once); else as
/// [`problem_for_the_form`].
pub fn after_change(answer: &Answer, done: &str, on_the_form: &[StatusCode]) -> Result<Problem, Response> {
    problem_for_the_form(answer, on_the_form)?.ok_or_else(|| Redirect::to(done).into_response())
}

/// The problems of a refused change, placed at `fields`; under `If-Match` a 412 says above the form that the data
/// changed meanwhile.
pub fn problems(problem: &Problem, fields: &[&str]) -> FieldErrors {
    let mut errors = FieldErrors::of(problem, fields);
    if problem.status == StatusCode::PRECONDITION_FAILED {
        errors.general = changed_meanwhile().general;
    }
    errors
}

/// What a page shown again with the data of now says: someone else changed it since it was shown.
pub fn changed_meanwhile() -> FieldErrors {
    let mut errors = FieldErrors::default();
    errors.general.push(CHANGED_MEANWHILE.to_owned());
    errors
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_known_outcomes_are_said() {
        const DONE: Done = Done(&[("permitted", "共同利用を許可しました。"), ("saved", "保存しました。")]);
        assert_eq!(DONE.text("permitted"), Some("共同利用を許可しました。"));
        assert_eq!(DONE.of(&Form::parse(b"done=saved")), Some("保存しました。"));
        assert_eq!(DONE.text("<b>x</b>"), None);
        assert_eq!(DONE.of(&Form::default()), None);
    }

    #[test]
    fn a_change_meanwhile_is_said_above_the_form() {
        let body = json!({"title": "t", "detail": "d", "errors": [{"field": "/name", "message": "m"}]});
        let stale = problems(&Problem::of(StatusCode::PRECONDITION_FAILED, &body), &["name"]);
        assert_eq!(stale.general, [CHANGED_MEANWHILE]);
        let invalid = problems(&Problem::of(StatusCode::UNPROCESSABLE_ENTITY, &body), &["name"]);
        assert_eq!((invalid.general.as_slice(), invalid.of_field("name")), (&["d".to_owned()][..], vec!["m"]));
    }
}
