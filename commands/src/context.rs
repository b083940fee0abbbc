//! What every command carries besides its own fields: who, from which terminal, and how it relates to others.

use cardap_store::{CausationId, CommandId, CorrelationId, Metadata};

use crate::authz::Actor;

/// The circumstances of one command.
#[derive(Debug, Clone)]
pub struct CommandContext {
    /// The operator acting; `None` for actions of the system itself (bootstrap, migrations).
    pub actor: Option<Actor>,
    /// A retry of the same command (same id, e.g. from an `Idempotency-Key`) is applied once.
    pub command_id: CommandId,
    pub correlation_id: CorrelationId,
    pub causation_id: Option<CausationId>,
    pub terminal: Option<String>,
    pub request_id: Option<String>,
}

impl CommandContext {
    /// A context for an action of the system itself.
    pub fn system(command_id: CommandId) -> Self {
        CommandContext {
            actor: None,
            command_id,
            correlation_id: CorrelationId::generate(),
            causation_id: None,
            terminal: None,
            request_id: None,
        }
    }

    pub(crate) fn metadata(&self, municipality: Option<cardap_domain::MunicipalityCode>) -> Metadata {
        Metadata {
            command_id: Some(self.command_id),
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            municipality,
            operator: self.actor.as_ref().map(|a| a.operator),
            terminal: self.terminal.clone(),
            request_id: self.request_id.clone(),
        }
    }
}
