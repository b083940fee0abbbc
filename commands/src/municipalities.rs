//! 運用環境設定 (市町村設定, 表示順): the system administrator registers, renames, reorders and abolishes the
//! municipalities and voluntary associations that share this installation.
//!
//! Owns the use cases on the `municipality` streams; the list and the view are read from the municipalities
//! read model by the edge.

use std::sync::Arc;

use cardap_domain::MunicipalityCode;
use cardap_domain::municipality::{
    self, DisplayOrder, Municipality, MunicipalityCommand, MunicipalityError, MunicipalityKind, MunicipalityName,
};
use cardap_projections::ReadModels;
use cardap_projections::municipalities::{self, MunicipalityRow};

use crate::QueryError;
use cardap_store::{EventStore, StreamId};

use crate::authz::Permission;
use crate::context::CommandContext;
use crate::handler::{CommandError, CommandHandler, Executed, Loaded};

type Result<T> = std::result::Result<T, CommandError<MunicipalityError>>;

/// The municipality use cases over one event store.
#[derive(Debug, Clone)]
pub struct Municipalities {
    handler: CommandHandler<Municipality>,
    read: ReadModels,
}

/// The stream of one municipality.
pub fn stream(code: &MunicipalityCode) -> StreamId {
    crate::ids::stream_of::<Municipality>(&municipality::stream_key(code))
}

impl Municipalities {
    pub fn new(store: Arc<dyn EventStore>, read: ReadModels) -> Self {
        Municipalities { handler: CommandHandler::new(store), read }
    }

    /// The municipality as the read model shows it, or `None` when it was never registered.
    pub async fn view(&self, code: &MunicipalityCode) -> std::result::Result<Option<MunicipalityRow>, QueryError> {
        municipalities::get(self.read.pool(), code).await
    }

    /// Registers a municipality (or a voluntary association) under its code.
    pub async fn register(
        &self,
        ctx: &CommandContext,
        code: MunicipalityCode,
        name: MunicipalityName,
        kind: MunicipalityKind,
        display_order: DisplayOrder,
    ) -> Result<Executed<Municipality>> {
        let command = MunicipalityCommand::Register { code: code.clone(), name, kind, display_order };
        self.run(ctx, &code, None, command).await
    }

    /// Renames and/or reorders; `None` leaves a field as it is.
    pub async fn change(
        &self,
        ctx: &CommandContext,
        code: &MunicipalityCode,
        if_match: Option<u64>,
        name: Option<MunicipalityName>,
        display_order: Option<DisplayOrder>,
    ) -> Result<Executed<Municipality>> {
        self.run(ctx, code, if_match, MunicipalityCommand::Change { name, display_order }).await
    }

    /// Abolishes a municipality for good.
    pub async fn abolish(
        &self,
        ctx: &CommandContext,
        code: &MunicipalityCode,
        if_match: Option<u64>,
    ) -> Result<Executed<Municipality>> {
        self.run(ctx, code, if_match, MunicipalityCommand::Abolish).await
    }

    /// The municipality as its stream has it (when the read model lags behind a write).
    pub async fn current(&self, code: &MunicipalityCode) -> Result<Loaded<Municipality>> {
        self.handler.load(&stream(code)).await
    }

    async fn run(
        &self,
        ctx: &CommandContext,
        code: &MunicipalityCode,
        if_match: Option<u64>,
        command: MunicipalityCommand,
    ) -> Result<Executed<Municipality>> {
        let permission = Permission::ManageMunicipalities;
        self.handler.execute(ctx, &permission, &stream(code), Some(code.clone()), if_match, command).await
    }
}
