//! The settings as an operator gives them (環境基本設定): the defaults of a fresh installation, a configuration file
//! under the `CARDAP_*` variables under the flags, unknown keys and bad values refused by name, and secrets that
//! come from the environment only and never print.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use cardap_api::auth::Secret;
use cardap_api::settings::{
    BOOTSTRAP_PASSWORD_ENV, CONFIG_ENV, KEYS, MASTER_KEY_ENV, Settings, SettingsError, Sources,
};
use cardap_domain::operator::{LockoutPolicy, PasswordPolicy};
fn sources(file: Option<&Path>, env: &[(&str, &str)], flags: &[(&str, &str)]) -> Sources {
    Sources {
        config: file.map(Path::to_path_buf),
        env: env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        flags: flags.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
    }
}

fn write(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("cardap.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn with_no_source_the_settings_are_the_defaults_of_a_fresh_installation() {
    let s = Settings::load(&Sources::default()).unwrap();
    assert_eq!(s.database_url, "sqlite://cardap-data/cardap.db");
    assert_eq!(s.master_key_file, Path::new("cardap-data/master.key"));
    assert_eq!(s.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(s.sessions.idle, Duration::from_secs(30 * 60));
    assert_eq!(s.sessions.absolute, Duration::from_secs(8 * 3600));
    assert_eq!(s.lockout, LockoutPolicy { max_failures: 5, lock_seconds: 900, max_lockouts: 0 });
    assert_eq!(s.passwords, PasswordPolicy { min_length: 8, history: 3 });
    assert_eq!(s.bootstrap_admin, "admin");
    assert!(s.bootstrap_password.is_none() && s.master_key.is_none());
}

#[test]
fn a_variable_wins_over_the_file_and_a_flag_wins_over_both() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "[sessions]\nidle_minutes = 10\nabsolute_minutes = 100\n[lockout]\nmax_failures = 7\n\
         [passwords]\nmin_length = 12\n",
    );
    let s = Settings::load(&sources(
        Some(&file),
        &[("CARDAP_SESSION_IDLE_MINUTES", "20"), ("CARDAP_LOCKOUT_MAX_FAILURES", "9")],
        &[("session-idle-minutes", "40")],
    ))
    .unwrap();
    assert_eq!(s.sessions.idle, Duration::from_secs(40 * 60), "flag over variable over file");
    assert_eq!(s.lockout.max_failures, 9, "variable over file");
    assert_eq!(s.sessions.absolute, Duration::from_secs(100 * 60), "file over default");
    assert_eq!(s.passwords.min_length, 12, "file over default");
    assert_eq!(s.lockout.lock_seconds, 900, "default where nothing is given");
}

#[test]
fn the_file_may_be_named_by_the_variable_and_the_flag_names_another() {
    let dir = tempfile::tempdir().unwrap();
    let by_env = write(dir.path(), "[server]\nlisten = \"127.0.0.1:9001\"\n");
    let by_flag = dir.path().join("other.toml");
    std::fs::write(&by_flag, "[server]\nlisten = \"127.0.0.1:9002\"\n").unwrap();
    let env = [(CONFIG_ENV, by_env.to_str().unwrap())];
    assert_eq!(Settings::load(&sources(None, &env, &[])).unwrap().listen.port(), 9001);
    assert_eq!(Settings::load(&sources(Some(&by_flag), &env, &[])).unwrap().listen.port(), 9002);
}

#[test]
fn the_data_directory_moves_the_default_database_and_key_file_but_not_given_ones() {
    let s = Settings::load(&sources(None, &[("CARDAP_DATA_DIR", "/srv/cardap")], &[])).unwrap();
    assert_eq!(s.database_url, "sqlite:///srv/cardap/cardap.db");
    assert_eq!(s.master_key_file, Path::new("/srv/cardap/master.key"));
    assert_eq!(s.audit.key_file.as_deref(), Some(Path::new("/srv/cardap/audit.key")));
    assert_eq!(s.audit.head_file.as_deref(), Some(Path::new("/srv/cardap/audit-heads.jsonl")));
    let s = Settings::load(&sources(
        None,
        &[("CARDAP_DATA_DIR", "/srv/cardap"), ("CARDAP_DATABASE_URL", "postgres://db/cardap")],
        &[("master-key-file", "/etc/cardap/key"), ("audit-head-file", "/var/log/cardap/heads.jsonl")],
    ))
    .unwrap();
    assert_eq!(s.database_url, "postgres://db/cardap");
    assert_eq!(s.master_key_file, Path::new("/etc/cardap/key"));
    assert_eq!(s.audit.key_file.as_deref(), Some(Path::new("/srv/cardap/audit.key")));
    assert_eq!(s.audit.head_file.as_deref(), Some(Path::new("/var/log/cardap/heads.jsonl")));
}

#[test]
fn an_unknown_key_in_the_file_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "[sessions]\nidle_minutes = 10\nidle_minute = 5\n");
    let err = Settings::load(&sources(Some(&file), &[], &[])).unwrap_err();
    assert_eq!(err, SettingsError::UnknownKey { path: file.clone(), key: "sessions.idle_minute".into() });
    assert!(err.to_string().contains("unknown key `sessions.idle_minute`"), "{err}");
    let file = write(dir.path(), "listen = \"127.0.0.1:80\"\n");
    let err = Settings::load(&sources(Some(&file), &[], &[])).unwrap_err();
    assert_eq!(err, SettingsError::UnknownKey { path: file, key: "listen".into() }, "keys live in sections");
}

#[test]
fn a_bad_value_names_its_key_and_the_expected_form() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "[lockout]\nmax_failures = \"five\"\n");
    let err = Settings::load(&sources(Some(&file), &[], &[])).unwrap_err().to_string();
    assert!(err.contains("`lockout.max_failures`") && err.contains("expected a whole number, 1 or more"), "{err}");
    assert!(err.contains("found \"five\""), "{err}");

    let err = Settings::load(&sources(None, &[("CARDAP_SESSION_IDLE_MINUTES", "0")], &[])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "CARDAP_SESSION_IDLE_MINUTES: expected a whole number of minutes, 1 or more, found \"0\""
    );
    let err = Settings::load(&sources(None, &[], &[("listen", "localhost")])).unwrap_err().to_string();
    assert!(err.starts_with("--listen: expected an address and port"), "{err}");
    let url = "mysql://cardap:hunter2@db/cardap";
    let err = Settings::load(&sources(None, &[], &[("database-url", url)])).unwrap_err().to_string();
    assert!(err.contains("postgres://user@host:port/db or sqlite:path"), "{err}");
    assert!(!err.contains("hunter2"), "the database password was printed: {err}");
    let err = Settings::load(&sources(None, &[], &[("password-min-length", "65")])).unwrap_err().to_string();
    assert!(err.contains("from 1 to 64"), "{err}");
    let file = write(dir.path(), "[passwords\nmin_length = 8\n");
    assert!(matches!(Settings::load(&sources(Some(&file), &[], &[])), Err(SettingsError::NotToml { .. })));
    let missing = dir.path().join("missing.toml");
    assert!(matches!(Settings::load(&sources(Some(&missing), &[], &[])), Err(SettingsError::Unreadable { .. })));
}

#[test]
fn secrets_come_from_the_environment_only_and_never_print() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "[bootstrap]\npassword = \"Secret123\"\n");
    let err = Settings::load(&sources(Some(&file), &[], &[])).unwrap_err();
    assert!(matches!(err, SettingsError::SecretInFile { env: BOOTSTRAP_PASSWORD_ENV, .. }), "{err:?}");

    let key = "Y2FyZGFwLXRlc3Qta2V5LW5vdC1mb3ItcHJvZHVjdGk=";
    let env = [
        (BOOTSTRAP_PASSWORD_ENV, "Secret1234"),
        (MASTER_KEY_ENV, key),
        ("CARDAP_DATABASE_URL", "postgres://cardap:hunter2@db/cardap"),
    ];
    let s = Settings::load(&sources(None, &env, &[])).unwrap();
    assert_eq!(s.bootstrap_password.as_ref().map(Secret::expose), Some("Secret1234"));
    assert!(s.master_key.is_some());
    let printed = format!("{s:?}");
    assert!(!printed.contains("Secret1234") && !printed.contains(key), "{printed}");
    assert!(printed.contains("postgres://cardap:***@db/cardap") && !printed.contains("hunter2"), "{printed}");

    // A bad secret is refused without being echoed.
    let err = Settings::load(&sources(None, &[(BOOTSTRAP_PASSWORD_ENV, "short1")], &[])).unwrap_err();
    assert!(err.to_string().starts_with("CARDAP_BOOTSTRAP_PASSWORD: expected 8 to 64"), "{err}");
    assert!(!err.to_string().contains("short1"), "{err}");
    let err = Settings::load(&sources(None, &[(MASTER_KEY_ENV, "bm90IGEga2V5")], &[])).unwrap_err();
    assert!(!err.to_string().contains("bm90IGEga2V5"), "{err}");
    let printed = format!("{:?}", sources(None, &[(BOOTSTRAP_PASSWORD_ENV, "Secret1234")], &[]));
    assert!(!printed.contains("Secret1234"), "{printed}");
}

#[test]
fn the_example_file_at_the_repository_root_gives_the_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cardap.example.toml");
    let s = Settings::load(&sources(Some(&path), &[], &[])).unwrap();
    let d = Settings::default();
    assert_eq!(format!("{s:?}"), format!("{d:?}"));
    // And it shows every key.
    let text = std::fs::read_to_string(&path).unwrap();
    for key in KEYS {
        let (section, name) = key.file.split_once('.').unwrap();
        assert!(text.contains(&format!("[{section}]")) && text.contains(&format!("{name} =")), "{}", key.file);
    }
}

#[test]
fn the_webhook_push_takes_its_timeout_backoff_and_ca_file_within_bounds() {
    let d = Settings::load(&Sources::default()).unwrap();
    assert_eq!(d.webhook.push.timeout, Duration::from_secs(10));
    assert_eq!(d.webhook.push.initial_backoff, Duration::from_secs(1));
    assert_eq!(d.webhook.push.max_backoff, Duration::from_secs(300));
    assert_eq!(d.webhook.ca_file, None);

    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "[webhook]\ntimeout_ms = 1500\ninitial_backoff_ms = 50\nmax_backoff_ms = 400\nca_file = \"/etc/cardap/ca.pem\"\n",
    );
    let s = Settings::load(&sources(Some(&file), &[("CARDAP_WEBHOOK_MAX_BACKOFF_MS", "800")], &[])).unwrap();
    assert_eq!(s.webhook.push.timeout, Duration::from_millis(1500));
    assert_eq!(s.webhook.push.initial_backoff, Duration::from_millis(50));
    assert_eq!(s.webhook.push.max_backoff, Duration::from_millis(800), "the variable over the file");
    assert_eq!(s.webhook.ca_file.as_deref(), Some(Path::new("/etc/cardap/ca.pem")));

    for (flag, value, expected) in [
        ("webhook-timeout-ms", "99", "100 to 30000"),
        ("webhook-timeout-ms", "30001", "100 to 30000"),
        ("webhook-initial-backoff-ms", "0", "10 to 600000"),
        ("webhook-max-backoff-ms", "86400001", "10 to 86400000"),
        ("webhook-max-backoff-ms", "1s", "10 to 86400000"),
    ] {
        let err = Settings::load(&sources(None, &[], &[(flag, value)])).unwrap_err().to_string();
        assert!(err.starts_with(&format!("--{flag}: expected")) && err.contains(expected), "{flag}={value}: {err}");
    }
    let err = Settings::load(&sources(
        None,
        &[("CARDAP_WEBHOOK_INITIAL_BACKOFF_MS", "5000"), ("CARDAP_WEBHOOK_MAX_BACKOFF_MS", "1000")],
        &[],
    ))
    .unwrap_err();
    assert!(matches!(err, SettingsError::Inconsistent(_)), "{err:?}");
    let err = err.to_string();
    assert!(err.contains("webhook.max_backoff_ms") && err.contains("webhook.initial_backoff_ms"), "{err}");
}
