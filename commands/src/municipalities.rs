//! 運用環境設定 (市町村設定, 表示順): the system administrator registers, renames, reorders and abolishes the
//! municipalities and voluntary associations that share this installation.
//!
//! Owns the use cases on the `municipality` streams and the queries of the municipalities read model: the list
//! a caller may see, one municipality, and the answer to a write (the view once it shows the write).

use std::sync::Arc;

use cardap_domain::MunicipalityCode;
use cardap_domain::municipality::{
    self, DisplayOrder, Municipality, MunicipalityCommand, MunicipalityError, MunicipalityKind, MunicipalityName,
};
use cardap_projections::ReadModels;
pub use cardap_projections::municipalities::MunicipalityRow;
use cardap_projections::municipalities::{self, Visible};
use cardap_store::{EventStore, StreamId};

use crate::QueryError;
use crate::authz::{Actor, Permission};
use crate::context::CommandContext;
use crate::handler::{CommandError, CommandHandler, Executed, Loaded, Shown};
use crate::views::Views;

type Result<T> = std::result::Result<T, CommandError<MunicipalityError>>;

/// The municipality use cases over one event store.
#[derive(Debug, Clone)]
pub struct Municipalities {
    handler: CommandHandler<Municipality>,
    read: ReadModels,
    views: Views,
}

/// The stream of one municipality.
pub fn stream(code: &MunicipalityCode) -> StreamId {
    crate::ids::stream_of::<Municipality>(&municipality::stream_key(code))
}

impl Municipalities {
    pub fn new(store: Arc<dyn EventStore>, read: ReadModels, views: Views) -> Self {
        Municipalities { handler: CommandHandler::new(store), read, views }
    }

    /// A page of the municipalities `actor` may see (all for the system administrator, else his own), in display
    /// order after `after` (`(display_order, code)` of the previous page's last), at most `fetch` of them.
    pub async fn list(
        &self,
        actor: &Actor,
        after: Option<(i64, String)>,
        fetch: i64,
        include_abolished: bool,
    ) -> std::result::Result<Vec<MunicipalityRow>, QueryError> {
        let visible = if actor.is_system_admin() {
            Visible::All
        } else {
            match &actor.municipality {
                Some(code) => Visible::Only(code.clone()),
                None => return Ok(vec![]),
            }
        };
        municipalities::list(self.read.pool(), &visible, after, fetch, include_abolished).await
    }

    /// The municipalities an operator may log in to, in display order (the login screen's 市町村 selection; no
    /// session needed): code and name of each that is not abolished.
    pub async fn login_choices(&self) -> std::result::Result<Vec<(String, String)>, QueryError> {
        let rows = municipalities::list(self.read.pool(), &Visible::All, None, 1_000, false).await?;
        Ok(rows.into_iter().map(|m| (m.code, m.name)).collect())
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

    /// The answer to a write on `code`: waits until the view shows it, then reads the view, or the stream if the
    /// view still lags.
    pub async fn shown(
        &self,
        code: &MunicipalityCode,
        executed: &Executed<Municipality>,
    ) -> Result<Shown<MunicipalityRow, Municipality>> {
        if let Some(outcome) = &executed.outcome {
            self.views.wait_for_view(outcome.checkpoint, municipalities::NAME).await;
        }
        match municipalities::get(self.read.pool(), code).await {
            Ok(Some(row)) if u64::try_from(row.version).is_ok_and(|v| v >= executed.version) => Ok(Shown::View(row)),
            Ok(_) => Ok(Shown::Stream(self.current(code).await?)),
            Err(e) => Err(CommandError::Internal(e.to_string())),
        }
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
