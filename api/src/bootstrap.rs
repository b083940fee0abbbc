//! First start, at the edge of the process: reads the bootstrap settings, runs `cardap_commands::bootstrap`, and
//! shows a generated system-administrator password once on the console (never logged, never stored).

use std::sync::Arc;

use cardap_commands::bootstrap::{self, BootstrapError};
use cardap_commands::passwords::Secret;
use cardap_domain::operator::OperatorId;
use cardap_projections::ReadModels;
use cardap_store::EventStore;

use crate::app::{Settings, StartError};

/// Creates the system administrator and the built-in business systems that are missing. Returns the generated
/// password when one was generated (and printed).
pub async fn run(
    store: &Arc<dyn EventStore>,
    read: &ReadModels,
    settings: &Settings,
) -> Result<Option<Secret>, StartError> {
    let operator_id = OperatorId::parse(&settings.bootstrap_admin)
        .map_err(|e| StartError::Failed(format!("CARDAP_BOOTSTRAP_ADMIN {:?}: {e}", settings.bootstrap_admin)))?;
    let generated = bootstrap::ensure_system_admin(
        store,
        read,
        &operator_id,
        settings.bootstrap_password.as_ref(),
        &settings.passwords,
    )
    .await
    .map_err(start_error)?;
    if let Some(password) = &generated {
        // Printed once, to the console only: never logged, never stored.
        eprintln!(
            "\n  cardap: system administrator created\n    operator_id: {operator_id}\n    password:    {}\n  \
             Keep it now: it is not shown again.\n",
            password.expose()
        );
    }
    bootstrap::ensure_builtin_business_systems(store, read).await.map_err(start_error)?;
    Ok(generated)
}

fn start_error(e: BootstrapError) -> StartError {
    match e {
        BootstrapError::Failed(why) => StartError::Failed(why),
        BootstrapError::Query(e) => StartError::ReadModels(e),
    }
}
