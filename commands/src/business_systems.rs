//! 業務システム設定 and 共同利用業務設定: the system administrator registers, changes and retires the independent
//! business systems, and permits municipalities to use them (shared use) or withdraws that.
//!
//! Owns the use cases on the `business_system` streams, the looked-up fact a permit needs (the municipality
//! exists and is not abolished, from the municipalities view), and the queries of the business-systems read
//! model: the list, one system, the municipalities a caller may see permitted, those a municipality may use,
//! and the answer to a write.

use std::sync::Arc;

use cardap_domain::business_system::{
    self, BusinessSystem, BusinessSystemCommand, BusinessSystemError, BusinessSystemProfile, ProfilePatch,
};
use cardap_domain::{BusinessId, MunicipalityCode};
pub use cardap_projections::business_systems::BusinessSystemRow;
use cardap_projections::{ReadModels, business_systems as view, municipalities};
use cardap_store::{AppendOutcome, EventStore, StreamId};

use crate::QueryError;
use crate::authz::{Actor, Permission};
use crate::context::CommandContext;
use crate::handler::{CommandError, CommandHandler, Executed, Loaded, Shown};
use crate::views::Views;

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
    views: Views,
}

/// A municipality permitted to use a business system, with its name when it is (still) registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermittedMunicipality {
    pub code: String,
    pub name: Option<String>,
}

/// The stream of one business system.
pub fn stream(id: &BusinessId) -> StreamId {
    crate::ids::stream_of::<BusinessSystem>(&business_system::stream_key(id))
}

impl BusinessSystems {
    pub fn new(store: Arc<dyn EventStore>, read: ReadModels, views: Views) -> Self {
        BusinessSystems { handler: CommandHandler::new(store), read, views }
    }

    /// Every business system in business-ID order (at most 100 exist), retired ones only when asked.
    pub async fn list(&self, include_retired: bool) -> std::result::Result<Vec<BusinessSystemRow>, QueryError> {
        view::list(self.read.pool(), include_retired).await
    }

    /// One business system, or `None` when it was never registered.
    pub async fn view(&self, id: &BusinessId) -> std::result::Result<Option<BusinessSystemRow>, QueryError> {
        view::get(self.read.pool(), id).await
    }

    /// The system and the municipalities permitted to use it that `actor` may see (all for the system
    /// administrator, else his own), in code order; a retired system permits nobody (its shared-use rows are
    /// history, not permission). `None` when the system was never registered.
    pub async fn permitted(
        &self,
        actor: &Actor,
        id: &BusinessId,
    ) -> std::result::Result<Option<(BusinessSystemRow, Vec<String>)>, QueryError> {
        let Some(row) = view::get(self.read.pool(), id).await? else { return Ok(None) };
        let codes = if row.retired { vec![] } else { view::permitted_municipalities(self.read.pool(), id).await? };
        let visible =
            |code: &String| actor.is_system_admin() || actor.municipality.as_ref().is_some_and(|m| m.as_str() == code);
        let codes = codes.into_iter().filter(visible).collect();
        Ok(Some((row, codes)))
    }

    /// A permitted municipality's entry: its code, and its name when it is registered.
    pub async fn permitted_entry(&self, code: String) -> std::result::Result<PermittedMunicipality, QueryError> {
        let name = match MunicipalityCode::parse(&code) {
            Ok(parsed) => municipalities::get(self.read.pool(), &parsed).await?.map(|m| m.name),
            Err(_) => None,
        };
        Ok(PermittedMunicipality { code, name })
    }

    /// The business systems `actor` may use now (the operator top page): his permission ∩ his municipality's
    /// shared-use permission ∩ not retired; every system in service for the system administrator.
    pub async fn usable_now(&self, actor: &Actor) -> std::result::Result<Vec<BusinessSystemRow>, QueryError> {
        if actor.password_change_required {
            // Nothing to use until his generated password is changed.
            return Ok(vec![]);
        }
        let pool = self.read.pool();
        let usable = match &actor.municipality {
            Some(code) => view::usable_by(pool, code).await?,
            None => view::active(pool).await?,
        };
        let mut systems = vec![];
        for id in usable {
            if !actor.is_system_admin() && !actor.business_systems.contains(&id) {
                continue;
            }
            if let Some(row) = view::get(pool, &id).await? {
                systems.push(row);
            }
        }
        Ok(systems)
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

    /// Read-your-writes: waits until the business-systems view shows a write (when there was one).
    pub async fn settle(&self, outcome: Option<&AppendOutcome>) {
        if let Some(outcome) = outcome {
            self.views.wait_for_view(outcome.checkpoint, view::NAME).await;
        }
    }

    /// The business system at stream `version` or later: from the view, or from the stream while the view lags.
    pub async fn shown(&self, id: &BusinessId, version: u64) -> Result<Shown<BusinessSystemRow, BusinessSystem>> {
        match view::get(self.read.pool(), id).await {
            Ok(Some(row)) if u64::try_from(row.version).is_ok_and(|v| v >= version) => Ok(Shown::View(row)),
            Ok(_) => Ok(Shown::Stream(self.current(id).await?)),
            Err(e) => Err(CommandError::Internal(e.to_string())),
        }
    }

    /// Runs a command on the business system's stream (the login client's registration, `crate::oidc`).
    pub(crate) async fn execute(
        &self,
        ctx: &CommandContext,
        id: &BusinessId,
        if_match: Option<u64>,
        command: BusinessSystemCommand,
    ) -> Result<Executed<BusinessSystem>> {
        self.run(ctx, id, None, if_match, command).await
    }

    /// Read-your-writes for a write made elsewhere (a transaction of `crate::oidc`).
    pub(crate) async fn settle_at(&self, checkpoint: Option<cardap_store::Checkpoint>) {
        if let Some(checkpoint) = checkpoint {
            self.views.wait_for_view(checkpoint, view::NAME).await;
        }
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
