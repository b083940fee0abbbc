//! The card agent end to end (issue 13): clerk → cardap (mutual TLS, the clerk's operator certificate issued
//! through the API) → card, through pcscd, vsmartcard's vpcd and the card emulator; and each bad case. Both
//! backends. Needs the virtual reader: `scripts/test` starts it (`scripts/pcsc`) and exports CARDAP_TEST_PCSC=1;
//! without it these tests say so and pass.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cardap_card_access::{AccessError, CardReader, Readers};
use cardap_card_agent::{Agent, AgentError, Outcome, PinPrompt, Request, Server, ServerConfig, Step};
use cardap_card_emulator::vpcd::{self, Ended, Inserted, PullOut};
use cardap_card_emulator::{Card, CardData};
use cardap_card_profile::{AreaImage, Command as Apdu, commit_message};
use cardap_domain::resident::CardFid;
use cardap_domain::{BusinessId, MunicipalityCode};
use cardap_tests::reqwest::StatusCode;
use cardap_tests::serde_json::json;
use cardap_tests::{Backend, TestApp, on_both_backends, openssl, resident_settings_path, spawn_https_app};

const CHIYODA: &str = "131016";
const SAPPORO: &str = "011002";
const VPCD: &str = "127.0.0.1:35963";

/// Whether the virtual reader is there; says why the test does nothing otherwise.
fn reader_available(test: &str) -> bool {
    if std::env::var_os("CARDAP_TEST_PCSC").is_some() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: CARDAP_TEST_PCSC is not set under CI: run the tests through scripts/test, which starts pcscd with vpcd"
    );
    eprintln!("{test}: skipped: needs pcscd with vpcd; run it through scripts/test (CARDAP_TEST_PCSC=1)");
    false
}

/// An installation with HTTPS (server certificate from a test CA), cardap's own CA trusted for clients, Chiyoda
/// offering APs 01 and 02 (no presets), and a clerk with an operator certificate issued through the API.
struct Counter {
    app: TestApp,
    _dir: tempfile::TempDir,
    config: ServerConfig,
    admin: String,
}

async fn counter(backend: Backend) -> Counter {
    let dir = tempfile::tempdir().unwrap();
    let (app, root) = spawn_https_app(backend, dir.path()).await;

    let admin = app.admin_token().await;
    for (code, name, order) in [(CHIYODA, "千代田区", 1), (SAPPORO, "札幌市", 2)] {
        app.register_municipality(&admin, code, name, order).await;
        for id in ["01", "02"] {
            app.permit(&admin, id, code).await;
        }
        let settings = json!({"custom_fields": [], "catalog": ["01", "02"], "presets": []});
        let reply = app.put(&resident_settings_path(code), Some(&admin), &settings).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    }
    let _ = app.clerk_token(&admin, CHIYODA, "CL0001", &["01", "02"]).await;

    let key = dir.path().join("clerk.key");
    openssl(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out"], &key);
    let csr = String::from_utf8(openssl(&["req", "-new", "-subj", "/CN=x", "-key"], &key)).unwrap();
    let path = format!("/api/v1/municipalities/{CHIYODA}/operators/CL0001/certificates");
    let issued = app.post(&path, Some(&admin), &json!({"csr": csr})).await;
    assert_eq!(issued.status, StatusCode::CREATED, "{}", issued.text);
    let cert = dir.path().join("clerk.pem");
    std::fs::write(&cert, issued.json()["certificate"].as_str().unwrap()).unwrap();
    let config = ServerConfig::from_files(&app.address, &root, Some(&cert), Some(&key)).unwrap();
    Counter { app, _dir: dir, config, admin }
}

/// A person's card, personalized with the key cardap derives for its FID.
fn card(counter: &Counter, fid: &str, state: Option<PathBuf>) -> Arc<Mutex<Card>> {
    Arc::new(Mutex::new(Card::open(card_data(counter, fid), state).unwrap()))
}

/// What such a card holds.
fn card_data(counter: &Counter, fid: &str) -> CardData {
    let key = counter.app.state.card_writes.card_key(&CardFid::parse(fid).unwrap());
    CardData {
        fid: fid.into(),
        pin: "1234".into(),
        card_key: hex::encode(key),
        name: "山田 太郎".into(),
        address: "東京都千代田区千代田1-1".into(),
        birth_date: "19890107".into(),
        sex: "1".into(),
        not_my_number_card: false,
    }
}

fn insert(card: &Arc<Mutex<Card>>, after_apdus: Option<u64>) -> Inserted {
    let inserted = vpcd::insert(card.clone(), VPCD, PullOut { after_apdus }, Duration::from_secs(10)).unwrap();
    // vpcd takes the connection only once it has noticed the card before it gone; the reader was seen empty
    // in between (`take_out`), so the card pcscd shows present from then on is this one.
    assert!(inserted.wait_taken(Duration::from_secs(10)), "vpcd never took the card");
    let readers = Readers::establish().unwrap();
    let reader = readers.pick(None).unwrap();
    readers.wait_for_card(&reader, Duration::from_secs(10)).unwrap();
    inserted
}

/// Takes the card out (if it has not pulled itself out), waits until pcscd shows the reader empty and lets pcscd
/// finish with it; how the card's connection ended.
fn take_out(inserted: Inserted) -> Ended {
    let ended = inserted.remove().unwrap();
    let readers = Readers::establish().unwrap();
    let reader = readers.pick(None).unwrap();
    readers.wait_for_removal(&reader, Duration::from_secs(10)).unwrap();
    // pcscd powers the card that left down a moment later; vpcd would hand that to the next card mid-flow.
    std::thread::sleep(vpcd::SETTLE);
    ended
}

/// Answers from a script, then gives up.
struct Pins(Vec<&'static str>);

impl PinPrompt for Pins {
    fn ask(&mut self, _tries_left: u8) -> Option<String> {
        (!self.0.is_empty()).then(|| self.0.remove(0).to_owned())
    }
}

/// Runs the agent on the card in the (first) reader, off the async runtime; the outcome and the steps reported.
async fn run_agent(
    config: &ServerConfig,
    request: Request,
    pins: Vec<&'static str>,
) -> (Result<Outcome, AgentError>, Vec<Step>) {
    let config = config.clone();
    tokio::task::spawn_blocking(move || {
        let server = Server::new(&config).unwrap();
        let mut steps = vec![];
        let result = (|| {
            let readers = Readers::establish().map_err(AgentError::Card)?;
            let reader = readers.pick(None).map_err(AgentError::Card)?;
            let card = readers.connect(&reader).map_err(AgentError::Card)?;
            let mut progress = |s: Step| steps.push(s);
            Agent::new(CardReader::new(card), &server, &mut progress).run(&request, &mut Pins(pins))
        })();
        (result, steps)
    })
    .await
    .unwrap()
}

fn two_aps() -> Request {
    Request {
        install: vec!["01".into(), "02".into()],
        remove: vec![],
        kana: Some("ヤマダ タロウ".into()),
        issuance_consent: Some(true),
    }
}

/// cardap's record and the card say the same.
async fn assert_consistent(counter: &Counter, card: &Arc<Mutex<Card>>, fid: &str) {
    let area = card.lock().unwrap().area();
    let reply = counter.app.get(&format!("/api/v1/municipalities/{CHIYODA}/cards/{fid}"), Some(&counter.admin)).await;
    if reply.status == StatusCode::NOT_FOUND {
        assert!(area.is_empty(), "a card cardap does not know has a local area");
        return;
    }
    let server = reply.json();
    assert_eq!(server["local_area"].as_bool().unwrap(), !area.is_empty(), "{server}");
    if !area.is_empty() {
        let image = AreaImage::decode(&area).unwrap();
        let aps: Vec<(String, Option<String>)> =
            image.aps.iter().map(|(b, s)| (b.as_str().to_owned(), s.as_ref().map(ToString::to_string))).collect();
        let recorded: Vec<(String, Option<String>)> = server["aps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a["business_id"].as_str().unwrap().to_owned(), a["standard_id"].as_str().map(str::to_owned)))
            .collect();
        assert_eq!(aps, recorded);
    }
}

async fn the_whole_flow_registers_the_resident_and_writes_the_area_and_two_aps(backend: Backend) {
    if !reader_available("the_whole_flow") {
        return;
    }
    let counter = counter(backend).await;
    let state = counter._dir.path().join("card.state.json");
    let card = card(&counter, "0A1B2C3D", Some(state));
    let inserted = insert(&card, None);

    let (outcome, steps) = run_agent(&counter.config, two_aps(), vec!["1234"]).await;
    let outcome = outcome.unwrap();
    assert!(steps.contains(&Step::FactsRead) && steps.contains(&Step::CardRegistered), "{steps:?}");
    assert_eq!(outcome.card["local_area"], json!(true));
    let aps = outcome.card["aps"].as_array().unwrap();
    assert_eq!(aps.len(), 2, "{}", outcome.card);
    let standard_id = aps[1]["standard_id"].as_str().unwrap().to_owned();
    assert_consistent(&counter, &card, "0A1B2C3D").await;

    // The card AP access module reads the 標準ID through PC/SC, as a library counter would.
    let read = tokio::task::spawn_blocking(|| cardap_card_access::open(None, Duration::from_secs(5))?.standard_id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.unwrap().as_str(), standard_id);

    // Inserted again: card and cardap agree, no PIN is asked, nothing is written.
    let (again, steps) = run_agent(&counter.config, two_aps(), vec![]).await;
    again.unwrap();
    assert!(
        steps.iter().any(|s| matches!(s, Step::Reconciled { outcome, .. } if outcome == "in_agreement")),
        "{steps:?}"
    );
    assert!(!steps.iter().any(|s| matches!(s, Step::Written { .. })), "{steps:?}");

    // Removing an AP through the card.
    let request = Request { install: vec![], remove: vec!["01".into()], kana: None, issuance_consent: None };
    let (removed, _) = run_agent(&counter.config, request, vec![]).await;
    assert_eq!(removed.unwrap().card["aps"].as_array().unwrap().len(), 1);
    assert_consistent(&counter, &card, "0A1B2C3D").await;
    take_out(inserted);
}

/// The certificate issuance AP through the card agent needs the resident's consent as at the counter: without it
/// cardap refuses to authorize the write, the agent says what to do and the card gets nothing; with it, AP 01 is
/// written and recorded.
async fn the_certificate_issuance_ap_needs_the_residents_consent_through_the_agent_too(backend: Backend) {
    if !reader_available("consent") {
        return;
    }
    let counter = counter(backend).await;
    let card = card(&counter, "0A1B2C3F", None);
    let inserted = insert(&card, None);
    let only_01 = |issuance_consent| Request {
        install: vec!["01".into()],
        remove: vec![],
        kana: Some("ヤマダ タロウ".into()),
        issuance_consent,
    };
    let (result, steps) = run_agent(&counter.config, only_01(None), vec!["1234"]).await;
    assert!(matches!(result, Err(AgentError::ConsentRequired)), "{result:?}");
    assert!(result.unwrap_err().to_string().contains("--issuance-consent"));
    assert!(!steps.iter().any(|s| matches!(s, Step::Written { what, .. } if what == "install_aps")), "{steps:?}");
    assert_consistent(&counter, &card, "0A1B2C3F").await;
    let path = format!("/api/v1/municipalities/{CHIYODA}/cards/0A1B2C3F");
    assert_eq!(counter.app.get(&path, Some(&counter.admin)).await.json()["aps"], json!([]));

    let (outcome, _) = run_agent(&counter.config, only_01(Some(true)), vec![]).await;
    assert_eq!(outcome.unwrap().card["aps"], json!([{"business_id": "01"}]));
    assert_consistent(&counter, &card, "0A1B2C3F").await;
    take_out(inserted);
}

async fn a_wrong_pin_tells_the_tries_left_and_a_blocked_pin_says_so(backend: Backend) {
    if !reader_available("pin") {
        return;
    }
    let counter = counter(backend).await;
    let card = card(&counter, "0A1B2C3E", None);
    let inserted = insert(&card, None);
    let (result, steps) = run_agent(&counter.config, two_aps(), vec!["0000"]).await;
    assert!(matches!(result, Err(AgentError::WrongPin { tries_left: 2 })), "{result:?}");
    assert!(steps.contains(&Step::PinWrong { tries_left: 2 }), "{steps:?}");
    let (result, _) = run_agent(&counter.config, two_aps(), vec!["1111", "2222"]).await;
    assert!(matches!(result, Err(AgentError::PinBlocked)), "{result:?}");
    assert!(result.unwrap_err().to_string().contains("blocked"));
    let (result, _) = run_agent(&counter.config, two_aps(), vec!["1234"]).await;
    assert!(matches!(result, Err(AgentError::PinBlocked)), "{result:?}");
    // Nothing was registered, nothing written.
    assert_consistent(&counter, &card, "0A1B2C3E").await;
    take_out(inserted);
}

async fn a_card_pulled_out_at_any_step_is_unchanged_or_whole_and_the_next_insertion_reconciles(backend: Backend) {
    if !reader_available("pull_out") {
        return;
    }
    let counter = counter(backend).await;
    let mut n = 1;
    let mut reconciled_a_lost_confirmation = false;
    loop {
        let fid = format!("FF{n:04}");
        let card = card(&counter, &fid, None);
        eprintln!("pull-out after APDU {n}");
        let inserted = insert(&card, Some(n));
        let (first, _) = run_agent(&counter.config, two_aps(), vec!["1234"]).await;
        // Pulled out by itself after APDU n, or (the flow finished first) pulled out now.
        let ended = take_out(inserted);
        let done = first.is_ok();
        if let Err(e) = &first {
            // The agent talked to this card from its first APDU: the pull-out fell inside the flow.
            assert!(matches!(e, AgentError::PulledOut { .. }), "after {n} APDUs: {e:?}");
            assert!(e.to_string().contains("pulled out"), "{e}");
            assert_eq!(ended, Ended::PulledOut, "after {n} APDUs");
        }
        // Whatever the moment, the area is whole (or absent), never half-written.
        let area = card.lock().unwrap().area();
        assert!(area.is_empty() || AreaImage::decode(&area).is_ok());
        let inserted = insert(&card, None);
        let (second, steps) = run_agent(&counter.config, two_aps(), vec!["1234"]).await;
        second.unwrap_or_else(|e| panic!("after a pull-out at APDU {n}: {e}"));
        reconciled_a_lost_confirmation |=
            steps.iter().any(|s| matches!(s, Step::Reconciled { outcome, .. } if outcome == "recorded"));
        assert_consistent(&counter, &card, &fid).await;
        take_out(inserted);
        if done {
            break;
        }
        n += 1;
        assert!(n < 80, "the flow never completed");
    }
    assert!(reconciled_a_lost_confirmation, "no pull-out fell between a COMMIT and its confirmation");
}

async fn other_municipalities_cards_bad_readers_and_an_unreachable_server_are_told_apart(backend: Backend) {
    if !reader_available("bad_input") {
        return;
    }
    let counter = counter(backend).await;

    // A card whose local area another municipality created (written with a valid MAC, as cardap would).
    let card_fid = "0B0B0B0B";
    let card = card(&counter, card_fid, None);
    {
        let mut c = card.lock().unwrap();
        let image = AreaImage {
            municipality: MunicipalityCode::parse(SAPPORO).unwrap(),
            base_version: 3,
            aps: [(BusinessId::parse("01").unwrap(), None)].into(),
        }
        .encode()
        .unwrap();
        c.process(&Apdu::select_aid(&cardap_card_profile::AID_LOCAL_AREA).to_bytes());
        let challenge = c.process(&Apdu::get_challenge().to_bytes()).data;
        c.process(&Apdu::stage(0, &image).to_bytes());
        let key = counter.app.state.card_writes.card_key(&CardFid::parse(card_fid).unwrap());
        let mac = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key),
            &commit_message(c.fid(), &challenge, &image),
        );
        assert!(c.process(&Apdu::commit(image.len() as u16, mac.as_ref()).to_bytes()).is_ok());
        c.reset();
    }
    let inserted = insert(&card, None);
    let (result, _) = run_agent(&counter.config, two_aps(), vec!["1234"]).await;
    assert!(matches!(&result, Err(AgentError::OtherMunicipality(code)) if code == SAPPORO), "{result:?}");

    // The server unreachable: a clear message, nothing written.
    let mut down = counter.config.clone();
    down.url = "https://127.0.0.1:9".into();
    let (result, _) = run_agent(&down, two_aps(), vec!["1234"]).await;
    assert!(matches!(&result, Err(AgentError::ServerUnreachable(_))), "{result:?}");
    take_out(inserted);

    // An unknown card (registered nowhere): its local area is absent, the access module says so.
    let fresh = self::card(&counter, "0C0C0C0C", None);
    let inserted = insert(&fresh, None);
    let read = tokio::task::spawn_blocking(|| cardap_card_access::open(None, Duration::from_secs(5))?.local_area())
        .await
        .unwrap()
        .unwrap();
    assert!(read.is_none(), "no local area yet");
    take_out(inserted);

    // An IC card that is no My Number card: told so before anything is asked or written; cardap knows nothing of it.
    let mut stranger = card_data(&counter, "0D0D0D0D");
    stranger.not_my_number_card = true;
    let stranger = Arc::new(Mutex::new(Card::open(stranger, None).unwrap()));
    let inserted = insert(&stranger, None);
    let (result, steps) = run_agent(&counter.config, two_aps(), vec!["1234"]).await;
    assert!(matches!(&result, Err(AgentError::Card(AccessError::NotMyNumberCard))), "{result:?}");
    assert!(!steps.iter().any(|s| matches!(s, Step::CardRead { .. })), "nothing read: {steps:?}");
    let known =
        counter.app.get(&format!("/api/v1/municipalities/{CHIYODA}/cards/0D0D0D0D"), Some(&counter.admin)).await;
    assert_eq!(known.status, StatusCode::NOT_FOUND);
    take_out(inserted);

    // A reader that is not connected (unplugged).
    let gone =
        tokio::task::spawn_blocking(|| Readers::establish()?.pick(Some("Unplugged Reader 00 00"))).await.unwrap();
    assert!(matches!(gone, Err(AccessError::ReaderGone(_))), "{gone:?}");
    // No card in the reader.
    let none = tokio::task::spawn_blocking(|| {
        let readers = Readers::establish()?;
        let reader = readers.pick(None)?;
        readers.wait_for_card(&reader, Duration::from_millis(300))
    })
    .await
    .unwrap();
    assert!(matches!(none, Err(AccessError::Timeout(_))), "{none:?}");
}

on_both_backends!(
    the_whole_flow_registers_the_resident_and_writes_the_area_and_two_aps,
    a_wrong_pin_tells_the_tries_left_and_a_blocked_pin_says_so,
    the_certificate_issuance_ap_needs_the_residents_consent_through_the_agent_too,
    a_card_pulled_out_at_any_step_is_unchanged_or_whole_and_the_next_insertion_reconciles,
    other_municipalities_cards_bad_readers_and_an_unreachable_server_are_told_apart,
);
