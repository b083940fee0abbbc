//! The HTTP/1.1 server loop: accepts connections up to a limit, runs the TLS handshake when the listener has TLS
//! (within the header time limit), gives each connection a time limit for its request headers, and on shutdown
//! stops accepting and lets the requests in flight finish. Owns what one client may hold of the
//! server ([`ConnectionLimits`]); the time limit between two pieces of a body is a layer of the router
//! (`app::app`), the time limit of a whole request the `guarded` layer.

use std::sync::Arc;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::settings::ConnectionLimits;
use crate::tls::{PeerCertificate, Tls};

/// Serves `router` on `listener` until `stop` resolves, then waits for the connections in flight to finish
/// their requests (the caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    tls: Option<Arc<Tls>>,
    stop: impl std::future::Future<Output = ()> + Send,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_clients));
    let mut refused: u64 = 0;
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment instead of spinning.
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Closed at once: a client over the limit holds nothing.
            refused += 1;
            if refused.is_power_of_two() {
                tracing::warn!(refused, max_clients = limits.max_clients, "connections over the limit were closed");
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let Some(tls) = tls else {
                serve_connection(TokioIo::new(stream), router, peer, None, false, limits, watcher).await;
                drop(slot);
                return;
            };
            // The handshake counts against the header time limit: a client that stalls in it holds nothing long.
            match tokio::time::timeout(limits.header_read, tls.acceptor().accept(stream)).await {
                Ok(Ok(stream)) => {
                    let certificate = stream.get_ref().1.peer_certificates().and_then(|chain| chain.first());
                    let certificate = certificate.map(|der| PeerCertificate(Arc::from(der.as_ref())));
                    serve_connection(TokioIo::new(stream), router, peer, certificate, true, limits, watcher).await;
                }
                // A refused certificate, a plain-HTTP client, a scan: nothing to answer.
                Ok(Err(e)) => tracing::debug!(error = %e, %peer, "a TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "a TLS handshake took too long"),
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Whether a request came over TLS (the UI's session cookie is `Secure` then).
#[derive(Debug, Clone, Copy)]
pub struct OverTls(pub bool);

/// Serves one connection's requests, each with the peer's address (login throttling per client address), whether
/// it came over TLS ([`OverTls`]) and, on a mutual-TLS connection, its client certificate.
async fn serve_connection<I>(
    io: TokioIo<I>,
    router: Router,
    peer: std::net::SocketAddr,
    certificate: Option<PeerCertificate>,
    over_tls: bool,
    limits: ConnectionLimits,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read).keep_alive(true);
    let service = router.map_request(move |mut request: axum::http::Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        request.extensions_mut().insert(OverTls(over_tls));
        if let Some(certificate) = &certificate {
            request.extensions_mut().insert(certificate.clone());
        }
        request
    });
    let connection = builder.serve_connection(io, TowerToHyperService::new(service));
    if let Err(e) = watcher.watch(connection).await {
        tracing::debug!(error = %e, "a connection ended with an error");
    }
}
