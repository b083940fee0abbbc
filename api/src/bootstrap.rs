//! First start, at the edge of the process: reads the bootstrap settings, runs `cardap_commands::bootstrap`, and
//! hands a generated system-administrator password to a person once — never to the log.
//!
//! Where it goes: the password is written to a file readable by the owner only (mode 0600) in the data directory
//! *before* its hash is stored, so that a crash in between cannot leave an administrator nobody can log in as.
//! When this start created him, the file becomes `bootstrap-admin-password.txt`; if stdout is a terminal the
//! password is printed there instead and the file is removed. If another node created him first, or the start
//! fails, the file goes. The administrator must change the password at his first login.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cardap_commands::bootstrap::{self, AdminCreated, BootstrapError};
use cardap_commands::passwords::Secret;
use cardap_domain::operator::OperatorId;
use cardap_projections::ReadModels;
use cardap_store::EventStore;

use crate::app::{Settings, StartError};

/// The file a generated password is left in when no terminal shows it, in the data directory.
pub const PASSWORD_FILE: &str = "bootstrap-admin-password.txt";

/// Creates the system administrator and the built-in business systems that are missing. Returns the generated
/// password when this start created him with one.
pub async fn run(
    store: &Arc<dyn EventStore>,
    read: &ReadModels,
    settings: &Settings,
) -> Result<Option<Secret>, StartError> {
    let operator_id = OperatorId::parse(&settings.bootstrap_admin)
        .map_err(|e| StartError::Failed(format!("CARDAP_BOOTSTRAP_ADMIN {:?}: {e}", settings.bootstrap_admin)))?;
    let dir = settings.master_key_file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut kept = Kept { dir: dir.to_owned(), staged: None };
    let created = bootstrap::ensure_system_admin(
        store,
        read,
        &operator_id,
        settings.bootstrap_password.as_ref(),
        &settings.passwords,
        |password| kept.stage(password),
    )
    .await;
    let generated = match created {
        Ok(AdminCreated::WithGenerated(password)) => {
            kept.hand_over(&operator_id, &password)?;
            Some(password)
        }
        Ok(AdminCreated::Existing | AdminCreated::WithGivenPassword) => {
            kept.discard();
            None
        }
        Err(e) => {
            kept.discard();
            return Err(start_error(e));
        }
    };
    bootstrap::ensure_builtin_business_systems(store, read).await.map_err(start_error)?;
    Ok(generated)
}

/// A generated password on its way to a person: first a file of this process's own, then the published file or
/// the terminal.
struct Kept {
    dir: PathBuf,
    /// The file this start wrote, until it is published or removed.
    staged: Option<PathBuf>,
}

impl Kept {
    /// Writes the password to a new file only the owner can read, before its hash is stored.
    fn stage(&mut self, password: &Secret) -> Result<(), String> {
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        let path = self.dir.join(format!("{PASSWORD_FILE}.{}.tmp", std::process::id()));
        let mut file = owner_only(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        file.write_all(format!("{}\n", password.expose()).as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        tracing::info!(file = %path.display(), "the generated administrator password is kept here until it is stored");
        self.staged = Some(path);
        Ok(())
    }

    /// This start created the administrator with the staged password: show it on the terminal (and remove the
    /// file), or leave it in [`PASSWORD_FILE`].
    fn hand_over(&mut self, operator_id: &OperatorId, password: &Secret) -> Result<(), StartError> {
        let Some(staged) = self.staged.take() else {
            return Err(StartError::Failed("the generated password was not kept".into()));
        };
        let stdout = std::io::stdout();
        if stdout.is_terminal() {
            let mut out = stdout.lock();
            let shown = writeln!(
                out,
                "\n  cardap: system administrator created\n    operator_id: {operator_id}\n    password:    {}\n  \
                 Keep it now: it is not shown again, and it must be changed at the first login.\n",
                password.expose()
            )
            .and_then(|()| out.flush());
            if shown.is_ok() {
                remove(&staged);
                return Ok(());
            }
        }
        let published = self.dir.join(PASSWORD_FILE);
        std::fs::rename(&staged, &published)
            .map_err(|e| StartError::Failed(format!("the generated password is in {}, but: {e}", staged.display())))?;
        tracing::warn!(
            file = %published.display(),
            operator_id = %operator_id,
            "system administrator created: his generated password is in this file (readable by its owner only); \
             log in with it, change it, and delete the file"
        );
        Ok(())
    }

    /// The staged password was never stored (another node created the administrator, or the start failed).
    fn discard(&mut self) {
        if let Some(staged) = self.staged.take() {
            remove(&staged);
        }
    }
}

/// A new file readable and writable by its owner only.
fn owner_only(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

fn remove(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        tracing::warn!(file = %path.display(), error = %e, "could not remove a file holding a generated password");
    }
}

fn start_error(e: BootstrapError) -> StartError {
    match e {
        BootstrapError::Failed(why) => StartError::Failed(why),
        BootstrapError::Query(e) => StartError::ReadModels(e),
    }
}
