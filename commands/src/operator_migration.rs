//! 操作者情報の移行 (手引き I 2.2(6)): the system administrator registers operators of one municipality in
//! another, each with the same オペレータID, management information, roles and password, keeping only the business
//! systems the target may use (共同利用) and his 業務内IDs in those.
//!
//! Owns the planning of a migration (the municipalities, which operators, what each keeps and drops) and its
//! refusals ([`MigrationError`]); the registration itself is [`Operators::register`], one transaction for all.
//! The operators in the source stay as they are.

use std::collections::HashSet;

use cardap_domain::operator::{OperatorError, OperatorId};
use cardap_domain::{BusinessId, MunicipalityCode};
use cardap_projections::municipalities;

use crate::QueryError;
use crate::authz::{Permission, authorize};
use crate::context::CommandContext;
use crate::handler::CommandError;
use crate::operators::{NewOperator, OperatorFilter, OperatorRow, Operators};

type Result<T> = std::result::Result<T, CommandError<MigrationError>>;

/// Which operators to move where.
#[derive(Debug, Clone)]
pub struct Migration {
    /// 移行元.
    pub from: MunicipalityCode,
    /// 移行先.
    pub to: MunicipalityCode,
    /// The operators to move; `None`: every operator of `from` who is not revoked.
    pub operators: Option<Vec<OperatorId>>,
}

/// What migrating one operator did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    pub operator_id: OperatorId,
    /// 許可業務 in the target: those of the source that the target may use.
    pub business_systems: Vec<BusinessId>,
    /// 許可業務 of the source that the target may not use: not carried over, nor their 業務内IDs.
    pub dropped_business_systems: Vec<BusinessId>,
    /// Business systems whose 業務内ID was carried over.
    pub internal_ids: Vec<BusinessId>,
    /// Whether his password was carried over (false only if he had none in the source).
    pub password_kept: bool,
}

/// Why one of the named operators cannot be migrated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceRefusal {
    /// No operator of the source municipality has this ID.
    NotInSource,
    Revoked,
    /// Named twice.
    Twice,
}

/// Why a migration was refused. Nothing was written in any case.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("the target must differ from the source municipality")]
    SameMunicipality,
    #[error("municipality {0} is not registered")]
    UnknownMunicipality(MunicipalityCode),
    #[error("the target municipality has been abolished")]
    TargetAbolished,
    /// No operator named (an empty list).
    #[error("no operator to migrate is named")]
    NoneNamed,
    /// Every operator is to move, and the source has none that is not revoked.
    #[error("the source municipality has no operators to migrate")]
    NothingToMigrate,
    /// Each named operator that cannot move, by his place in the list (from 0).
    #[error("{} of the named operators cannot be migrated", .0.len())]
    Sources(Vec<(usize, SourceRefusal)>),
    /// Every operator ID that is registered (and not revoked) in the target already.
    #[error("{} operator IDs are already registered in the target", .0.len())]
    AlreadyInTarget(Vec<OperatorId>),
    /// The registration in the target refused one of them (what changed since the plan was made).
    #[error(transparent)]
    Refused(OperatorError),
    /// A read model could not be read.
    #[error(transparent)]
    Query(QueryError),
}

impl From<QueryError> for CommandError<MigrationError> {
    fn from(e: QueryError) -> Self {
        CommandError::Domain(MigrationError::Query(e))
    }
}

fn refused(e: MigrationError) -> CommandError<MigrationError> {
    CommandError::Domain(e)
}

impl Operators {
    /// 操作者情報の移行: registers the operators in `to` with their passwords (the hashes are copied), their
    /// profiles and roles, the business systems `to` may use and their 業務内IDs in those; all or none. An
    /// operator ID registered (and not revoked) in `to` already refuses the whole migration, naming every such ID.
    pub async fn migrate(&self, ctx: &CommandContext, migration: Migration) -> Result<Vec<Migrated>> {
        if let Some(actor) = &ctx.actor {
            authorize(actor, &Permission::MigrateOperators)?;
        }
        let Migration { from, to, operators } = migration;
        if from == to {
            return Err(refused(MigrationError::SameMunicipality));
        }
        for code in [&from, &to] {
            let Some(m) = municipalities::get(self.read.pool(), code).await? else {
                return Err(refused(MigrationError::UnknownMunicipality(code.clone())));
            };
            if code == &to && m.abolished {
                return Err(refused(MigrationError::TargetAbolished));
            }
        }
        let sources = self.sources(&from, operators.as_deref()).await?;

        // Who is registered (and not revoked) in the target, read page by page rather than asked one by one.
        let active: HashSet<String> =
            self.all(&to, &OperatorFilter::default()).await?.into_iter().map(|r| r.operator_id).collect();
        let taken: Vec<OperatorId> =
            sources.iter().filter(|(id, _)| active.contains(id.as_str())).map(|(id, _)| id.clone()).collect();
        if !taken.is_empty() {
            return Err(refused(MigrationError::AlreadyInTarget(taken)));
        }

        let usable = self.usable(&to).await.map_err(|e| e.map_domain(MigrationError::Refused))?;
        let mut plans = Vec::with_capacity(sources.len());
        let mut registrations = Vec::with_capacity(sources.len());
        for (id, row) in sources {
            let loaded = self.current(&from, &id).await.map_err(|e| e.map_domain(MigrationError::Refused))?;
            let Some(profile) = loaded.state.profile().cloned() else {
                return Err(CommandError::Internal(format!(
                    "operator {from}/{id} is in the directory but has no stream"
                )));
            };
            let (kept, dropped): (Vec<BusinessId>, Vec<BusinessId>) =
                loaded.state.business_systems().iter().cloned().partition(|b| usable.contains(b));
            let mut new = NewOperator::new(id.clone(), None, profile, loaded.state.roles().to_vec(), kept.clone());
            // He keeps his 業務内IDs in the systems he keeps, and his password.
            new.internal_ids = loaded
                .state
                .internal_ids()
                .iter()
                .filter(|(b, _)| kept.contains(b))
                .map(|(b, a)| (b.clone(), a.clone()))
                .collect();
            new.kept_hash =
                self.access.password_hash(row.key).await.map_err(|e| CommandError::Internal(e.to_string()))?;
            new.keeps_password = true;
            plans.push(Migrated {
                operator_id: id,
                business_systems: kept,
                dropped_business_systems: dropped,
                internal_ids: new.internal_ids.keys().cloned().collect(),
                password_kept: new.kept_hash.is_some(),
            });
            registrations.push(new);
        }

        // One transaction: every operator with his password hash and 業務内IDs, or none of them.
        self.register(ctx, &to, registrations).await.map_err(|e| match e {
            CommandError::Item { index, error: OperatorError::AlreadyRegistered } => {
                let id = plans.get(index).map(|p| p.operator_id.clone());
                refused(MigrationError::AlreadyInTarget(id.into_iter().collect()))
            }
            other => other.map_domain(MigrationError::Refused),
        })?;
        tracing::info!(%from, %to, operators = plans.len(), "operators migrated");
        Ok(plans)
    }

    /// The operators to migrate with their directory rows: the named ones (each registered in `from` and not
    /// revoked, each once), or all that are not revoked.
    async fn sources(
        &self,
        from: &MunicipalityCode,
        named: Option<&[OperatorId]>,
    ) -> Result<Vec<(OperatorId, OperatorRow)>> {
        let rows = match named {
            None => {
                let all = self.all(from, &OperatorFilter::default()).await?;
                if all.is_empty() {
                    return Err(refused(MigrationError::NothingToMigrate));
                }
                all
            }
            Some([]) => return Err(refused(MigrationError::NoneNamed)),
            Some(ids) => {
                let mut refusals = vec![];
                let mut rows = vec![];
                let mut seen = HashSet::new();
                for (i, id) in ids.iter().enumerate() {
                    match self.by_login(from, id).await? {
                        None => refusals.push((i, SourceRefusal::NotInSource)),
                        Some(row) if row.revoked => refusals.push((i, SourceRefusal::Revoked)),
                        Some(_) if !seen.insert(id) => refusals.push((i, SourceRefusal::Twice)),
                        Some(row) => rows.push(row),
                    }
                }
                if !refusals.is_empty() {
                    return Err(refused(MigrationError::Sources(refusals)));
                }
                rows
            }
        };
        rows.into_iter()
            .map(|row| match OperatorId::parse(&row.operator_id) {
                Ok(id) => Ok((id, row)),
                Err(e) => Err(CommandError::Internal(format!("the directory holds a bad operator ID: {e}"))),
            })
            .collect()
    }
}
