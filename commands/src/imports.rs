//! How many imports run at once (issue 9, point 7): a registry import holds a thread, database connections and
//! an upload for up to two hours, an operator import a file of up to 32 MiB, its parsed rows and a share of the
//! password workers. A few hundred of them at once would starve everything else, so each kind of import is
//! admitted only while its municipality has fewer than [`ImportLimits::per_municipality`] running and the server
//! fewer than its limit for that kind; beyond that the caller is told to come back later ([`Busy`]).
//!
//! Owns the admission and the limits of one server process (the counters live in memory, like the login
//! throttle's): an [`ImportSlot`] is taken before the import starts its work and given back when it is dropped,
//! whatever way the import ends. What an import does is its own module's (`registry_import`, `operators`,
//! [`crate::jobs`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cardap_domain::MunicipalityCode;

/// The limits of imports, from the settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportLimits {
    /// Imports of one kind running at once for one municipality.
    pub per_municipality: usize,
    /// Registry imports (住基データ取り込み) running at once on this server.
    pub registry_imports: usize,
    /// Operator CSV imports (jobs) running at once on this server.
    pub operator_imports: usize,
    /// Data rows an operator CSV file may have.
    pub operator_rows: usize,
    /// How long a finished job stays to be looked at (and its generated passwords to be fetched).
    pub keep_finished: Duration,
}

impl Default for ImportLimits {
    /// One import of each kind per municipality, four of each on the server, 10,000 operators per file, finished
    /// jobs kept an hour.
    fn default() -> Self {
        ImportLimits {
            per_municipality: 1,
            registry_imports: 4,
            operator_imports: 4,
            operator_rows: 10_000,
            keep_finished: Duration::from_secs(60 * 60),
        }
    }
}

/// The kinds of import, each with limits of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImportKind {
    /// `POST …/registry/import`: streamed, for as long as the upload lasts.
    Registry,
    /// `POST …/operators/import`: a job.
    Operators,
}

/// Which limit turned an import away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusyScope {
    /// The municipality already runs as many imports of this kind as it may.
    Municipality,
    /// The server runs as many imports of this kind as it may.
    Server,
}

/// An import turned away: nothing was read or started; try again after `retry_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many imports running ({scope:?}); retry in {retry_after:?}")]
pub struct Busy {
    pub kind: ImportKind,
    pub scope: BusyScope,
    pub retry_after: Duration,
}

/// When to try again after [`Busy`]: imports take minutes, asking every second would be a load of its own.
const RETRY_AFTER: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
struct Running {
    by_municipality: HashMap<(ImportKind, MunicipalityCode), usize>,
    by_kind: HashMap<ImportKind, usize>,
}

/// The admission of imports on this server process.
#[derive(Debug, Clone)]
pub struct Imports {
    running: Arc<Mutex<Running>>,
    limits: ImportLimits,
}

impl Imports {
    pub fn new(limits: ImportLimits) -> Self {
        Imports { running: Arc::new(Mutex::new(Running::default())), limits }
    }

    pub fn limits(&self) -> &ImportLimits {
        &self.limits
    }

    /// A place for an import of `kind` in `code`, or [`Busy`] when the municipality or the server has no room.
    pub fn admit(&self, kind: ImportKind, code: &MunicipalityCode) -> Result<ImportSlot, Busy> {
        let server_limit = match kind {
            ImportKind::Registry => self.limits.registry_imports,
            ImportKind::Operators => self.limits.operator_imports,
        };
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let here = running.by_municipality.get(&(kind, code.clone())).copied().unwrap_or(0);
        let everywhere = running.by_kind.get(&kind).copied().unwrap_or(0);
        let scope = if here >= self.limits.per_municipality {
            Some(BusyScope::Municipality)
        } else if everywhere >= server_limit {
            Some(BusyScope::Server)
        } else {
            None
        };
        if let Some(scope) = scope {
            tracing::info!(municipality = %code, ?kind, ?scope, "an import was turned away: too many running");
            return Err(Busy { kind, scope, retry_after: RETRY_AFTER });
        }
        *running.by_municipality.entry((kind, code.clone())).or_insert(0) += 1;
        *running.by_kind.entry(kind).or_insert(0) += 1;
        Ok(ImportSlot { running: self.running.clone(), kind, code: code.clone() })
    }

    /// Imports of `kind` running now on this server (for metrics and tests).
    pub fn running(&self, kind: ImportKind) -> usize {
        self.running.lock().unwrap_or_else(PoisonError::into_inner).by_kind.get(&kind).copied().unwrap_or(0)
    }
}

/// A running import's place: given back when dropped.
#[derive(Debug)]
pub struct ImportSlot {
    running: Arc<Mutex<Running>>,
    kind: ImportKind,
    code: MunicipalityCode,
}

impl ImportSlot {
    pub fn municipality(&self) -> &MunicipalityCode {
        &self.code
    }
}

impl Drop for ImportSlot {
    fn drop(&mut self) {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (self.kind, self.code.clone());
        if let Some(n) = running.by_municipality.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                running.by_municipality.remove(&key);
            }
        }
        if let Some(n) = running.by_kind.get_mut(&self.kind) {
            *n = n.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn code(c: &str) -> MunicipalityCode {
        MunicipalityCode::parse(c).unwrap()
    }

    #[test]
    fn one_import_per_municipality_and_a_few_per_server_each_kind_apart() {
        let limits = ImportLimits { registry_imports: 2, ..ImportLimits::default() };
        let imports = Imports::new(limits);
        let (a, b, c) = (code("131016"), code("011002"), code("012025"));

        let first = imports.admit(ImportKind::Registry, &a).unwrap();
        let busy = imports.admit(ImportKind::Registry, &a).unwrap_err();
        assert_eq!(busy.scope, BusyScope::Municipality);
        // Another kind has room of its own.
        let _operators = imports.admit(ImportKind::Operators, &a).unwrap();
        let _second = imports.admit(ImportKind::Registry, &b).unwrap();
        assert_eq!(imports.admit(ImportKind::Registry, &c).unwrap_err().scope, BusyScope::Server);
        assert_eq!(imports.running(ImportKind::Registry), 2);

        drop(first);
        assert_eq!(imports.running(ImportKind::Registry), 1);
        let again = imports.admit(ImportKind::Registry, &a).unwrap();
        assert_eq!(again.municipality(), &a);
    }
}
