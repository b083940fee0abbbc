//! Test support for cardap: real databases, never mocks.
//!
//! - [`PgCluster`]: a throwaway PostgreSQL cluster (initdb in a temp dir, a free port on 127.0.0.1), removed on
//!   drop; it can be stopped and started again to test a database restart. As root, PostgreSQL runs as the
//!   `postgres` user (initdb refuses root).
//! - [`fresh_postgres_url`]: a new, empty database on the cluster that `scripts/test` started
//!   (`CARDAP_TEST_DATABASE_URL`), one per test.
//! - [`fresh_sqlite_url`]: a new SQLite file in a temp dir.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

/// The environment variable naming the PostgreSQL server (any database on it) that tests create databases on.
pub const TEST_DATABASE_ENV: &str = "CARDAP_TEST_DATABASE_URL";

/// A throwaway PostgreSQL cluster.
#[derive(Debug)]
pub struct PgCluster {
    dir: TempDir,
    port: u16,
    bin: PathBuf,
    as_postgres: bool,
}

impl PgCluster {
    /// initdb + start on a free port. Panics with a clear message if PostgreSQL is not installed.
    pub fn start() -> PgCluster {
        let bin = pg_bin_dir();
        let dir = tempfile::Builder::new().prefix("cardap-pg-").tempdir().expect("temp dir");
        let as_postgres = is_root();
        if as_postgres {
            run(Command::new("chown").arg("-R").arg("postgres").arg(dir.path()));
        }
        let data = dir.path().join("data");
        let initdb = format!(
            "{} -D {} -A trust -U postgres --no-sync -E UTF8 --locale=C >/dev/null",
            bin.join("initdb").display(),
            data.display()
        );
        run_shell(&initdb, as_postgres);
        let cluster = PgCluster { dir, port: free_port(), bin, as_postgres };
        cluster.start_again();
        cluster
    }

    /// The URL of `database` on this cluster.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Stops the server (fast shutdown: open connections are cut, as in a crash of the database host).
    pub fn stop(&self) {
        let cmd =
            format!("{} -D {} -m fast -w stop >/dev/null", self.bin.join("pg_ctl").display(), self.data().display());
        run_shell(&cmd, self.as_postgres);
    }

    /// Starts the server again on the same port with the same data.
    pub fn start_again(&self) {
        let cmd = format!(
            "{} -D {} -l {} -w -o \"-k {} -p {} -c listen_addresses=127.0.0.1 -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off -c max_connections=300\" start >/dev/null",
            self.bin.join("pg_ctl").display(),
            self.data().display(),
            self.dir.path().join("log").display(),
            self.dir.path().display(),
            self.port
        );
        run_shell(&cmd, self.as_postgres);
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let cmd = format!(
            "{} -D {} -m immediate stop >/dev/null 2>&1",
            self.bin.join("pg_ctl").display(),
            self.data().display()
        );
        let _ = shell(&cmd, self.as_postgres).status();
    }
}

/// Creates an empty database on the test server and returns its URL.
pub async fn fresh_postgres_url() -> String {
    let server = std::env::var(TEST_DATABASE_ENV).unwrap_or_else(|_| {
        panic!(
            "{TEST_DATABASE_ENV} is not set: run the tests with scripts/test, which starts a throwaway PostgreSQL \
             cluster, or point {TEST_DATABASE_ENV} at a PostgreSQL server you may create databases on"
        )
    });
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let (client, connection) = tokio_postgres::connect(&server, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {TEST_DATABASE_ENV}: {e}"));
    let driver = tokio::spawn(connection);
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create test database");
    drop(client);
    let _ = driver.await;
    replace_database(&server, &name)
}

/// A new SQLite database file in `dir`.
pub fn fresh_sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}/cardap-{}.db", dir.display(), uuid::Uuid::new_v4().simple())
}

fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_part = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{host_part}/{database}?{q}"),
        None => format!("{host_part}/{database}"),
    }
}

fn pg_bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return PathBuf::from(dir);
    }
    let default = PathBuf::from("/usr/lib/postgresql/15/bin");
    if default.join("initdb").exists() {
        return default;
    }
    panic!("PostgreSQL 15 is not installed (no /usr/lib/postgresql/15/bin): scripts/test installs it with apt");
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

fn shell(cmd: &str, as_postgres: bool) -> Command {
    if as_postgres {
        let mut c = Command::new("su");
        c.args(["postgres", "-s", "/bin/sh", "-c", cmd]);
        c
    } else {
        let mut c = Command::new("/bin/sh");
        c.args(["-c", cmd]);
        c
    }
}

fn run_shell(cmd: &str, as_postgres: bool) {
    run(&mut shell(cmd, as_postgres));
}

fn run(cmd: &mut Command) {
    let status = cmd.status().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(status.success(), "{cmd:?} failed with {status}");
}
