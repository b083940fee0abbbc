//! オペレータのCSV: the upload of an import file (UTF-8 or Shift_JIS) to the API's import, which runs as a job;
//! the job's page, which reloads itself while the job runs (`<meta http-equiv="refresh">`: no script) and then
//! shows every bad row with its column and message (nothing was registered: the import is all or nothing) or the
//! registered rows, with the generated passwords fetched once on request; and the export of the list's filters as
//! a download, streamed from the API as it writes it.

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::{Multipart, Path, RawQuery};
use axum::http::{Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde_json::Value;

use super::super::api::{Answer, Call, InProcessApi, Problem, ProblemField, flag, items, segment, text};
use super::super::flow::{accepted, one};
use super::super::form::{FieldErrors, Form, id_of, new_key};
use super::super::pages::{self, error_summary, field_note, form_keys, layout_refreshing};
use super::super::{Posted, Reply, UiSession, csrf_ok, forbidden, page, refused, unavailable};
use super::{FILTERS, Scope, passwords_page, query, scope};

/// The charsets of an import file, as the API's `Content-Type` names them, with the screen's words.
const CHARSETS: [(&str, &str); 2] = [
    ("UTF-8", "UTF-8（BOM付きも可）"),
    ("Shift_JIS", "Shift_JIS（Excel で「CSV（コンマ区切り）」として保存したもの）"),
];

/// The upload form; after a refusal, the problem above it (a table of the cells for a bad header row).
fn upload_page(ui: &UiSession, scope: &Scope, charset: &str, errors: &FieldErrors, cells: &[ProblemField]) -> Markup {
    let csrf = ui.csrf();
    let file_problems = errors.of_field("file");
    ui.layout(
        "オペレータのCSV一括登録",
        html! {
            p { "市町村 " (scope.code) " のオペレータを、CSVファイルからまとめて登録します。"
                "1行でも誤りがあれば1人も登録せず、誤りのある行と列をすべて表示します。" }
            details {
                summary { "ファイルの形式" }
                ul {
                    li { "1行目は見出し行です。オペレータID と 氏名・組織名 の列は必須です。" }
                    li { "使える見出し: オペレータID, パスワード, 氏名・組織名, 部門, 性別, 連絡先電話, 内線, E-Mail, 情報, 付帯情報, 許可業務, 役割, 業務内ID（CSV出力したファイルの見出しもそのまま使えます）。" }
                    li { "許可業務・役割は空白区切りです（例: 01 02）。役割が空欄なら「窓口」（clerk）になります。" }
                    li { "パスワードが空欄の行は自動で生成し、取込の完了後に一度だけ表示します。" }
                }
            }
            (error_summary(errors))
            @if !cells.is_empty() { (cell_table(cells)) }
            form method="post" action="/ui/operators/import" enctype="multipart/form-data" novalidate {
                (form_keys(&csrf, &new_key()))
                (scope.hidden())
                div.field {
                    label for="f-charset" { "文字コード" }
                    select id="f-charset" name="charset" {
                        @for (value, label) in CHARSETS { option value=(value) selected[value == charset] { (label) } }
                    }
                }
                div.field {
                    label for=(id_of("file")) { "CSVファイル" " " span.required { "必須" } }
                    input id=(id_of("file")) name="file" type="file" accept=".csv,text/csv" aria-required="true"
                        aria-describedby="f-file-note" aria-invalid=[(!file_problems.is_empty()).then_some("true")];
                    (field_note("f-file-note", "32MiB・10,000行まで", &file_problems))
                }
                div { button type="submit" { "取り込む" } }
            }
            p { a href=(scope.href("/ui/operators")) { "オペレータ一覧へ" } }
        },
    )
}

/// The problems of a file, cell by cell: 行 (as a spreadsheet numbers it: the header is row 1), 列 (the header
/// as written in the file), メッセージ.
fn cell_table(cells: &[ProblemField]) -> Markup {
    html! {
        table.cells {
            caption { "誤りのある行" }
            thead { tr { th scope="col" { "行" } th scope="col" { "列" } th scope="col" { "メッセージ" } } }
            tbody {
                @for cell in cells {
                    tr {
                        td { @if let Some(row) = cell.row { (row) } }
                        td { (cell.column.as_deref().unwrap_or("")) }
                        td { (cell.message) }
                    }
                }
            }
        }
    }
}

/// The upload form.
pub async fn upload_form(Extension(api): Extension<InProcessApi>, ui: UiSession, raw: RawQuery) -> Reply {
    let scope = scope(&api, &ui, Form::of_query(&raw).get("municipality"), "/ui/operators/import").await?;
    Ok(page(upload_page(&ui, &scope, "UTF-8", &FieldErrors::default(), &[])))
}

/// What the upload form sent: its text fields, and the file (read only once the CSRF token before it was
/// checked).
struct Upload {
    form: Form,
    file: Option<Bytes>,
}

/// Reads the upload form; the CSRF token must come before the file (a form of another site gets 403 before its
/// file is read).
async fn read_upload(ui: &UiSession, multipart: &mut Multipart) -> Result<Upload, Response> {
    let mut fields: Vec<(String, String)> = vec![];
    let mut csrf_checked = false;
    let mut file = None;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return Err(unreadable(e.status())),
        };
        let name = field.name().unwrap_or("").to_owned();
        if name == "file" {
            if !csrf_checked {
                return Err(forbidden());
            }
            let bytes = field.bytes().await.map_err(|e| unreadable(e.status()))?;
            file = Some(bytes).filter(|b| !b.is_empty());
            continue;
        }
        let value = field.text().await.map_err(|e| unreadable(e.status()))?;
        if name == "csrf" {
            if !csrf_ok(ui, &value) {
                return Err(forbidden());
            }
            csrf_checked = true;
        }
        fields.push((name, value));
    }
    if !csrf_checked {
        return Err(forbidden());
    }
    let mut encoded = form_urlencoded::Serializer::new(String::new());
    encoded.extend_pairs(&fields);
    Ok(Upload { form: Form::parse(encoded.finish().as_bytes()), file })
}

/// An upload that could not be read: too large, or not a form.
fn unreadable(status: StatusCode) -> Response {
    let (title, text) = if status == StatusCode::PAYLOAD_TOO_LARGE {
        ("ファイルが大きすぎます", "取り込めるファイルは32MiBまでです。ファイルを分けて取り込んでください。")
    } else {
        ("ファイルを受け取れませんでした", "画面を読み込み直してから、もう一度ファイルを選んでください。")
    };
    (status, page(pages::message(title, text))).into_response()
}

/// Sends the file to the API's import (with the form's `Idempotency-Key`: sent twice, one job); started, the
/// job's page; refused at once (charset, header row, size, another import running), the form with the problem.
pub async fn upload(Extension(api): Extension<InProcessApi>, ui: UiSession, mut multipart: Multipart) -> Reply {
    let Upload { form, file } = read_upload(&ui, &mut multipart).await?;
    let scope = scope(&api, &ui, form.get("municipality"), "/ui/operators/import").await?;
    let charset = CHARSETS.iter().map(|(c, _)| *c).find(|c| *c == form.get("charset")).unwrap_or("UTF-8");
    let Some(file) = file else {
        let mut errors = FieldErrors::default();
        errors.add("file", "取り込むCSVファイルを選んでください。");
        return Ok(
            (StatusCode::UNPROCESSABLE_ENTITY, page(upload_page(&ui, &scope, charset, &errors, &[]))).into_response()
        );
    };
    let request = Request::post(format!("{}/import", scope.api()))
        .header(header::CONTENT_TYPE, format!("text/csv; charset={charset}"))
        .header("idempotency-key", form.idempotency_key())
        .body(Body::from(file));
    let Ok(request) = request else { return Err(unavailable()) };
    let answer = Answer::read(api.send(&ui, request).await).await;
    Ok(match answer.problem() {
        None => {
            let job = answer.str("/job_id");
            Redirect::to(&format!("/ui/jobs/{}", segment(job))).into_response()
        }
        Some(p) if p.status.is_client_error() && !matches!(p.status.as_u16(), 401 | 404) => {
            let errors = FieldErrors::of(&p, &["file"]);
            let cells: Vec<ProblemField> = p.errors.iter().filter(|e| e.row.is_some()).cloned().collect();
            (p.status, page(upload_page(&ui, &scope, charset, &errors, &cells))).into_response()
        }
        Some(p) => refused(&p),
    })
}

/// What a job's phase is called on its page.
fn phase_label(phase: &str) -> &'static str {
    match phase {
        "validating" => "ファイルの内容を確認しています",
        "hashing" => "パスワードを処理しています",
        "registering" => "登録しています",
        _ => "完了しました",
    }
}

/// An import job's page: while it runs, where it stands (the page reloads itself every second); failed, every
/// bad row with its column and message; succeeded, the registered rows and the generated passwords (once).
pub async fn job(Extension(api): Extension<InProcessApi>, ui: UiSession, Path(id): Path<String>) -> Reply {
    let answer = one(&api, &ui, &format!("/api/v1/jobs/{}", segment(&id))).await?;
    let job = &answer.body;
    let scope = Scope { code: text(job, "municipality").to_owned() };
    let progress = job.get("progress").cloned().unwrap_or(Value::Null);
    let number = |key: &str| progress.get(key).and_then(Value::as_u64).unwrap_or(0);
    let csrf = ui.csrf();
    let back = html! { p { a href=(scope.href("/ui/operators")) { "オペレータ一覧へ" } " " a href=(scope.href("/ui/operators/import")) { "別のファイルを取り込む" } } };
    Ok(match text(job, "state") {
        "running" => page(layout_refreshing(
            "CSV取込の実行中",
            Some((&ui.session, &csrf)),
            Some(1),
            html! {
                p role="status" { (phase_label(text(&progress, "phase"))) "…" }
                table.facts {
                    tbody {
                        tr { th scope="row" { "確認した行" } td { (number("rows")) } }
                        tr { th scope="row" { "処理したパスワード" } td { (number("rows_hashed")) } }
                        tr { th scope="row" { "見つかった誤り" } td { (number("errors")) } }
                    }
                }
                p.muted { "この画面は1秒ごとに自動で更新されます。" }
            },
        )),
        "failed" => {
            let outcome = job.get("outcome").cloned().unwrap_or(Value::Null);
            let status = outcome
                .get("status")
                .and_then(Value::as_u64)
                .and_then(|s| u16::try_from(s).ok())
                .and_then(|s| StatusCode::from_u16(s).ok())
                .unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
            let problem = Problem::of(status, &outcome);
            let (cells, others): (Vec<ProblemField>, Vec<ProblemField>) =
                problem.errors.iter().cloned().partition(|e| e.row.is_some());
            page(ui.layout(
                "CSV取込の結果: 取り込めませんでした",
                html! {
                    div.error-summary role="alert" {
                        p { "ファイルに誤りがあるため、1人も登録していません。誤りを直してから、ファイル全体をもう一度取り込んでください。" }
                        p { (problem.summary()) }
                        @for e in &others { p { (e.message) } }
                    }
                    @if !cells.is_empty() { (cell_table(&cells)) }
                    (back)
                },
            ))
        }
        _ => {
            let report = job.get("outcome").cloned().unwrap_or(Value::Null);
            let rows = items(&report);
            let passwords = text(&report, "passwords");
            page(ui.layout(
                "CSV取込の結果: 登録しました",
                html! {
                    p.notice role="status" { (rows.len()) "人のオペレータを登録しました。" }
                    @match passwords {
                        "available" => {
                            form method="post" action={ "/ui/jobs/" (segment(&id)) "/passwords" } {
                                (form_keys(&csrf, &new_key()))
                                p { "パスワードを空欄にした行には、パスワードを自動で生成しました。生成したパスワードは一度だけ表示できます。" }
                                button type="submit" { "生成したパスワードを表示" }
                            }
                        }
                        "retrieved" => {
                            p.muted { "生成したパスワードは表示済みのため、もう表示できません。分からなくなった場合は、パスワードを再設定してください。" }
                        }
                        _ => {}
                    }
                    table {
                        thead { tr { th scope="col" { "行" } th scope="col" { "オペレータID" } th scope="col" { "パスワード" } } }
                        tbody {
                            @for item in rows {
                                @let operator = text(item, "operator_id");
                                tr {
                                    td { (item.get("row").and_then(Value::as_u64).unwrap_or(0)) }
                                    td { a href=(scope.operator_href(operator)) { (operator) } }
                                    td { @if flag(item, "password_generated") { "自動生成" } @else { "ファイルで指定" } }
                                }
                            }
                        }
                    }
                    (back)
                },
            ))
        }
    })
}

/// The job's generated passwords, this once (the API hands them out once, to the operator who started the job).
pub async fn job_passwords(
    Extension(api): Extension<InProcessApi>,
    Path(id): Path<String>,
    Posted { ui, form }: Posted,
) -> Reply {
    let path = format!("/api/v1/jobs/{}/passwords", segment(&id));
    let call = Call::get(&path).method(Method::POST).keyed(&form);
    let answer = accepted(api.call(&ui, call).await)?;
    let rows: Vec<(String, String, String)> = items(&answer.body)
        .iter()
        .map(|item| (text(item, "operator_id").to_owned(), String::new(), text(item, "password").to_owned()))
        .collect();
    let intro = format!("CSV取込で生成した{}人分のパスワードです。", rows.len());
    Ok(page(passwords_page(&ui, "生成したパスワード", &intro, &rows, &format!("/ui/jobs/{}", segment(&id)))))
}

/// オペレータ情報出力: the operators of the list's conditions as the API's CSV (UTF-8 with BOM, or Shift_JIS),
/// a download streamed as the API writes it.
pub async fn export(Extension(api): Extension<InProcessApi>, ui: UiSession, raw: RawQuery) -> Reply {
    let q = Form::of_query(&raw);
    let scope = scope(&api, &ui, q.get("municipality"), "/ui/operators").await?;
    let mut conditions: Vec<(&str, &str)> = FILTERS.iter().map(|(name, _)| (*name, q.get(name).trim())).collect();
    let include_revoked = if q.get("include_revoked") == "true" { "true" } else { "" };
    conditions.extend([("include_revoked", include_revoked), ("charset", q.get("charset"))]);
    let Ok(request) = Request::get(format!("{}/export?{}", scope.api(), query(&conditions))).body(Body::empty()) else {
        return Err(unavailable());
    };
    let response = api.send(&ui, request).await;
    if response.status() != StatusCode::OK {
        let answer = Answer::read(response).await;
        return Err(match answer.problem() {
            Some(p) => refused(&p),
            None => unavailable(),
        });
    }
    let (parts, body) = response.into_parts();
    let mut download = Response::new(body);
    for name in [header::CONTENT_TYPE, header::CONTENT_DISPOSITION] {
        if let Some(value) = parts.headers.get(&name) {
            download.headers_mut().insert(name, value.clone());
        }
    }
    Ok(download)
}
