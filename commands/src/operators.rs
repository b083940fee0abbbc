//! オペレータ管理 (手引き I 2.1): register operators one at a time or as a batch (all or none), change them (a PATCH
//! merged inside the decision), and map them to their 業務内ID in each business system. Revocation, unlocking and
//! passwords are in [`crate::access`], beside the secrets they touch.
//!
//! Owns the use cases on the `operator` streams and the looked-up facts they need (which business systems the
//! municipality may use now, from the business-systems view; who is registered, from the operator directory),
//! the queries of the operator directory, and the dry run of a batch registration ([`RegistrationCheck`]) that
//! names what the decision would refuse in each item without writing. The migration of operators to another
//! municipality is in [`crate::operator_migration`].
//!
//! Every decision here is bounded by who decides (issue 9, points 8 and 9): what it gives an operator is
//! authorized against the actor's own privileges ([`authorize_grant`]: nobody changes his own roles or business
//! systems, nobody gives what he does not hold), computed from what the decision really changes; and the
//! 業務内IDs it assigns or removes are claimed or released in the same transaction
//! ([`crate::internal_ids`]), so that an ID is held by one operator per municipality and business system.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use cardap_domain::contact::Text100;
use cardap_domain::operator::{
    InternalId, InternalIdAssignment, Operator, OperatorCommand, OperatorError, OperatorId, OperatorProfile,
    OperatorProfilePatch, OperatorState, Password, Role,
};
use cardap_domain::{Aggregate, BusinessId, MunicipalityCode, OperatorKey};
use cardap_projections::operators as directory;
use cardap_projections::{ReadModels, business_systems};
use cardap_store::{AppendOutcome, Companion, EventStore};

use crate::QueryError;
use crate::access::{Access, operator_stream};
use crate::authz::{Grant, Permission, authorize, authorize_grant};
use crate::context::CommandContext;
use crate::engine::{Tx, transact};
use crate::handler::{CommandError, CommandHandler, Executed, Loaded};
use crate::internal_ids::{self, ClaimChanges};
use crate::jobs::{Phase, Progress};
use crate::passwords::Secret;
use crate::views::Views;

/// An operator as the directory shows him, and the directory's filter conditions.
pub use cardap_projections::operators::{OperatorFilter, OperatorRow};

type Result<T> = std::result::Result<T, CommandError<OperatorError>>;

/// Rows per query when the whole directory of a municipality is read: never in one query.
pub(crate) const DIRECTORY_PAGE: i64 = 500;

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
    /// A migration: he keeps `kept_hash`, or has no password at all when he had none (nothing is generated: it
    /// would be shown to nobody; an administrator resets it when he needs one).
    pub keeps_password: bool,
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
            keeps_password: false,
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
    /// The directory and the business-systems view (also for the migration, in its own module).
    pub(crate) read: ReadModels,
    /// Password hashes (also kept by a migration, in its own module).
    pub(crate) access: Access,
    views: Views,
}

/// What registering one item of a batch would be refused for (see [`RegistrationCheck`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Refusals {
    /// An earlier item of the batch with the same オペレータID (its place among the items checked, from 0).
    pub same_as: Option<usize>,
    /// What the decision refuses, one by one (roles, business systems, 業務内IDs, in the order of the form),
    /// and `AlreadyRegistered` when the directory has him and he is not revoked.
    pub refused: Vec<OperatorError>,
}

/// The dry run of a batch registration in one municipality: asks the decision about each item in turn, against
/// the facts of now read once (business systems the municipality may use, operators registered and not revoked,
/// the 業務内IDs they hold), and remembers the IDs seen so far. Writes nothing: lets the edge name every refusal
/// of every item of a large file with the very rules of the registration, keeping only what it needs.
#[derive(Debug)]
pub struct RegistrationCheck {
    code: MunicipalityCode,
    usable: Vec<BusinessId>,
    active: HashSet<String>,
    /// (business id, 業務内ID) → the operator ID holding it, for operators not revoked; then the items checked.
    internal_ids: HashMap<(String, String), String>,
    seen: HashMap<OperatorId, usize>,
    checked: usize,
}

impl RegistrationCheck {
    /// What registering `item` (after the items checked before) would be refused for; empty when nothing.
    pub fn refusals(&mut self, item: &NewOperator) -> Refusals {
        let index = self.checked;
        self.checked += 1;
        let same_as = match self.seen.get(&item.operator_id) {
            Some(first) => Some(*first),
            None => {
                self.seen.insert(item.operator_id.clone(), index);
                None
            }
        };
        // As if he were not registered: whether he is (and not revoked) the directory says, below.
        let register = registration(&self.code, item, self.usable.clone());
        let mut refused = match Operator::decide(&OperatorState::default(), register) {
            Ok(_) => vec![],
            Err(e) => e.into_refusals(),
        };
        // A 業務内ID another operator holds, or an earlier item of the batch takes.
        for (business_id, a) in &item.internal_ids {
            let id = (business_id.as_str().to_owned(), a.internal_id.as_str().to_owned());
            match self.internal_ids.get(&id) {
                Some(holder) if holder != item.operator_id.as_str() => {
                    refused.push(OperatorError::InternalIdTaken(business_id.clone()));
                }
                _ => {
                    self.internal_ids.insert(id, item.operator_id.as_str().to_owned());
                }
            }
        }
        if self.active.contains(item.operator_id.as_str()) {
            refused.push(OperatorError::AlreadyRegistered);
        }
        Refusals { same_as, refused }
    }
}

/// The decision of registering `o` in `code` with his 業務内IDs.
fn registration(code: &MunicipalityCode, o: &NewOperator, usable: Vec<BusinessId>) -> OperatorCommand {
    OperatorCommand::RegisterWithInternalIds {
        key: OperatorKey::for_login(Some(code), &o.operator_id),
        municipality: Some(code.clone()),
        operator_id: o.operator_id.clone(),
        profile: o.profile.clone(),
        roles: o.roles.clone(),
        business_systems: o.business_systems.clone(),
        internal_ids: o.internal_ids.clone(),
        usable,
    }
}

impl Operators {
    pub fn new(store: Arc<dyn EventStore>, read: ReadModels, access: Access, views: Views) -> Self {
        Operators { handler: CommandHandler::new(store.clone()), store, read, access, views }
    }

    // ---- queries of the operator directory ------------------------------------------------------------------

    /// The operator of `code` with this ID (revoked ones too), or `None`.
    pub async fn by_login(
        &self,
        code: &MunicipalityCode,
        operator_id: &OperatorId,
    ) -> std::result::Result<Option<OperatorRow>, QueryError> {
        directory::find_by_login(self.read.pool(), self.read.sealer(), Some(code), operator_id).await
    }

    /// The operator with this key, or `None`.
    pub async fn view(&self, key: OperatorKey) -> std::result::Result<Option<OperatorRow>, QueryError> {
        directory::get(self.read.pool(), self.read.sealer(), key).await
    }

    /// One page of a municipality's operators matching `filter`, in operator-ID order after `after`, at most
    /// `limit`.
    pub async fn page(
        &self,
        code: &MunicipalityCode,
        filter: &OperatorFilter,
        after: Option<&str>,
        limit: i64,
    ) -> std::result::Result<Vec<OperatorRow>, QueryError> {
        directory::search(self.read.pool(), self.read.sealer(), code, filter, after, limit).await
    }

    /// An operator's 業務内IDs as the directory has them: (business id, 業務内ID, that system's role), by
    /// business id.
    pub async fn internal_ids(
        &self,
        key: OperatorKey,
    ) -> std::result::Result<Vec<(String, String, Option<String>)>, QueryError> {
        directory::internal_ids(self.read.pool(), key).await
    }

    /// Every operator of `code` matching `filter`, read page by page.
    pub(crate) async fn all(
        &self,
        code: &MunicipalityCode,
        filter: &OperatorFilter,
    ) -> std::result::Result<Vec<OperatorRow>, QueryError> {
        let mut all = vec![];
        loop {
            let after = all.last().map(|r: &OperatorRow| r.operator_id.clone());
            let rows = self.page(code, filter, after.as_deref(), DIRECTORY_PAGE).await?;
            let full = rows.len() as i64 >= DIRECTORY_PAGE;
            all.extend(rows);
            if !full {
                return Ok(all);
            }
        }
    }

    /// The business systems the municipality may use now (shared use, not retired).
    pub async fn usable(&self, code: &MunicipalityCode) -> Result<Vec<BusinessId>> {
        business_systems::usable_by(self.read.pool(), code).await.map_err(|e| CommandError::Internal(e.to_string()))
    }

    // ---- use cases ------------------------------------------------------------------------------------------

    /// The dry run of registering operators in `code` ([`RegistrationCheck`]), with the facts of now.
    pub async fn registration_check(
        &self,
        code: &MunicipalityCode,
    ) -> std::result::Result<RegistrationCheck, QueryError> {
        let usable = business_systems::usable_by(self.read.pool(), code).await?;
        let active = self.all(code, &OperatorFilter::default()).await?.into_iter().map(|r| r.operator_id).collect();
        let internal_ids = directory::internal_id_holders(self.read.pool(), code)
            .await?
            .into_iter()
            .map(|(business_id, internal_id, operator_id)| ((business_id, internal_id), operator_id))
            .collect();
        Ok(RegistrationCheck { code: code.clone(), usable, active, internal_ids, seen: HashMap::new(), checked: 0 })
    }

    /// Registers operators of one municipality atomically (all or none): each with his password hash and his
    /// 業務内IDs (claimed) in the same transaction. A refusal names the item ([`CommandError::Item`]) and every
    /// refusal of that item (`OperatorError::Refused`); a 業務内ID another operator holds, or an earlier item
    /// takes, is `OperatorError::InternalIdTaken`. Roles and business systems the actor does not hold himself
    /// are refused for the whole batch before any password is hashed ([`crate::authz::AuthzError::NotHeld`],
    /// naming each).
    pub async fn register(
        &self,
        ctx: &CommandContext,
        code: &MunicipalityCode,
        operators: Vec<NewOperator>,
    ) -> Result<Vec<Registered>> {
        self.register_reporting(ctx, code, operators, &Progress::default()).await
    }

    /// [`Operators::register`] for a job: moves `progress` through hashing (one step per password) to the
    /// registration. The passwords are hashed before the decision, so the transaction holds only the appends.
    pub async fn register_reporting(
        &self,
        ctx: &CommandContext,
        code: &MunicipalityCode,
        operators: Vec<NewOperator>,
        progress: &Progress,
    ) -> Result<Vec<Registered>> {
        let usable = self.usable(code).await?;
        let mut permissions = vec![Permission::ManageOperators(code.clone())];
        let businesses: BTreeSet<&BusinessId> = operators.iter().flat_map(|o| o.internal_ids.keys()).collect();
        permissions.extend(businesses.into_iter().map(|b| Permission::ManageInternalIds(code.clone(), b.clone())));
        if operators.iter().any(|o| o.kept_hash.is_some() || o.keeps_password) {
            permissions.push(Permission::MigrateOperators);
        }
        if let Some(actor) = &ctx.actor {
            for permission in &permissions {
                authorize(actor, permission)?;
            }
            let grants: Vec<Grant> = operators
                .iter()
                .map(|o| {
                    let key = OperatorKey::for_login(Some(code), &o.operator_id);
                    Grant::registration(key, &o.roles, &o.business_systems)
                })
                .collect();
            authorize_grant(actor, code, &grants)?;
        }
        // Two items of the batch with one 業務内ID: the later one is refused (one claim per ID and transaction).
        let mut first_with: HashMap<(&BusinessId, &InternalId), usize> = HashMap::new();
        for (index, o) in operators.iter().enumerate() {
            for (business_id, a) in &o.internal_ids {
                if first_with.insert((business_id, &a.internal_id), index).is_some() {
                    let error = OperatorError::InternalIdTaken(business_id.clone());
                    return Err(CommandError::Item { index, error });
                }
            }
        }
        progress.set_phase(Phase::Hashing);
        let (hashes, generated) = self.password_hashes(&operators, &|| progress.hashed_one()).await?;
        progress.set_phase(Phase::Registering);
        let at = self.access.clock().now();
        let (operators, hashes, usable, read) = (&operators, &hashes, &usable, &self.read);
        let done = transact(&self.store, ctx, &permissions, Some(code.clone()), |mut tx: Tx| async move {
            for (index, (o, hash)) in operators.iter().zip(hashes).enumerate() {
                let stream = operator_stream(Some(code), &o.operator_id);
                let loaded = tx.load::<Operator, OperatorError>(&stream).await?;
                let key = OperatorKey::for_login(Some(code), &o.operator_id);
                let events = Operator::decide(&loaded.state, registration(code, o, usable.clone()))
                    .map_err(|error| CommandError::Item { index, error })?;
                let after = events.iter().fold(loaded.state.clone(), Operator::evolve);
                let claims = ClaimChanges::between(&loaded.state, &after);
                internal_ids::stage(&mut tx, read, code, (key, &o.operator_id), &claims).await.map_err(
                    |e| match e {
                        CommandError::Domain(error) => CommandError::Item { index, error },
                        other => other,
                    },
                )?;
                tx.append::<Operator>(&stream, loaded.version, &events);
                if let Some(hash) = hash {
                    tx.companion(Companion::SetPassword { operator: key, hash: hash.clone(), at });
                }
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
            .zip(generated)
            .map(|(o, generated)| Registered {
                key: OperatorKey::for_login(Some(code), &o.operator_id),
                operator_id: o.operator_id.clone(),
                generated: generated.filter(|_| !replayed),
            })
            .collect())
    }

    /// The hash to store for each operator (his kept one, or that of his chosen or a generated password), and the
    /// generated passwords. Hashed before the decision, so that each registration commits with its hash or not at
    /// all; one who keeps his hash (a migration) costs no hashing.
    async fn password_hashes(
        &self,
        operators: &[NewOperator],
        hashed: &(dyn Fn() + Send + Sync),
    ) -> Result<(Vec<Option<String>>, Vec<Option<Secret>>)> {
        let internal = |e: &dyn std::fmt::Display| CommandError::Internal(e.to_string());
        let chosen = operators
            .iter()
            .filter(|o| o.kept_hash.is_none() && !o.keeps_password)
            .map(|o| o.password.as_ref().map(|pw| Secret::new(pw.expose())))
            .collect();
        let mut fresh = self.access.passwords_reporting(chosen, hashed).await.map_err(|e| internal(&e))?.into_iter();
        let mut hashes = Vec::with_capacity(operators.len());
        let mut generated = Vec::with_capacity(operators.len());
        for o in operators {
            match &o.kept_hash {
                Some(kept) => {
                    hashes.push(Some(kept.clone()));
                    generated.push(None);
                }
                None if o.keeps_password => {
                    hashes.push(None);
                    generated.push(None);
                }
                None => {
                    let (secret, was_generated, hash) = fresh.next().ok_or_else(|| internal(&"a hash is missing"))?;
                    hashes.push(Some(hash));
                    generated.push(was_generated.then_some(secret));
                }
            }
        }
        Ok((hashes, generated))
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
        self.decide_one(ctx, &Permission::ManageOperators(code.clone()), code, operator_id, if_match, command).await
    }

    /// 操作者権限登録: maps the operator to his 業務内ID in one business system (that system's administrator). An
    /// ID another operator (not revoked) holds in that business system of the municipality is refused
    /// (`OperatorError::InternalIdTaken`); his previous ID there is released.
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
        self.decide_one(ctx, &permission, code, operator_id, if_match, command).await
    }

    /// Removes the operator's 業務内ID in one business system, releasing it.
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
        self.decide_one(ctx, &permission, code, operator_id, if_match, command).await
    }

    /// One decision about one operator: load, check `if_match`, decide; then authorize what it gives him against
    /// the actor's own privileges, and stage the claims and releases of his 業務内IDs; append all at once.
    async fn decide_one(
        &self,
        ctx: &CommandContext,
        permission: &Permission,
        code: &MunicipalityCode,
        operator_id: &OperatorId,
        if_match: Option<u64>,
        command: OperatorCommand,
    ) -> Result<Executed<Operator>> {
        let stream = operator_stream(Some(code), operator_id);
        let (stream_ref, command, read) = (&stream, &command, &self.read);
        let clock = self.access.clock();
        let permissions = std::slice::from_ref(permission);
        let done = transact(&self.store, ctx, permissions, Some(code.clone()), |mut tx: Tx| async move {
            let loaded = tx.load::<Operator, OperatorError>(stream_ref).await?;
            if let Some(expected) = if_match
                && expected != loaded.version
            {
                return Err(CommandError::PreconditionFailed { expected, current: loaded.version });
            }
            let events = Operator::decide(&loaded.state, command.clone()).map_err(CommandError::Domain)?;
            let after = events.iter().fold(loaded.state.clone(), Operator::evolve);
            if let Some(key) = loaded.state.key() {
                if let Some(actor) = &ctx.actor {
                    let before = (loaded.state.roles(), loaded.state.business_systems());
                    let grant = Grant::change(key, before, (after.roles(), after.business_systems()));
                    authorize_grant(actor, code, [&grant])?;
                }
                let claims = ClaimChanges::between(&loaded.state, &after);
                internal_ids::stage(&mut tx, read, code, (key, operator_id), &claims).await?;
                // A permitted business system taken away: his certificates naming it are revoked with the change.
                let removed: Vec<BusinessId> = loaded
                    .state
                    .business_systems()
                    .iter()
                    .filter(|b| !after.business_systems().contains(b))
                    .cloned()
                    .collect();
                if !removed.is_empty() {
                    let at = clock.timestamp();
                    crate::pki::stage_operator_revocations(&mut tx, read, Some(code), operator_id, Some(&removed), at)
                        .await?;
                }
            }
            tx.append::<Operator>(stream_ref, loaded.version, &events);
            let version = loaded.version + events.len() as u64;
            Ok(((after, version, events), tx))
        })
        .await?;
        let executed = match done.value {
            Some((state, version, events)) => {
                let outcome = done.checkpoint.filter(|_| !events.is_empty()).map(|checkpoint| AppendOutcome {
                    stream_version: version,
                    checkpoint,
                    already_applied: false,
                });
                Executed { state, version, events, outcome }
            }
            // A retry of a change already made: the operator as he is now, nothing written.
            None => {
                let loaded = self.handler.load(&stream).await?;
                let outcome = done.checkpoint.map(|checkpoint| AppendOutcome {
                    stream_version: loaded.version,
                    checkpoint,
                    already_applied: true,
                });
                Executed { state: loaded.state, version: loaded.version, events: vec![], outcome }
            }
        };
        if let Some(outcome) = &executed.outcome {
            self.views.wait_for_view(outcome.checkpoint, cardap_projections::operators::NAME).await;
            // Certificates revoked with a withdrawn permission: the next CRL lists them.
            self.views.wait_for_view(outcome.checkpoint, cardap_projections::certificates::NAME).await;
        }
        Ok(executed)
    }
}
