//! The `cardap` binary: `serve` (the default), `project`, `migrate`, `projections list|rebuild`, `ca init|export-root`,
//! `card-key` and `audit verify|public-key`.
//!
//! Its flags are the settings of [`cardap_api::settings::KEYS`] (one flag per setting, accepted before or after
//! the command) and `--config PATH`; `Settings::load` lays them over the configuration file and the `CARDAP_*`
//! variables. Only the logs are configured outside `Settings`: `CARDAP_LOG` and `CARDAP_LOG_FORMAT`, read before
//! anything else so that loading the settings can already log.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use cardap_api::app::{
    Application, StartError, master_key, open_database, sealed_store_and_vault, shutdown_signal, start_ca, verify_audit,
};
use cardap_api::settings::{CONFIG_ENV, KEYS, Settings, Sources};
use cardap_projections::audit::AuditKey;
use cardap_projections::{ProjectionError, ReadModels};
use clap::{Arg, ArgMatches, Args, FromArgMatches, Parser, Subcommand};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Parser)]
#[command(name = "cardap", version, about = "マイナンバーカード カードAP搭載システム (cardap)")]
struct Cli {
    #[arg(long, global = true, value_name = "PATH", help = format!("A TOML configuration file (see cardap.example.toml; also {CONFIG_ENV}); variables and flags win over it"))]
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: SettingFlags,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP server (migrates the database first). The default.
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Build the read models (the projection runners) without serving HTTP, for servers started with
    /// `projections.runners = "elsewhere"`. Several may run, on any nodes: each event is applied once. Stops on
    /// SIGTERM or Ctrl-C.
    Project,
    /// Read-model maintenance.
    Projections {
        #[command(subcommand)]
        command: ProjectionCommand,
    },
    /// The internal CA.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Issuance of a card (personalization, as the card's issuer does it): print the local-area key of the card
    /// `FID` (hex), derived from the master key, for the card emulator's card file (`card_key`). No route answers
    /// it; the card agent never holds it.
    CardKey {
        /// The card's FID.
        fid: String,
    },
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Recompute the hash chains over the sealed events and over the read access log (a running server seals new
    /// ones within seconds) and name the first event or row that was altered, removed or moved; then check both
    /// against the signed heads (the head file given, else those kept in the database) with the audit public key.
    /// Exit status 2 when anything is wrong.
    Verify {
        /// A head file (JSON lines, as the server appends to `audit.head_file`); default: the heads kept in the
        /// database.
        #[arg(long, value_name = "FILE")]
        heads: Option<PathBuf>,
        /// An audit public key (base64, as `cardap audit public-key` prints it); repeat it for the keys of several
        /// nodes. Default: the public half of the configured audit key file.
        #[arg(long = "public-key", value_name = "BASE64")]
        public_keys: Vec<String>,
    },
    /// Print the public half of the audit key (creating the key file when missing), for the auditors.
    PublicKey,
}

#[derive(Debug, Subcommand)]
enum CaCommand {
    /// Create the CA (root and issuing CA, keys sealed under the master key) unless it exists, and print its
    /// chain (PEM). The server does the same at its first start.
    Init,
    /// Write the root CA's key and certificate (PEM) to a new file (mode 0600), to keep the root offline; with
    /// `--remove`, then delete the root key from the server (the issuing CA keeps signing). The key is never
    /// printed.
    ExportRoot {
        /// The file to create (it must not exist).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Delete the root key from the database once the file is written.
        #[arg(long)]
        remove: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ProjectionCommand {
    /// Rebuild a read model (or all) from the event log, blue/green: the new version is built beside the live one,
    /// which keeps answering, and replaces it once caught up. Safe while servers run.
    Rebuild {
        /// The projection's name (`municipalities`, `operators`), or `all`.
        name: String,
        /// Empty the live read model and rebuild it in place instead (it answers partially until caught up).
        #[arg(long)]
        in_place: bool,
    },
    /// List the projections.
    List,
}

/// The flags of the settings, by flag name, as given (parsed and checked by `Settings::load`).
#[derive(Debug, Default)]
struct SettingFlags(BTreeMap<String, String>);

impl FromArgMatches for SettingFlags {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let given = KEYS.iter().filter_map(|k| Some((k.flag.to_owned(), matches.get_one::<String>(k.flag)?.clone())));
        Ok(SettingFlags(given.collect()))
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        self.0.extend(Self::from_arg_matches(matches)?.0);
        Ok(())
    }
}

impl Args for SettingFlags {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        KEYS.iter().fold(cmd, |cmd, key| {
            cmd.arg(
                Arg::new(key.flag)
                    .long(key.flag)
                    .value_name("VALUE")
                    .global(true)
                    .help(format!("{} ({}; `{}` in the file)", key.help, key.env, key.file)),
            )
        })
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
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
async fn main() -> ExitCode {
    init_tracing();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(StartError::Tampered) => ExitCode::from(2),
        Err(e) => {
            eprintln!("cardap: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), StartError> {
    let sources = Sources { config: cli.config, env: Sources::environment(), flags: cli.settings.0 };
    let settings = Settings::load(&sources)?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => Application::build(settings).await?.run_until(shutdown_signal()).await,
        Command::Project => {
            let db = open_database(&settings).await?;
            let (store, vault) = sealed_store_and_vault(&db, &master_key(&settings)?).await?;
            let read = ReadModels::connect(&settings.database_url, settings.max_connections, vault)?;
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let runners: Vec<_> =
                read.runners(store).into_iter().map(|r| tokio::spawn(r.run(stopped.clone()))).collect();
            tracing::info!(projections = runners.len(), "building the read models");
            shutdown_signal().await;
            let _ = stop.send(true);
            for runner in runners {
                let _ = runner.await;
            }
            tracing::info!("projection runners stopped");
            Ok(())
        }
        Command::Migrate => {
            open_database(&settings).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Audit { command: AuditCommand::Verify { heads, public_keys } } => {
            let report = verify_audit(&settings, heads.as_deref(), &public_keys).await?;
            println!("{report}");
            if report.intact() { Ok(()) } else { Err(StartError::Tampered) }
        }
        Command::Audit { command: AuditCommand::PublicKey } => {
            let path = settings
                .audit
                .key_file
                .as_ref()
                .ok_or_else(|| StartError::Failed("no audit key file is configured (audit.key_file)".to_owned()))?;
            let (key, _) = AuditKey::load_or_create(path).map_err(ProjectionError::from)?;
            println!("{}", key.public());
            Ok(())
        }
        Command::CardKey { fid } => {
            let fid = cardap_domain::resident::CardFid::parse(&fid)
                .map_err(|_| StartError::Failed("the FID must be 1 to 32 half-width letters and digits".to_owned()))?;
            let keys = cardap_commands::card_writes::CardKeys::new(&master_key(&settings)?);
            println!("{}", hex::encode(keys.card_key(&fid)));
            Ok(())
        }
        Command::Ca { command: CaCommand::Init } => {
            let db = open_database(&settings).await?;
            let master = master_key(&settings)?;
            let (store, vault) = sealed_store_and_vault(&db, &master).await?;
            let read = ReadModels::connect(&settings.database_url, 4, vault)?;
            let clock: std::sync::Arc<dyn cardap_commands::Clock> = std::sync::Arc::new(cardap_commands::SystemClock);
            let pki = start_ca(&store, &read, &cardap_commands::Views::default(), clock, &master, &settings).await?;
            print!("{}", pki.chain_pem().map_err(|e| StartError::Failed(e.to_string()))?);
            Ok(())
        }
        Command::Ca { command: CaCommand::ExportRoot { out, remove } } => {
            let db = open_database(&settings).await?;
            let master = master_key(&settings)?;
            let (store, vault) = sealed_store_and_vault(&db, &master).await?;
            let read = ReadModels::connect(&settings.database_url, 4, vault)?;
            let clock: std::sync::Arc<dyn cardap_commands::Clock> = std::sync::Arc::new(cardap_commands::SystemClock);
            let pki = start_ca(&store, &read, &cardap_commands::Views::default(), clock, &master, &settings).await?;
            let failed =
                |e: cardap_commands::CommandError<cardap_commands::pki::PkiError>| StartError::Failed(e.to_string());
            let Some((pkcs8, root_der)) = pki.export_root().await.map_err(failed)? else {
                return Err(StartError::Failed(
                    "the root CA's key is not on this server any more (exported and removed before)".to_owned(),
                ));
            };
            let pem = format!(
                "{}{}",
                cardap_commands::pki::ca::pem("PRIVATE KEY", &pkcs8),
                cardap_commands::pki::ca::pem("CERTIFICATE", &root_der)
            );
            write_new_private(&out, pem.as_bytes()).map_err(StartError::io("cannot write the root CA file"))?;
            println!("root CA key and certificate written to {}", out.display());
            if remove {
                pki.remove_root_key().await.map_err(failed)?;
                println!("root CA key removed from the server; keep {} offline", out.display());
            }
            Ok(())
        }
        Command::Projections { command } => {
            let db = open_database(&settings).await?;
            let (store, vault) = sealed_store_and_vault(&db, &master_key(&settings)?).await?;
            let read = ReadModels::connect(&settings.database_url, 4, vault)?;
            match command {
                ProjectionCommand::List => {
                    for p in read.projections() {
                        println!("{}", p.name());
                    }
                }
                ProjectionCommand::Rebuild { name, in_place } => {
                    let runners: Vec<_> =
                        read.runners(store.clone()).into_iter().filter(|r| name == "all" || r.name() == name).collect();
                    if runners.is_empty() {
                        return Err(StartError::Failed(format!(
                            "no projection named {name:?} (try `cardap projections list`)"
                        )));
                    }
                    if !in_place {
                        for runner in runners {
                            let events = store.head().await.map_err(|e| StartError::Failed(e.to_string()))?;
                            let Some(rebuilt) = read.rebuild(store.clone(), runner.name()).await else { continue };
                            let rebuilt = rebuilt?;
                            println!(
                                "{}: rebuilt beside the live one up to {} in {:.1} s, switched in {:.2} s (log head \
                                 was {events})",
                                runner.name(),
                                rebuilt.reached,
                                rebuilt.built.as_secs_f64(),
                                rebuilt.switched.as_secs_f64()
                            );
                        }
                        return Ok(());
                    }
                    for runner in runners {
                        let started = std::time::Instant::now();
                        runner.reset().await?;
                        let emptied = started.elapsed();
                        let reached = runner.catch_up().await?;
                        println!(
                            "{}: rebuilt up to {reached} (emptied in {:.1} s, rebuilt in {:.1} s)",
                            runner.name(),
                            emptied.as_secs_f64(),
                            (started.elapsed() - emptied).as_secs_f64()
                        );
                    }
                }
            }
            Ok(())
        }
    }
}

/// Creates `path` (it must not exist) readable by its owner only, with `contents`.
fn write_new_private(path: &std::path::Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}
