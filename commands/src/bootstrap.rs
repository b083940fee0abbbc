//! First start: the system administrator account (API.md: operator `admin` unless configured otherwise; his
//! password given, or generated and handed back once), and the built-in business systems `00` cardap管理,
//! `01` 証明書等自動交付, `02` 図書館.
//!
//! Safe when several nodes start at once: the operator key and every command id are derived from what they
//! create, the password hash commits with the registration (a companion of its append), and each registration
//! event is appended once. A generated password is handed to the caller's keeper *before* its hash commits, so a
//! crash in between leaves either no administrator (the next start makes one) or one whose password is kept; and
//! it must be changed at the first login (someone else has seen it).

use std::sync::Arc;

use cardap_domain::OperatorKey;
use cardap_domain::business_system::{BusinessSystem, BusinessSystemCommand, BusinessSystemError, builtin_profiles};
use cardap_domain::operator::{
    Operator, OperatorCommand, OperatorError, OperatorId, OperatorName, OperatorProfile, Password, PasswordPolicy, Role,
};
use cardap_projections::{ReadModels, business_systems};
use cardap_store::{CommandId, Companion, EventStore};
use uuid::Uuid;

use crate::passwords::{self, Secret};
use crate::{CommandContext, CommandError, CommandHandler, Permission, QueryError};

const BOOTSTRAP_NAMESPACE: Uuid = Uuid::from_u128(0x6361_7264_6170_426f_6f74_7374_7261_7030);

/// Why a first-start step failed: only reportable (nothing here holds a secret).
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("{0}")]
    Failed(String),
    #[error("the read models: {0}")]
    Query(#[from] QueryError),
}

/// What the first start did about the system administrator.
#[derive(Debug)]
pub enum AdminCreated {
    /// He existed already, or another node starting at the same time created him.
    Existing,
    /// Created now with the configured password.
    WithGivenPassword,
    /// Created now with this generated password, which he must change at his first login (it went to the keeper
    /// before it was stored).
    WithGenerated(Secret),
}

/// Creates the system administrator `operator_id` unless he exists, with `password` (checked against `policy`)
/// or a generated one (as long as the policy's minimum, at least 16 characters). A generated password goes to
/// `keep` before its hash is stored: if `keep` fails, nothing is stored; if this node then loses the race to
/// another, the kept password was never valid.
pub async fn ensure_system_admin(
    store: &Arc<dyn EventStore>,
    read: &ReadModels,
    operator_id: &OperatorId,
    password: Option<&Secret>,
    policy: &PasswordPolicy,
    keep: impl FnOnce(&Secret) -> Result<(), String>,
) -> Result<AdminCreated, BootstrapError> {
    // His own stream, not the operator directory: a start whose read models are still catching up on a backlog
    // must not take him for missing (and hash a password for nothing).
    let stream = crate::access::operator_stream(None, operator_id);
    if !store.read_stream(&stream, 1).await.map_err(|e| BootstrapError::Failed(e.to_string()))?.is_empty() {
        return Ok(AdminCreated::Existing);
    }
    let key = OperatorKey::for_login(None, operator_id);
    let (password, generated) = match password {
        Some(p) => {
            Password::parse(p.expose(), policy)
                .map_err(|e| BootstrapError::Failed(format!("CARDAP_BOOTSTRAP_PASSWORD: {e}")))?;
            (p.clone(), false)
        }
        None => (passwords::generate_password(policy.min_length.max(16)).map_err(failed)?, true),
    };
    let hash = passwords::hash_password(password.clone()).await.map_err(failed)?;

    let ctx =
        CommandContext::system(CommandId::from_uuid(Uuid::new_v5(&BOOTSTRAP_NAMESPACE, stream.as_str().as_bytes())));
    let command = OperatorCommand::Register {
        key,
        municipality: None,
        operator_id: operator_id.clone(),
        profile: OperatorProfile::named(OperatorName::parse("システム管理者").map_err(failed)?),
        roles: vec![Role::SystemAdmin],
        // He needs no 許可業務: the system administrator reaches every business system through his role.
        business_systems: vec![],
        usable: vec![],
    };
    // His registration and his password hash commit together: another node starting at the same time registers
    // him once, with one password.
    if generated {
        keep(&password).map_err(|e| BootstrapError::Failed(format!("cannot keep the generated password: {e}")))?;
    }
    let at = chrono::Utc::now();
    let inserted = match CommandHandler::<Operator>::new(store.clone())
        .execute_with(&ctx, &Permission::ManageMunicipalities, &stream, None, None, command, |events| {
            if events.is_empty() {
                vec![]
            } else {
                let mut companions = vec![Companion::SetPassword { operator: key, hash: hash.clone(), at }];
                if generated {
                    companions.push(Companion::RequirePasswordChange { operator: key });
                }
                companions
            }
        })
        .await
    {
        Ok(executed) => !executed.events.is_empty(),
        Err(CommandError::Domain(OperatorError::AlreadyRegistered)) => false,
        Err(e) => return Err(BootstrapError::Failed(format!("cannot register the system administrator: {e}"))),
    };
    if inserted && let Err(e) = read.catch_up(store.clone()).await {
        tracing::warn!(error = %e, "the operator directory is still catching up");
    }
    if inserted {
        tracing::info!(operator_id = %operator_id, "system administrator created");
    }
    Ok(match (inserted, generated) {
        (false, _) => AdminCreated::Existing,
        (true, false) => AdminCreated::WithGivenPassword,
        (true, true) => AdminCreated::WithGenerated(password),
    })
}

/// Registers the built-in business systems that are missing. Each registration's command id is derived from its
/// stream, so nodes starting at once (or a restart) append it once; "already registered" is the normal answer
/// from the second start on.
pub async fn ensure_builtin_business_systems(
    store: &Arc<dyn EventStore>,
    read: &ReadModels,
) -> Result<(), BootstrapError> {
    let handler = CommandHandler::<BusinessSystem>::new(store.clone());
    let mut registered = false;
    for (id, profile) in builtin_profiles() {
        if business_systems::get(read.pool(), &id).await?.is_some() {
            continue;
        }
        let stream = crate::business_systems::stream(&id);
        let ctx = CommandContext::system(CommandId::from_uuid(Uuid::new_v5(
            &BOOTSTRAP_NAMESPACE,
            stream.as_str().as_bytes(),
        )));
        let command = BusinessSystemCommand::Register { id: id.clone(), profile };
        match handler.execute(&ctx, &Permission::ManageBusinessSystems, &stream, None, None, command).await {
            Ok(executed) => {
                registered |= executed.outcome.is_some();
                if !executed.events.is_empty() {
                    tracing::info!(business_id = %id, "built-in business system registered");
                }
            }
            Err(CommandError::Domain(BusinessSystemError::AlreadyRegistered)) => {}
            Err(e) => {
                return Err(BootstrapError::Failed(format!("cannot register the built-in business system {id}: {e}")));
            }
        }
    }
    if registered && let Err(e) = read.catch_up(store.clone()).await {
        tracing::warn!(error = %e, "the business-system list is still catching up");
    }
    Ok(())
}

/// A start-up step that failed for a reason the operator can only report (its `Debug`, which never holds a
/// secret: these are password-generation, hashing and credential-storage errors).
fn failed(e: impl std::fmt::Debug) -> BootstrapError {
    BootstrapError::Failed(format!("{e:?}"))
}
