//! Password secrets for the use cases: Argon2id hashing and verification off the async threads, generated
//! passwords, and the [`Secret`] type that never prints. Owns no storage: hashes go to the credential adapter as
//! companions of the events that need them. Never logs a password.

use std::fmt;
use std::sync::OnceLock;

use std::cell::RefCell;

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use cardap_domain::operator::Password;

/// A secret (password, token) that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Why a password could not be hashed, verified or generated.
#[derive(Debug, thiserror::Error)]
pub enum HashingError {
    /// The system's randomness or a worker failed.
    #[error("password hashing failed: {0}")]
    Failed(String),
    /// Every Argon2id worker is busy and the queue is full: an anonymous caller (a login) is turned away at once
    /// instead of waiting; he may try again shortly.
    #[error("every password worker is busy")]
    Busy,
}

/// Whether a caller waits for a free Argon2id worker or is turned away when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Authenticated work (a reset, a password change, an import): waits its turn.
    Wait,
    /// A login, which anyone can send: [`HashingError::Busy`] when the queue is full.
    TurnAway,
}

type Job = Box<dyn FnOnce() + Send>;

/// The Argon2id workers: a fixed set of threads, the only ones that run Argon2id, fed by one queue with room for
/// a few jobs per worker. So the memory Argon2id takes (19 MiB per running verification, and what the allocator
/// keeps of it afterwards, per thread) is bounded by the number of workers, not by the number of requests; a job
/// whose caller went away (a client that disconnected) is skipped when its turn comes.
#[derive(Debug)]
pub struct Workers {
    jobs: std::sync::Mutex<std::sync::mpsc::Sender<Job>>,
    admission: std::sync::Arc<tokio::sync::Semaphore>,
    workers: usize,
}

impl Workers {
    /// `workers` threads and room for `capacity` jobs in all (running and queued).
    pub fn new(workers: usize, capacity: usize) -> Result<Workers, HashingError> {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        for i in 0..workers {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    loop {
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })
                .map_err(|e| HashingError::Failed(e.to_string()))?;
        }
        let admission = std::sync::Arc::new(tokio::sync::Semaphore::new(capacity.max(workers)));
        Ok(Workers { jobs: std::sync::Mutex::new(tx), admission, workers })
    }

    /// The process's workers: one per core, with room for four jobs per worker.
    pub fn shared() -> Result<&'static Workers, HashingError> {
        static SHARED: OnceLock<Workers> = OnceLock::new();
        if let Some(w) = SHARED.get() {
            return Ok(w);
        }
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let workers = Workers::new(cores, 4 * cores)?;
        Ok(SHARED.get_or_init(|| workers))
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Verifies a password against a stored hash. With no stored hash, a dummy hash with the same parameters is
    /// verified instead, so an unknown operator ID takes as long to refuse as a wrong password. A password longer
    /// than any password can be ([`Password::MAX_CHARS`]) is wrong without taking a worker.
    pub async fn verify(
        &self,
        password: Secret,
        stored: Option<String>,
        admission: Admission,
    ) -> Result<bool, HashingError> {
        if password.expose().chars().count() > Password::MAX_CHARS {
            return Ok(false);
        }
        self.run(admission, move || {
            let known = stored.is_some();
            let hash = match stored {
                Some(h) => h,
                None => dummy_hash()?.to_owned(),
            };
            Ok(verify_now(password.expose().as_bytes(), &hash) && known)
        })
        .await
    }

    /// Runs `work` on a worker, once admitted; skipped if this future is dropped before its turn comes.
    pub async fn run<T: Send + 'static>(
        &self,
        admission: Admission,
        work: impl FnOnce() -> Result<T, HashingError> + Send + 'static,
    ) -> Result<T, HashingError> {
        let permit = match admission {
            Admission::Wait => self.admission.clone().acquire_owned().await.map_err(|_| HashingError::Busy)?,
            Admission::TurnAway => self.admission.clone().try_acquire_owned().map_err(|_| HashingError::Busy)?,
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            // The permit is held until the work is done, not until the caller stops waiting: a dropped request
            // frees its place only when its worker is free.
            let _permit = permit;
            if reply.is_closed() {
                return;
            }
            let _ = reply.send(work());
        });
        self.jobs
            .lock()
            .map_err(|_| HashingError::Failed("the password workers stopped".into()))?
            .send(job)
            .map_err(|_| HashingError::Failed("the password workers stopped".into()))?;
        answer.await.map_err(|_| HashingError::Failed("a password worker stopped".into()))?
    }
}

/// Hashes a password with Argon2id (OWASP parameters: m=19456 KiB, t=2, p=1) on a password worker.
pub async fn hash_password(password: Secret) -> Result<String, HashingError> {
    Workers::shared()?.run(Admission::Wait, move || hash_now(&password)).await
}

fn hash_now(password: &Secret) -> Result<String, HashingError> {
    let failed = |e: &dyn fmt::Display| HashingError::Failed(e.to_string());
    let mut salt = [0_u8; 16];
    getrandom::fill(&mut salt).map_err(|e| failed(&e))?;
    let params = Params::default();
    let mut out = vec![0_u8; Params::DEFAULT_OUTPUT_LEN];
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    with_blocks(params.block_count(), |blocks| {
        argon.hash_password_into_with_memory(password.expose().as_bytes(), &salt, &mut out, blocks)
    })
    .map_err(|e| failed(&e))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| failed(&e))?,
        salt: Some(Salt::new(&salt).map_err(|e| failed(&e))?),
        hash: Some(Output::new(&out).map_err(|e| failed(&e))?),
    };
    Ok(phc.to_string())
}

/// Whether `password` is the one `hash` (a PHC string) was made of; a hash that does not parse matches nothing.
/// Compared in constant time.
fn verify_now(password: &[u8], hash: &str) -> bool {
    let Ok(phc) = PasswordHash::new(hash) else { return false };
    let (Some(salt), Some(expected)) = (&phc.salt, &phc.hash) else { return false };
    let Ok(algorithm) = Algorithm::new(phc.algorithm.as_str()) else { return false };
    let Ok(version) = phc.version.map_or(Ok(Version::default()), Version::try_from) else { return false };
    let Ok(params) = Params::try_from(&phc) else { return false };
    let argon = Argon2::new(algorithm, version, params.clone());
    let mut out = vec![0_u8; expected.len()];
    let computed = with_blocks(params.block_count(), |blocks| {
        argon.hash_password_into_with_memory(password, salt, &mut out, blocks)
    });
    computed.is_ok() && Output::new(&out).is_ok_and(|out| &out == expected)
}

/// The most Argon2 memory a worker keeps between jobs: the default parameters' 19 MiB (a hash copied from another
/// system with a larger memory cost gets memory of its own, freed after it).
const KEPT_BLOCKS: usize = 19 * 1024;

thread_local! {
    /// This password worker's Argon2 memory, allocated on its first job and reused by every later one. Allocating
    /// 19 MiB per verification instead lets the allocator keep freed blocks in per-thread arenas (glibc raises its
    /// mmap threshold after the first free), so a login flood left the server holding hundreds of MB.
    static BLOCKS: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Runs `work` with `count` Argon2 memory blocks: this worker's own when they suffice, else a one-off allocation.
fn with_blocks<T>(count: usize, work: impl FnOnce(&mut [Block]) -> T) -> T {
    if count > KEPT_BLOCKS {
        return work(&mut vec![Block::default(); count]);
    }
    BLOCKS.with_borrow_mut(|blocks| {
        if blocks.len() < count {
            blocks.resize(count, Block::default());
        }
        work(&mut blocks[..count])
    })
}

/// Hashes many passwords on every worker at once (Argon2id is the cost of a big import), in input order.
pub async fn hash_all(passwords: Vec<Secret>) -> Result<Vec<String>, HashingError> {
    hash_all_reporting(passwords, &|| {}).await
}

/// [`hash_all`], calling `hashed` as each password is done (a job's progress). Stops at the first failure.
pub async fn hash_all_reporting(
    passwords: Vec<Secret>,
    hashed: &(dyn Fn() + Send + Sync),
) -> Result<Vec<String>, HashingError> {
    use futures_util::{StreamExt, TryStreamExt};
    let parallel = Workers::shared()?.workers();
    futures_util::stream::iter(passwords.into_iter().map(hash_password))
        .buffered(parallel)
        .inspect_ok(|_| hashed())
        .try_collect()
        .await
}

/// Verifies a password against a stored hash on a password worker (see [`Workers::verify`]).
pub async fn verify_password(
    password: Secret,
    stored: Option<String>,
    admission: Admission,
) -> Result<bool, HashingError> {
    Workers::shared()?.verify(password, stored, admission).await
}

/// Whether `password` matches any of `hashes` (the reuse check), on a password worker.
pub async fn matches_any(password: Secret, hashes: Vec<String>) -> Result<bool, HashingError> {
    Workers::shared()?
        .run(Admission::Wait, move || Ok(hashes.iter().any(|h| verify_now(password.expose().as_bytes(), h))))
        .await
}

/// The hash of a random password nobody knows, made once per process with the real parameters.
fn dummy_hash() -> Result<&'static str, HashingError> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(h) = DUMMY.get() {
        return Ok(h);
    }
    let hash = hash_now(&generate_password(24)?)?;
    Ok(DUMMY.get_or_init(|| hash))
}

/// A random password of `len` half-width alphanumerics (CSPRNG, no modulo bias, no look-alike characters).
pub fn generate_password(len: usize) -> Result<Secret, HashingError> {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut out = String::with_capacity(len);
    let mut buf = [0_u8; 64];
    while out.len() < len {
        getrandom::fill(&mut buf).map_err(|e| HashingError::Failed(e.to_string()))?;
        for b in buf {
            // 57 symbols: accept bytes below 4 × 57 = 228 to keep the distribution uniform.
            if b < 228 && out.len() < len {
                out.push(char::from(ALPHABET[usize::from(b) % ALPHABET.len()]));
            }
        }
    }
    Ok(Secret(out))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn a_password_verifies_against_its_hash_only() {
        let hash = hash_password(Secret::new("Passw0rdOK")).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        let wait = Admission::Wait;
        assert!(verify_password(Secret::new("Passw0rdOK"), Some(hash.clone()), wait).await.unwrap());
        assert!(!verify_password(Secret::new("wrong"), Some(hash.clone()), wait).await.unwrap());
        assert!(!verify_password(Secret::new("anything"), None, wait).await.unwrap());
        assert!(matches_any(Secret::new("Passw0rdOK"), vec!["x".into(), hash]).await.unwrap());
    }

    #[test]
    fn hashes_are_the_standard_phc_strings_either_way() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        // Ours verify with the crate's own verifier (an export or a migration reads them elsewhere) …
        let ours = hash_now(&Secret::new("Passw0rdOK")).unwrap();
        assert!(Argon2::default().verify_password(b"Passw0rdOK", ours.as_str()).is_ok());
        // … and the crate's, and those of another system with smaller or larger memory costs, verify with ours.
        for params in
            [Params::default(), Params::new(8, 1, 1, None).unwrap(), Params::new(32 * 1024, 1, 1, None).unwrap()]
        {
            let other = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                .hash_password_with_salt(b"Passw0rdOK", b"somesaltsomesalt")
                .unwrap()
                .to_string();
            assert!(verify_now(b"Passw0rdOK", &other), "{other}");
            assert!(!verify_now(b"Passw0rdOk", &other), "{other}");
        }
        assert!(!verify_now(b"Passw0rdOK", "$argon2id$v=19$m=19456,t=2,p=1$broken"));
    }

    #[tokio::test]
    async fn a_login_is_turned_away_when_the_queue_is_full_and_other_work_waits() {
        let shared: &'static Workers = Box::leak(Box::new(Workers::new(1, 2).unwrap()));
        let (release, held) = std::sync::mpsc::channel::<()>();
        let first = tokio::spawn(shared.run(Admission::Wait, move || {
            let _ = held.recv();
            Ok(1)
        }));
        let second = tokio::spawn(shared.run(Admission::Wait, || Ok(2)));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        // Two jobs in the system (one running, one queued): a login is turned away at once.
        assert!(matches!(shared.run(Admission::TurnAway, || Ok(3)).await, Err(HashingError::Busy)));
        // A waiting caller gets its turn once there is room.
        let third = tokio::spawn(shared.run(Admission::Wait, || Ok(4)));
        release.send(()).unwrap();
        assert_eq!(first.await.unwrap().unwrap(), 1);
        assert_eq!(second.await.unwrap().unwrap(), 2);
        assert_eq!(third.await.unwrap().unwrap(), 4);
        assert_eq!(shared.run(Admission::TurnAway, || Ok(5)).await.unwrap(), 5);
    }

    #[tokio::test]
    async fn work_whose_caller_went_away_is_skipped() {
        let shared: &'static Workers = Box::leak(Box::new(Workers::new(1, 4).unwrap()));
        let (release, held) = std::sync::mpsc::channel::<()>();
        let first = tokio::spawn(shared.run(Admission::Wait, move || {
            let _ = held.recv();
            Ok(())
        }));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = ran.clone();
        let gone = tokio::spawn(shared.run(Admission::TurnAway, move || {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        gone.abort();
        let _ = gone.await;
        release.send(()).unwrap();
        first.await.unwrap().unwrap();
        // A job queued after the abandoned one runs, so the abandoned one had its turn and was skipped.
        shared.run(Admission::Wait, || Ok(())).await.unwrap();
        assert!(!ran.load(std::sync::atomic::Ordering::SeqCst), "the verification of a client that left ran");
    }

    #[tokio::test]
    async fn a_password_longer_than_any_password_takes_no_worker() {
        let shared: &'static Workers = Box::leak(Box::new(Workers::new(1, 1).unwrap()));
        let (release, held) = std::sync::mpsc::channel::<()>();
        let first = tokio::spawn(shared.run(Admission::Wait, move || {
            let _ = held.recv();
            Ok(())
        }));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let normal = shared.verify(Secret::new("a".repeat(64)), None, Admission::TurnAway).await;
        assert!(matches!(normal, Err(HashingError::Busy)), "the queue is full");
        let huge = shared.verify(Secret::new("a".repeat(1 << 20)), None, Admission::TurnAway).await;
        assert!(!huge.unwrap(), "refused without waiting for a worker");
        release.send(()).unwrap();
        first.await.unwrap().unwrap();
    }

    #[test]
    fn generated_passwords_are_half_width_alphanumeric_and_differ() {
        let a = generate_password(16).unwrap();
        let b = generate_password(16).unwrap();
        assert_eq!(a.expose().len(), 16);
        assert!(a.expose().bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
        assert_eq!(format!("{a:?}"), "Secret(***)");
    }
}
