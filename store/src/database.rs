//! Opening the database named by a URL (PostgreSQL or SQLite), running the embedded migrations, and handing out
//! the event store for it. Read models and authentication tables live in the same database and the same
//! migrations, so one `cardap migrate` brings everything up to date.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

use crate::{EventStore, PostgresEventStore, SqliteEventStore, StoreError};

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    pub fn of_url(url: &str) -> Option<Backend> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    }
}

/// A connected database and its event store.
#[derive(Debug, Clone)]
pub struct Database {
    url: String,
    pools: Pools,
    store: Arc<dyn EventStore>,
}

#[derive(Debug, Clone)]
enum Pools {
    Postgres(PgPool, PostgresEventStore),
    Sqlite { writer: SqlitePool, store: SqliteEventStore },
}

/// How long a request waits for a pooled connection before it is told the database is unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

impl Database {
    /// Connects lazily (the server starts even while the database is still coming up) and starts the
    /// event store's background tasks. Must be called inside a tokio runtime.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Database, StoreError> {
        match Backend::of_url(url) {
            Some(Backend::Postgres) => {
                let options = PgConnectOptions::from_str(url).map_err(StoreError::Database)?;
                let pool = PgPoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_lazy_with(options);
                let store = PostgresEventStore::new(pool.clone(), url);
                Ok(Database {
                    url: url.to_owned(),
                    pools: Pools::Postgres(pool, store.clone()),
                    store: Arc::new(store),
                })
            }
            Some(Backend::Sqlite) => {
                let options = SqliteConnectOptions::from_str(url)
                    .map_err(StoreError::Database)?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    // FULL: an accepted event survives a power cut.
                    .synchronous(SqliteSynchronous::Full)
                    .busy_timeout(Duration::from_secs(10))
                    // A destroyed data key must not linger in free pages (personal-data erasure).
                    .pragma("secure_delete", "ON")
                    .foreign_keys(true);
                owner_only_file(options.get_filename()).map_err(|e| {
                    StoreError::Database(sqlx::Error::Configuration(
                        format!("cannot create the SQLite file {}: {e}", options.get_filename().display()).into(),
                    ))
                })?;
                let writer = SqlitePoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(options.clone())
                    .await
                    .map_err(StoreError::from_sqlx)?;
                let reader = SqlitePoolOptions::new()
                    .max_connections(max_connections.clamp(1, 8))
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_with(options)
                    .await
                    .map_err(StoreError::from_sqlx)?;
                let store = SqliteEventStore::new(writer.clone(), reader);
                Ok(Database {
                    url: url.to_owned(),
                    pools: Pools::Sqlite { writer, store: store.clone() },
                    store: Arc::new(store),
                })
            }
            None => Err(StoreError::Database(sqlx::Error::Configuration(
                format!("unsupported database URL (expected postgres://… or sqlite:…): {}", redact(url)).into(),
            ))),
        }
    }

    /// Applies every pending migration of this backend (`migrations/postgres` or `migrations/sqlite`).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let result = match &self.pools {
            Pools::Postgres(pool, _) => sqlx::migrate!("../migrations/postgres").run(pool).await,
            Pools::Sqlite { writer, .. } => sqlx::migrate!("../migrations/sqlite").run(writer).await,
        };
        result.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(inner) => StoreError::from_sqlx(inner),
            other => StoreError::Database(sqlx::Error::Migrate(Box::new(other))),
        })
    }

    pub fn backend(&self) -> Backend {
        match self.pools {
            Pools::Postgres(..) => Backend::Postgres,
            Pools::Sqlite { .. } => Backend::Sqlite,
        }
    }

    /// The URL this database was opened with (contains credentials: never log it, use [`redact`]).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn event_store(&self) -> Arc<dyn EventStore> {
        self.store.clone()
    }

    /// The PostgreSQL pool, when this is PostgreSQL.
    pub fn postgres_pool(&self) -> Option<&PgPool> {
        match &self.pools {
            Pools::Postgres(pool, _) => Some(pool),
            Pools::Sqlite { .. } => None,
        }
    }

    /// The concrete PostgreSQL store, when this is PostgreSQL.
    pub fn postgres_store(&self) -> Option<&PostgresEventStore> {
        match &self.pools {
            Pools::Postgres(_, store) => Some(store),
            Pools::Sqlite { .. } => None,
        }
    }

    /// The single-writer SQLite pool, when this is SQLite (the key vault writes through it too).
    pub(crate) fn sqlite_writer(&self) -> Option<&SqlitePool> {
        match &self.pools {
            Pools::Sqlite { writer, .. } => Some(writer),
            Pools::Postgres(..) => None,
        }
    }

    /// The concrete SQLite store, when this is SQLite.
    pub fn sqlite_store(&self) -> Option<&SqliteEventStore> {
        match &self.pools {
            Pools::Sqlite { store, .. } => Some(store),
            Pools::Postgres(..) => None,
        }
    }
}

/// The URL without its password, for logs and messages.
/// The file of a SQLite database URL (`sqlite://dir/file.db?…`, `sqlite:file.db`), if it names one (not
/// `:memory:`).
pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = path.split('?').next().unwrap_or_default();
    (!path.is_empty() && !path.starts_with(":memory:")).then(|| std::path::PathBuf::from(path))
}

pub fn redact(url: &str) -> String {
    let url = match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{}:***{}", &url[..scheme + 3], user, &url[at..])
        }
        _ => url.to_owned(),
    };
    // `?password=…` (libpq and sqlx accept the password as a parameter too), in any case, anywhere in the query.
    let Some(query) = url.find('?') else { return url };
    let (base, params) = url.split_at(query + 1);
    let params: Vec<String> = params
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((name, _)) if name.eq_ignore_ascii_case("password") => format!("{name}=***"),
            _ => p.to_owned(),
        })
        .collect();
    format!("{base}{}", params.join("&"))
}

/// Creates a missing SQLite database file readable and writable by its owner only (the events hold sealed personal
/// data, the credentials table password hashes); SQLite gives its `-wal` and `-shm` files the same permissions.
/// An existing file, or an in-memory database, is left as it is.
fn owner_only_file(path: &Path) -> std::io::Result<()> {
    if path.as_os_str().is_empty() || path == Path::new(":memory:") || path.exists() {
        return Ok(());
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod redact_tests {
    use super::redact;

    #[test]
    fn a_password_in_the_url_never_reaches_a_log() {
        assert_eq!(redact("postgres://app:s3cret@db/cardap"), "postgres://app:***@db/cardap");
        assert_eq!(
            redact("postgres://app@db/cardap?sslmode=require&Password=s3cret&x=1"),
            "postgres://app:***@db/cardap?sslmode=require&Password=***&x=1"
        );
        assert_eq!(
            redact("sqlite:///var/lib/cardap/cardap.db?mode=rwc"),
            "sqlite:///var/lib/cardap/cardap.db?mode=rwc"
        );
    }
}

#[cfg(test)]
mod migration_tests {
    /// Two branches that each add "the next" migration give two files one version: sqlx then refuses to migrate a
    /// fresh database at start-up. Caught here instead.
    #[test]
    fn every_migration_has_a_version_of_its_own() {
        for migrator in [sqlx::migrate!("../migrations/postgres"), sqlx::migrate!("../migrations/sqlite")] {
            let mut versions: Vec<i64> = migrator.iter().map(|m| m.version).collect();
            let all = versions.len();
            versions.sort_unstable();
            versions.dedup();
            assert_eq!(versions.len(), all, "two migrations share a version");
        }
    }
}
