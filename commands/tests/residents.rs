//! Resident service registration against real stores, where several streams change in one decision: one active
//! card per resident however many clerks race, a 標準ID collision drawn again, abolition freeing the resident
//! atomically, and a retried command that registers nothing twice. Every test runs on PostgreSQL and SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use cardap_commands::read_access::ReadAccess;
use cardap_commands::residents::{CardAction, RegistrationError, ResidentServices, StandardIdDraw};
use cardap_commands::{CommandContext, CommandError, CommandHandler, Permission, Views};
use cardap_domain::business_system::{self, BusinessSystem, BusinessSystemCommand};
use cardap_domain::card::CardError;
use cardap_domain::contact::Sex;
use cardap_domain::local_settings::LocalSettingsValue;
use cardap_domain::resident::{
    CardFid, EraDate, KanaName, KanjiName, PersonName, PersonalData, ResidentError, ResidentId,
};
use cardap_domain::{Aggregate, BusinessId, MunicipalityCode};
use cardap_projections::ReadModels;
use cardap_store::{CommandId, Database, EventStore, StreamId};
use serde_json::Map;

struct Setup {
    store: Arc<dyn EventStore>,
    _dir: Option<tempfile::TempDir>,
}

async fn postgres() -> Setup {
    let db = Database::connect(&cardap_testkit::fresh_postgres_url().await, 16).await.unwrap();
    db.migrate().await.unwrap();
    Setup { store: db.event_store(), _dir: None }
}

async fn sqlite() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::connect(&cardap_testkit::fresh_sqlite_url(dir.path()), 4).await.unwrap();
    db.migrate().await.unwrap();
    Setup { store: db.event_store(), _dir: Some(dir) }
}

fn chiyoda() -> MunicipalityCode {
    MunicipalityCode::parse("131016").unwrap()
}

/// The system itself (no actor): authorization is tested elsewhere.
fn ctx() -> CommandContext {
    CommandContext::system(CommandId::generate())
}

fn fid(s: &str) -> CardFid {
    CardFid::parse(s).unwrap()
}

fn person() -> PersonalData {
    PersonalData {
        kana_name: PersonName {
            family: KanaName::parse("ヤマダ").unwrap(), given: KanaName::parse("タロウ").unwrap()
        },
        kanji_name: PersonName {
            family: KanjiName::parse("山田").unwrap(), given: KanjiName::parse("太郎").unwrap()
        },
        birth_date: EraDate::parse("3450101").unwrap(),
        sex: Sex::Male,
        postal_code: None,
        address1: None,
        address2: None,
        phone: None,
        email: None,
        occupation: None,
        custom_fields: Default::default(),
    }
}

/// Draws from a fixed sequence (then counts on), to make 標準IDs predictable.
fn draws(sequence: Vec<u64>) -> StandardIdDraw {
    let next = Arc::new(Mutex::new(sequence.into_iter()));
    let counter = Arc::new(AtomicUsize::new(1000));
    Arc::new(move || next.lock().unwrap().next().unwrap_or_else(|| counter.fetch_add(1, Ordering::SeqCst) as u64))
}

/// 千代田区 permitted 02 (library), offering it with no presets; returns the services.
async fn services(store: &Arc<dyn EventStore>, draw: StandardIdDraw) -> ResidentServices {
    let systems = CommandHandler::<BusinessSystem>::new(store.clone());
    for (id, profile) in business_system::builtin_profiles() {
        let stream = StreamId::new(BusinessSystem::STREAM_TYPE, &business_system::stream_key(&id)).unwrap();
        let any = Permission::ManageBusinessSystems;
        systems
            .execute(&ctx(), &any, &stream, None, None, BusinessSystemCommand::Register { id, profile })
            .await
            .unwrap();
        systems
            .execute(&ctx(), &any, &stream, None, None, BusinessSystemCommand::Permit { municipality: chiyoda() })
            .await
            .unwrap();
    }
    // These tests read no resident read model: a vault on an empty database is enough for its sealer.
    // (A database of its own, in a directory removed when this returns: the vault is never asked for a key.)
    let dir = tempfile::tempdir().unwrap();
    let vault = Database::connect(&cardap_testkit::fresh_sqlite_url(dir.path()), 1)
        .await
        .unwrap()
        .key_vault(cardap_store::MasterKey::generate().unwrap())
        .unwrap();
    let read = ReadModels::connect("sqlite::memory:", 1, vault).unwrap();
    let clock: Arc<dyn cardap_commands::Clock> = Arc::new(cardap_commands::SystemClock);
    let reads = ReadAccess::new(store.clone(), read.clone(), clock.clone());
    let services = ResidentServices::new(store.clone(), read, Views::default(), draw, reads, clock);
    let settings = LocalSettingsValue {
        custom_fields: vec![],
        catalog: BTreeSet::from([BusinessId::LIBRARY]),
        presets: BTreeSet::new(),
    };
    services.configure(&ctx(), &chiyoda(), None, settings).await.unwrap();
    services
}

async fn resident(services: &ResidentServices) -> ResidentId {
    let id = ResidentId::from_uuid(uuid::Uuid::now_v7());
    services.register_resident(&ctx(), &chiyoda(), id, None, person(), &Map::new()).await.unwrap();
    id
}

async fn racing_clerks_leave_one_active_card(setup: Setup) {
    let services = services(&setup.store, draws(vec![])).await;
    let id = resident(&services).await;

    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let services = services.clone();
            tokio::spawn(
                async move { services.register_card(&ctx(), &chiyoda(), &fid(&format!("RACE{i}")), &id).await },
            )
        })
        .collect();
    let mut won = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await.unwrap() {
            Ok(_) => won.push(format!("RACE{i}")),
            Err(CommandError::Domain(RegistrationError::Resident(ResidentError::AlreadyHasCard(_)))) => {}
            Err(other) => panic!("unexpected refusal: {other:?}"),
        }
    }
    assert_eq!(won.len(), 1, "exactly one card wins: {won:?}");
    let resident = services.resident(&chiyoda(), &id).await.unwrap();
    assert_eq!(resident.resident.active_card, Some(fid(&won[0])));
    for i in 0..8 {
        let name = format!("RACE{i}");
        let stream = StreamId::new("card", &name).unwrap();
        let written = setup.store.read_stream(&stream, 1).await.unwrap().len();
        assert_eq!(written, usize::from(won.contains(&name)), "a losing card {name} left nothing behind");
    }
}

async fn a_standard_id_collision_is_drawn_again(setup: Setup) {
    // The first card takes the number 42; the second draws 42 again, then 43.
    let services = services(&setup.store, draws(vec![42, 42, 43])).await;
    let mut installed = Vec::new();
    for card in ["LIBA", "LIBB"] {
        let id = resident(&services).await;
        services.register_card(&ctx(), &chiyoda(), &fid(card), &id).await.unwrap();
        let area = CardAction::CreateLocalArea { issuance_consent: None };
        services.card_action(&ctx(), &chiyoda(), &fid(card), None, area).await.unwrap();
        let install = CardAction::InstallAps { business_ids: vec![BusinessId::LIBRARY], issuance_consent: None };
        let (done, _) = services.card_action(&ctx(), &chiyoda(), &fid(card), None, install).await.unwrap();
        installed.push(done.card.aps[&BusinessId::LIBRARY].clone().unwrap().to_string());
    }
    assert_eq!(installed, ["1310160000000042", "1310160000000043"]);
}

async fn abolishing_frees_the_resident_for_a_new_card(setup: Setup) {
    let services = services(&setup.store, draws(vec![])).await;
    let id = resident(&services).await;
    services.register_card(&ctx(), &chiyoda(), &fid("OLD1"), &id).await.unwrap();
    let refused = services.register_card(&ctx(), &chiyoda(), &fid("NEW1"), &id).await.unwrap_err();
    assert!(matches!(refused, CommandError::Domain(RegistrationError::Resident(ResidentError::AlreadyHasCard(_)))));

    services.card_action(&ctx(), &chiyoda(), &fid("OLD1"), None, CardAction::Abolish).await.unwrap();
    assert_eq!(services.resident(&chiyoda(), &id).await.unwrap().resident.active_card, None);
    services.register_card(&ctx(), &chiyoda(), &fid("NEW1"), &id).await.unwrap();
    let again = services.card_action(&ctx(), &chiyoda(), &fid("OLD1"), None, CardAction::Resume).await.unwrap_err();
    assert!(matches!(again, CommandError::Domain(RegistrationError::Card(CardError::Abolished))));
}

async fn a_retried_registration_writes_nothing(setup: Setup) {
    let services = services(&setup.store, draws(vec![])).await;
    let id = resident(&services).await;
    let same = ctx();
    services.register_card(&same, &chiyoda(), &fid("ONCE1"), &id).await.unwrap();
    let (retried, checkpoint) = services.register_card(&same, &chiyoda(), &fid("ONCE1"), &id).await.unwrap();
    assert_eq!(retried.version, 1);
    assert!(checkpoint.is_some(), "the retry answers where the first attempt landed");
    let stream = StreamId::new("resident", &id.to_string()).unwrap();
    assert_eq!(setup.store.read_stream(&stream, 1).await.unwrap().len(), 2, "registered + card attached, once");
}

macro_rules! on_both_backends {
    ($($test:ident),+ $(,)?) => {
        mod on_postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $test() { super::$test(super::postgres().await).await; })+
        }
        mod on_sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $test() { super::$test(super::sqlite().await).await; })+
        }
    };
}

on_both_backends!(
    racing_clerks_leave_one_active_card,
    a_standard_id_collision_is_drawn_again,
    abolishing_frees_the_resident_for_a_new_card,
    a_retried_registration_writes_nothing,
);
