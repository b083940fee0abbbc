//! 業務システム設定 and 共同利用業務設定: the system administrator registers, changes and retires the independent
//! business systems, and permits municipalities to use them (shared use) or withdraws that.
//!
//! Owns the use cases on the `business_system` streams and the looked-up fact a permit needs (the municipality
//! exists and is not abolished, from the municipalities view). Lists and views are read by the edge.

use std::sync::Arc;

use cardap_domain::business_system::{
    self, BusinessSystem, BusinessSystemCommand, BusinessSystemError, BusinessSystemProfile, ProfilePatch,
};
use cardap_domain::{BusinessId, MunicipalityCode};
use cardap_projections::{ReadModels, municipalities};
use cardap_store::{EventStore, StreamId};

use crate::authz::Permission;
use crate::context::CommandContext;
use crate::handler::{CommandError, CommandHandler, Executed, Loaded};

type Result<T, E = BusinessSystemError> = std::result::Result<T, CommandError<E>>;

/// Why a municipality could not be permitted to use a business system.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PermitError {
    #[error("no municipality with this code is registered")]
    NoSuchMunicipality,
    #[error("the municipality has been abolished")]
    MunicipalityAbolished,
    #[error(transparent)]
    BusinessSystem(#[from] BusinessSystemError),
}

/// The business-system use cases over one event store.
#[derive(Debug, Clone)]
pub struct BusinessSystems {
    handler: CommandHandler<BusinessSystem>,
    read: ReadModels,
}

/// The stream of one business system.
pub fn stream(id: &BusinessId) -> StreamId {
    crate::ids::stream_of::<BusinessSystem>(&business_system::stream_key(id))
}

impl BusinessSystems {
    pub fn new(store: Arc<dyn EventStore>, read: ReadModels) -> Self {
        BusinessSystems { handler: CommandHandler::new(store), read }
    }

    /// Registers a business system under a business ID that was never used.
    pub async fn register(
        &self,
        ctx: &CommandContext,
        id: BusinessId,
        profile: BusinessSystemProfile,
    ) -> Result<Executed<BusinessSystem>> {
        self.run(ctx, &id, None, None, BusinessSystemCommand::Register { id: id.clone(), profile }).await
    }

    /// Changes some fields of the profile, merged with the profile as it is when decided.
    pub async fn update(
        &self,
        ctx: &CommandContext,
        id: &BusinessId,
        if_match: Option<u64>,
        patch: ProfilePatch,
    ) -> Result<Executed<BusinessSystem>> {
        self.run(ctx, id, None, if_match, BusinessSystemCommand::Patch { patch }).await
    }

    /// Takes the system out of service for good.
    pub async fn retire(
        &self,
        ctx: &CommandContext,
        id: &BusinessId,
        if_match: Option<u64>,
    ) -> Result<Executed<BusinessSystem>> {
        self.run(ctx, id, None, if_match, BusinessSystemCommand::Retire).await
    }

    /// 共同利用: lets a registered, not abolished municipality use the system (already permitted: no event).
    pub async fn permit(
        &self,
        ctx: &CommandContext,
        id: &BusinessId,
        if_match: Option<u64>,
        code: MunicipalityCode,
    ) -> Result<Executed<BusinessSystem>, PermitError> {
        let refused = |e| Err(CommandError::Domain(e));
        match municipalities::get(self.read.pool(), &code).await {
            Ok(Some(m)) if !m.abolished => {}
            Ok(Some(_)) => return refused(PermitError::MunicipalityAbolished),
            Ok(None) => return refused(PermitError::NoSuchMunicipality),
            Err(e) => return Err(CommandError::Internal(e.to_string())),
        }
        let command = BusinessSystemCommand::Permit { municipality: code.clone() };
        // The permit concerns that municipality: its history shows it.
        self.run(ctx, id, Some(code), if_match, command).await.map_err(|e| e.map_domain(PermitError::from))
    }

    /// Stops a municipality from using the system.
    pub async fn withdraw(
        &self,
        ctx: &CommandContext,
        id: &BusinessId,
        if_match: Option<u64>,
        code: MunicipalityCode,
    ) -> Result<Executed<BusinessSystem>> {
        let command = BusinessSystemCommand::Withdraw { municipality: code.clone() };
        self.run(ctx, id, Some(code), if_match, command).await
    }

    /// The business system as its stream has it (when the read model lags behind a write).
    pub async fn current(&self, id: &BusinessId) -> Result<Loaded<BusinessSystem>> {
        self.handler.load(&stream(id)).await
    }

    async fn run(
        &self,
        ctx: &CommandContext,
        id: &BusinessId,
        municipality: Option<MunicipalityCode>,
        if_match: Option<u64>,
        command: BusinessSystemCommand,
    ) -> Result<Executed<BusinessSystem>> {
        let permission = Permission::ManageBusinessSystems;
        self.handler.execute(ctx, &permission, &stream(id), municipality, if_match, command).await
    }
}
