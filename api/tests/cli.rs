//! The `cardap` binary as an operator runs it: `cardap serve` with no configuration keeps its data in a SQLite
//! file, hands the generated administrator password over once (in a file only its owner reads, as stdout is no
//! terminal here) and makes him change it first, stops cleanly on SIGTERM, and finds its data again
//! on the next start; `cardap serve --config FILE` takes its settings from the file (a variable winning over it)
//! and refuses a file with an unknown key. Also `cardap migrate` and `cardap projections rebuild`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_cardap");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts `cardap serve` in `dir` and returns the child and its stderr lines as they come.
fn serve(dir: &std::path::Path, port: u16) -> (Child, mpsc::Receiver<String>) {
    start(dir, &["serve", "--listen", &format!("127.0.0.1:{port}")], &[])
}

/// Starts `cardap <args>` in `dir` (its default configuration: `./cardap-data`) with the variables `env`.
fn start(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(BIN)
        // Parallel servers: each its own /metrics port.
        .env("CARDAP_METRICS_LISTEN", "127.0.0.1:0")
        .current_dir(dir)
        .args(args)
        .env_remove("CARDAP_DATABASE_URL")
        .env_remove("CARDAP_BOOTSTRAP_PASSWORD")
        .env_remove("CARDAP_CONFIG")
        .env("CARDAP_LOG", "info")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

fn http(port: u16, request: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn wait_healthy(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && http(port, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").starts_with("HTTP/1.1 200")
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("cardap did not become healthy within 30 s");
}

fn login(port: u16, password: &str) -> String {
    login_as(port, "admin", password)
}

fn login_as(port: u16, operator_id: &str, password: &str) -> String {
    let body = format!(r#"{{"operator_id":"{operator_id}","password":"{password}"}}"#);
    http(
        port,
        &format!(
            "POST /api/v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

fn terminate(mut child: Child) {
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "cardap exited with {status} after SIGTERM");
            return;
        }
        assert!(Instant::now() < deadline, "cardap did not stop within 20 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `METHOD path` with a bearer token and an optional JSON body; the raw answer.
fn call(port: u16, method: &str, path: &str, token: &str, body: &str) -> String {
    http(
        port,
        &format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

fn token_of(answer: &str) -> String {
    let body = answer.split("\r\n\r\n").nth(1).unwrap();
    let body = body.trim_start_matches(|c: char| c.is_ascii_hexdigit() || c.is_whitespace());
    let at = body.find("\"token\":\"").unwrap() + 9;
    body[at..].split('"').next().unwrap().to_owned()
}

#[test]
fn serve_with_no_configuration_keeps_its_data_in_a_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (child, lines) = serve(dir.path(), port);
    wait_healthy(port);
    // stdout is no terminal here: the generated password is in a file only its owner can read, not in the log.
    let file = dir.path().join("cardap-data/bootstrap-admin-password.txt");
    let password = std::fs::read_to_string(&file).expect("the generated password's file").trim().to_owned();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the password file is readable by others");
    }
    assert!(password.len() >= 16 && password.bytes().all(|b| b.is_ascii_alphanumeric()), "{password}");
    let staged: Vec<_> = std::fs::read_dir(dir.path().join("cardap-data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".tmp"))
        .collect();
    assert!(staged.is_empty(), "a staged password file was left behind: {staged:?}");

    // He must change it before anything else.
    let answer = login(port, &password);
    assert!(answer.starts_with("HTTP/1.1 201"), "login with the generated password failed: {answer}");
    assert!(answer.contains("\"password_change_required\":true"), "{answer}");
    let token = token_of(&answer);
    let refused = call(port, "GET", "/api/v1/municipalities", &token, "");
    assert!(refused.starts_with("HTTP/1.1 403") && refused.contains("/problems/password-change-required"), "{refused}");
    let change = format!(r#"{{"current_password":"{password}","new_password":"MyOwnPassw0rd1"}}"#);
    let changed = call(port, "PUT", "/api/v1/me/password", &token, &change);
    assert!(changed.starts_with("HTTP/1.1 204"), "{changed}");
    let listed = call(port, "GET", "/api/v1/municipalities", &token, "");
    assert!(listed.starts_with("HTTP/1.1 200"), "{listed}");
    terminate(child);
    assert!(dir.path().join("cardap-data/cardap.db").exists(), "no SQLite file in ./cardap-data");
    #[cfg(unix)]
    {
        // The database (sealed personal data, password hashes) and its directory are the owner's alone.
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| std::fs::metadata(dir.path().join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("cardap-data"), 0o700, "the data directory is open to others");
        for file in ["cardap-data/cardap.db", "cardap-data/cardap.db-wal", "cardap-data/master.key"] {
            if dir.path().join(file).exists() {
                assert_eq!(mode(file), 0o600, "{file} is readable by others");
            }
        }
    }
    let logged: Vec<String> = lines.try_iter().collect();
    assert!(!logged.iter().any(|l| l.contains(&password)), "the generated password is in the log");

    // Second start: same data, his own password, and no new password anywhere.
    let (child, lines) = serve(dir.path(), port);
    wait_healthy(port);
    let answer = login(port, "MyOwnPassw0rd1");
    assert!(answer.starts_with("HTTP/1.1 201"), "the administrator was lost across a restart: {answer}");
    assert!(answer.contains("\"password_change_required\":false"), "{answer}");
    terminate(child);
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), password, "the second start touched the file");
    assert!(!lines.try_iter().any(|l| l.contains("system administrator created")), "created twice");
}

#[test]
fn cardap_project_builds_the_read_models_of_a_server_that_runs_none() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let password = [("CARDAP_BOOTSTRAP_PASSWORD", "AdminPassw0rd1")];
    let listen = format!("127.0.0.1:{port}");
    let (server, _server_log) =
        start(dir.path(), &["serve", "--listen", &listen, "--projection-runners", "elsewhere"], &password);
    wait_healthy(port);
    let token = token_of(&login(port, "AdminPassw0rd1"));
    let chiyoda = r#"{"code":"131016","name":"千代田区","kind":"municipality","display_order":1}"#;
    let created = call(port, "POST", "/api/v1/municipalities", &token, chiyoda);
    assert!(created.starts_with("HTTP/1.1 201"), "{created}");
    // The server builds no read model: the list does not show it yet.
    let listed = call(port, "GET", "/api/v1/municipalities", &token, "");
    assert!(listed.starts_with("HTTP/1.1 200") && !listed.contains("131016"), "{listed}");

    // `cardap project` on the same data builds it; the server shows it.
    let (project, lines) = start(dir.path(), &["project"], &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !call(port, "GET", "/api/v1/municipalities", &token, "").contains("131016") {
        assert!(
            Instant::now() < deadline,
            "cardap project did not build the list: {:?}",
            lines.try_iter().collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    terminate(project);
    terminate(server);
}

#[test]
fn migrate_and_rebuild_run_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/c.db", dir.path().display());
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            // Parallel servers: each its own /metrics port.
            .env("CARDAP_METRICS_LISTEN", "127.0.0.1:0")
            .args(args)
            .env("CARDAP_DATABASE_URL", &url)
            .env("CARDAP_MASTER_KEY", "Y2FyZGFwLXRlc3Qta2V5LW5vdC1mb3ItcHJvZHVjdGk=")
            .output()
            .unwrap();
        assert!(out.status.success(), "cardap {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    run(&["migrate"]);
    run(&["migrate"]); // a second run is a no-op
    // `cardap ca init` creates the CA once and prints its chain (issuing CA, root); a second run prints the same.
    let chain = run(&["ca", "init"]);
    assert_eq!(chain.matches("-----BEGIN CERTIFICATE-----").count(), 2, "{chain}");
    assert_eq!(run(&["ca", "init"]), chain);
    // The root key goes to a file of its owner's only (never to the terminal) and, with --remove, off the server;
    // the CA keeps working and a second export says the key is gone.
    let out_dir = tempfile::tempdir().unwrap();
    let root_file = out_dir.path().join("root.pem");
    let said = run(&["ca", "export-root", "--out", root_file.to_str().unwrap(), "--remove"]);
    assert!(!said.contains("PRIVATE KEY"), "{said}");
    let exported = std::fs::read_to_string(&root_file).unwrap();
    assert!(
        exported.starts_with("-----BEGIN PRIVATE KEY-----")
            && exported.contains(chain.split_inclusive("-----END CERTIFICATE-----\n").nth(1).unwrap())
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&root_file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    assert_eq!(run(&["ca", "init"]), chain);
    let again = Command::new(BIN)
        .env("CARDAP_METRICS_LISTEN", "127.0.0.1:0")
        .args(["ca", "export-root", "--out", out_dir.path().join("again.pem").to_str().unwrap()])
        .env("CARDAP_DATABASE_URL", &url)
        .env("CARDAP_MASTER_KEY", "Y2FyZGFwLXRlc3Qta2V5LW5vdC1mb3ItcHJvZHVjdGk=")
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not on this server"), "{again:?}");
    assert_eq!(
        run(&["projections", "list"]).lines().collect::<Vec<_>>(),
        [
            "municipalities",
            "operators",
            "business_systems",
            "local_settings",
            "residents",
            "cards",
            "registry",
            "certificates",
            "feeds"
        ]
    );
    let rebuilt = run(&["projections", "rebuild", "all"]);
    let in_place = run(&["projections", "rebuild", "all", "--in-place"]);
    for name in [
        "municipalities",
        "operators",
        "business_systems",
        "local_settings",
        "residents",
        "cards",
        "registry",
        "certificates",
        "feeds",
    ] {
        assert!(rebuilt.contains(&format!("{name}: rebuilt beside the live one")), "{rebuilt}");
        assert!(in_place.contains(&format!("{name}: rebuilt up to")), "{in_place}");
    }
    let out = Command::new(BIN)
        // Parallel servers: each its own /metrics port.
        .env("CARDAP_METRICS_LISTEN", "127.0.0.1:0")
        .args(["projections", "rebuild", "nope"])
        .env("CARDAP_DATABASE_URL", &url)
        .env("CARDAP_MASTER_KEY", "Y2FyZGFwLXRlc3Qta2V5LW5vdC1mb3ItcHJvZHVjdGk=")
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn serve_with_a_configuration_file_uses_its_settings_under_the_variables() {
    let dir = tempfile::tempdir().unwrap();
    let (file_port, env_port) = (free_port(), free_port());
    std::fs::write(
        dir.path().join("cardap.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:{file_port}\"\n[database]\ndata_dir = \"store\"\n\
             [bootstrap]\nadmin = \"kanri\"\n[passwords]\nmin_length = 10\n"
        ),
    )
    .unwrap();
    let child = Command::new(BIN)
        // Parallel servers: each its own /metrics port.
        .env("CARDAP_METRICS_LISTEN", "127.0.0.1:0")
        .current_dir(dir.path())
        .args(["serve", "--config", "cardap.toml"])
        .env_remove("CARDAP_DATABASE_URL")
        .env_remove("CARDAP_MASTER_KEY")
        .env_remove("CARDAP_CONFIG")
        .env("CARDAP_LISTEN", format!("127.0.0.1:{env_port}"))
        .env("CARDAP_BOOTSTRAP_PASSWORD", "KanriPassw0rd")
        .env("CARDAP_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The variable wins over the file's address.
    wait_healthy(env_port);
    assert!(std::net::TcpStream::connect(("127.0.0.1", file_port)).is_err(), "listening on the file's port too");
    // The administrator the file names, with the password of the variable.
    assert!(login_as(env_port, "kanri", "KanriPassw0rd").starts_with("HTTP/1.1 201"), "kanri cannot log in");
    assert!(login(env_port, "KanriPassw0rd").starts_with("HTTP/1.1 401"), "`admin` exists although renamed");
    terminate(child);
    // The data directory of the file holds the database and the new master key.
    assert!(dir.path().join("store/cardap.db").exists(), "no SQLite file in the file's data directory");
    assert!(dir.path().join("store/master.key").exists(), "no master key in the file's data directory");
    assert!(!dir.path().join("cardap-data").exists(), "the default data directory was used");

    // The file's password rule applies to the bootstrap password: 9 characters are refused at start.
    let out = Command::new(BIN)
        // Parallel servers: each its own /metrics port.
        .env("CARDAP_METRICS_LISTEN", "127.0.0.1:0")
        .current_dir(dir.path())
        .args(["serve", "--config", "cardap.toml"])
        .env_remove("CARDAP_DATABASE_URL")
        .env("CARDAP_BOOTSTRAP_PASSWORD", "Passw0rd9")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("CARDAP_BOOTSTRAP_PASSWORD: expected 10 to 64"), "{stderr}");
    assert!(!stderr.contains("Passw0rd9"), "the refused password was printed: {stderr}");
}

#[test]
fn serve_refuses_a_configuration_file_with_an_unknown_key_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cardap.toml"), "[sessions]\nidle_minute = 15\n").unwrap();
    let out = Command::new(BIN)
        // Parallel servers: each its own /metrics port.
        .env("CARDAP_METRICS_LISTEN", "127.0.0.1:0")
        .current_dir(dir.path())
        .arg("serve")
        .env_remove("CARDAP_DATABASE_URL")
        .env("CARDAP_CONFIG", "cardap.toml")
        .output()
        .unwrap();
    assert!(!out.status.success(), "cardap started with a misspelt key");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown key `sessions.idle_minute`"), "{stderr}");
    assert!(!dir.path().join("cardap-data").exists(), "a database was created before the settings were checked");
}
