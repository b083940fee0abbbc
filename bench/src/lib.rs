//! What the benchmarks that measure the real server share: the release `cardap` binary run as a child process
//! ([`Server`]), its bootstrap administrator's password, and the metadata of events a benchmark appends itself
//! ([`bench_metadata`]).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// The metadata of a batch of events a benchmark appends straight to the store for `municipality`, named by
/// `terminal` (the benchmark).
pub fn bench_metadata(municipality: &cardap_domain::MunicipalityCode, terminal: &str) -> cardap_store::Metadata {
    cardap_store::Metadata {
        command_id: None,
        correlation_id: cardap_store::CorrelationId::generate(),
        causation_id: None,
        municipality: Some(municipality.clone()),
        operator: None,
        terminal: Some(terminal.to_owned()),
        request_id: None,
    }
}

/// The system administrator's password of every benchmark server.
pub const ADMIN_PASSWORD: &str = "BenchAdminPassw0rd";

/// The `cardap serve` child process; killed when dropped.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:<port>`
    pub address: String,
    /// The server's data directory (its audit key and head file), removed when dropped.
    _data: tempfile::TempDir,
}

impl Server {
    /// Starts `binary` on `url` with `master_key` (base64) and waits until it says where it listens.
    pub fn start(binary: &PathBuf, url: &str, master_key: &str) -> Result<Server> {
        Self::start_with(binary, url, master_key, &[])
    }

    /// [`Server::start`] with more `CARDAP_*` variables (TLS files, say).
    pub fn start_with(binary: &PathBuf, url: &str, master_key: &str, env: &[(&str, String)]) -> Result<Server> {
        // Its own data directory: no audit key or head file left in the working directory.
        let data = tempfile::tempdir().context("a data directory for the server")?;
        let mut child = Command::new(binary)
            .args(["serve", "--database-url", url, "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .env("CARDAP_DATA_DIR", data.path())
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("CARDAP_MASTER_KEY", master_key)
            .env("CARDAP_BOOTSTRAP_PASSWORD", ADMIN_PASSWORD)
            .env("CARDAP_LOG", "warn,cardap_api::app=info")
            .env("CARDAP_LOG_FORMAT", "json")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stderr = child.stderr.take().context("the server's stderr")?;
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        // Reads the log for the address, then keeps draining it (a full pipe would block the server), passing on
        // warnings and errors.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let parsed: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                let fields = &parsed["fields"];
                if fields["message"] == "cardap listening"
                    && let Some(address) = fields["address"].as_str()
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(address.to_owned());
                    continue;
                }
                if parsed.is_null() || matches!(parsed["level"].as_str(), Some("WARN" | "ERROR")) {
                    // Cut short: a slow-statement warning carries the whole statement.
                    let short: String = line.chars().take(400).collect();
                    eprintln!("  server: {short}");
                }
            }
        });
        let address = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(address) => address,
            Err(_) => {
                let _ = child.kill();
                bail!("the server did not report its address within 120 s (see its log above)");
            }
        };
        Ok(Server { child, address: format!("http://{address}"), _data: data })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A `kB` line of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in MB.
    pub fn memory_mb(&self, key: &str) -> Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let line = status.lines().find(|l| l.starts_with(key)).with_context(|| format!("no {key} in status"))?;
        let kb: f64 = line.split_whitespace().nth(1).context("a number")?.parse()?;
        Ok(kb / 1024.0)
    }

    /// Resets the peak resident memory (`VmHWM`) to the current one; false where the kernel does not allow it.
    pub fn reset_peak(&self) -> bool {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5").is_ok()
    }

    /// SIGTERM (through `kill`), then at most 15 s for the graceful shutdown.
    pub fn stop(mut self) -> Result<()> {
        let _ = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.child.kill()?;
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
