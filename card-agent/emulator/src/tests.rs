//! The emulator's APDU handling, without pcscd: the text input assistance AP and the local-area profile.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use cardap_card_profile::{AreaImage, Command, commit_message, facts::FourFacts, state_message, sw};
use cardap_domain::{BusinessId, MunicipalityCode};
use ring::hmac;

use super::*;

const KEY: [u8; 32] = [7; 32];

fn data() -> CardData {
    CardData {
        fid: "0a1b2c".into(),
        pin: "1234".into(),
        card_key: hex::encode(KEY),
        name: "山田 太郎".into(),
        address: "東京都千代田区千代田1-1".into(),
        birth_date: "19890107".into(),
        sex: "1".into(),
        not_my_number_card: false,
    }
}

fn send(card: &mut Card, c: Command) -> Response {
    card.process(&c.to_bytes())
}

fn image(base_version: u64) -> Vec<u8> {
    AreaImage {
        municipality: MunicipalityCode::parse("131016").unwrap(),
        base_version,
        aps: BTreeMap::from([(BusinessId::parse("01").unwrap(), None)]),
    }
    .encode()
    .unwrap()
}

fn mac(message: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &KEY), message).as_ref().to_vec()
}

/// GET CHALLENGE, STAGE and COMMIT of `image` with a MAC from `key`; the COMMIT's answer.
fn write(card: &mut Card, image: &[u8], key: &[u8]) -> Response {
    assert!(send(card, Command::select_aid(&AID_LOCAL_AREA)).is_ok());
    let challenge = send(card, Command::get_challenge()).data;
    for stage in Command::stages(image) {
        assert!(send(card, stage).is_ok());
    }
    let m = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), &commit_message(card.fid(), &challenge, image));
    let answer = send(card, Command::commit(image.len() as u16, m.as_ref()));
    if answer.is_ok() {
        assert_eq!(answer.data, mac(&state_message(card.fid(), &challenge, image)));
    }
    answer
}

#[test]
fn the_pin_counts_down_and_blocks() {
    let mut card = Card::open(data(), None).unwrap();
    assert!(send(&mut card, Command::select_aid(&AID_TEXT_AP)).is_ok());
    assert!(send(&mut card, Command::select_ef(EF_TEXT_PIN)).is_ok());
    assert_eq!(send(&mut card, Command::verify(None)).tries_left(), Some(3));
    assert_eq!(send(&mut card, Command::verify(Some(b"0000"))).tries_left(), Some(2));
    assert!(send(&mut card, Command::verify(Some(b"1234"))).is_ok());
    assert_eq!(send(&mut card, Command::verify(None)).tries_left(), Some(3), "a right PIN restores the tries");
    for left in [2, 1, 0] {
        assert_eq!(send(&mut card, Command::verify(Some(b"9999"))).tries_left(), Some(left));
    }
    assert_eq!(send(&mut card, Command::verify(Some(b"1234"))).sw, sw::AUTH_METHOD_BLOCKED);
    assert_eq!(send(&mut card, Command::verify(None)).sw, sw::AUTH_METHOD_BLOCKED);
}

#[test]
fn the_four_facts_need_the_pin_and_the_my_number_is_refused() {
    let mut card = Card::open(data(), None).unwrap();
    send(&mut card, Command::select_aid(&AID_TEXT_AP));
    send(&mut card, Command::select_ef(EF_FOUR_FACTS));
    assert_eq!(send(&mut card, Command::read_binary(0, 0)).sw, sw::SECURITY_NOT_SATISFIED);
    send(&mut card, Command::select_ef(EF_TEXT_PIN));
    assert!(send(&mut card, Command::verify(Some(b"1234"))).is_ok());
    send(&mut card, Command::select_ef(EF_FOUR_FACTS));
    let read = send(&mut card, Command::read_binary(0, 0));
    assert!(read.is_ok());
    let facts = FourFacts::parse(&read.data).unwrap();
    assert_eq!((facts.birth_date.as_str(), facts.sex.as_str()), ("19890107", "1"));
    send(&mut card, Command::select_ef(EF_MY_NUMBER));
    assert_eq!(send(&mut card, Command::read_binary(0, 0)).sw, sw::COMMAND_NOT_ALLOWED);
    // A power cycle forgets the PIN.
    card.reset();
    send(&mut card, Command::select_aid(&AID_TEXT_AP));
    send(&mut card, Command::select_ef(EF_FOUR_FACTS));
    assert_eq!(send(&mut card, Command::read_binary(0, 0)).sw, sw::SECURITY_NOT_SATISFIED);
}

#[test]
fn the_fid_is_read_without_a_pin() {
    let mut card = Card::open(data(), None).unwrap();
    assert_eq!(send(&mut card, Command::select_aid(&[0xA0, 0, 0])).sw, sw::FILE_NOT_FOUND);
    send(&mut card, Command::select_aid(&AID_LOCAL_AREA));
    send(&mut card, Command::select_ef(EF_CARD_ID));
    assert_eq!(send(&mut card, Command::read_binary(0, 0)).data, b"0A1B2C");
}

#[test]
fn a_write_needs_cardaps_mac_over_this_challenge() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let mut card = Card::open(data(), Some(state.clone())).unwrap();
    assert_eq!(write(&mut card, &image(1), &[8; 32]).sw, sw::SECURITY_NOT_SATISFIED);
    assert!(card.area().is_empty());
    assert!(write(&mut card, &image(1), &KEY).is_ok());
    assert_eq!(card.area(), image(1));
    // The challenge served one COMMIT: a second one without a new challenge is refused.
    let m = mac(&commit_message(card.fid(), &[0; 8], &image(2)));
    for stage in Command::stages(&image(2)) {
        send(&mut card, stage);
    }
    assert_eq!(send(&mut card, Command::commit(image(2).len() as u16, &m)).sw, sw::CONDITIONS_NOT_SATISFIED);
    // The area survives a power cycle and a restart of the emulator; the AP's EF is there.
    let mut card = Card::open(data(), Some(state)).unwrap();
    assert_eq!(card.area(), image(1));
    send(&mut card, Command::select_aid(&AID_LOCAL_AREA));
    assert!(send(&mut card, Command::select_ef([0x01, 0x01])).is_ok());
    assert!(send(&mut card, Command::read_binary(0, 0)).data.starts_with(&[0xC1, 2, b'0', b'1']));
    assert_eq!(send(&mut card, Command::select_ef([0x01, 0x02])).sw, sw::FILE_NOT_FOUND);
}

#[test]
fn staging_without_a_commit_changes_nothing() {
    let mut card = Card::open(data(), None).unwrap();
    assert!(write(&mut card, &image(1), &KEY).is_ok());
    send(&mut card, Command::select_aid(&AID_LOCAL_AREA));
    send(&mut card, Command::get_challenge());
    send(&mut card, Command::stage(0, &image(5)));
    card.reset();
    assert_eq!(card.area(), image(1));
}

#[test]
fn read_state_is_maced_with_the_nonce() {
    let mut card = Card::open(data(), None).unwrap();
    send(&mut card, Command::select_aid(&AID_LOCAL_AREA));
    let empty = send(&mut card, Command::read_state(&[3; 8]));
    assert_eq!(empty.data, mac(&state_message(card.fid(), &[3; 8], &[])));
    assert!(write(&mut card, &image(4), &KEY).is_ok());
    let state = send(&mut card, Command::read_state(&[3; 8]));
    let (img, m) = state.data.split_at(state.data.len() - 32);
    assert_eq!(img, image(4));
    assert_eq!(m, mac(&state_message(card.fid(), &[3; 8], &image(4))));
}

#[test]
fn profile_commands_need_the_local_area_selected() {
    let mut card = Card::open(data(), None).unwrap();
    send(&mut card, Command::select_aid(&AID_TEXT_AP));
    assert_eq!(send(&mut card, Command::stage(0, &[1])).sw, sw::CONDITIONS_NOT_SATISFIED);
    assert_eq!(send(&mut card, Command::get_challenge()).sw, sw::CONDITIONS_NOT_SATISFIED);
    assert_eq!(card.process(&[0x00, 0x12, 0, 0]).sw, sw::INS_NOT_SUPPORTED);
    assert_eq!(card.process(&[0x00]).sw, sw::WRONG_LENGTH);
}

#[test]
fn card_files_are_checked() {
    let mut bad = data();
    bad.card_key = "00".into();
    assert!(matches!(Card::open(bad, None), Err(EmulatorError::Key)));
    let mut bad = data();
    bad.pin = "12345".into();
    assert!(matches!(Card::open(bad, None), Err(EmulatorError::Pin)));
    assert!(!format!("{:?}", data()).contains("1234\""));
}

/// A stand-in for vpcd: the frames it sends, the frames it reads back.
mod vpcd_side {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;
    use crate::vpcd::{self, ATR, Ended, PullOut};

    fn frame(stream: &mut TcpStream, payload: &[u8]) {
        let mut out = (payload.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(payload);
        stream.write_all(&out).unwrap();
    }

    fn answer(stream: &mut TcpStream) -> Vec<u8> {
        let mut len = [0_u8; 2];
        stream.read_exact(&mut len).unwrap();
        let mut payload = vec![0_u8; u16::from_be_bytes(len) as usize];
        stream.read_exact(&mut payload).unwrap();
        payload
    }

    #[test]
    fn a_card_is_taken_once_vpcd_talks_to_it_and_a_reset_connection_is_a_card_gone() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let card = Arc::new(Mutex::new(Card::open(data(), None).unwrap()));
        let inserted =
            vpcd::insert(card, listener.local_addr().unwrap(), PullOut::default(), Duration::from_secs(5)).unwrap();
        // Connected, but vpcd still busy with the card before: not taken yet.
        assert!(!inserted.wait_taken(Duration::from_millis(100)));
        let (mut vpcd, _) = listener.accept().unwrap();
        frame(&mut vpcd, &[0x04]);
        assert_eq!(answer(&mut vpcd), ATR);
        assert!(inserted.wait_taken(Duration::from_secs(5)));
        frame(&mut vpcd, &[0x01]);
        frame(&mut vpcd, &Command::select_aid(&AID_LOCAL_AREA).to_bytes());
        assert_eq!(answer(&mut vpcd), [0x90, 0x00]);
        // vpcd drops the connection with the ATR unread (the kernel answers with a reset): the card is out, not
        // an error.
        frame(&mut vpcd, &[0x04]);
        std::thread::sleep(Duration::from_millis(50));
        drop(vpcd);
        assert_eq!(inserted.wait().unwrap(), Ended::Closed);
    }

    #[test]
    fn a_card_pulled_out_after_n_apdus_processes_the_nth_and_never_answers_it() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let card = Arc::new(Mutex::new(Card::open(data(), None).unwrap()));
        let pull_out = PullOut { after_apdus: Some(2) };
        let inserted =
            vpcd::insert(card.clone(), listener.local_addr().unwrap(), pull_out, Duration::from_secs(5)).unwrap();
        let (mut vpcd, _) = listener.accept().unwrap();
        frame(&mut vpcd, &[0x01]);
        frame(&mut vpcd, &Command::select_aid(&AID_TEXT_AP).to_bytes());
        assert_eq!(answer(&mut vpcd), [0x90, 0x00]);
        frame(&mut vpcd, &Command::select_ef(EF_TEXT_PIN).to_bytes());
        frame(&mut vpcd, &Command::verify(Some(b"0000")).to_bytes());
        let mut rest = vec![];
        let _ = vpcd.read_to_end(&mut rest);
        assert!(rest.is_empty(), "the second APDU was answered");
        assert_eq!(inserted.wait().unwrap(), Ended::PulledOut);
        assert_eq!(card.lock().unwrap().pin_tries_left(), PIN_TRIES, "the third APDU never reached the card");
    }
}
