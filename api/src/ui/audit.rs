//! 監査 on the clerk UI, for auditors (their municipality) and the system administrator (any, or all): the
//! operator history (`GET /api/v1/audit/events`: every appended event with who, when, from which terminal and what
//! changed), the read access log (`…/audit/access`: who read which residents) and the bulk-read alerts
//! (`…/audit/access-alerts`), filtered by operator ID, resident and period, each as a table of its first
//! [`SHOWN`] lines and as a CSV download of all of them (the API's own CSV, streamed).
//!
//! Owns these pages and the reading of the period typed as dates (a day in Japan time, both ends included); the
//! logs, their filters and who may read them are the API's. The API streams each log: the page reads only the
//! lines it shows.

use axum::Extension;
use axum::body::Body;
use axum::extract::RawQuery;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{NaiveDate, Utc};
use futures_util::StreamExt;
use maud::{Markup, html};
use serde_json::Value;

use super::api::{Answer, InProcessApi};
use super::form::{FieldErrors, Form};
use super::pages::{self, Input, error_summary, in_japan, input_field, japan, layout, text_field};
use super::{UiSession, page, refused};

/// Lines shown on the page; the CSV has them all.
const SHOWN: usize = 500;

/// The three logs: query value, API path, title.
const LOGS: [(&str, &str, &str); 3] = [
    ("events", "/api/v1/audit/events", "操作履歴"),
    ("access", "/api/v1/audit/access", "参照記録"),
    ("alerts", "/api/v1/audit/access-alerts", "大量参照の警告"),
];

/// A day typed as `YYYY-MM-DD` (or `YYYY/MM/DD`): its first instant in Japan time, RFC 3339.
fn day_start(day: NaiveDate) -> Option<String> {
    let start = day.and_hms_opt(0, 0, 0)?.and_local_timezone(japan()).single()?;
    Some(start.to_rfc3339())
}

fn parse_day(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").or_else(|_| NaiveDate::parse_from_str(text, "%Y/%m/%d")).ok()
}

/// The API's query of the form: the filters, the period as instants (`to` the day after the last day).
fn api_query(ui: &UiSession, form: &Form, errors: &mut FieldErrors) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    let municipality = match &ui.session.actor.municipality {
        Some(own) => Some(own.to_string()),
        None => form.value("municipality").map(str::to_owned),
    };
    if let Some(code) = municipality {
        query.append_pair("municipality", &code);
    }
    for name in ["operator_id", "resident_id"] {
        if let Some(value) = form.value(name) {
            query.append_pair(name, value);
        }
    }
    for (name, next_day) in [("from", false), ("to", true)] {
        let Some(text) = form.value(name) else { continue };
        match parse_day(text).and_then(|d| if next_day { d.succ_opt() } else { Some(d) }).and_then(day_start) {
            Some(instant) => {
                query.append_pair(name, &instant);
            }
            None => errors.add(name, "年-月-日で入力してください（例: 2026-12-01）。"),
        }
    }
    query.finish()
}

fn log_of(form: &Form) -> (&'static str, &'static str, &'static str) {
    LOGS.iter().copied().find(|(k, ..)| *k == form.get("log")).unwrap_or(LOGS[0])
}

/// The audit page: the filters and the first lines of the chosen log.
pub async fn show(Extension(api): Extension<InProcessApi>, ui: UiSession, query: RawQuery) -> Response {
    let form = Form::parse(query.0.as_deref().unwrap_or("").as_bytes());
    let (log, path, title) = log_of(&form);
    let mut errors = FieldErrors::default();
    let query = api_query(&ui, &form, &mut errors);
    let lines = if errors.is_empty() && !form.get("log").is_empty() {
        let Ok(request) = Request::get(format!("{path}?{query}")).body(Body::empty()) else {
            return super::unavailable();
        };
        let response = api.send(&ui, request).await;
        if !response.status().is_success() {
            let answer = Answer::read(response).await;
            let Some(problem) = answer.problem() else { return super::unavailable() };
            if problem.status != StatusCode::UNPROCESSABLE_ENTITY {
                return refused(&problem);
            }
            errors = FieldErrors::of(&problem, &["municipality", "operator_id", "resident_id", "from", "to"]);
            None
        } else {
            Some(first_lines(response.into_body(), SHOWN).await)
        }
    } else {
        None
    };
    page(audit_page(&ui, &form, log, title, &errors, lines.as_ref(), &query))
}

/// The first `n` NDJSON lines of a streamed log, and whether there were more; the rest is not read.
async fn first_lines(body: Body, n: usize) -> (Vec<Value>, bool) {
    let mut lines = Vec::new();
    let mut pending = Vec::new();
    let mut stream = body.into_data_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        pending.extend_from_slice(&chunk);
        while let Some(at) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=at).collect();
            if let Ok(value) = serde_json::from_slice::<Value>(&line) {
                if lines.len() == n {
                    return (lines, true);
                }
                lines.push(value);
            }
        }
    }
    (lines, false)
}

fn audit_page(
    ui: &UiSession,
    form: &Form,
    log: &str,
    title: &str,
    errors: &FieldErrors,
    lines: Option<&(Vec<Value>, bool)>,
    query: &str,
) -> Markup {
    let csrf = ui.csrf();
    let logs: Vec<(String, String)> = LOGS.iter().map(|(k, _, t)| ((*k).to_owned(), (*t).to_owned())).collect();
    let text = |line: &Value, key: &str| line.get(key).and_then(Value::as_str).unwrap_or("").to_owned();
    let operator = |line: &Value| {
        line.get("operator_id").and_then(Value::as_str).map(str::to_owned).unwrap_or_else(|| {
            line.get("operator_key").and_then(Value::as_str).map(|k| format!("（鍵 {k}）")).unwrap_or_default()
        })
    };
    layout(
        "監査",
        Some((&ui.session, &csrf)),
        html! {
            p { "操作履歴（すべての変更: 誰が・いつ・どの端末で・何を）、参照記録（誰がどの利用者を参照したか）、大量参照の警告を確認します。" }
            (error_summary(errors))
            form.filters method="get" action="/ui/audit" novalidate {
                (input_field("log", "記録", log, "", errors, Input::Select { options: &logs, required: true }))
                @if ui.session.actor.municipality.is_none() {
                    (text_field("municipality", "市町村コード", form.get("municipality"), "空欄: すべての市町村", errors))
                }
                (text_field("operator_id", "オペレータID", form.get("operator_id"), "", errors))
                @if log != "alerts" {
                    (text_field("resident_id", "利用者ID", form.get("resident_id"), "", errors))
                }
                (text_field("from", "期間（開始日）", form.get("from"), "年-月-日（日本時間、この日を含む）", errors))
                (text_field("to", "期間（終了日）", form.get("to"), "年-月-日（日本時間、この日を含む）", errors))
                div { button type="submit" { "表示" } }
            }
            @if let Some((lines, more)) = lines {
                section aria-labelledby="log-title" {
                    h3 id="log-title" { (title) }
                    p role="status" {
                        @if lines.is_empty() { "該当する記録はありません。" }
                        @else { (lines.len()) "件" @if *more { "（先頭の" (SHOWN) "件。すべてはCSVで）" } }
                        " "
                        a href={ "/ui/audit/export?log=" (log) "&" (query) } download { "CSVでダウンロード" }
                    }
                    @if !lines.is_empty() {
                        table.audit {
                            @match log {
                                "access" => {
                                    thead { tr { th scope="col" { "日時" } th scope="col" { "市町村" } th scope="col" { "オペレータ" }
                                        th scope="col" { "端末" } th scope="col" { "操作" } th scope="col" { "参照した利用者" } th scope="col" { "宛名番号" } } }
                                    tbody { @for line in lines { tr {
                                        td { (in_japan(line.get("recorded_at").and_then(Value::as_str))) } td { (text(line, "municipality")) }
                                        td { (operator(line)) } td { (text(line, "terminal")) } td { (text(line, "operation")) }
                                        td { (list(line, "residents")) } td { (list(line, "registry_keys")) }
                                    } } }
                                }
                                "alerts" => {
                                    thead { tr { th scope="col" { "日時" } th scope="col" { "市町村" } th scope="col" { "オペレータ" }
                                        th scope="col" { "期間の始まり" } th scope="col" { "参照した人数" } th scope="col" { "しきい値" } } }
                                    tbody { @for line in lines { tr {
                                        td { (in_japan(line.get("raised_at").and_then(Value::as_str))) } td { (text(line, "municipality")) }
                                        td { (operator(line)) } td { (in_japan(line.get("window_start").and_then(Value::as_str))) }
                                        td { (line.get("distinct_residents").and_then(Value::as_u64).unwrap_or(0)) }
                                        td { (line.get("threshold").and_then(Value::as_u64).unwrap_or(0)) }
                                    } } }
                                }
                                _ => {
                                    thead { tr { th scope="col" { "日時" } th scope="col" { "市町村" } th scope="col" { "オペレータ" }
                                        th scope="col" { "端末" } th scope="col" { "種別" } th scope="col" { "対象" } th scope="col" { "内容" } } }
                                    tbody { @for line in lines { tr {
                                        td { (in_japan(line.get("recorded_at").and_then(Value::as_str))) } td { (text(line, "municipality")) }
                                        td { (operator(line)) } td { (text(line, "terminal")) } td { (text(line, "type")) }
                                        td { code { (text(line, "stream")) } } td { code.changes { (changes(line)) } }
                                    } } }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

fn list(line: &Value, key: &str) -> String {
    line.get(key)
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// What changed, as JSON text cut at 300 characters (the CSV has it whole).
fn changes(line: &Value) -> String {
    let text = line.get("changes").map(Value::to_string).unwrap_or_default();
    if text.chars().count() > 300 { format!("{}…", text.chars().take(300).collect::<String>()) } else { text }
}

/// The chosen log as CSV, all of it (the API's CSV, streamed as a download).
pub async fn export(Extension(api): Extension<InProcessApi>, ui: UiSession, query: RawQuery) -> Response {
    let form = Form::parse(query.0.as_deref().unwrap_or("").as_bytes());
    let (log, path, _) = log_of(&form);
    let mut errors = FieldErrors::default();
    let query = api_query(&ui, &form, &mut errors);
    if !errors.is_empty() {
        return (StatusCode::UNPROCESSABLE_ENTITY, page(pages::message("監査", "期間を年-月-日で入力してください。")))
            .into_response();
    }
    let Ok(request) = Request::get(format!("{path}?{query}")).header(header::ACCEPT, "text/csv").body(Body::empty())
    else {
        return super::unavailable();
    };
    let response = api.send(&ui, request).await;
    if !response.status().is_success() {
        let answer = Answer::read(response).await;
        return answer.problem().map(|p| refused(&p)).unwrap_or_else(super::unavailable);
    }
    let stamp = Utc::now().with_timezone(&japan()).format("%Y%m%d%H%M");
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"cardap-{log}-{stamp}.csv\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("text/csv; charset=utf-8"));
    (
        [(header::CONTENT_TYPE, content_type), (header::CONTENT_DISPOSITION, disposition)],
        Body::new(response.into_body()),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_day_is_a_day_in_japan() {
        assert_eq!(day_start(parse_day("2026-12-01").unwrap()).unwrap(), "2026-12-01T00:00:00+09:00");
        assert_eq!(parse_day("2026/12/01"), parse_day("2026-12-01"));
        assert_eq!(parse_day("12/01"), None);
    }
}
