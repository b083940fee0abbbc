//! Graceful shutdown: after the signal the server stops accepting connections, lets a request in flight finish,
//! and `run_until` returns within the drain timeout even when a client never finishes its request.
//! Every test runs on PostgreSQL and on SQLite.
//!
//! To hold a request open deterministically, these tests speak HTTP/1.1 over a raw TCP stream with
//! `Expect: 100-continue`: the server answers `100 Continue` only once the handler starts reading the body, so
//! the request is provably in flight when the signal is sent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use cardap_tests::reqwest::StatusCode;
use cardap_tests::{Backend, TestApp, eventually, municipality, on_both_backends, spawn_app, spawn_app_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A registration whose body is not sent yet.
struct HeldRequest {
    stream: TcpStream,
    body: Vec<u8>,
}

/// Sends the head of a registration of `code` and waits until the handler reads the body (`100 Continue`).
async fn hold_a_registration(app: &TestApp, token: &str, code: &str) -> HeldRequest {
    let body = municipality(code, "千代田区", 1).to_string().into_bytes();
    let mut stream = TcpStream::connect(app.socket_addr).await.unwrap();
    let head = format!(
        "POST /api/v1/municipalities HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        app.socket_addr,
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let interim = read_head(&mut stream).await;
    assert!(interim.starts_with("HTTP/1.1 100"), "expected 100 Continue, got {interim:?}");
    HeldRequest { stream, body }
}

/// Reads one response head (up to the blank line).
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0_u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n =
            tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte)).await.expect("a response").unwrap();
        assert!(n > 0, "connection closed after {:?}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// Whether a new connection is refused.
async fn refuses_connections(app: &TestApp) -> bool {
    TcpStream::connect(app.socket_addr).await.is_err()
}

async fn the_server_stops_promptly_when_nothing_is_in_flight(backend: Backend) {
    let mut app = spawn_app(backend).await;
    // Leave idle keep-alive connections in the client's pool.
    let token = app.admin_token().await;
    for _ in 0..3 {
        assert_eq!(app.get("/api/v1/municipalities", Some(&token)).await.status, StatusCode::OK);
    }
    let drain = app.settings.drain_timeout;

    let took = app.shut_down(drain + Duration::from_secs(5)).await;

    assert!(took < drain, "idle connections do not hold shutdown for the drain timeout: took {took:?}");
    assert!(refuses_connections(&app).await, "no longer accepting");
}

async fn a_request_in_flight_finishes_during_shutdown(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let token = app.admin_token().await;
    let before = app.event_count().await;
    let HeldRequest { mut stream, body } = hold_a_registration(&app, &token, "131016").await;

    app.signal_shutdown();
    eventually(Duration::from_secs(5), "the listener to close", || async {
        refuses_connections(&app).await.then_some(())
    })
    .await;
    assert!(!app.server_finished(), "run_until waits for the request in flight");
    stream.write_all(&body).await.unwrap();
    let head = read_head(&mut stream).await;

    assert!(head.starts_with("HTTP/1.1 201"), "the request in flight is answered: {head:?}");
    assert!(head.to_ascii_lowercase().contains("connection: close"), "and its connection closed: {head:?}");
    let took = app.shut_down(app.settings.drain_timeout).await;
    assert!(took < app.settings.drain_timeout, "returns once the last request is answered: {took:?}");
    assert_eq!(app.event_count().await, before + 1, "the registration was written");
}

async fn a_client_that_never_finishes_does_not_hold_shutdown_beyond_the_drain_timeout(backend: Backend) {
    let drain = Duration::from_secs(1);
    let mut app = spawn_app_with(backend, |s| s.drain_timeout = drain).await;
    let token = app.admin_token().await;
    let before = app.event_count().await;
    let HeldRequest { mut stream, body } = hold_a_registration(&app, &token, "131016").await;

    let took = app.shut_down(drain + Duration::from_secs(3)).await;

    assert!(took >= drain.mul_f32(0.9), "waited for the request in flight first: {took:?}");
    // The abandoned connection is closed: the request can no longer write after the server said it stopped.
    let _ = stream.write_all(&body).await;
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut rest)).await;
    let answered = String::from_utf8_lossy(&rest).into_owned();
    assert!(read.is_ok(), "the held connection is still open after run_until returned");
    assert!(!answered.starts_with("HTTP/1.1 201"), "a request was served after run_until returned: {answered:?}");
    assert_eq!(app.event_count().await, before, "nothing written after the server stopped");
}

on_both_backends!(
    the_server_stops_promptly_when_nothing_is_in_flight,
    a_request_in_flight_finishes_during_shutdown,
    a_client_that_never_finishes_does_not_hold_shutdown_beyond_the_drain_timeout,
);
