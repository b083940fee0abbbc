//! The municipality's issuance service (証明書等自動交付の提供内容, issue 11 point 3): the certificates its residents may
//! obtain at the kiosks, the service hours and the closed periods — read and replaced by the municipality's
//! operations managers (運用管理部門) and the system administrator.
//!
//! Owns who may see and change it (`Permission::ConfigureResidentServices` of that municipality: another
//! municipality's is not visible) and the time of a change. The rules and the defaults are the domain's
//! (`cardap_domain::issuance_service`); telling the issuance server is the feed's (`feeds`, from the events).

use std::sync::Arc;

use cardap_domain::MunicipalityCode;
use cardap_domain::issuance_service::{
    self, IssuanceService, IssuanceServiceCommand, IssuanceServiceError, IssuanceServiceValue,
};
use cardap_store::{EventStore, StreamId};

use crate::authz::{Actor, Permission, authorize};
use crate::clock::Clock;
use crate::context::CommandContext;
use crate::handler::{CommandError, CommandHandler, Executed, Loaded};
use crate::ids::stream_of;

/// The stream of a municipality's issuance service.
pub fn stream(code: &MunicipalityCode) -> StreamId {
    stream_of::<IssuanceService>(&issuance_service::stream_key(code))
}

type Result<T> = std::result::Result<T, CommandError<IssuanceServiceError>>;

/// The municipalities' issuance services over one event store.
#[derive(Debug, Clone)]
pub struct IssuanceServices {
    services: CommandHandler<IssuanceService>,
    clock: Arc<dyn Clock>,
}

impl IssuanceServices {
    pub fn new(store: Arc<dyn EventStore>, clock: Arc<dyn Clock>) -> Self {
        IssuanceServices { services: CommandHandler::new(store), clock }
    }

    /// The service of `code` now (the defaults until it is set), with its version (0: never set).
    pub async fn setting(&self, actor: &Actor, code: &MunicipalityCode) -> Result<Loaded<IssuanceService>> {
        authorize(actor, &Permission::ConfigureResidentServices(code.clone()))?;
        self.services.load(&stream(code)).await
    }

    /// Replaces the service of `code`; the setting in force again records nothing.
    pub async fn set(
        &self,
        ctx: &CommandContext,
        code: &MunicipalityCode,
        if_match: Option<u64>,
        value: IssuanceServiceValue,
    ) -> Result<Executed<IssuanceService>> {
        let command = IssuanceServiceCommand::Set { value, at: self.clock.timestamp() };
        let permission = Permission::ConfigureResidentServices(code.clone());
        self.services.execute(ctx, &permission, &stream(code), Some(code.clone()), if_match, command).await
    }
}
