//! Importing the resident registry (既存住基システム, 住基ネットCS) in batches: each row becomes a
//! `RegistryEntry` command, decided against what the registry view already holds and appended in one atomic
//! `append_many` per batch.
//!
//! Owns the per-row outcome (imported, changed, unchanged, refused). The view may lag: a stream that moved on
//! since the view saw it makes the append conflict, and the batch is then decided again from the streams
//! themselves, so a re-import never duplicates an entry and a changed row always becomes a change event.

use std::collections::HashMap;

use cardap_domain::registry::{
    self, RegistryChanges, RegistryCommand, RegistryEntry, RegistryError, RegistryFacts, RegistryKey, RegistryState,
};
use cardap_domain::resident::Erasable;
use cardap_domain::{Aggregate, MunicipalityCode};

use crate::authz::Permission;
use crate::context::CommandContext;
use crate::engine::{Tx, transact};
use crate::handler::CommandError;
use crate::residents::{RegistrationError, ResidentServices, stream_of};

/// One parsed row of a registry file.
#[derive(Debug, Clone)]
pub struct RegistryRow {
    /// The row number in the file (the header is row 1).
    pub row: u64,
    pub key: RegistryKey,
    pub facts: RegistryFacts,
}

/// What became of one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowOutcome {
    Imported,
    /// The names of the fields that changed.
    Changed(Vec<&'static str>),
    Unchanged,
    Refused(RegistryError),
}

/// What the registry view holds for a key: the stream version and the facts (`None` once erased).
pub type KnownEntries = HashMap<String, (u64, Option<RegistryFacts>)>;

impl ResidentServices {
    /// Imports one batch of rows atomically. `known` is what the registry view says about the batch's keys;
    /// a stale view only costs a second, slower decision.
    pub async fn import_registry_batch(
        &self,
        ctx: &CommandContext,
        code: &MunicipalityCode,
        rows: &[RegistryRow],
        known: &KnownEntries,
    ) -> Result<Vec<(u64, RowOutcome)>, CommandError<RegistrationError>> {
        let permission = Permission::ConfigureResidentServices(code.clone());
        let mut attempt = 0;
        let done = transact(self.store(), ctx, &[permission], Some(code.clone()), |mut tx: Tx| {
            attempt += 1;
            let attempt = attempt;
            async move {
                // Per stream: the version it was at and the state it reaches within this batch.
                let mut states: HashMap<&str, (u64, RegistryState, Vec<registry::RegistryEvent>)> = HashMap::new();
                let mut order: Vec<&RegistryKey> = Vec::new();
                let mut outcomes = Vec::with_capacity(rows.len());
                for row in rows {
                    let key = row.key.as_str();
                    if !states.contains_key(key) {
                        let (version, state) = if attempt == 1 {
                            match known.get(key) {
                                None => (0, RegistryState::default()),
                                Some((version, facts)) => {
                                    let facts = facts.clone().map_or(Erasable::Erased, Erasable::Known);
                                    (*version, RegistryState { entry: Some((code.clone(), row.key.clone(), facts)) })
                                }
                            }
                        } else {
                            let stream = stream_of::<RegistryEntry>(&registry::stream_key(code, &row.key));
                            let loaded = tx.load::<RegistryEntry, RegistrationError>(&stream).await?;
                            (loaded.version, loaded.state)
                        };
                        states.insert(key, (version, state, Vec::new()));
                        order.push(&row.key);
                    }
                    let Some((_, state, pending)) = states.get_mut(key) else { continue };
                    let command = RegistryCommand::Import {
                        municipality: code.clone(),
                        key: row.key.clone(),
                        facts: row.facts.clone(),
                    };
                    let outcome = match RegistryEntry::decide(state, command) {
                        Err(e) => RowOutcome::Refused(e),
                        Ok(events) => {
                            let outcome = match events.first() {
                                None => RowOutcome::Unchanged,
                                Some(registry::RegistryEvent::Imported { .. }) => RowOutcome::Imported,
                                Some(registry::RegistryEvent::Changed { changes }) => {
                                    RowOutcome::Changed(changes.known().map(changed_fields).unwrap_or_default())
                                }
                            };
                            for e in &events {
                                *state = RegistryEntry::evolve(std::mem::take(state), e);
                            }
                            pending.extend(events);
                            outcome
                        }
                    };
                    outcomes.push((row.row, outcome));
                }
                for key in order {
                    if let Some((version, _, pending)) = states.get(key.as_str()) {
                        let stream = stream_of::<RegistryEntry>(&registry::stream_key(code, key));
                        tx.append::<RegistryEntry>(&stream, *version, pending);
                    }
                }
                Ok((outcomes, tx))
            }
        })
        .await?;
        match done.value {
            Some(outcomes) => Ok(outcomes),
            // A retry of a batch that was applied: every row of it went through before.
            None => Ok(rows.iter().map(|r| (r.row, RowOutcome::Unchanged)).collect()),
        }
    }
}

fn changed_fields(c: &RegistryChanges) -> Vec<&'static str> {
    let mut fields = Vec::new();
    let mut note = |changed: bool, name: &'static str| {
        if changed {
            fields.push(name);
        }
    };
    note(c.name.is_some(), "name");
    note(c.kana.is_some(), "kana");
    note(c.birth_date.is_some(), "birth_date");
    note(c.sex.is_some(), "sex");
    note(c.postal_code.is_some(), "postal_code");
    note(c.address.is_some(), "address");
    fields
}
