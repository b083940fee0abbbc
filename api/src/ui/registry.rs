//! 住基データ取込 on the clerk UI: a registry file uploaded from the browser goes, as it arrives, to the registry
//! import of the HTTP API (`POST …/registry/import?progress=true`, in process), and the page streams back while
//! the import runs: a progress bar (rows done, errors so far, share of the file read) that the browser draws as
//! it arrives, each refused row named (行, 宛名番号, 列, message), then the summary.
//!
//! No script: the page is one streamed HTML document. Every progress line is a new `div.progress` in one flex
//! column, and the stylesheet shows only the last one (`.progress:not(:last-of-type)`), so the bar moves without
//! JavaScript. Nothing holds the file: its chunks pass from the upload to the import through a bounded channel.
//!
//! Owns these two routes and their HTML; the import itself (parsing, batches, the decision per row, limits) is
//! the API's.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::Multipart;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{StreamExt, stream};
use maud::{Markup, PreEscaped, html};
use serde_json::Value;
use tokio::sync::mpsc;

use super::api::{Answer, InProcessApi};
use super::form::FieldErrors;
use super::pages::{Input, error_summary, input_field, options};
use super::{Reply, UiSession, csrf_ok, forbidden, page, refused};

/// Upload chunks in flight between the browser's upload and the import.
const UPLOAD_CHUNKS: usize = 8;
/// Refused rows listed on the page; the rest are counted in the summary.
const LISTED_ERRORS: u64 = 1000;
/// Where the streamed part of the page goes in the layout.
const STREAM_HERE: &str = "<!--cardap:stream-->";

fn charsets() -> Vec<(String, String)> {
    options(&[("UTF-8", "UTF-8"), ("Shift_JIS", "Shift_JIS（Windows の Excel で保存した CSV）")])
}

fn form_page(ui: &UiSession, errors: &FieldErrors, charset: &str) -> Markup {
    let csrf = ui.csrf();
    ui.layout(
        "住基データ取込",
        html! {
            p { "既存住基システムまたは住基ネットCSから出力したCSVファイルを取り込みます。同じファイルを再度取り込んでも、変わった行だけが反映されます。" }
            (error_summary(errors))
            form method="post" action="/ui/registry/import" enctype="multipart/form-data" {
                input type="hidden" name="csrf" value=(csrf);
                (input_field("charset", "文字コード", charset, "", errors, Input::Select { options: &charsets(), required: true }))
                div.field {
                    label for="f-file" { "CSVファイル " span.required { "必須" } }
                    input id="f-file" name="file" type="file" accept=".csv,text/csv" aria-describedby="f-file-note";
                    span.muted id="f-file-note" { "1行目は見出し行（宛名番号、氏名、カナ氏名、生年月日、性別、郵便番号、住所）" }
                }
                div { button type="submit" { "取込開始" } }
            }
        },
    )
}

/// The upload form.
pub async fn form(ui: UiSession) -> Reply {
    ui.own_municipality("住基データ取込")?;
    Ok(page(form_page(&ui, &FieldErrors::default(), "UTF-8")))
}

/// What the form sent before the file.
#[derive(Debug, Default)]
struct Upload {
    csrf: String,
    charset: String,
    /// The file's name; `None` without a file.
    file: Option<String>,
}

/// Runs the import of the uploaded file and streams the page of its progress and report.
pub async fn import(
    Extension(api): Extension<InProcessApi>,
    ui: UiSession,
    headers: HeaderMap,
    mut multipart: Multipart,
) -> Reply {
    let code = ui.own_municipality("住基データ取込")?;
    // A task reads the form: the fields before the file (told at once), then the file's chunks as they arrive,
    // which become the import's body. Dropped, the receiving side stops it.
    let read = Arc::new(AtomicU64::new(0));
    let (chunks_tx, chunks_rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(UPLOAD_CHUNKS);
    let (upload_tx, upload_rx) = tokio::sync::oneshot::channel::<Upload>();
    let counter = read.clone();
    tokio::spawn(async move {
        let mut upload = Upload { charset: "UTF-8".to_owned(), ..Upload::default() };
        loop {
            let mut field = match multipart.next_field().await {
                Ok(Some(field)) => field,
                Ok(None) | Err(_) => break,
            };
            match field.name() {
                Some("csrf") => upload.csrf = field.text().await.unwrap_or_default(),
                Some("charset") => upload.charset = field.text().await.unwrap_or_default(),
                Some("file") => {
                    upload.file = Some(field.file_name().unwrap_or_default().to_owned());
                    let _ = upload_tx.send(upload);
                    loop {
                        let chunk = match field.chunk().await {
                            Ok(Some(chunk)) => Ok(chunk),
                            Ok(None) => return,
                            Err(e) => Err(std::io::Error::other(e.to_string())),
                        };
                        let broken = chunk.is_err();
                        if let Ok(chunk) = &chunk {
                            counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                        }
                        if chunks_tx.send(chunk).await.is_err() || broken {
                            return;
                        }
                    }
                }
                _ => {}
            }
        }
        let _ = upload_tx.send(upload);
    });
    let upload = upload_rx.await.unwrap_or_default();
    if !csrf_ok(&ui, &upload.csrf) {
        return Err(forbidden());
    }
    let charset = if upload.charset == "Shift_JIS" { "Shift_JIS" } else { "UTF-8" };
    if upload.file.as_deref().is_none_or(str::is_empty) {
        let mut errors = FieldErrors::default();
        errors.general.push("CSVファイルを選んでください。".to_owned());
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, page(form_page(&ui, &errors, charset))).into_response());
    }
    let body = Body::from_stream(stream::unfold(chunks_rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) }));
    let Some(request) = request(&code, charset, body) else { return Err(super::unavailable()) };
    let response = api.send(&ui, request).await;
    if response.status() != StatusCode::OK {
        return Ok(refused_page(&ui, &Answer::read(response).await, charset));
    }
    let total = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let body = streamed(&ui, response.into_body(), read, total);
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"))], body).into_response())
}

/// The page's stream: the layout's head, then the import's progress and report as they come, then the tail.
fn streamed(ui: &UiSession, answer: Body, read: Arc<AtomicU64>, total: Option<u64>) -> Body {
    let shell = ui
        .layout(
            "住基データ取込",
            html! {
                div.import-log role="status" { (PreEscaped(STREAM_HERE)) }
                p { a href="/ui/registry/import" { "別のファイルを取り込む" } }
            },
        )
        .into_string();
    let (head, tail) = shell.split_once(STREAM_HERE).map(|(h, t)| (h.to_owned(), t.to_owned())).unwrap_or_default();
    let (html_tx, html_rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        let send = |text: String| {
            let tx = html_tx.clone();
            async move { tx.send(Ok(Bytes::from(text))).await.is_ok() }
        };
        // Some browsers wait for a few hundred bytes before they draw: the head is long enough.
        let mut report = Report { listed: 0, bars: 0, total };
        // The first bar (no row yet), hidden as soon as the next one comes.
        if !send(head + &report.bar(0, 0, 0, false).into_string()).await {
            return;
        }
        let mut lines = answer.into_data_stream();
        let mut pending = Vec::new();
        while let Some(chunk) = lines.next().await {
            let Ok(chunk) = chunk else {
                let _ = send(report.broken()).await;
                break;
            };
            pending.extend_from_slice(&chunk);
            let mut html = String::new();
            while let Some(at) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=at).collect();
                if let Ok(value) = serde_json::from_slice::<Value>(&line) {
                    html.push_str(&report.line(&value, read.load(Ordering::Relaxed)).into_string());
                }
            }
            if !html.is_empty() && !send(html).await {
                return;
            }
        }
        let _ = send(tail).await;
    });
    Body::from_stream(stream::unfold(html_rx, |mut rx| async move { rx.recv().await.map(|chunk| (chunk, rx)) }))
}

/// What the streamed page has said so far.
struct Report {
    listed: u64,
    /// Progress lines so far (each bar has its own id for its label).
    bars: u64,
    /// The upload's size, when the browser said it.
    total: Option<u64>,
}

impl Report {
    fn line(&mut self, line: &Value, read: u64) -> Markup {
        if let Some(progress) = line.get("progress") {
            let rows = progress.get("rows").and_then(Value::as_u64).unwrap_or(0);
            let errors = progress.get("errors").and_then(Value::as_u64).unwrap_or(0);
            return self.bar(rows, errors, read, false);
        }
        if let Some(summary) = line.get("summary") {
            let n = |k: &str| summary.get(k).and_then(Value::as_u64).unwrap_or(0);
            let aborted = summary.get("aborted").and_then(Value::as_bool) == Some(true);
            let bar = self.bar(n("rows"), n("errors"), self.total.unwrap_or(read), true);
            return html! {
                (bar)
                table.facts.summary {
                    caption { @if aborted { "取込は途中で止まりました（それまでの行は取り込まれています。同じファイルを再度取り込めます）" } @else { "取込結果" } }
                    tbody {
                        tr { th scope="row" { "読み込んだ行" } td { (n("rows")) } }
                        tr { th scope="row" { "新規" } td { (n("imported")) } }
                        tr { th scope="row" { "変更" } td { (n("changed")) } }
                        tr { th scope="row" { "変更なし" } td { (n("unchanged")) } }
                        tr { th scope="row" { "エラー" } td { (n("errors")) @if n("errors") > self.listed { "（先頭の" (self.listed) "件を表示）" } } }
                    }
                }
            };
        }
        if let Some(problem) = line.get("problem") {
            let text = problem.get("detail").or_else(|| problem.get("title")).and_then(Value::as_str).unwrap_or("");
            return html! { p.error.row-error role="alert" { "取込を中止しました: " (text) } };
        }
        if line.get("outcome").and_then(Value::as_str) == Some("error") && self.listed < LISTED_ERRORS {
            self.listed += 1;
            let row = line.get("row").and_then(Value::as_u64).unwrap_or(0);
            let key = line.get("registry_key").and_then(Value::as_str).unwrap_or("");
            let errors = line.get("errors").and_then(Value::as_array).cloned().unwrap_or_default();
            return html! {
                p.row-error {
                    strong { (row) "行目" } @if !key.is_empty() { "（宛名番号 " (key) "）" } ": "
                    @for (i, e) in errors.iter().enumerate() {
                        @if i > 0 { " / " }
                        (e.get("column").and_then(Value::as_str).unwrap_or("")) " — " (e.get("message").and_then(Value::as_str).unwrap_or(""))
                    }
                }
            };
        }
        html! {}
    }

    fn bar(&mut self, rows: u64, errors: u64, read: u64, done: bool) -> Markup {
        self.bars += 1;
        let id = format!("import-progress-{}", self.bars);
        let percent = self.total.filter(|t| *t > 0).map(|t| (read.min(t) * 100 / t).min(100));
        html! {
            div.progress {
                label for=(id) { @if done { "完了" } @else { "取込中" } }
                @match (done, percent) {
                    (true, _) => { progress id=(id) value="100" max="100" { "100%" } }
                    (false, Some(p)) => { progress id=(id) value=(p) max="100" { (p) "%" } }
                    (false, None) => { progress id=(id) { "取込中" } }
                }
                @if !done { p { "取込中です。このページを閉じないでください。" } }
                p.progress-text { "処理済み " strong.rows-done { (rows) } " 行、エラー " strong.errors-so-far { (errors) } " 件" }
            }
        }
    }

    fn broken(&self) -> String {
        html! { p.error.row-error role="alert" { "取込の結果を最後まで受け取れませんでした。取込状況を確認してから、同じファイルを再度取り込んでください。" } }
            .into_string()
    }
}

fn refused_page(ui: &UiSession, answer: &Answer, charset: &str) -> Response {
    let Some(problem) = answer.problem() else { return super::unavailable() };
    match problem.status {
        StatusCode::UNPROCESSABLE_ENTITY
        | StatusCode::UNSUPPORTED_MEDIA_TYPE
        | StatusCode::TOO_MANY_REQUESTS
        | StatusCode::BAD_REQUEST => {
            let mut errors = FieldErrors::default();
            errors.general.push(problem.summary().to_owned());
            for e in &problem.errors {
                let at = match (e.row, &e.column) {
                    (Some(row), Some(column)) => format!("{row}行目 {column}: "),
                    (Some(row), None) => format!("{row}行目: "),
                    (None, Some(column)) => format!("{column}: "),
                    (None, None) => String::new(),
                };
                errors.general.push(format!("{at}{}", e.message));
            }
            (problem.status, page(form_page(ui, &errors, charset))).into_response()
        }
        _ => refused(&problem),
    }
}

fn request(code: &str, charset: &str, body: Body) -> Option<Request<Body>> {
    Request::builder()
        .method("POST")
        .uri(format!("/api/v1/municipalities/{code}/registry/import?progress=true"))
        .header(header::CONTENT_TYPE, HeaderValue::from_str(&format!("text/csv; charset={charset}")).ok()?)
        .body(body)
        .ok()
}
