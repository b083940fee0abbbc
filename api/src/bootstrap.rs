//! First start: the system administrator account (API.md: operator `admin`, changeable with
//! `CARDAP_BOOTSTRAP_ADMIN`; password from `CARDAP_BOOTSTRAP_PASSWORD`, or generated and printed once), and the
//! built-in business systems `00` cardap管理, `01` 証明書等自動交付, `02` 図書館.
//!
//! Safe when several nodes start at once: the operator key and every command id are derived from what they
//! create, the credential is inserted only if absent (only the node that inserted it prints a password), and
//! each registration event is appended once.

use std::sync::Arc;

use cardap_commands::{CommandContext, CommandHandler, Permission};
use cardap_domain::OperatorKey;
use cardap_domain::business_system::{BusinessSystem, BusinessSystemCommand, BusinessSystemError, builtin_profiles};
use cardap_domain::operator::{
    self, Operator, OperatorCommand, OperatorError, OperatorId, OperatorName, OperatorProfile, Role,
};
use cardap_projections::{ReadModels, business_systems, operators};
use cardap_store::{CommandId, Companion, EventStore};
use uuid::Uuid;

use crate::app::{Settings, StartError};
use cardap_commands::passwords::{self, Secret};

const BOOTSTRAP_NAMESPACE: Uuid = Uuid::from_u128(0x6361_7264_6170_426f_6f74_7374_7261_7030);

/// Creates the system administrator unless he exists. Returns the generated password when one was generated.
pub async fn ensure_system_admin(
    store: &Arc<dyn EventStore>,
    read: &ReadModels,
    settings: &Settings,
) -> Result<Option<Secret>, StartError> {
    let operator_id = OperatorId::parse(&settings.bootstrap_admin)
        .map_err(|e| StartError::Failed(format!("CARDAP_BOOTSTRAP_ADMIN {:?}: {e}", settings.bootstrap_admin)))?;
    if operators::find_by_login(read.pool(), None, &operator_id).await?.is_some() {
        return Ok(None);
    }
    let key = OperatorKey::for_login(None, &operator_id);
    let (password, generated) = match &settings.bootstrap_password {
        Some(p) => {
            check_password(p, settings)?;
            (p.clone(), false)
        }
        None => (passwords::generate_password(16).map_err(failed)?, true),
    };
    let hash = passwords::hash_password(password.clone()).await.map_err(failed)?;

    let stream = cardap_commands::access::operator_stream(None, &operator_id);
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
    let at = chrono::Utc::now();
    let inserted = match CommandHandler::<Operator>::new(store.clone())
        .execute_with(&ctx, &Permission::ManageMunicipalities, &stream, None, None, command, |events| {
            if events.is_empty() {
                vec![]
            } else {
                vec![Companion::SetPassword { operator: key, hash: hash.clone(), at }]
            }
        })
        .await
    {
        Ok(executed) => !executed.events.is_empty(),
        Err(cardap_commands::CommandError::Domain(OperatorError::AlreadyRegistered)) => false,
        Err(e) => return Err(StartError::Failed(format!("cannot register the system administrator: {e}"))),
    };
    if let Err(e) = read.catch_up(store.clone()).await {
        tracing::warn!(error = %e, "the operator directory is still catching up");
    }
    tracing::info!(operator_id = %operator_id, "system administrator created");
    if generated && inserted {
        // Printed once, to the console only: never logged, never stored.
        eprintln!(
            "\n  cardap: system administrator created\n    operator_id: {operator_id}\n    password:    {}\n  \
             Keep it now: it is not shown again.\n",
            password.expose()
        );
        return Ok(Some(password));
    }
    Ok(None)
}

/// Registers the built-in business systems that are missing. Each registration's command id is derived from its
/// stream, so nodes starting at once (or a restart) append it once; "already registered" is the normal answer
/// from the second start on.
pub async fn ensure_builtin_business_systems(store: &Arc<dyn EventStore>, read: &ReadModels) -> Result<(), StartError> {
    let handler = CommandHandler::<BusinessSystem>::new(store.clone());
    let mut registered = false;
    for (id, profile) in builtin_profiles() {
        if business_systems::get(read.pool(), &id).await?.is_some() {
            continue;
        }
        let stream = cardap_commands::business_systems::stream(&id);
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
            Err(cardap_commands::CommandError::Domain(BusinessSystemError::AlreadyRegistered)) => {}
            Err(e) => {
                return Err(StartError::Failed(format!("cannot register the built-in business system {id}: {e}")));
            }
        }
    }
    if registered && let Err(e) = read.catch_up(store.clone()).await {
        tracing::warn!(error = %e, "the business-system list is still catching up");
    }
    Ok(())
}

/// The bootstrap password must meet the rule of every password (half-width alphanumerics, the configured
/// minimum length to 64).
fn check_password(p: &Secret, settings: &Settings) -> Result<(), StartError> {
    operator::Password::parse(p.expose(), &settings.passwords)
        .map(|_| ())
        .map_err(|e| StartError::Failed(format!("CARDAP_BOOTSTRAP_PASSWORD: {e}")))
}

/// A start-up step that failed for a reason the operator can only report (its `Debug`, which never holds a
/// secret: these are password-generation, hashing and credential-storage errors).
fn failed(e: impl std::fmt::Debug) -> StartError {
    StartError::Failed(format!("{e:?}"))
}
