//! A request body streamed into the CSV reader: the body's chunks as a blocking `Read` (the parser runs on a
//! thread of its own), waiting at most a stall timeout for each chunk and at most a time limit in all, so that a
//! client that stops sending cannot hold an import open, and no longer than the import that reads it lives (a
//! stop signal: the import stopped, so the body is not waited for). Nothing but the current chunk is held.

use std::io::{self, Read};
use std::time::Duration;

use axum::body::{BodyDataStream, Bytes};
use bytes::Buf;
use futures_util::StreamExt;

/// Why the body stopped before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFailure {
    /// No bytes arrived for the stall timeout.
    Stalled,
    /// The time limit passed.
    TimeLimit,
    /// The connection broke off.
    Broken,
    /// The import reading it stopped (its operator's session ended, a batch failed, the client went away).
    Stopped,
}

/// The request body as a blocking `Read`.
pub struct BodySource {
    stream: BodyDataStream,
    handle: tokio::runtime::Handle,
    chunk: Bytes,
    stall: Duration,
    deadline: tokio::time::Instant,
    failure: Option<BodyFailure>,
    /// Resolves (its sender dropped) when the import stops: waiting for the body ends then.
    stop: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl std::fmt::Debug for BodySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodySource").field("failure", &self.failure).finish_non_exhaustive()
    }
}

impl BodySource {
    /// `stream` read on `handle`'s runtime, waiting at most `stall` for each chunk and `limit` in all.
    pub fn new(stream: BodyDataStream, handle: tokio::runtime::Handle, stall: Duration, limit: Duration) -> Self {
        BodySource {
            stream,
            handle,
            chunk: Bytes::new(),
            stall,
            deadline: tokio::time::Instant::now() + limit,
            failure: None,
            stop: None,
        }
    }

    /// The same, no longer waited for once `stop` resolves (its sender is dropped).
    pub fn stopped_by(mut self, stop: tokio::sync::oneshot::Receiver<()>) -> Self {
        self.stop = Some(stop);
        self
    }

    /// Why the body stopped, if it did.
    pub fn failure(&self) -> Option<BodyFailure> {
        self.failure
    }

    fn fail(&mut self, failure: BodyFailure) -> io::Error {
        self.failure = Some(failure);
        io::Error::other(format!("{failure:?}"))
    }

    /// The next chunk of the body; `None` at its end.
    fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        if let Some(failure) = self.failure {
            return Err(io::Error::other(format!("{failure:?}")));
        }
        let stall = tokio::time::Instant::now() + self.stall;
        let until = stall.min(self.deadline);
        let (stream, stop) = (&mut self.stream, &mut self.stop);
        let next = self.handle.block_on(async move {
            let stopped = async {
                match stop {
                    Some(stop) => {
                        let _ = stop.await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                next = tokio::time::timeout_at(until, stream.next()) => Some(next),
                () = stopped => None,
            }
        });
        match next {
            None => {
                // A completed receiver may not be polled again.
                self.stop = None;
                Err(self.fail(BodyFailure::Stopped))
            }
            Some(Err(_)) if until == self.deadline => Err(self.fail(BodyFailure::TimeLimit)),
            Some(Err(_)) => Err(self.fail(BodyFailure::Stalled)),
            Some(Ok(None)) => Ok(None),
            Some(Ok(Some(Err(_)))) => Err(self.fail(BodyFailure::Broken)),
            Some(Ok(Some(Ok(bytes)))) => Ok(Some(bytes)),
        }
    }
}

impl Read for BodySource {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.next_chunk()? {
                Some(bytes) => self.chunk = bytes,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk.advance(n);
        Ok(n)
    }
}
