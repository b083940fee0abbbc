//! The authorization table of `cardap_commands::authorize`, walked over HTTP for every operator command: each
//! role (the system administrator, and an operations manager, a business administrator permitted 01, a clerk
//! and an auditor of 千代田区) tries every command on an operator of 千代田区 and on one of 札幌市.
//!
//! `A`: allowed (2xx). `F`: forbidden (403 `/problems/forbidden`). `H`: hidden (404 `/problems/not-found`,
//! byte-identical to the answer about a municipality nobody registered and about an operator who does not
//! exist). `O`: his own roles or business systems (403 `/problems/forbidden` saying nobody changes his own); `N`:
//! a role or business system he does not hold himself (403 `/problems/forbidden` naming it): the privilege
//! boundaries of issue 9, point 8. `-`: not applicable (the system administrator has no record under a
//! municipality). Refused requests write nothing: no event, no password, no ended session. A mismatch does not
//! stop the walk: the test ends with the whole table, expected against observed. Runs on PostgreSQL and on
//! SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;

use cardap_commands::authz::Privilege;
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

/// The roles and business systems a command names.
type Names = &'static [&'static str];

/// Every operator command of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    List,
    Show,
    /// Register a new operator with these roles and business systems (he gets all of them).
    Register(Names, Names),
    /// Change the management information only.
    Change,
    /// Set the target's roles to the first list; the second names what that gives him that he did not have.
    ChangeRoles(Names, Names),
    /// Set the target's business systems to the first list; the second names what that gives him.
    ChangeSystems(Names, Names),
    /// The actor adds `auditor` to his own roles.
    ChangeOwnRoles,
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
/// last: it leaves nothing to do). The operations manager holds his role and business system 01; each target is
/// a clerk permitted 01 and 02.
#[rustfmt::skip]
const TABLE: &[(Command, &str, [char; 5])] = &[
    //                                                                   SA   OM   BA   CL   AU
    (List,                                                     OWN,   ['A', 'A', 'A', 'F', 'A']),
    (Show,                                                     OWN,   ['A', 'A', 'A', 'F', 'A']),
    (Register(&["operations_manager"], &["01"]),               OWN,   ['A', 'A', 'F', 'F', 'F']),
    (Register(&["clerk"], &[]),                                OWN,   ['A', 'N', 'F', 'F', 'F']),
    (Register(&["operations_manager"], &["02"]),               OWN,   ['A', 'N', 'F', 'F', 'F']),
    (Change,                                                   OWN,   ['A', 'A', 'F', 'F', 'F']),
    (ChangeRoles(&["clerk", "operations_manager"], &["operations_manager"]), OWN, ['A', 'A', 'F', 'F', 'F']),
    (ChangeRoles(&["clerk", "auditor"], &["auditor"]),         OWN,   ['A', 'N', 'F', 'F', 'F']),
    (ChangeOwnRoles,                                           OWN,   ['-', 'O', 'F', 'F', 'F']),
    (AssignInternalId("01"),                                   OWN,   ['A', 'F', 'A', 'F', 'F']),
    (RemoveInternalId("01"),                                   OWN,   ['A', 'F', 'A', 'F', 'F']),
    (AssignInternalId("02"),                                   OWN,   ['A', 'F', 'F', 'F', 'F']),
    (RemoveInternalId("02"),                                   OWN,   ['A', 'F', 'F', 'F', 'F']),
    (ChangeSystems(&["01"], &[]),                              OWN,   ['A', 'A', 'F', 'F', 'F']),
    (ChangeSystems(&["01", "02"], &["02"]),                    OWN,   ['A', 'N', 'F', 'F', 'F']),
    (ResetPassword,                                            OWN,   ['A', 'A', 'F', 'F', 'F']),
    (BulkPasswords,          OWN,     ['A', 'A', 'F', 'F', 'F']),
    (EndSessions,            OWN,     ['A', 'A', 'F', 'F', 'F']),
    (Unlock,                 OWN,     ['A', 'A', 'F', 'F', 'F']),
    (Revoke,                 OWN,     ['A', 'A', 'F', 'F', 'F']),
    (List,                   OTHER,   ['A', 'H', 'H', 'H', 'H']),
    (Show,                   OTHER,   ['A', 'H', 'H', 'H', 'H']),
    (Register(&["operations_manager"], &["01"]), OTHER, ['A', 'H', 'H', 'H', 'H']),
    (Change,                 OTHER,   ['A', 'H', 'H', 'H', 'H']),
    (ChangeRoles(&["clerk", "operations_manager"], &["operations_manager"]), OTHER, ['A', 'H', 'H', 'H', 'H']),
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
            Register(roles, systems) | ChangeRoles(roles, systems) | ChangeSystems(roles, systems) => {
                let name = format!("{self:?}");
                let name = name.split('(').next().unwrap_or_default().to_owned();
                format!("{name} {}", [roles, systems].concat().join("+"))
            }
            other => format!("{other:?}"),
        }
    }

    /// The permissions the route and its use case ask `authorize` for, in that order (`me`: the actor).
    fn permissions(self, code: &str, me: OperatorKey) -> Vec<Permission> {
        let code = MunicipalityCode::parse(code).unwrap();
        let another = OperatorKey::from_uuid(uuid::Uuid::from_u128(7));
        let privilege = |name: &&str| match Role::parse(name) {
            Ok(role) => Privilege::Role(role),
            Err(_) => Privilege::BusinessSystem(BusinessId::parse(name).unwrap()),
        };
        let manage = Permission::ManageOperators(code.clone());
        let grants = |names: Names| names.iter().map(|n| Permission::Grant(code.clone(), privilege(n))).collect();
        match self {
            List | Show => vec![Permission::ViewOperators(code)],
            AssignInternalId(b) | RemoveInternalId(b) => {
                vec![Permission::ManageInternalIds(code, BusinessId::parse(b).unwrap())]
            }
            Register(roles, systems) => [vec![manage], grants(roles), grants(systems)].concat(),
            ChangeRoles(_, gives) | ChangeSystems(_, gives) => {
                [vec![manage, Permission::ChangePrivileges(code.clone(), another)], grants(gives)].concat()
            }
            ChangeOwnRoles => vec![manage, Permission::ChangePrivileges(code, me)],
            Change | ResetPassword | BulkPasswords | EndSessions | Unlock | Revoke => vec![manage],
        }
    }

    /// The request for this command on operator `target` of `code` by `actor` (his operator ID and role);
    /// `fresh` is the ID a registration uses.
    fn request(
        self,
        app: &TestApp,
        (token, actor, role): (&str, &str, Role),
        code: &str,
        target: &str,
        fresh: &str,
    ) -> RequestBuilder {
        let one = operator_path(code, target);
        let token = Some(token);
        match self {
            List => app.request(Method::GET, &operators_path(code), token),
            Show => app.request(Method::GET, &one, token),
            Register(roles, systems) => {
                app.request(Method::POST, &operators_path(code), token).json(&operator(fresh, roles, systems))
            }
            Change => app.request(Method::PATCH, &one, token).json(&json!({"department": "総務課"})),
            ChangeRoles(roles, _) => app.request(Method::PATCH, &one, token).json(&json!({"roles": roles})),
            ChangeSystems(systems, _) => {
                app.request(Method::PATCH, &one, token).json(&json!({"business_systems": systems}))
            }
            ChangeOwnRoles => app
                .request(Method::PATCH, &operator_path(code, actor), token)
                .json(&json!({"roles": [role.as_str(), "auditor"]})),
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

/// What `authorize` itself decides for `role` (of 千代田区 unless system administrator; an operations manager
/// and a business administrator permitted 01, as in this test): the first refusal of the command's permissions.
fn decided_by_authorize(role: Role, command: Command, code: &str) -> char {
    let me = OperatorKey::from_uuid(uuid::Uuid::nil());
    let permitted_01 = matches!(role, Role::BusinessAdmin | Role::OperationsManager);
    let actor = Actor {
        operator: me,
        municipality: (role != Role::SystemAdmin).then(|| MunicipalityCode::parse(OWN).unwrap()),
        roles: vec![role],
        business_systems: if permitted_01 { vec![BusinessId::parse("01").unwrap()] } else { vec![] },
        password_change_required: false,
    };
    let refused = command.permissions(code, me).iter().find_map(|p| authorize(&actor, p).err());
    match refused {
        None => 'A',
        Some(AuthzError::Forbidden) => 'F',
        Some(AuthzError::NotVisible) => 'H',
        Some(AuthzError::OwnPrivileges) => 'O',
        Some(AuthzError::NotHeld(_)) => 'N',
        Some(AuthzError::PasswordChangeRequired) => unreachable!("no password change is pending in this table"),
    }
}

/// `A`, `F`, `H`, `O` or `N` when the answer is exactly one of those, else what it was.
fn observed(reply: &Reply) -> String {
    if reply.status.is_success() {
        return "A".into();
    }
    let body = cardap_tests::serde_json::from_str::<Value>(&reply.text).unwrap_or_default();
    let kind = body["type"].as_str().unwrap_or_default();
    let detail = body["detail"].as_str().unwrap_or_default();
    let is_problem = reply.header("content-type") == Some("application/problem+json");
    match (reply.status, kind) {
        (StatusCode::FORBIDDEN, "/problems/forbidden") if is_problem && detail.contains("自分自身") => "O".into(),
        (StatusCode::FORBIDDEN, "/problems/forbidden") if is_problem && detail.contains("持っていない") => {
            "N".into()
        }
        (StatusCode::FORBIDDEN, "/problems/forbidden") if is_problem && detail.is_empty() => "F".into(),
        (StatusCode::NOT_FOUND, "/problems/not-found") if is_problem => "H".into(),
        (status, kind) => format!("{} {kind}", status.as_u16()),
    }
}

const ACTOR_PASSWORD: &str = "ActorPassw0rd";

/// The actors' operator IDs, in `ROLES` order (the system administrator's is the bootstrap one).
const ACTORS: [&str; 5] = ["admin", "MGR", "BIZ", "CLK", "AUD"];
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
        operator_with_password("MGR", ACTOR_PASSWORD, &["operations_manager"], &["01"]),
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
    for id in &ACTORS[1..] {
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
        for (role, want) in ROLES.into_iter().zip(expected).filter(|(_, want)| **want != '-') {
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
        let actor = (tokens[r].as_str(), ACTORS[r], role);
        let target = target(r);
        for (row, (command, code, expected)) in TABLE.iter().enumerate() {
            let want = expected[r];
            if want == '-' {
                grid[row].push("-".into());
                continue;
            }
            let fresh = format!("N{r}R{row}");
            let before = app.event_count().await;

            let reply = send(command.request(&app, actor, code, &target, &fresh)).await;
            // What a hidden operator's answer must be identical to.
            let twins = if want == 'H' {
                vec![
                    send(command.request(&app, actor, &nowhere, &target, &fresh)).await,
                    send(command.request(&app, actor, code, "NOBODY", &fresh)).await,
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
