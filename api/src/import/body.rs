//! A request body streamed into the CSV reader: the body's chunks as a blocking `Read` (the parser runs on the
//! blocking pool), waiting at most a stall timeout for each chunk and at most a time limit in all, so that a
//! client that stops sending cannot hold an import open. Nothing but the current chunk is held.

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
}

/// The request body as a blocking `Read`.
pub struct BodySource {
    stream: BodyDataStream,
    handle: tokio::runtime::Handle,
    chunk: Bytes,
    stall: Duration,
    deadline: tokio::time::Instant,
    failure: Option<BodyFailure>,
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
        }
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
        let stall = tokio::time::Instant::now() + self.stall;
        let until = stall.min(self.deadline);
        let stream = &mut self.stream;
        let next = self.handle.block_on(async move { tokio::time::timeout_at(until, stream.next()).await });
        match next {
            Err(_) if until == self.deadline => Err(self.fail(BodyFailure::TimeLimit)),
            Err(_) => Err(self.fail(BodyFailure::Stalled)),
            Ok(None) => Ok(None),
            Ok(Some(Err(_))) => Err(self.fail(BodyFailure::Broken)),
            Ok(Some(Ok(bytes))) => Ok(Some(bytes)),
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
