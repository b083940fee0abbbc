//! The `cardap` binary: `serve` (the default), `migrate`, and `projections rebuild`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use cardap_api::app::{Application, Settings, open_database, sealed_store, shutdown_signal};
use cardap_api::auth::{Secret, SessionPolicy};
use cardap_domain::operator::{LockoutPolicy, PasswordPolicy};
use cardap_projections::ReadModels;
use cardap_store::MasterKey;
use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cardap", version, about = "マイナンバーカード カードAP搭載システム (cardap)")]
struct Cli {
    #[command(flatten)]
    db: DbArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Args)]
struct DbArgs {
    /// Database URL: postgres://user@host:port/db or sqlite:path. Default: a SQLite file in ./cardap-data/.
    #[arg(long, env = "CARDAP_DATABASE_URL", global = true, hide_env_values = true)]
    database_url: Option<String>,
    /// Where the default SQLite database (and the default master key file) live.
    #[arg(long, env = "CARDAP_DATA_DIR", default_value = "cardap-data", global = true)]
    data_dir: PathBuf,
    /// File holding the master key (base64 of 32 bytes) that wraps every resident's data key; created with a new
    /// key when missing. Default: <data-dir>/master.key. Every node of one installation needs the same key.
    #[arg(long, env = "CARDAP_MASTER_KEY_FILE", global = true)]
    master_key_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP server (migrates the database first).
    Serve(ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate,
    /// Read-model maintenance.
    Projections {
        #[command(subcommand)]
        command: ProjectionCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ProjectionCommand {
    /// Empty a read model (or all) and rebuild it from the event log.
    Rebuild {
        /// The projection's name (`municipalities`, `operators`), or `all`.
        name: String,
    },
    /// List the projections.
    List,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "CARDAP_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Operator ID of the system administrator created on first start.
    #[arg(long, env = "CARDAP_BOOTSTRAP_ADMIN", default_value = "admin")]
    bootstrap_admin: String,
    /// Session idle timeout, minutes.
    #[arg(long, env = "CARDAP_SESSION_IDLE_MINUTES", default_value_t = 30)]
    session_idle_minutes: u64,
    /// Session absolute timeout, minutes.
    #[arg(long, env = "CARDAP_SESSION_ABSOLUTE_MINUTES", default_value_t = 480)]
    session_absolute_minutes: u64,
    /// Minimum password length (half-width alphanumerics).
    #[arg(long, env = "CARDAP_PASSWORD_MIN_LENGTH", default_value_t = 8)]
    password_min_length: usize,
    /// How many previous passwords may not be reused.
    #[arg(long, env = "CARDAP_PASSWORD_HISTORY", default_value_t = 3)]
    password_history: usize,
    /// Failed logins in a row before the operator is locked.
    #[arg(long, env = "CARDAP_LOCKOUT_MAX_FAILURES", default_value_t = 5)]
    lockout_max_failures: u32,
    /// How long a lock lasts, seconds.
    #[arg(long, env = "CARDAP_LOCKOUT_SECONDS", default_value_t = 900)]
    lockout_seconds: i64,
    /// The lockout that is permanent (until an administrator unlocks).
    #[arg(long, env = "CARDAP_LOCKOUT_MAX_LOCKOUTS", default_value_t = 3)]
    lockout_max_lockouts: u32,
    /// Database connections per node.
    #[arg(long, env = "CARDAP_MAX_CONNECTIONS", default_value_t = 16)]
    max_connections: u32,
}

impl Default for ServeArgs {
    fn default() -> Self {
        ServeArgs {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            bootstrap_admin: "admin".into(),
            session_idle_minutes: 30,
            session_absolute_minutes: 480,
            password_min_length: 8,
            password_history: 3,
            lockout_max_failures: 5,
            lockout_seconds: 900,
            lockout_max_lockouts: 3,
            max_connections: 16,
        }
    }
}

impl DbArgs {
    fn url(&self) -> anyhow::Result<String> {
        if let Some(url) = &self.database_url {
            return Ok(url.clone());
        }
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("cannot create the data directory {}", self.data_dir.display()))?;
        Ok(format!("sqlite://{}/cardap.db", self.data_dir.display()))
    }
}

impl DbArgs {
    /// The master key: `CARDAP_MASTER_KEY` (base64) if set, else the key file (created when missing).
    fn master_key(&self) -> anyhow::Result<MasterKey> {
        if let Ok(text) = std::env::var("CARDAP_MASTER_KEY") {
            return MasterKey::from_base64(&text).context("CARDAP_MASTER_KEY is not a base64 key of 32 bytes");
        }
        let path = self.master_key_file.clone().unwrap_or_else(|| self.data_dir.join("master.key"));
        let (key, created) = MasterKey::load_or_create(&path)
            .with_context(|| format!("cannot read or create the master key file {}", path.display()))?;
        if created {
            tracing::warn!(
                path = %path.display(),
                "created a new master key: back it up and give every node the same key; without it no personal \
                 data can be read"
            );
        }
        Ok(key)
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CARDAP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let json = std::env::var("CARDAP_LOG_FORMAT").is_ok_and(|f| f == "json");
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_tracing();
    let cli = Cli::parse();
    let url = cli.db.url()?;
    match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(args) => {
            let settings = Settings {
                database_url: url,
                listen: args.listen,
                max_connections: args.max_connections,
                bootstrap_admin: args.bootstrap_admin,
                bootstrap_password: std::env::var("CARDAP_BOOTSTRAP_PASSWORD").ok().map(Secret::new),
                sessions: SessionPolicy {
                    idle: Duration::from_secs(args.session_idle_minutes * 60),
                    absolute: Duration::from_secs(args.session_absolute_minutes * 60),
                },
                passwords: PasswordPolicy { min_length: args.password_min_length, history: args.password_history },
                lockout: LockoutPolicy {
                    max_failures: args.lockout_max_failures,
                    lock_seconds: args.lockout_seconds,
                    max_lockouts: args.lockout_max_lockouts,
                },
                drain_timeout: Duration::from_secs(10),
                startup_timeout: Duration::from_secs(60),
                master_key: Some(cli.db.master_key()?),
            };
            Application::build(settings).await?.run_until(shutdown_signal()).await
        }
        Command::Migrate => {
            let settings = Settings { database_url: url, ..Settings::for_tests(String::new()) };
            open_database(&settings).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Projections { command } => {
            let settings = Settings { database_url: url.clone(), ..Settings::for_tests(String::new()) };
            let db = open_database(&settings).await?;
            let store = sealed_store(&db, &cli.db.master_key()?).await?;
            let read = ReadModels::connect(&url, 4)?;
            match command {
                ProjectionCommand::List => {
                    for p in read.projections() {
                        println!("{}", p.name());
                    }
                }
                ProjectionCommand::Rebuild { name } => {
                    let runners: Vec<_> =
                        read.runners(store).into_iter().filter(|r| name == "all" || r.name() == name).collect();
                    anyhow::ensure!(
                        !runners.is_empty(),
                        "no projection named {name:?} (try `cardap projections list`)"
                    );
                    for runner in runners {
                        runner.reset().await?;
                        let reached = runner.catch_up().await?;
                        println!("{}: rebuilt up to {reached}", runner.name());
                    }
                }
            }
            Ok(())
        }
    }
}
