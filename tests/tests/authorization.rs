//! The authorization table of `cardap_commands::authorize`, walked over HTTP for every operator command: each
//! role (the system administrator, and an operations manager, a business administrator permitted 01, a clerk
//! and an auditor of 千代田区) tries every command on an operator of 千代田区 and on one of 札幌市.
//!
//! `A`: allowed (2xx). `F`: forbidden (403 `/problems/forbidden`). `H`: hidden (404 `/problems/not-found`,
//! byte-identical to the answer about a municipality nobody registered and about an operator who does not
//! exist). Refused requests write nothing: no event, no password, no ended session. A mismatch does not stop
//! the walk: the test ends with the whole table, expected against observed. Runs on PostgreSQL and on SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;

use cardap_commands::{Actor, AuthzError, Permission, authorize};
use cardap_domain::operator::Role;
use cardap_domain::{BusinessId, MunicipalityCode, OperatorKey};
use cardap_tests::reqwest::{Method, RequestBuilder, StatusCode};
use cardap_tests::serde_json::{Value, json};
use cardap_tests::{
    Backend, Reply, TestApp, on_both_backends, operator, operator_path, operator_with_password, operators_path, send,
    spawn_app, with_check_digit,
};

/// 千代田区: the actors' own municipality.
const OWN: &str = "131016";
/// 札幌市: a municipality they may not see.
const OTHER: &str = "011002";

const ROLES: [Role; 5] = [Role::SystemAdmin, Role::OperationsManager, Role::BusinessAdmin, Role::Clerk, Role::Auditor];

/// Every operator command of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    List,
    Show,
    Register,
    Change,
    AssignInternalId(&'static str),
    RemoveInternalId(&'static str),
    ResetPassword,
    BulkPasswords,
    EndSessions,
    Unlock,
    Revoke,
}

use Command::*;

/// Command × municipality of the target × role (SA, OM, BA, CL, AU), in the order they are tried (revocation
/// last: it leaves nothing to do).
#[rustfmt::skip]
const TABLE: &[(Command, &str, [char; 5])] = &[
    //                                  SA   OM   BA   CL   AU
    (List,                   OWN,     ['A', 'A', 'A', 'F', 'A']),
    (Show,                   OWN,     ['A', 'A', 'A', 'F', 'A']),
    (Register,               OWN,     ['A', 'A', 'F', 'F', 'F']),
    (Change,                 OWN,     ['A', 'A', 'F', 'F', 'F']),
    (AssignInternalId("01"), OWN,     ['A', 'F', 'A', 'F', 'F']),
    (RemoveInternalId("01"), OWN,     ['A', 'F', 'A', 'F', 'F']),
    (AssignInternalId("02"), OWN,     ['A', 'F', 'F', 'F', 'F']),
    (RemoveInternalId("02"), OWN,     ['A', 'F', 'F', 'F', 'F']),
    (ResetPassword,          OWN,     ['A', 'A', 'F', 'F', 'F']),
    (BulkPasswords,          OWN,     ['A', 'A', 'F', 'F', 'F']),
    (EndSessions,            OWN,     ['A', 'A', 'F', 'F', 'F']),
    (Unlock,                 OWN,     ['A', 'A', 'F', 'F', 'F']),
    (Revoke,                 OWN,     ['A', 'A', 'F', 'F', 'F']),
    (List,                   OTHER,   ['A', 'H', 'H', 'H', 'H']),
    (Show,                   OTHER,   ['A', 'H', 'H', 'H', 'H']),
    (Register,               OTHER,   ['A', 'H', 'H', 'H', 'H']),
    (Change,                 OTHER,   ['A', 'H', 'H', 'H', 'H']),
    (AssignInternalId("01"), OTHER,   ['A', 'H', 'H', 'H', 'H']),
    (RemoveInternalId("01"), OTHER,   ['A', 'H', 'H', 'H', 'H']),
    (AssignInternalId("02"), OTHER,   ['A', 'H', 'H', 'H', 'H']),
    (RemoveInternalId("02"), OTHER,   ['A', 'H', 'H', 'H', 'H']),
    (ResetPassword,          OTHER,   ['A', 'H', 'H', 'H', 'H']),
    (BulkPasswords,          OTHER,   ['A', 'H', 'H', 'H', 'H']),
    (EndSessions,            OTHER,   ['A', 'H', 'H', 'H', 'H']),
    (Unlock,                 OTHER,   ['A', 'H', 'H', 'H', 'H']),
    (Revoke,                 OTHER,   ['A', 'H', 'H', 'H', 'H']),
];

impl Command {
    fn label(self) -> String {
        match self {
            AssignInternalId(b) => format!("AssignInternalId {b}"),
            RemoveInternalId(b) => format!("RemoveInternalId {b}"),
            other => format!("{other:?}"),
        }
    }

    /// The permission the route must ask `authorize` for.
    fn permission(self, code: &str) -> Permission {
        let code = MunicipalityCode::parse(code).unwrap();
        match self {
            List | Show => Permission::ViewOperators(code),
            AssignInternalId(b) | RemoveInternalId(b) => {
                Permission::ManageInternalIds(code, BusinessId::parse(b).unwrap())
            }
            Register | Change | ResetPassword | BulkPasswords | EndSessions | Unlock | Revoke => {
                Permission::ManageOperators(code)
            }
        }
    }

    /// The request for this command on operator `target` of `code`; `fresh` is the ID a registration uses.
    fn request(self, app: &TestApp, token: &str, code: &str, target: &str, fresh: &str) -> RequestBuilder {
        let one = operator_path(code, target);
        let token = Some(token);
        match self {
            List => app.request(Method::GET, &operators_path(code), token),
            Show => app.request(Method::GET, &one, token),
            Register => app.request(Method::POST, &operators_path(code), token).json(&operator(fresh, &["clerk"], &[])),
            Change => app.request(Method::PATCH, &one, token).json(&json!({"department": "総務課"})),
            AssignInternalId(b) => app
                .request(Method::PUT, &format!("{one}/internal-ids/{b}"), token)
                .json(&json!({"internal_id": "1000000010"})),
            RemoveInternalId(b) => app.request(Method::DELETE, &format!("{one}/internal-ids/{b}"), token),
            ResetPassword => app.request(Method::POST, &format!("{one}/password"), token).json(&json!({})),
            BulkPasswords => app
                .request(Method::POST, &format!("{}/passwords", operators_path(code)), token)
                .json(&json!({"operator_ids": [target]})),
            EndSessions => app.request(Method::DELETE, &format!("{one}/sessions"), token),
            Unlock => app.request(Method::POST, &format!("{one}/unlock"), token),
            Revoke => app.request(Method::POST, &format!("{one}/revoke"), token),
        }
    }
}

/// What `authorize` itself decides for `role` (of 千代田区 unless system administrator; a business
/// administrator permitted 01, as in this test).
fn decided_by_authorize(role: Role, command: Command, code: &str) -> char {
    let actor = Actor {
        operator: OperatorKey::from_uuid(uuid::Uuid::nil()),
        municipality: (role != Role::SystemAdmin).then(|| MunicipalityCode::parse(OWN).unwrap()),
        roles: vec![role],
        business_systems: if role == Role::BusinessAdmin { vec![BusinessId::parse("01").unwrap()] } else { vec![] },
    };
    match authorize(&actor, &command.permission(code)) {
        Ok(()) => 'A',
        Err(AuthzError::Forbidden) => 'F',
        Err(AuthzError::NotVisible) => 'H',
    }
}

/// `A`, `F` or `H` when the answer is exactly one of those, else what it was.
fn observed(reply: &Reply) -> String {
    if reply.status.is_success() {
        return "A".into();
    }
    let kind = cardap_tests::serde_json::from_str::<Value>(&reply.text)
        .ok()
        .and_then(|body| body["type"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let is_problem = reply.header("content-type") == Some("application/problem+json");
    match (reply.status, kind.as_str()) {
        (StatusCode::FORBIDDEN, "/problems/forbidden") if is_problem => "F".into(),
        (StatusCode::NOT_FOUND, "/problems/not-found") if is_problem => "H".into(),
        (status, kind) => format!("{} {kind}", status.as_u16()),
    }
}

const ACTOR_PASSWORD: &str = "ActorPassw0rd";
const TARGET_PASSWORD: &str = "TargetPassw0rd";

/// The target of role number `i` (each role works on its own target, in each municipality).
fn target(i: usize) -> String {
    format!("TGT{i}")
}

/// Both municipalities permitted 01 and 02; the actors of 千代田区; one target per role in each municipality,
/// permitted 01 and 02 and logged in. Returns the actors' tokens (in `ROLES` order) and the targets' sessions
/// (`[own, other]`, in `ROLES` order).
async fn arrange(app: &TestApp) -> ([String; 5], [Vec<String>; 2]) {
    let admin = app.admin_token().await;
    app.register_municipality(&admin, OWN, "千代田区", 1).await;
    app.register_municipality(&admin, OTHER, "札幌市", 2).await;
    for business_id in ["01", "02"] {
        for code in [OWN, OTHER] {
            app.permit(&admin, business_id, code).await;
        }
    }
    let actors = json!([
        operator_with_password("MGR", ACTOR_PASSWORD, &["operations_manager"], &[]),
        operator_with_password("BIZ", ACTOR_PASSWORD, &["business_admin"], &["01"]),
        operator_with_password("CLK", ACTOR_PASSWORD, &["clerk"], &[]),
        operator_with_password("AUD", ACTOR_PASSWORD, &["auditor"], &[]),
    ]);
    app.add_operators(&admin, OWN, &actors).await;
    let mut sessions = [vec![], vec![]];
    for (m, code) in [OWN, OTHER].into_iter().enumerate() {
        let targets: Vec<Value> = (0..ROLES.len())
            .map(|i| operator_with_password(&target(i), TARGET_PASSWORD, &["clerk"], &["01", "02"]))
            .collect();
        app.add_operators(&admin, code, &json!(targets)).await;
        for i in 0..ROLES.len() {
            sessions[m].push(app.login(Some(code), &target(i), TARGET_PASSWORD).await);
        }
    }
    let mut tokens = vec![admin];
    for id in ["MGR", "BIZ", "CLK", "AUD"] {
        tokens.push(app.login(Some(OWN), id, ACTOR_PASSWORD).await);
    }
    (tokens.try_into().unwrap(), sessions)
}

/// Checks that a target nobody was allowed to manage is as he was: his session alive, his password his,
/// his record unchanged.
async fn untouched(app: &TestApp, admin: &str, code: &str, id: &str, session: &str) -> Vec<String> {
    let mut problems = vec![];
    let me = app.get("/api/v1/me", Some(session)).await;
    if me.status != StatusCode::OK {
        problems.push(format!("his session ended ({})", me.status));
    }
    let login = app.try_login(Some(code), id, TARGET_PASSWORD).await;
    if login.status != StatusCode::CREATED {
        problems.push(format!("his password no longer works ({})", login.status));
    }
    let shown = app.get(&operator_path(code, id), Some(admin)).await.json();
    if shown["revoked"] != false || shown["department"] != Value::Null || shown["internal_ids"] != json!([]) {
        problems.push(format!("his record changed: {shown}"));
    }
    problems
}

async fn every_role_meets_the_authorization_table_over_http(backend: Backend) {
    // The table above is the one of commands/src/authz.rs: check it against `authorize` itself first.
    let mut drift = vec![];
    for (command, code, expected) in TABLE {
        for (role, want) in ROLES.into_iter().zip(expected) {
            let decided = decided_by_authorize(role, *command, code);
            if decided != *want {
                drift.push(format!("{role:?} × {} on {code}: table {want}, authorize {decided}", command.label()));
            }
        }
    }
    assert!(drift.is_empty(), "this table differs from cardap_commands::authorize:\n{}", drift.join("\n"));

    let app = spawn_app(backend).await;
    let (tokens, sessions) = arrange(&app).await;
    let admin = tokens[0].clone();
    let nowhere = with_check_digit("27100");
    let mut grid: Vec<Vec<String>> = vec![vec![]; TABLE.len()];
    let mut mismatches = vec![];

    for (r, role) in ROLES.into_iter().enumerate() {
        let token = &tokens[r];
        let target = target(r);
        let fresh = format!("NEW{r}");
        for (row, (command, code, expected)) in TABLE.iter().enumerate() {
            let want = expected[r];
            let before = app.event_count().await;

            let reply = send(command.request(&app, token, code, &target, &fresh)).await;
            // What a hidden operator's answer must be identical to.
            let twins = if want == 'H' {
                vec![
                    send(command.request(&app, token, &nowhere, &target, &fresh)).await,
                    send(command.request(&app, token, code, "NOBODY", &fresh)).await,
                ]
            } else {
                vec![]
            };

            let written = app.event_count().await - before;
            let got = observed(&reply);
            let mut problems = vec![];
            if got != want.to_string() {
                problems.push(format!("expected {want}, got {got}: {}", reply.text));
            }
            if want != 'A' && written > 0 {
                problems.push(format!("a refused request wrote {written} events"));
            }
            for twin in &twins {
                let same = twin.status == reply.status
                    && twin.text == reply.text
                    && twin.header("content-type") == reply.header("content-type");
                if !same {
                    problems.push(format!(
                        "not identical to the answer about nobody: {} {} vs {} {}",
                        reply.status, reply.text, twin.status, twin.text
                    ));
                }
            }
            let cell = if got == want.to_string() { got.clone() } else { format!("{want}→{got}") };
            grid[row].push(if problems.is_empty() { cell } else { format!("{cell}!") });
            if !problems.is_empty() {
                mismatches.push(format!("{role:?} × {} on {code}: {}", command.label(), problems.join("; ")));
            }
        }
        // The targets he was not allowed to manage are as they were.
        for (m, code) in [OWN, OTHER].into_iter().enumerate() {
            let may_manage = TABLE.iter().any(|(c, c_code, e)| *c == Revoke && *c_code == code && e[r] == 'A');
            if !may_manage {
                for problem in untouched(&app, &admin, code, &target, &sessions[m][r]).await {
                    mismatches.push(format!("{role:?}: {target} of {code} after the refusals: {problem}"));
                }
            }
        }
    }

    if !mismatches.is_empty() {
        let mut table = format!("{:<22} {:<7}", "command", "code");
        for role in ROLES {
            write!(table, " {:<18}", role.to_string()).unwrap();
        }
        for (row, (command, code, _)) in TABLE.iter().enumerate() {
            write!(table, "\n{:<22} {:<7}", command.label(), code).unwrap();
            for cell in &grid[row] {
                write!(table, " {cell:<18}").unwrap();
            }
        }
        panic!(
            "{} mismatches with the authorization table ({backend:?}):\n{}\n\nexpected→observed (! = see above):\n{table}",
            mismatches.len(),
            mismatches.join("\n")
        );
    }
}

on_both_backends!(every_role_meets_the_authorization_table_over_http);
