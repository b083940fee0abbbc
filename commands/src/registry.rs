//! The resident registry as 利用者登録 prefills from it (手引き I 1.1): an entry by its registry key (既存住基からの
//! 呼び出し), and the entries matching the four facts read from a card (本人確認4情報), those at the card's address
//! first.
//!
//! Owns these two queries and the ordering of the matches; the registry view (`projections::registry`) owns the
//! matching itself. The import that fills the registry is [`crate::registry_import`]'s. Must not log the facts.

use cardap_domain::MunicipalityCode;
use cardap_domain::contact::Sex;
use cardap_domain::registry::{FullName, RegistryFacts, RegistryKey};
use cardap_domain::resident::{Address, EraDate};
use cardap_projections::registry as view;

use crate::QueryError;
use crate::authz::Permission;
use crate::context::CommandContext;
use crate::handler::CommandError;
use crate::read_access::ReadOperation;
use crate::residents::{RegistrationError, ResidentServices, authorize_read, query_failed};

pub use cardap_projections::registry::RegistryEntryRow;

impl ResidentServices {
    /// 既存住基からの呼び出し by `ctx`'s operator (clerks): the entry `key` of the registry of `code`, recorded in
    /// the read access log first when it holds personal data; `None` when there is no such entry.
    pub async fn read_registry_entry(
        &self,
        ctx: &CommandContext,
        code: &MunicipalityCode,
        key: &RegistryKey,
    ) -> Result<Option<RegistryEntryRow>, CommandError<RegistrationError>> {
        authorize_read(ctx, Permission::RegisterResidents(code.clone()))?;
        let entry = self.registry_entry(code, key).await.map_err(query_failed)?;
        if entry.as_ref().is_some_and(|e| e.facts.is_some()) {
            self.reads().record(ctx, code, ReadOperation::RegistryRead, &[], std::slice::from_ref(key)).await?;
        }
        Ok(entry)
    }

    /// カード読み取りからの呼び出し by `ctx`'s operator (clerks): [`ResidentServices::registry_matches`], the
    /// entries found recorded in the read access log first.
    pub async fn lookup_registry(
        &self,
        ctx: &CommandContext,
        code: &MunicipalityCode,
        (name, birth_date, sex): (&FullName, &EraDate, Sex),
        address: Option<&Address>,
    ) -> Result<Vec<(RegistryKey, RegistryFacts)>, CommandError<RegistrationError>> {
        authorize_read(ctx, Permission::RegisterResidents(code.clone()))?;
        let matches = self.registry_matches(code, name, birth_date, sex, address).await.map_err(query_failed)?;
        let keys: Vec<RegistryKey> = matches.iter().map(|(k, _)| k.clone()).collect();
        self.reads().record(ctx, code, ReadOperation::RegistryLookup, &[], &keys).await?;
        Ok(matches)
    }

    /// The entry `key` of the registry of `code`, or `None` when it has none (another municipality's entries do
    /// not exist here). An erased entry is there without its facts.
    pub(crate) async fn registry_entry(
        &self,
        code: &MunicipalityCode,
        key: &RegistryKey,
    ) -> Result<Option<RegistryEntryRow>, QueryError> {
        view::get(self.read().pool(), self.read().sealer(), code, key).await
    }

    /// The entries of the registry of `code` with the same birth date and sex as a card's and the same name once
    /// spaces are removed, erased entries left out; those at `address` first (compared without spaces, as the
    /// notations of addresses differ), in registry-key order within each group.
    pub(crate) async fn registry_matches(
        &self,
        code: &MunicipalityCode,
        name: &FullName,
        birth_date: &EraDate,
        sex: Sex,
        address: Option<&Address>,
    ) -> Result<Vec<(RegistryKey, RegistryFacts)>, QueryError> {
        let rows = view::find_by_facts(self.read().pool(), self.read().sealer(), code, birth_date, name, sex).await?;
        let address = address.map(|a| compact(a.as_str()));
        let mut matches: Vec<(bool, (RegistryKey, RegistryFacts))> = rows
            .into_iter()
            .filter_map(|r| {
                let facts = r.facts?;
                let here = address.is_some() && facts.address.as_ref().map(|a| compact(a.as_str())) == address;
                Some((here, (r.registry_key, facts)))
            })
            .collect();
        // Stable: within each group the view's registry-key order stays.
        matches.sort_by_key(|(here, _)| !*here);
        Ok(matches.into_iter().map(|(_, m)| m).collect())
    }
}

/// Text without any whitespace, for comparing addresses.
fn compact(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}
