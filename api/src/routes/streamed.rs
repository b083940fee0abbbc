//! The auditors' streamed answers (the history, the read access log and its alerts): NDJSON or CSV written page by
//! page as the client reads, never loaded whole. Owns the streaming itself: the first page fetched before answering
//! (so that a failing database is still a proper error), the headers, and what a failure after the answer began
//! does (the body is cut off, the log says why). What a page holds and how it renders is each route's.

use std::future::Future;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, StreamExt};

use crate::error::ApiError;

/// Whether the client asks for CSV rather than NDJSON (`Accept: text/csv`).
pub(crate) fn wants_csv(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/csv") && !v.contains("application/x-ndjson"))
}

/// Where the pages of one answer come from.
pub(crate) trait Pages: Send + 'static {
    type Cursor: Send;

    /// The page after `after` (`None`: the first), rendered, and where the next begins (`None`: it was the last).
    fn fetch(
        &mut self,
        after: Option<Self::Cursor>,
    ) -> impl Future<Output = Result<(Vec<u8>, Option<Self::Cursor>), ApiError>> + Send;
}

/// The answer: `head` (a CSV header, or nothing) and the first page, then each next page as the client reads.
/// `what` names the stream in the log line of a failure after the answer began.
pub(crate) async fn streamed<P: Pages>(
    mut pages: P,
    head: Vec<u8>,
    csv: bool,
    what: &'static str,
) -> Result<Response, ApiError> {
    let (first, next) = pages.fetch(None).await?;
    let mut head = head;
    head.extend(first);
    let rest = stream::unfold((pages, next), move |(mut pages, next)| async move {
        let after = next?;
        match pages.fetch(Some(after)).await {
            Ok((chunk, next)) => Some((Ok(Bytes::from(chunk)), (pages, next))),
            Err(e) => {
                // The answer has begun: the client sees a cut-off body, the log says why.
                tracing::error!(error = ?e, stream = what, "an auditor's stream stopped");
                Some((Err(std::io::Error::other(format!("{what} stopped"))), (pages, None)))
            }
        }
    });
    let body = stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(head)) }).chain(rest);
    let content_type = if csv { "text/csv; charset=utf-8" } else { "application/x-ndjson" };
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        // Personal data, or who read it: not for shared caches.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ];
    Ok((headers, Body::from_stream(body)).into_response())
}
