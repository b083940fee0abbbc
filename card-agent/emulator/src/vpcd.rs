//! The vpcd side of vsmartcard: the card emulator connects to vpcd's port (35963) and the virtual reader shows a
//! card while the connection is open. Every frame is a big-endian u16 length and a payload; a 1-byte payload is
//! control (`00` power off, `01` power on, `02` reset — no reply; `04` get ATR — reply the ATR), anything else a
//! command APDU answered with one frame. Closing the connection is pulling the card out.
//!
//! vpcd serves one connection at a time. It notices a closed one (a card pulled out) only when it next talks to
//! it (its presence poll, ~0.4 s), and takes the next connection (a card inserted) only after that: until then
//! pcscd still shows the old card as present. Whoever inserts a card again waits until vpcd has taken the new
//! connection ([`Inserted::wait_taken`]), and before that lets pcscd finish with the card that left: once the
//! reader shows empty, pcscd still powers that card down after its grace period, and vpcd hands that power-off
//! ([`SETTLE`]) to whatever connection it holds by then — a card inserted too soon loses its session in the middle
//! of the agent's flow (a SELECT EF answered `6A82`).
//!
//! Owns the framing, the power cycles (each resets the card's session) and the "pull out after N APDUs" of the
//! tests. Never logs an APDU.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::Card;

/// A T=1 ATR with no historical bytes.
pub const ATR: [u8; 5] = [0x3B, 0x80, 0x80, 0x01, 0x01];

/// How long a card stays out after the reader shows empty before the next one goes in: pcscd powers the card that
/// left down after its grace period (about 0.5 s after the last command), and vpcd sends that to the next card.
pub const SETTLE: Duration = Duration::from_secs(1);

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

/// Whether vpcd has sent a first frame on this connection: it has let go of the card before.
#[derive(Debug, Default)]
struct Taken {
    on: Mutex<bool>,
    changed: Condvar,
}

impl Taken {
    fn set(&self) {
        *self.on.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.changed.notify_all();
    }

    fn wait(&self, timeout: Duration) -> bool {
        let on = self.on.lock().unwrap_or_else(PoisonError::into_inner);
        let (on, _) = self.changed.wait_timeout_while(on, timeout, |on| !*on).unwrap_or_else(PoisonError::into_inner);
        *on
    }
}

/// Serves `card` on `stream` until vpcd closes it or the card is pulled out.
pub fn serve(card: &Mutex<Card>, stream: TcpStream, pull_out: PullOut) -> io::Result<Ended> {
    serve_taken(card, stream, pull_out, &Taken::default())
}

fn serve_taken(card: &Mutex<Card>, mut stream: TcpStream, pull_out: PullOut, taken: &Taken) -> io::Result<Ended> {
    stream.set_nodelay(true)?;
    let mut apdus = 0_u64;
    loop {
        let mut len = [0_u8; 2];
        quick_ack(&stream);
        match stream.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if gone(&e) => return Ok(Ended::Closed),
            Err(e) => return Err(e),
        }
        quick_ack(&stream);
        let mut payload = vec![0_u8; u16::from_be_bytes(len) as usize];
        match stream.read_exact(&mut payload) {
            Ok(()) => {}
            Err(e) if gone(&e) => return Ok(Ended::Closed),
            Err(e) => return Err(e),
        }
        taken.set();
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
        match stream.write_all(&frame) {
            Ok(()) => {}
            Err(e) if gone(&e) => return Ok(Ended::Closed),
            Err(e) => return Err(e),
        }
    }
}

/// Acknowledges what vpcd sent at once. vpcd writes a frame's length and its payload separately, with Nagle's
/// algorithm on: the payload waits for the length's ACK, which Linux delays (~40 ms) while the card has nothing to
/// send. Each command APDU cost ~44 ms, most of the card agent's time; with the ACK at once, about a millisecond.
/// Not permanent (the kernel may leave quick-ACK mode): set again before each read. Best effort.
fn quick_ack(stream: &TcpStream) {
    #[cfg(target_os = "linux")]
    let _ = socket2::SockRef::from(stream).set_tcp_quickack(true);
    #[cfg(not(target_os = "linux"))]
    let _ = stream;
}

/// Whether `e` says the other end (vpcd) has gone: the connection closed, reset or broken, however it shows.
fn gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotConnected
            | io::ErrorKind::BrokenPipe
    )
}

/// A card in the virtual reader, served on a thread of its own.
#[derive(Debug)]
pub struct Inserted {
    stream: TcpStream,
    taken: Arc<Taken>,
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
    let taken = Arc::new(Taken::default());
    let signal = taken.clone();
    let thread = std::thread::spawn(move || serve_taken(&card, served, pull_out, &signal));
    Ok(Inserted { stream, taken, thread: Some(thread) })
}

impl Inserted {
    /// Waits (at most `timeout`) until vpcd has taken this connection (sent its first frame): it has let go of
    /// any card before this one, so the next card pcscd shows present is this one. `false` on timeout.
    pub fn wait_taken(&self, timeout: Duration) -> bool {
        self.taken.wait(timeout)
    }

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
