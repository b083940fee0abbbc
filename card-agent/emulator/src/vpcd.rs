//! The vpcd side of vsmartcard: the card emulator connects to vpcd's port (35963) and the virtual reader shows a
//! card while the connection is open. Every frame is a big-endian u16 length and a payload; a 1-byte payload is
//! control (`00` power off, `01` power on, `02` reset — no reply; `04` get ATR — reply the ATR), anything else a
//! command APDU answered with one frame. Closing the connection is pulling the card out.
//!
//! Owns the framing, the power cycles (each resets the card's session) and the "pull out after N APDUs" of the
//! tests. Never logs an APDU.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::Card;

/// A T=1 ATR with no historical bytes.
pub const ATR: [u8; 5] = [0x3B, 0x80, 0x80, 0x01, 0x01];

/// How a connection to vpcd ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// vpcd closed it (pcscd stopped).
    Closed,
    /// The card was pulled out: after the APDU `n` was processed (its answer never sent), or from outside.
    PulledOut,
}

/// When to pull the card out by itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PullOut {
    /// Process the n-th APDU of this insertion (from 1), then drop the connection without answering it.
    pub after_apdus: Option<u64>,
}

/// Serves `card` on `stream` until vpcd closes it or the card is pulled out.
pub fn serve(card: &Mutex<Card>, mut stream: TcpStream, pull_out: PullOut) -> io::Result<Ended> {
    stream.set_nodelay(true)?;
    let mut apdus = 0_u64;
    loop {
        let mut len = [0_u8; 2];
        match stream.read_exact(&mut len) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::NotConnected
                ) =>
            {
                return Ok(Ended::Closed);
            }
            Err(e) => return Err(e),
        }
        let mut payload = vec![0_u8; u16::from_be_bytes(len) as usize];
        if let Err(e) = stream.read_exact(&mut payload) {
            return if e.kind() == io::ErrorKind::UnexpectedEof { Ok(Ended::Closed) } else { Err(e) };
        }
        let mut card = card.lock().unwrap_or_else(PoisonError::into_inner);
        let reply = match payload.as_slice() {
            [0x00] | [0x01] | [0x02] => {
                card.reset();
                continue;
            }
            [0x04] => ATR.to_vec(),
            [_] => continue,
            apdu => {
                apdus += 1;
                let response = card.process(apdu).to_bytes();
                if pull_out.after_apdus == Some(apdus) {
                    let _ = stream.shutdown(Shutdown::Both);
                    return Ok(Ended::PulledOut);
                }
                response
            }
        };
        drop(card);
        let mut frame = (reply.len() as u16).to_be_bytes().to_vec();
        frame.extend_from_slice(&reply);
        if let Err(e) = stream.write_all(&frame) {
            return if e.kind() == io::ErrorKind::BrokenPipe { Ok(Ended::Closed) } else { Err(e) };
        }
    }
}

/// A card in the virtual reader, served on a thread of its own.
#[derive(Debug)]
pub struct Inserted {
    stream: TcpStream,
    thread: Option<JoinHandle<io::Result<Ended>>>,
}

/// Puts `card` into the virtual reader at `addr` (vpcd's port), retrying the connection for up to `wait`.
pub fn insert(
    card: Arc<Mutex<Card>>,
    addr: impl ToSocketAddrs,
    pull_out: PullOut,
    wait: Duration,
) -> io::Result<Inserted> {
    let deadline = std::time::Instant::now() + wait;
    let addrs: Vec<_> = addr.to_socket_addrs()?.collect();
    let stream = loop {
        match TcpStream::connect(&addrs[..]) {
            Ok(s) => break s,
            Err(e) if std::time::Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let served = stream.try_clone()?;
    let thread = std::thread::spawn(move || serve(&card, served, pull_out));
    Ok(Inserted { stream, thread: Some(thread) })
}

impl Inserted {
    /// Pulls the card out (closes the connection) and waits for its thread.
    pub fn remove(mut self) -> io::Result<Ended> {
        let _ = self.stream.shutdown(Shutdown::Both);
        self.join()
    }

    /// Waits until the card leaves the reader by itself (pulled out after N APDUs, or vpcd closed).
    pub fn wait(mut self) -> io::Result<Ended> {
        self.join()
    }

    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    fn join(&mut self) -> io::Result<Ended> {
        match self.thread.take() {
            Some(t) => t.join().unwrap_or_else(|_| Err(io::Error::other("the card thread panicked"))),
            None => Ok(Ended::PulledOut),
        }
    }
}

impl Drop for Inserted {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
        let _ = self.join();
    }
}
