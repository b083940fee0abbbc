//! オペレータ管理 (手引き I 2.1): register operators one at a time or as a batch (all or none), change them (a PATCH
//! merged inside the decision), and map them to their 業務内ID in each business system. Revocation, unlocking and
//! passwords are in [`crate::access`], beside the secrets they touch.
//!
//! Owns the use cases on the `operator` streams and the looked-up fact they need: which business systems the
//! municipality may use now (shared use, from the business-systems view). Lists and views are read by the edge.

use std::sync::Arc;

use cardap_domain::contact::Text100;
use cardap_domain::operator::{
    InternalId, Operator, OperatorCommand, OperatorError, OperatorEvent, OperatorId, OperatorProfile,
    OperatorProfilePatch, Password, Role,
};
use cardap_domain::{BusinessId, MunicipalityCode, OperatorKey};
use cardap_projections::{ReadModels, business_systems};
use cardap_store::{Companion, EventStore};

use crate::access::{Access, operator_stream};
use crate::authz::Permission;
use crate::context::CommandContext;
use crate::handler::{CommandError, CommandHandler, Executed};
use crate::passwords::Secret;
use crate::views::Views;

type Result<T> = std::result::Result<T, CommandError<OperatorError>>;

/// One operator to register, parsed.
#[derive(Debug)]
pub struct NewOperator {
    pub operator_id: OperatorId,
    /// The password the administrator chose; `None` generates one, shown once.
    pub password: Option<Password>,
    pub profile: OperatorProfile,
    pub roles: Vec<Role>,
    pub business_systems: Vec<BusinessId>,
}

/// A registered operator, with his password set (the given one, or a generated one returned once).
#[derive(Debug)]
pub struct Registered {
    pub key: OperatorKey,
    pub operator_id: OperatorId,
    /// The generated password; `None` when one was chosen or kept, or on a retry (it was shown the first time).
    pub generated: Option<Secret>,
}

/// A PATCH of an operator, parsed.
#[derive(Debug, Clone, Default)]
pub struct OperatorChange {
    pub profile: OperatorProfilePatch,
    pub roles: Option<Vec<Role>>,
    pub business_systems: Option<Vec<BusinessId>>,
}

/// The operator use cases over one event store.
#[derive(Debug, Clone)]
pub struct Operators {
    handler: CommandHandler<Operator>,
    read: ReadModels,
    access: Access,
    views: Views,
}

impl Operators {
    pub fn new(store: Arc<dyn EventStore>, read: ReadModels, access: Access, views: Views) -> Self {
        Operators { handler: CommandHandler::new(store), read, access, views }
    }

    /// The business systems the municipality may use now (shared use, not retired).
    pub async fn usable(&self, code: &MunicipalityCode) -> Result<Vec<BusinessId>> {
        business_systems::usable_by(self.read.pool(), code).await.map_err(|e| CommandError::Internal(e.to_string()))
    }

    /// Registers operators of one municipality atomically (all or none), each with his password hash in the same
    /// transaction. `kept_hashes[i]` (an operator moving with his password) replaces the new hash of item `i`.
    /// A refusal names the item ([`CommandError::Item`]).
    pub async fn register(
        &self,
        ctx: &CommandContext,
        code: &MunicipalityCode,
        operators: Vec<NewOperator>,
        kept_hashes: Vec<Option<String>>,
    ) -> Result<Vec<Registered>> {
        let usable = self.usable(code).await?;
        let mut items = Vec::with_capacity(operators.len());
        let mut chosen = Vec::with_capacity(operators.len());
        let mut who = Vec::with_capacity(operators.len());
        for p in operators {
            let key = OperatorKey::for_login(Some(code), &p.operator_id);
            let command = OperatorCommand::Register {
                key,
                municipality: Some(code.clone()),
                operator_id: p.operator_id.clone(),
                profile: p.profile,
                roles: p.roles,
                business_systems: p.business_systems,
                usable: usable.clone(),
            };
            items.push((operator_stream(Some(code), &p.operator_id), command));
            chosen.push(p.password.map(|pw| Secret::new(pw.expose())));
            who.push((key, p.operator_id));
        }
        // Hashed before the decision, so that each registration commits with its hash or not at all.
        let secrets = self.access.passwords_for(chosen).await.map_err(|e| CommandError::Internal(e.to_string()))?;
        let at = self.access.clock().now();
        let companions = |i: usize, events: &[OperatorEvent]| match (who.get(i), secrets.get(i)) {
            (Some((key, _)), Some((_, _, hash))) if !events.is_empty() => {
                let hash = kept_hashes.get(i).cloned().flatten().unwrap_or_else(|| hash.clone());
                vec![Companion::SetPassword { operator: *key, hash, at }]
            }
            _ => vec![],
        };
        let permission = Permission::ManageOperators(code.clone());
        let executed = self.handler.execute_many_with(ctx, &permission, Some(code.clone()), items, companions).await?;
        // A retry of a registration that already went through: the passwords were set (and shown) the first time.
        let replayed = executed.iter().all(|e| e.outcome.is_none());
        if let Some(checkpoint) = executed.iter().filter_map(|e| e.outcome).map(|o| o.checkpoint).max() {
            self.views.wait_for(checkpoint).await;
        }
        Ok(who
            .into_iter()
            .zip(secrets)
            .enumerate()
            .map(|(i, ((key, operator_id), (secret, generated, _)))| {
                let kept = kept_hashes.get(i).is_some_and(Option::is_some);
                Registered { key, operator_id, generated: (generated && !replayed && !kept).then_some(secret) }
            })
            .collect())
    }

    /// Changes an operator: the profile fields the change names are merged with his profile as it is when
    /// decided; roles and business systems are replaced when given. All parts or none.
    pub async fn change(
        &self,
        ctx: &CommandContext,
        code: &MunicipalityCode,
        operator_id: &OperatorId,
        if_match: Option<u64>,
        change: OperatorChange,
    ) -> Result<Executed<Operator>> {
        let usable = self.usable(code).await?;
        let command = OperatorCommand::Patch {
            profile: change.profile,
            roles: change.roles,
            business_systems: change.business_systems,
            usable,
        };
        self.run(ctx, &Permission::ManageOperators(code.clone()), code, operator_id, if_match, command).await
    }

    /// 操作者権限登録: maps the operator to his 業務内ID in one business system (that system's administrator).
    #[allow(clippy::too_many_arguments)]
    pub async fn assign_internal_id(
        &self,
        ctx: &CommandContext,
        code: &MunicipalityCode,
        operator_id: &OperatorId,
        if_match: Option<u64>,
        business_id: BusinessId,
        internal_id: InternalId,
        role: Option<Text100>,
    ) -> Result<Executed<Operator>> {
        let permission = Permission::ManageInternalIds(code.clone(), business_id.clone());
        let command = OperatorCommand::AssignInternalId { business_id, internal_id, role };
        self.run(ctx, &permission, code, operator_id, if_match, command).await
    }

    /// Removes the operator's 業務内ID in one business system.
    pub async fn remove_internal_id(
        &self,
        ctx: &CommandContext,
        code: &MunicipalityCode,
        operator_id: &OperatorId,
        if_match: Option<u64>,
        business_id: BusinessId,
    ) -> Result<Executed<Operator>> {
        let permission = Permission::ManageInternalIds(code.clone(), business_id.clone());
        let command = OperatorCommand::RemoveInternalId { business_id };
        self.run(ctx, &permission, code, operator_id, if_match, command).await
    }

    async fn run(
        &self,
        ctx: &CommandContext,
        permission: &Permission,
        code: &MunicipalityCode,
        operator_id: &OperatorId,
        if_match: Option<u64>,
        command: OperatorCommand,
    ) -> Result<Executed<Operator>> {
        let stream = operator_stream(Some(code), operator_id);
        let executed = self.handler.execute(ctx, permission, &stream, Some(code.clone()), if_match, command).await?;
        if let Some(outcome) = executed.outcome {
            self.views.wait_for(outcome.checkpoint).await;
        }
        Ok(executed)
    }
}
