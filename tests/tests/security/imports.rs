//! Imports (issue 9, point 7): each test shows an attack on the server's resources through an import and that
//! cardap stops it — uploads that trickle for hours, imports started by the hundred, an import that goes on after
//! its operator left, generated passwords that someone else reads or nobody can read any more. Every test runs on
//! PostgreSQL and on SQLite.

use std::time::Duration;

use cardap_domain::operator::Role;
use cardap_tests::reqwest::{Method, StatusCode};
use cardap_tests::serde_json::json;
use cardap_tests::{
    Backend, Imported, TestApp, job_path, on_both_backends, operator_import_path, operator_with_password,
    register_operator, registry_import_path, send, spawn_app, spawn_app_with,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CHIYODA: &str = "131016";
const SAPPORO: &str = "011002";
const HAKODATE: &str = "012025";
const PASSWORD: &str = "ManagerPassw0rd";
const UTF8: &str = "text/csv; charset=UTF-8";
const REGISTRY_HEADER: &str = "宛名番号,氏名,カナ氏名,生年月日,性別,郵便番号,住所\r\n";

/// Registry rows `from..=to` (宛名番号 = the number).
fn registry_rows(from: u32, to: u32) -> String {
    (from..=to)
        .map(|i| format!("{i:09},試験 太郎,シケン タロウ,3500101,1,100-0001,東京都千代田区千代田１\r\n"))
        .collect()
}

/// An operator CSV of `n` operators `OP00000`… without passwords (each one generated).
fn operator_file(prefix: &str, n: usize) -> Vec<u8> {
    let mut file = String::from("オペレータID,氏名・組織名,役割\r\n");
    for i in 0..n {
        file.push_str(&format!("{prefix}{i:05},職員 {i},clerk\r\n"));
    }
    file.into_bytes()
}

/// Municipalities `codes` and an operations manager `MGR01` of each (who also holds `clerk`, so he may import
/// clerks); returns the administrator's token and the managers' tokens, in order.
async fn managers(app: &TestApp, codes: &[&str]) -> (String, Vec<String>) {
    let admin = app.admin_token().await;
    let mut tokens = vec![];
    for (i, code) in codes.iter().enumerate() {
        app.register_municipality(&admin, code, &format!("市{i}"), i as i64 + 1).await;
        let manager = operator_with_password("MGR01", PASSWORD, &["operations_manager", "clerk"], &[]);
        app.add_operators(&admin, code, &manager).await;
        tokens.push(app.login(Some(code), "MGR01", PASSWORD).await);
    }
    (admin, tokens)
}

/// A registry import sent by hand over TCP, its body in chunks as the test pleases (an upload that trickles).
struct Upload {
    stream: TcpStream,
    received: Vec<u8>,
}

impl Upload {
    /// Starts `POST …/registry/import` of `code` with a chunked body that begins with the header row, and waits
    /// for the server to answer `200` (it does once the header row is read).
    async fn start(app: &TestApp, code: &str, token: &str) -> Upload {
        let mut stream = TcpStream::connect(app.socket_addr).await.unwrap();
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: cardap\r\nAuthorization: Bearer {token}\r\nContent-Type: {UTF8}\r\n\
             Transfer-Encoding: chunked\r\n\r\n",
            registry_import_path(code)
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut upload = Upload { stream, received: vec![] };
        upload.send(REGISTRY_HEADER).await;
        upload.until("HTTP/1.1 ", Duration::from_secs(30)).await;
        upload.until("\r\n\r\n", Duration::from_secs(30)).await;
        assert!(upload.received.starts_with(b"HTTP/1.1 200"), "{}", upload.text());
        upload
    }

    /// One chunk of the body.
    async fn send(&mut self, data: &str) {
        let chunk = format!("{:x}\r\n{data}\r\n", data.len());
        self.stream.write_all(chunk.as_bytes()).await.unwrap();
    }

    /// The end of the body.
    async fn finish(&mut self) {
        self.stream.write_all(b"0\r\n\r\n").await.unwrap();
    }

    /// Reads the answer until it holds `needle` (at most `patience`).
    async fn until(&mut self, needle: &str, patience: Duration) {
        let needle = needle.as_bytes();
        let mut buf = [0_u8; 16 * 1024];
        let read = async {
            while !self.received.windows(needle.len()).any(|w| w == needle) {
                let n = self.stream.read(&mut buf).await.unwrap();
                assert!(n > 0, "the connection closed before {:?}: {}", String::from_utf8_lossy(needle), self.text());
                self.received.extend_from_slice(&buf[..n]);
            }
        };
        if tokio::time::timeout(patience, read).await.is_err() {
            panic!("no {:?} within {patience:?}: {}", String::from_utf8_lossy(needle), self.text());
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.received).into_owned()
    }
}

/// An operator import answers `202` at once and runs as a job: its generated passwords no longer live only in one
/// answer that a 300 s time-out, a dropped connection or a logout loses. They are handed out once, to the operator
/// who started the job, even after he logged in again; no other operator reads them (nor learns that the job
/// exists: 404), the system administrator included, and the job itself never shows them. A retry of the request
/// answers the same job and registers nobody twice.
async fn generated_passwords_go_once_to_the_operator_who_started_the_import(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, tokens) = managers(&app, &[CHIYODA, SAPPORO]).await;
    let (starter, elsewhere) = (tokens[0].clone(), tokens[1].clone());
    let colleague = operator_with_password("MGR02", PASSWORD, &["operations_manager", "clerk"], &[]);
    app.add_operators(&admin, CHIYODA, &colleague).await;
    let colleague = app.login(Some(CHIYODA), "MGR02", PASSWORD).await;
    let file = operator_file("OP", 3);
    let key = [("idempotency-key", "import-1")];

    let import = app.import_operators(CHIYODA, &starter, "text/csv", file.clone(), &key).await;
    let report = import.report();
    let id = import.job_id();
    assert_eq!(report["imported"], 3);
    assert_eq!(report["passwords"], "available");

    // Nobody else gets them, or sees the job; the administrator sees the job, not the passwords.
    for other in [&colleague, &elsewhere] {
        app.get(&job_path(&id), Some(other)).await.problem(StatusCode::NOT_FOUND, "/problems/not-found");
        let taken = app.take_job_passwords(other, &id).await;
        taken.problem(StatusCode::NOT_FOUND, "/problems/not-found");
    }
    assert_eq!(app.get(&job_path(&id), Some(&admin)).await.status, StatusCode::OK);
    app.take_job_passwords(&admin, &id).await.problem(StatusCode::NOT_FOUND, "/problems/not-found");

    // The starter logs out and in again: the job and its passwords wait for him.
    let ended = app.delete("/api/v1/sessions/current", Some(&starter)).await;
    assert_eq!(ended.status, StatusCode::NO_CONTENT, "{}", ended.text);
    let starter = app.login(Some(CHIYODA), "MGR01", PASSWORD).await;
    let taken = app.take_job_passwords(&starter, &id).await;
    assert_eq!(taken.status, StatusCode::OK, "{}", taken.text);
    let passwords: Vec<(String, String)> = taken.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["operator_id"].as_str().unwrap().to_owned(), p["password"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(passwords.len(), 3);
    app.login(Some(CHIYODA), &passwords[0].0, &passwords[0].1).await;

    // Once: then gone, and the job never showed them.
    app.take_job_passwords(&starter, &id).await.problem(StatusCode::GONE, "/problems/passwords-gone");
    let job = app.get(&job_path(&id), Some(&starter)).await;
    assert_eq!(job.json()["outcome"]["passwords"], "retrieved", "{}", job.text);
    assert!(passwords.iter().all(|(_, p)| !job.text.contains(p.as_str())), "{}", job.text);

    // A retry (the same key and file) answers the same job and writes nothing.
    let events = app.event_count().await;
    let retried = app.import_operators(CHIYODA, &starter, "text/csv", file, &key).await;
    assert_eq!(retried.job_id(), id);
    assert_eq!(app.event_count().await, events, "the retry registered again");
}

/// Operator imports started by the dozen would queue thousands of hashes and hold their files in memory: while
/// one runs for a municipality another one is turned away at once with `429 /problems/too-many-imports` and
/// `Retry-After`, nothing read or written, while a retry of the running one still finds it; once it has ended
/// the next one goes through. A file past the row limit fails its job naming the row, and registers nobody.
async fn operator_imports_are_one_at_a_time_and_bounded_in_rows(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.imports.operator_rows = 150).await;
    let (_, tokens) = managers(&app, &[CHIYODA]).await;
    let manager = &tokens[0];
    let key = [("idempotency-key", "big-1")];

    // A hundred passwords to hash: the job runs a while.
    let first = app
        .request(Method::POST, &operator_import_path(CHIYODA), Some(manager))
        .header("content-type", "text/csv")
        .header(key[0].0, key[0].1)
        .body(operator_file("OP", 100));
    let first = send(first).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.text);
    let id = first.json()["job_id"].as_str().unwrap().to_owned();

    let before = app.event_count().await;
    let second = app.import_operators(CHIYODA, manager, "text/csv", operator_file("XX", 2), &[]).await;
    let Imported::Refused(busy) = second else { panic!("a second import started: {second:?}") };
    busy.problem(StatusCode::TOO_MANY_REQUESTS, "/problems/too-many-imports");
    assert!(
        busy.header("retry-after").and_then(|s| s.parse::<u64>().ok()).is_some_and(|s| s >= 1),
        "{:?}",
        busy.headers
    );
    assert_eq!(app.event_count().await, before);
    let retried = app.import_operators(CHIYODA, manager, "text/csv", operator_file("OP", 100), &key).await;
    assert_eq!(retried.job_id(), id, "a retry finds the running job");

    let job = app.wait_for_job(manager, &id).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(
        (&job["progress"]["rows"], &job["progress"]["rows_hashed"], &job["progress"]["rows_done"]),
        (&json!(100), &json!(100), &json!(100))
    );
    app.import_operators(CHIYODA, manager, "text/csv", operator_file("YY", 2), &[]).await.report();

    // 151 rows: the job fails at row 152 (the header is row 1), nobody registered.
    let before = app.event_count().await;
    let past = app.import_operators(CHIYODA, manager, "text/csv", operator_file("ZZ", 151), &[]).await;
    let problem = past.problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation");
    assert_eq!(
        (&problem["errors"][0]["field"], &problem["errors"][0]["row"]),
        (&json!("/rows"), &json!(152)),
        "{problem}"
    );
    assert_eq!(app.event_count().await, before);
}

/// A few hundred registry uploads that trickle (a row now and then, for hours) once filled the server: now a
/// municipality runs one registry import at a time and the server `imports.registry_max`; one more is turned
/// away with `429` and `Retry-After` before its body is read (a file that would be refused whole is not even
/// looked at). Meanwhile the server serves everything else, and once an import has ended the next one goes
/// through.
async fn registry_imports_are_bounded_per_municipality_and_per_server(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.imports.registry_imports = 2).await;
    let (_, tokens) = managers(&app, &[CHIYODA, SAPPORO, HAKODATE]).await;
    let mut first = Upload::start(&app, CHIYODA, &tokens[0]).await;
    first.send(&registry_rows(1, 10)).await;

    let refused_whole = format!("宛名番号,氏名,生年月日,性別,個人番号\r\n{}", "1,山田 太郎,3500101,1,123456789012\r\n");
    let again =
        app.post_bytes(&registry_import_path(CHIYODA), Some(&tokens[0]), UTF8, refused_whole.clone().into_bytes());
    let busy = again.await;
    busy.problem(StatusCode::TOO_MANY_REQUESTS, "/problems/too-many-imports");
    assert!(busy.header("retry-after").is_some(), "{:?}", busy.headers);
    // Another municipality has a place of its own; then the server is full.
    let second = Upload::start(&app, SAPPORO, &tokens[1]).await;
    let full =
        app.post_bytes(&registry_import_path(HAKODATE), Some(&tokens[2]), UTF8, refused_whole.into_bytes()).await;
    full.problem(StatusCode::TOO_MANY_REQUESTS, "/problems/too-many-imports");
    assert_eq!(app.get("/api/v1/me", Some(&tokens[2])).await.status, StatusCode::OK, "everything else is served");

    first.send(&registry_rows(11, 20)).await;
    first.finish().await;
    first.until("\"summary\"", Duration::from_secs(30)).await;
    assert!(first.text().contains("\"imported\":20,"), "{}", first.text());
    let next = format!("{REGISTRY_HEADER}{}", registry_rows(21, 22));
    let reply = app.post_bytes(&registry_import_path(CHIYODA), Some(&tokens[0]), UTF8, next.into_bytes()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert!(reply.text.contains("\"imported\":2,"), "{}", reply.text);
    drop(second);
}

/// An import goes on after its operator has gone: he logs out (or is revoked) and his upload keeps writing the
/// registry for hours. Now the import asks every 2 s whether his session is still live: it stops with a problem
/// line and `"aborted": true`, the rows after it are not imported, and its place is free at once.
async fn a_registry_import_stops_when_its_operator_logs_out_or_is_revoked(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, tokens) = managers(&app, &[CHIYODA]).await;
    let other = register_operator(&app.state, Some(CHIYODA), "MGR02", PASSWORD, &[Role::OperationsManager]).await;

    for (who, token, first) in [("logout", tokens[0].clone(), 1), ("revocation", other.login(&app).await, 10_001)] {
        let mut upload = Upload::start(&app, CHIYODA, &token).await;
        // A batch (1,000 rows) imported and reported; the next one begun.
        upload.send(&registry_rows(first, first + 1_099)).await;
        upload.until("\"row\":1001,", Duration::from_secs(30)).await;

        let ended = if who == "logout" {
            app.delete("/api/v1/sessions/current", Some(&token)).await
        } else {
            app.post_empty("/api/v1/municipalities/131016/operators/MGR02/revoke", Some(&admin)).await
        };
        assert!(ended.status.is_success(), "{who}: {}", ended.text);
        upload.send(&registry_rows(first + 1_100, first + 2_099)).await;
        upload.until("\"aborted\":true", Duration::from_secs(15)).await;
        let text = upload.text();
        assert!(text.contains("/problems/unauthenticated"), "{who}: {text}");
        assert!(text.contains("\"imported\":1000,"), "{who}: {text}");
        upload.until("\r\n0\r\n\r\n", Duration::from_secs(10)).await;
        let late = app.get(&format!("/api/v1/municipalities/131016/registry/{:09}", first + 1_199), Some(&admin)).await;
        late.problem(StatusCode::NOT_FOUND, "/problems/not-found");
    }
    // The place is free again.
    let file = format!("{REGISTRY_HEADER}{}", registry_rows(30_001, 30_001));
    let reply = app.post_bytes(&registry_import_path(CHIYODA), Some(&admin), UTF8, file.into_bytes()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
}

/// The registry import's parser once ran on the blocking pool for the upload's whole life: uploads that trickle
/// held every thread of it, and everything else that needs the pool waited. Now the parser has a thread of its
/// own: on a server whose blocking pool has two threads, two uploads that trickle leave it free, and an operator
/// import (read and checked on the pool) still runs to its end.
async fn trickling_registry_imports_leave_the_blocking_pool_free(backend: Backend) {
    let server = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let app = spawn_app(backend).await;
            let (_, tokens) = managers(&app, &[CHIYODA, SAPPORO]).await;
            let mut trickling = vec![];
            for (code, token) in [(CHIYODA, &tokens[0]), (SAPPORO, &tokens[1])] {
                let mut upload = Upload::start(&app, code, token).await;
                upload.send(&registry_rows(1, 3)).await;
                trickling.push(upload);
            }
            let import = app.import_operators(CHIYODA, &tokens[0], "text/csv", operator_file("OP", 2), &[]);
            let import = tokio::time::timeout(Duration::from_secs(30), import)
                .await
                .expect("the operator import ran while the uploads trickle");
            assert_eq!(import.report()["imported"], 2);
            drop(trickling);
        });
    });
    let joined = tokio::task::spawn_blocking(move || server.join()).await.unwrap();
    if let Err(panic) = joined {
        std::panic::resume_unwind(panic);
    }
}

on_both_backends!(
    generated_passwords_go_once_to_the_operator_who_started_the_import,
    operator_imports_are_one_at_a_time_and_bounded_in_rows,
    registry_imports_are_bounded_per_municipality_and_per_server,
    a_registry_import_stops_when_its_operator_logs_out_or_is_revoked,
    trickling_registry_imports_leave_the_blocking_pool_free,
);
