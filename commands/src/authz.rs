//! Who may do what: authorization as its own step, decided here and nowhere else.
//!
//! Shared use (共同利用) is enforced here too: an operator of one municipality never learns that another
//! municipality's data exists, so asking for it is "not found" ([`AuthzError::NotVisible`]), never "forbidden".
//! Only the system administrator works across municipalities.
//!
//! Privileges (roles and permitted business systems, 許可業務) are handed out under two rules, so that nobody
//! raises his own reach (issue 9, point 8):
//! - **Nobody changes his own roles or business systems** ([`Permission::ChangePrivileges`] on himself is
//!   [`AuthzError::OwnPrivileges`]), the system administrator included: another administrator does it.
//! - **Nobody gives what he does not hold** ([`Permission::Grant`]): who manages a municipality's operators (its
//!   運用管理部門) gives a role or a business system only if he holds it himself, else
//!   [`AuthzError::NotHeld`]; the system administrator, who registers every municipality's operators in bulk
//!   (手引き I 2.2(3)), gives anything. Taking a privilege away is no grant: whoever may revoke an operator may
//!   also take one of his roles away. Only what a decision adds counts: keeping what an operator already has
//!   needs no grant.
//! - The operations-manager role is granted like any other: an operations manager may make another operator an
//!   operations manager. The source gives registering operators to the 運用管理部門 (手引き I 2.1(2)①), a
//!   department rather than one person, and the table gives `ManageOperators` to every operations manager alike;
//!   and an operations manager he makes can again give only what he holds himself, so no chain of them reaches
//!   further than its first link.
//!
//! The use cases ask for these two permissions with what a decision really changes (see
//! `commands::operators`), every privilege refused named at once ([`authorize_grant`]).

use cardap_domain::operator::Role;
use cardap_domain::{BusinessId, Localized, MunicipalityCode, OperatorKey};

/// The authenticated operator behind a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub operator: OperatorKey,
    /// `None` for the system administrator.
    pub municipality: Option<MunicipalityCode>,
    pub roles: Vec<Role>,
    /// The business systems he is permitted (許可業務): a business-system administrator manages only these.
    pub business_systems: Vec<BusinessId>,
    /// His password is one someone else knows (the generated first password): until he changes it he may do
    /// nothing but that ([`AuthzError::PasswordChangeRequired`]).
    pub password_change_required: bool,
}

impl Actor {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    pub fn is_system_admin(&self) -> bool {
        self.has_role(Role::SystemAdmin)
    }

    /// Whether he holds `privilege` himself.
    pub fn holds(&self, privilege: &Privilege) -> bool {
        match privilege {
            Privilege::Role(role) => self.has_role(*role),
            Privilege::BusinessSystem(b) => self.business_systems.contains(b),
        }
    }

    /// Whether this operator may see anything of `municipality` at all.
    pub fn can_see(&self, municipality: &MunicipalityCode) -> bool {
        self.is_system_admin() || self.municipality.as_ref() == Some(municipality)
    }
}

/// One thing an operator may be given: a role, or a business system he is permitted (許可業務).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Privilege {
    Role(Role),
    BusinessSystem(BusinessId),
}

impl std::fmt::Display for Privilege {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Privilege::Role(role) => write!(f, "role {role}"),
            Privilege::BusinessSystem(b) => write!(f, "business system {b}"),
        }
    }
}

/// What a registration or a change does to one operator's privileges (see [`authorize_grant`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub operator: OperatorKey,
    /// Whether his roles or business systems change at all (given or taken).
    pub changes: bool,
    /// The roles and business systems he gets that he did not have.
    pub given: Vec<Privilege>,
}

impl Grant {
    /// A registration: he gets every role and business system given (a revoked operator holds nothing).
    pub fn registration(operator: OperatorKey, roles: &[Role], business_systems: &[BusinessId]) -> Grant {
        let mut given: Vec<Privilege> = roles.iter().map(|r| Privilege::Role(*r)).collect();
        given.extend(business_systems.iter().cloned().map(Privilege::BusinessSystem));
        given.sort();
        given.dedup();
        Grant { operator, changes: !given.is_empty(), given }
    }

    /// From his roles and business systems before to those after a decision.
    pub fn change(
        operator: OperatorKey,
        (roles_before, systems_before): (&[Role], &[BusinessId]),
        (roles_after, systems_after): (&[Role], &[BusinessId]),
    ) -> Grant {
        let mut given: Vec<Privilege> =
            roles_after.iter().filter(|r| !roles_before.contains(r)).map(|r| Privilege::Role(*r)).collect();
        given.extend(
            systems_after.iter().filter(|b| !systems_before.contains(b)).cloned().map(Privilege::BusinessSystem),
        );
        given.sort();
        given.dedup();
        let changes = !same_set(roles_before, roles_after) || !same_set(systems_before, systems_after);
        Grant { operator, changes, given }
    }

    /// The permissions this takes in `municipality`.
    pub fn permissions(&self, municipality: &MunicipalityCode) -> Vec<Permission> {
        let mut permissions = vec![];
        if self.changes {
            permissions.push(Permission::ChangePrivileges(municipality.clone(), self.operator));
        }
        permissions.extend(self.given.iter().map(|p| Permission::Grant(municipality.clone(), p.clone())));
        permissions
    }
}

fn same_set<T: PartialEq>(a: &[T], b: &[T]) -> bool {
    a.iter().all(|x| b.contains(x)) && b.iter().all(|x| a.contains(x))
}

/// What a command or query needs. Municipality-scoped permissions name the municipality, so shared-use
/// isolation is decided here too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Permission {
    /// Register, rename, reorder or abolish municipalities (システム管理 only).
    ManageMunicipalities,
    /// List municipalities: every operator sees those he may see.
    ListMunicipalities,
    /// Read one municipality's own record.
    ViewMunicipality(MunicipalityCode),
    /// Register, update and retire business systems; permit and withdraw shared use (システム管理 only).
    ManageBusinessSystems,
    /// List business systems (names and URLs are not secret): every operator.
    ViewBusinessSystems,
    /// Register, update, revoke operators of a municipality, reset passwords, unlock, end sessions, import
    /// (運用管理部門, or the system administrator for every municipality).
    ManageOperators(MunicipalityCode),
    /// Give or take roles or business systems of this operator of the municipality: who manages its operators,
    /// never on himself ([`AuthzError::OwnPrivileges`]).
    ChangePrivileges(MunicipalityCode, OperatorKey),
    /// Give an operator of the municipality a role or a business system: who manages its operators and holds it
    /// himself ([`AuthzError::NotHeld`]); the system administrator gives anything.
    Grant(MunicipalityCode, Privilege),
    /// Read and export a municipality's operators.
    ViewOperators(MunicipalityCode),
    /// Map operators to a business system's 業務内ID (that system's administrator in that municipality).
    ManageInternalIds(MunicipalityCode, BusinessId),
    /// Move operators from one municipality to another (移行: システム管理 only).
    MigrateOperators,
    /// Change one's own password.
    ChangeOwnPassword,
    /// Replay the history of a municipality (auditors; the system administrator for all).
    ReadHistory(MunicipalityCode),
    /// Register and change residents, register cards, create local areas, suspend, resume and abolish cards
    /// (窓口: clerks; the system administrator for every municipality).
    RegisterResidents(MunicipalityCode),
    /// Install or remove one business system's card AP: a clerk permitted that business system (許可業務).
    ManageCardAp(MunicipalityCode, BusinessId),
    /// Read residents and cards (clerks, auditors).
    ViewResidents(MunicipalityCode),
    /// Define custom fields, the AP catalog and presets; import the resident registry (運用管理部門).
    ConfigureResidentServices(MunicipalityCode),
    /// Read the municipality's settings for resident registration (every operator of it).
    ViewResidentSettings(MunicipalityCode),
    /// 消去: erase a resident's personal data for good (運用管理部門, or the system administrator for every
    /// municipality; never a clerk or an auditor).
    EraseResidents(MunicipalityCode),
    /// Issue, revoke and reissue the certificates of cardap's own TLS endpoints (SSL通信用証明書: システム管理 only).
    ManageTlsCertificates,
    /// 生体情報登録: register and delete the authenticators of a municipality's operators, and set its biometric
    /// policy (運用管理部門, or the system administrator for every municipality).
    ManageBiometrics(MunicipalityCode),
    /// Set the municipality's bulk-read alert threshold (大量閲覧の警告: 運用管理部門, or the system administrator).
    ConfigureReadAlerts(MunicipalityCode),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthzError {
    /// The operator may see the resource but not do this to it.
    #[error("the operator's roles do not allow this")]
    Forbidden,
    /// The resource belongs to a municipality the operator may not see: answer as if it did not exist.
    #[error("not found")]
    NotVisible,
    /// He must change his password before anything else.
    #[error("change your password first: it was generated for you and someone else has seen it")]
    PasswordChangeRequired,
    /// He asked to change his own roles or business systems (nobody does, see the module comment).
    #[error("nobody changes his own roles or permitted business systems")]
    OwnPrivileges,
    /// He asked to give roles or business systems he does not hold himself: each one of them.
    #[error("an operator may give only roles and business systems he holds himself, not: {}", list(.0))]
    NotHeld(Vec<Privilege>),
}

fn list(privileges: &[Privilege]) -> String {
    privileges.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

impl Localized for AuthzError {
    fn message_ja(&self) -> String {
        match self {
            AuthzError::Forbidden => "この操作を行う権限がありません".to_owned(),
            AuthzError::NotVisible => "対象が見つかりません".to_owned(),
            AuthzError::OwnPrivileges => "自分自身の権限・許可業務は変更できません".to_owned(),
            AuthzError::PasswordChangeRequired => {
                "初期パスワードのままです。先にパスワードを変更してください".to_owned()
            }
            AuthzError::NotHeld(privileges) => {
                let named: Vec<String> = privileges
                    .iter()
                    .map(|p| match p {
                        Privilege::Role(role) => format!("権限 {role}"),
                        Privilege::BusinessSystem(b) => format!("許可業務 {b}"),
                    })
                    .collect();
                format!("自分が持っていない権限・許可業務は付与できません（{}）", named.join("、"))
            }
        }
    }
}
/// Decides whether `actor` holds `permission`.
pub fn authorize(actor: &Actor, permission: &Permission) -> Result<(), AuthzError> {
    let allowed = |ok: bool| if ok { Ok(()) } else { Err(AuthzError::Forbidden) };
    let visible = |code: &MunicipalityCode| if actor.can_see(code) { Ok(()) } else { Err(AuthzError::NotVisible) };
    let admin = actor.is_system_admin();
    if actor.password_change_required && *permission != Permission::ChangeOwnPassword {
        return Err(AuthzError::PasswordChangeRequired);
    }
    match permission {
        Permission::ManageMunicipalities
        | Permission::ManageBusinessSystems
        | Permission::MigrateOperators
        | Permission::ManageTlsCertificates => allowed(admin),
        Permission::ListMunicipalities | Permission::ViewBusinessSystems | Permission::ChangeOwnPassword => Ok(()),
        Permission::ViewMunicipality(code) => visible(code),
        Permission::ManageOperators(code) => {
            visible(code)?;
            allowed(admin || actor.has_role(Role::OperationsManager))
        }
        Permission::ChangePrivileges(code, operator) => {
            visible(code)?;
            allowed(admin || actor.has_role(Role::OperationsManager))?;
            if *operator == actor.operator { Err(AuthzError::OwnPrivileges) } else { Ok(()) }
        }
        Permission::Grant(code, privilege) => {
            visible(code)?;
            allowed(admin || actor.has_role(Role::OperationsManager))?;
            if admin || actor.holds(privilege) { Ok(()) } else { Err(AuthzError::NotHeld(vec![privilege.clone()])) }
        }
        Permission::ViewOperators(code) => {
            visible(code)?;
            allowed(
                admin
                    || actor.has_role(Role::OperationsManager)
                    || actor.has_role(Role::BusinessAdmin)
                    || actor.has_role(Role::Auditor),
            )
        }
        Permission::ManageInternalIds(code, business) => {
            visible(code)?;
            allowed(admin || (actor.has_role(Role::BusinessAdmin) && actor.business_systems.contains(business)))
        }
        Permission::ReadHistory(code) => {
            visible(code)?;
            allowed(admin || actor.has_role(Role::Auditor))
        }
        Permission::RegisterResidents(code) => {
            visible(code)?;
            allowed(admin || actor.has_role(Role::Clerk))
        }
        Permission::ManageCardAp(code, business) => {
            visible(code)?;
            allowed(admin || (actor.has_role(Role::Clerk) && actor.business_systems.contains(business)))
        }
        Permission::ViewResidents(code) => {
            visible(code)?;
            allowed(admin || actor.has_role(Role::Clerk) || actor.has_role(Role::Auditor))
        }
        Permission::ConfigureResidentServices(code) => {
            visible(code)?;
            allowed(admin || actor.has_role(Role::OperationsManager))
        }
        Permission::ViewResidentSettings(code) => visible(code),
        Permission::EraseResidents(code)
        | Permission::ManageBiometrics(code)
        | Permission::ConfigureReadAlerts(code) => {
            visible(code)?;
            allowed(admin || actor.has_role(Role::OperationsManager))
        }
    }
}

/// Decides whether `actor` may make the changes `grants` describe to operators of `municipality`: the first
/// refusal that is not about privileges held, else every privilege he may not give, named at once.
pub fn authorize_grant<'a>(
    actor: &Actor,
    municipality: &MunicipalityCode,
    grants: impl IntoIterator<Item = &'a Grant>,
) -> Result<(), AuthzError> {
    let mut not_held = vec![];
    for grant in grants {
        for permission in grant.permissions(municipality) {
            match authorize(actor, &permission) {
                Ok(()) => {}
                Err(AuthzError::NotHeld(privileges)) => not_held.extend(privileges),
                Err(other) => return Err(other),
            }
        }
    }
    not_held.sort();
    not_held.dedup();
    if not_held.is_empty() { Ok(()) } else { Err(AuthzError::NotHeld(not_held)) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    const OWN: &str = "131016";
    const OTHER: &str = "011002";

    fn code(s: &str) -> MunicipalityCode {
        MunicipalityCode::parse(s).unwrap()
    }

    fn actor(role: Role) -> Actor {
        Actor {
            operator: OperatorKey::from_uuid(Uuid::nil()),
            municipality: (role != Role::SystemAdmin).then(|| code(OWN)),
            roles: vec![role],
            business_systems: vec![BusinessId::parse("01").unwrap()],
            password_change_required: false,
        }
    }

    /// Every role against every permission, in the own and in another municipality: the table an auditor reads.
    /// `A` allowed, `F` forbidden (403), `H` hidden (404: another municipality's data does not exist for him),
    /// `O` his own privileges (403: nobody changes them), `N` a privilege he does not hold (403: not his to give).
    /// Each actor holds his one role and business system 01; `me` is himself, `other` another operator.
    #[test]
    fn authorization_table() {
        use Role::*;
        let library = BusinessId::parse("02").unwrap();
        let certificates = BusinessId::parse("01").unwrap();
        let me = OperatorKey::from_uuid(Uuid::nil());
        let other = OperatorKey::from_uuid(Uuid::from_u128(7));
        let role = |r: Role| Privilege::Role(r);
        let system = |b: &str| Privilege::BusinessSystem(BusinessId::parse(b).unwrap());
        #[rustfmt::skip]
        let table: Vec<(Permission, [&str; 5])> = vec![
            //                                                         SA   OM   BA   CL   AU
            (Permission::ManageMunicipalities,                        ["A", "F", "F", "F", "F"]),
            (Permission::ListMunicipalities,                          ["A", "A", "A", "A", "A"]),
            (Permission::ViewMunicipality(code(OWN)),                 ["A", "A", "A", "A", "A"]),
            (Permission::ViewMunicipality(code(OTHER)),               ["A", "H", "H", "H", "H"]),
            (Permission::ManageBusinessSystems,                       ["A", "F", "F", "F", "F"]),
            (Permission::ViewBusinessSystems,                         ["A", "A", "A", "A", "A"]),
            (Permission::ManageOperators(code(OWN)),                  ["A", "A", "F", "F", "F"]),
            (Permission::ManageOperators(code(OTHER)),                ["A", "H", "H", "H", "H"]),
            (Permission::ChangePrivileges(code(OWN), other),          ["A", "A", "F", "F", "F"]),
            (Permission::ChangePrivileges(code(OWN), me),             ["O", "O", "F", "F", "F"]),
            (Permission::ChangePrivileges(code(OTHER), other),        ["A", "H", "H", "H", "H"]),
            (Permission::Grant(code(OWN), role(OperationsManager)),   ["A", "A", "F", "F", "F"]),
            (Permission::Grant(code(OWN), role(BusinessAdmin)),       ["A", "N", "F", "F", "F"]),
            (Permission::Grant(code(OWN), role(Clerk)),               ["A", "N", "F", "F", "F"]),
            (Permission::Grant(code(OWN), role(Auditor)),             ["A", "N", "F", "F", "F"]),
            (Permission::Grant(code(OWN), system("01")),              ["A", "A", "F", "F", "F"]),
            (Permission::Grant(code(OWN), system("02")),              ["A", "N", "F", "F", "F"]),
            (Permission::Grant(code(OTHER), role(OperationsManager)), ["A", "H", "H", "H", "H"]),
            (Permission::ViewOperators(code(OWN)),                    ["A", "A", "A", "F", "A"]),
            (Permission::ViewOperators(code(OTHER)),                  ["A", "H", "H", "H", "H"]),
            (Permission::ManageInternalIds(code(OWN), certificates.clone()),  ["A", "F", "A", "F", "F"]),
            (Permission::ManageInternalIds(code(OWN), library),       ["A", "F", "F", "F", "F"]),
            (Permission::ManageInternalIds(code(OTHER), certificates),["A", "H", "H", "H", "H"]),
            (Permission::MigrateOperators,                            ["A", "F", "F", "F", "F"]),
            (Permission::ManageTlsCertificates,                       ["A", "F", "F", "F", "F"]),
            (Permission::ManageBiometrics(code(OWN)),                 ["A", "A", "F", "F", "F"]),
            (Permission::ManageBiometrics(code(OTHER)),               ["A", "H", "H", "H", "H"]),
            (Permission::ConfigureReadAlerts(code(OWN)),              ["A", "A", "F", "F", "F"]),
            (Permission::ConfigureReadAlerts(code(OTHER)),            ["A", "H", "H", "H", "H"]),
            (Permission::ChangeOwnPassword,                           ["A", "A", "A", "A", "A"]),
            (Permission::ReadHistory(code(OWN)),                      ["A", "F", "F", "F", "A"]),
            (Permission::ReadHistory(code(OTHER)),                    ["A", "H", "H", "H", "H"]),
            (Permission::RegisterResidents(code(OWN)),                ["A", "F", "F", "A", "F"]),
            (Permission::RegisterResidents(code(OTHER)),              ["A", "H", "H", "H", "H"]),
            (Permission::ManageCardAp(code(OWN), BusinessId::parse("01").unwrap()), ["A", "F", "F", "A", "F"]),
            (Permission::ManageCardAp(code(OWN), BusinessId::parse("02").unwrap()), ["A", "F", "F", "F", "F"]),
            (Permission::ManageCardAp(code(OTHER), BusinessId::parse("01").unwrap()), ["A", "H", "H", "H", "H"]),
            (Permission::ViewResidents(code(OWN)),                    ["A", "F", "F", "A", "A"]),
            (Permission::ViewResidents(code(OTHER)),                  ["A", "H", "H", "H", "H"]),
            (Permission::ConfigureResidentServices(code(OWN)),        ["A", "A", "F", "F", "F"]),
            (Permission::ConfigureResidentServices(code(OTHER)),      ["A", "H", "H", "H", "H"]),
            (Permission::ViewResidentSettings(code(OWN)),             ["A", "A", "A", "A", "A"]),
            (Permission::EraseResidents(code(OWN)),                   ["A", "A", "F", "F", "F"]),
            (Permission::EraseResidents(code(OTHER)),                 ["A", "H", "H", "H", "H"]),
            (Permission::ViewResidentSettings(code(OTHER)),           ["A", "H", "H", "H", "H"]),
        ];
        for (permission, expected) in table {
            for (role, want) in
                [SystemAdmin, OperationsManager, BusinessAdmin, Clerk, Auditor].into_iter().zip(expected)
            {
                let want = match (want, &permission) {
                    ("A", _) => Ok(()),
                    ("F", _) => Err(AuthzError::Forbidden),
                    ("O", _) => Err(AuthzError::OwnPrivileges),
                    ("N", Permission::Grant(_, privilege)) => Err(AuthzError::NotHeld(vec![privilege.clone()])),
                    _ => Err(AuthzError::NotVisible),
                };
                assert_eq!(authorize(&actor(role), &permission), want, "{role:?} × {permission:?}");
            }
        }
    }

    #[test]
    fn a_change_gives_only_what_he_did_not_have_and_taking_away_is_a_change() {
        let key = OperatorKey::from_uuid(Uuid::from_u128(7));
        let (b01, b02) = (BusinessId::parse("01").unwrap(), BusinessId::parse("02").unwrap());
        let before = (&[Role::Clerk][..], &[b01.clone(), b02.clone()][..]);

        let same = Grant::change(key, before, before);
        let added = Grant::change(key, before, (&[Role::Auditor, Role::Clerk], &[b01.clone(), b02.clone()]));
        let dropped = Grant::change(key, before, (&[Role::Clerk], std::slice::from_ref(&b01)));

        assert_eq!(same, Grant { operator: key, changes: false, given: vec![] });
        assert_eq!(added, Grant { operator: key, changes: true, given: vec![Privilege::Role(Role::Auditor)] });
        assert_eq!(dropped, Grant { operator: key, changes: true, given: vec![] });
        assert_eq!(
            Grant::registration(key, &[Role::Clerk, Role::Clerk], std::slice::from_ref(&b02)).given,
            [Privilege::Role(Role::Clerk), Privilege::BusinessSystem(b02)]
        );
    }

    #[test]
    fn every_privilege_he_may_not_give_is_named_at_once() {
        let manager = actor(Role::OperationsManager);
        let key = |n: u128| OperatorKey::from_uuid(Uuid::from_u128(n));
        let (b01, b02) = (BusinessId::parse("01").unwrap(), BusinessId::parse("02").unwrap());
        let grants = [
            Grant::registration(key(1), &[Role::Clerk, Role::OperationsManager], std::slice::from_ref(&b01)),
            Grant::registration(key(2), &[Role::Auditor, Role::Clerk], std::slice::from_ref(&b02)),
        ];

        let refused = authorize_grant(&manager, &code(OWN), &grants);
        let own = authorize_grant(&manager, &code(OWN), &[Grant::change(key(0), (&[], &[]), (&[], &[b01]))]);
        let by_admin = authorize_grant(&actor(Role::SystemAdmin), &code(OWN), &grants);

        let not_held =
            vec![Privilege::Role(Role::Clerk), Privilege::Role(Role::Auditor), Privilege::BusinessSystem(b02)];
        assert_eq!(refused, Err(AuthzError::NotHeld(not_held)));
        assert_eq!(own, Err(AuthzError::OwnPrivileges));
        assert_eq!(by_admin, Ok(()));
        assert_eq!(authorize_grant(&actor(Role::Clerk), &code(OWN), &grants), Err(AuthzError::Forbidden));
        assert_eq!(authorize_grant(&manager, &code(OTHER), &grants), Err(AuthzError::NotVisible));
    }

    #[test]
    fn a_generated_password_must_be_changed_before_anything_else() {
        let mut admin = actor(Role::SystemAdmin);
        admin.password_change_required = true;
        assert_eq!(authorize(&admin, &Permission::ChangeOwnPassword), Ok(()));
        for permission in [
            Permission::ManageMunicipalities,
            Permission::ListMunicipalities,
            Permission::ViewBusinessSystems,
            Permission::ManageOperators(code(OWN)),
        ] {
            assert_eq!(authorize(&admin, &permission), Err(AuthzError::PasswordChangeRequired), "{permission:?}");
        }
    }
}
