//! The job table's rules: who sees a job, passwords once to the starter, retention, a lost job.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cardap_domain::operator::Role;

use super::*;
use crate::ManualClock;
use crate::imports::{ImportKind, ImportLimits, Imports};

fn actor(id: &str, roles: &[Role]) -> Actor {
    let code = MunicipalityCode::parse("131016").unwrap();
    let municipality = (!roles.contains(&Role::SystemAdmin)).then_some(code.clone());
    Actor {
        operator: OperatorKey::for_login(municipality.as_ref(), &OperatorId::parse(id).unwrap()),
        municipality,
        roles: roles.to_vec(),
        business_systems: vec![],
        password_change_required: false,
    }
}

fn setup() -> (Jobs<String>, Imports, ManualClock) {
    let clock = ManualClock::at(DateTime::from_timestamp(1_700_000_000, 0).unwrap());
    let jobs = Jobs::new(Arc::new(clock.clone()), Duration::from_secs(3600));
    (jobs, Imports::new(ImportLimits::default()), clock)
}

fn item(row: u64, id: &str, password: Option<&str>) -> ImportedItem {
    ImportedItem { row, operator_id: OperatorId::parse(id).unwrap(), password: password.map(Secret::new) }
}

#[test]
fn passwords_go_once_to_the_starter_and_the_job_to_him_and_the_administrator() {
    let (jobs, imports, _) = setup();
    let (starter, colleague) = (actor("MGR01", &[Role::OperationsManager]), actor("MGR02", &[Role::OperationsManager]));
    let admin = actor("admin", &[Role::SystemAdmin]);
    let code = MunicipalityCode::parse("131016").unwrap();
    let handle = jobs.start(
        JobKind::OperatorImport,
        &starter,
        CommandId::generate(),
        imports.admit(ImportKind::Operators, &code).unwrap(),
    );
    let id = handle.id();
    assert_eq!(jobs.take_passwords(id, &starter).unwrap_err(), PasswordsRefused::Running);
    handle.succeed(vec![item(2, "OP0501", Some("Generated1")), item(3, "OP0502", None)]);
    assert_eq!(imports.running(ImportKind::Operators), 0, "the place is given back");

    assert!(jobs.show(id, &colleague, |_| ()).is_none(), "another operator sees no such job");
    assert_eq!(jobs.take_passwords(id, &colleague).unwrap_err(), PasswordsRefused::NotFound);
    assert_eq!(jobs.take_passwords(id, &admin).unwrap_err(), PasswordsRefused::NotFound);
    let state = jobs.show(id, &admin, |v| (v.state, v.passwords)).unwrap();
    assert_eq!(state, (JobState::Succeeded, PasswordsState::Held));

    let taken = jobs.take_passwords(id, &starter).unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!((taken[0].row, taken[0].password.expose()), (2, "Generated1"));
    assert_eq!(jobs.take_passwords(id, &starter).unwrap_err(), PasswordsRefused::Taken);
    assert_eq!(jobs.show(id, &starter, |v| v.passwords).unwrap(), PasswordsState::Taken);
}

#[test]
fn a_finished_job_is_dropped_after_the_retention_a_running_one_never() {
    let (jobs, imports, clock) = setup();
    let starter = actor("MGR01", &[Role::OperationsManager]);
    let (a, b) = (MunicipalityCode::parse("131016").unwrap(), MunicipalityCode::parse("011002").unwrap());
    let command = CommandId::generate();
    let finished =
        jobs.start(JobKind::OperatorImport, &starter, command, imports.admit(ImportKind::Operators, &a).unwrap());
    let running = jobs.start(
        JobKind::OperatorImport,
        &starter,
        CommandId::generate(),
        imports.admit(ImportKind::Operators, &b).unwrap(),
    );
    let finished_id = finished.id();
    finished.fail("bad row".to_owned());
    assert_eq!(jobs.for_command(&starter, command), Some(finished_id));

    clock.advance(chrono::Duration::minutes(61));
    assert!(jobs.show(finished_id, &starter, |_| ()).is_none());
    assert_eq!(jobs.for_command(&starter, command), None);
    assert_eq!(jobs.show(running.id(), &starter, |v| v.state), Some(JobState::Running));
    drop(running);
}

#[test]
fn a_job_dropped_without_an_outcome_is_lost_and_frees_its_place() {
    let (jobs, imports, _) = setup();
    let starter = actor("MGR01", &[Role::OperationsManager]);
    let code = MunicipalityCode::parse("131016").unwrap();
    let handle = jobs.start(
        JobKind::OperatorImport,
        &starter,
        CommandId::generate(),
        imports.admit(ImportKind::Operators, &code).unwrap(),
    );
    let id = handle.id();
    drop(handle);
    assert!(jobs.show(id, &starter, |v| matches!(v.outcome, Some(JobOutcome::Lost))).unwrap());
    assert!(imports.admit(ImportKind::Operators, &code).is_ok());
}
