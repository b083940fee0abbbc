//! オペレータ管理 (手引き I 2.1): register operators one at a time or as a batch (all or none), change them (a PATCH
//! merged inside the decision), and map them to their 業務内ID in each business system. Revocation, unlocking and
//! passwords are in [`crate::access`], beside the secrets they touch.
//!
//! Owns the use cases on the `operator` streams and the looked-up fact they need: which business systems the
//! municipality may use now (shared use, from the business-systems view). Lists and views are read by the edge.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use cardap_domain::contact::Text100;
use cardap_domain::operator::{
    InternalId, InternalIdAssignment, Operator, OperatorCommand, OperatorError, OperatorId, OperatorProfile,
    OperatorProfilePatch, Password, Role,
};
use cardap_domain::{Aggregate, BusinessId, MunicipalityCode, OperatorKey};
use cardap_projections::{ReadModels, business_systems};
use cardap_store::{Companion, EventStore};

use crate::access::{Access, operator_stream};
use crate::authz::Permission;
use crate::context::CommandContext;
use crate::engine::{Tx, transact};
use crate::handler::{CommandError, CommandHandler, Executed, Loaded};
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
    /// 業務内IDs assigned with the registration, in the same transaction (an import or a migration).
    pub internal_ids: BTreeMap<BusinessId, InternalIdAssignment>,
    /// A password hash he keeps (a migration): stored instead of a new password, which is then never shown.
    pub kept_hash: Option<String>,
}

impl NewOperator {
    /// An operator with no 業務内ID and no kept password hash.
    pub fn new(
        operator_id: OperatorId,
        password: Option<Password>,
        profile: OperatorProfile,
        roles: Vec<Role>,
        business_systems: Vec<BusinessId>,
    ) -> Self {
        NewOperator {
            operator_id,
            password,
            profile,
            roles,
            business_systems,
            internal_ids: BTreeMap::new(),
            kept_hash: None,
        }
    }
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
    store: Arc<dyn EventStore>,
    handler: CommandHandler<Operator>,
    read: ReadModels,
    access: Access,
    views: Views,
}

impl Operators {
    pub fn new(store: Arc<dyn EventStore>, read: ReadModels, access: Access, views: Views) -> Self {
        Operators { handler: CommandHandler::new(store.clone()), store, read, access, views }
    }

    /// The business systems the municipality may use now (shared use, not retired).
    pub async fn usable(&self, code: &MunicipalityCode) -> Result<Vec<BusinessId>> {
        business_systems::usable_by(self.read.pool(), code).await.map_err(|e| CommandError::Internal(e.to_string()))
    }

    /// Registers operators of one municipality atomically (all or none): each with his password hash and his
    /// 業務内IDs in the same transaction. A refusal names the item ([`CommandError::Item`]).
    pub async fn register(
        &self,
        ctx: &CommandContext,
        code: &MunicipalityCode,
        operators: Vec<NewOperator>,
    ) -> Result<Vec<Registered>> {
        let usable = self.usable(code).await?;
        let mut permissions = vec![Permission::ManageOperators(code.clone())];
        let businesses: BTreeSet<&BusinessId> = operators.iter().flat_map(|o| o.internal_ids.keys()).collect();
        permissions.extend(businesses.into_iter().map(|b| Permission::ManageInternalIds(code.clone(), b.clone())));
        if operators.iter().any(|o| o.kept_hash.is_some()) {
            permissions.push(Permission::MigrateOperators);
        }
        // Hashed before the decision, so that each registration commits with its hash or not at all.
        let chosen = operators.iter().map(|o| o.password.as_ref().map(|pw| Secret::new(pw.expose()))).collect();
        let secrets = self.access.passwords_for(chosen).await.map_err(|e| CommandError::Internal(e.to_string()))?;
        let at = self.access.clock().now();
        let (operators, secrets, usable) = (&operators, &secrets, &usable);
        let done = transact(&self.store, ctx, &permissions, Some(code.clone()), |mut tx: Tx| async move {
            for (index, (o, (_, _, new_hash))) in operators.iter().zip(secrets).enumerate() {
                let stream = operator_stream(Some(code), &o.operator_id);
                let loaded = tx.load::<Operator, OperatorError>(&stream).await?;
                let key = OperatorKey::for_login(Some(code), &o.operator_id);
                let refused = |error| CommandError::Item { index, error };
                let register = OperatorCommand::Register {
                    key,
                    municipality: Some(code.clone()),
                    operator_id: o.operator_id.clone(),
                    profile: o.profile.clone(),
                    roles: o.roles.clone(),
                    business_systems: o.business_systems.clone(),
                    usable: usable.clone(),
                };
                let mut events = Operator::decide(&loaded.state, register).map_err(refused)?;
                let mut state = events.iter().fold(loaded.state, Operator::evolve);
                for (business_id, a) in &o.internal_ids {
                    let assign = OperatorCommand::AssignInternalId {
                        business_id: business_id.clone(),
                        internal_id: a.internal_id.clone(),
                        role: a.role.clone(),
                    };
                    let assigned = Operator::decide(&state, assign).map_err(refused)?;
                    state = assigned.iter().fold(state, Operator::evolve);
                    events.extend(assigned);
                }
                tx.append::<Operator>(&stream, loaded.version, &events);
                let hash = o.kept_hash.clone().unwrap_or_else(|| new_hash.clone());
                tx.companion(Companion::SetPassword { operator: key, hash, at });
            }
            Ok(((), tx))
        })
        .await?;
        // A retry of a registration that already went through: the passwords were set (and shown) the first time.
        let replayed = done.value.is_none();
        if let Some(checkpoint) = done.checkpoint {
            self.views.wait_for_view(checkpoint, cardap_projections::operators::NAME).await;
        }
        Ok(operators
            .iter()
            .zip(secrets)
            .map(|(o, (secret, generated, _))| Registered {
                key: OperatorKey::for_login(Some(code), &o.operator_id),
                operator_id: o.operator_id.clone(),
                generated: (*generated && !replayed && o.kept_hash.is_none()).then(|| secret.clone()),
            })
            .collect())
    }

    /// An operator as his stream has it (to move him to another municipality).
    pub async fn current(&self, code: &MunicipalityCode, operator_id: &OperatorId) -> Result<Loaded<Operator>> {
        self.handler.load(&operator_stream(Some(code), operator_id)).await
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
            self.views.wait_for_view(outcome.checkpoint, cardap_projections::operators::NAME).await;
        }
        Ok(executed)
    }
}
