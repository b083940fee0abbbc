//! Who may do what: authorization as its own step, decided here and nowhere else.
//!
//! Shared use (共同利用) is enforced here too: an operator of one municipality never learns that another
//! municipality's data exists, so asking for it is "not found" ([`AuthzError::NotVisible`]), never "forbidden".
//! Only the system administrator works across municipalities.

use cardap_domain::operator::Role;
use cardap_domain::{BusinessId, MunicipalityCode, OperatorKey};

/// The authenticated operator behind a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub operator: OperatorKey,
    /// `None` for the system administrator.
    pub municipality: Option<MunicipalityCode>,
    pub roles: Vec<Role>,
    /// The business systems he is permitted (許可業務): a business-system administrator manages only these.
    pub business_systems: Vec<BusinessId>,
}

impl Actor {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    pub fn is_system_admin(&self) -> bool {
        self.has_role(Role::SystemAdmin)
    }

    /// Whether this operator may see anything of `municipality` at all.
    pub fn can_see(&self, municipality: &MunicipalityCode) -> bool {
        self.is_system_admin() || self.municipality.as_ref() == Some(municipality)
    }
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
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthzError {
    /// The operator may see the resource but not do this to it.
    #[error("the operator's roles do not allow this")]
    Forbidden,
    /// The resource belongs to a municipality the operator may not see: answer as if it did not exist.
    #[error("not found")]
    NotVisible,
}

/// Decides whether `actor` holds `permission`.
pub fn authorize(actor: &Actor, permission: &Permission) -> Result<(), AuthzError> {
    let allowed = |ok: bool| if ok { Ok(()) } else { Err(AuthzError::Forbidden) };
    let visible = |code: &MunicipalityCode| if actor.can_see(code) { Ok(()) } else { Err(AuthzError::NotVisible) };
    let admin = actor.is_system_admin();
    match permission {
        Permission::ManageMunicipalities | Permission::ManageBusinessSystems | Permission::MigrateOperators => {
            allowed(admin)
        }
        Permission::ListMunicipalities | Permission::ViewBusinessSystems | Permission::ChangeOwnPassword => Ok(()),
        Permission::ViewMunicipality(code) => visible(code),
        Permission::ManageOperators(code) => {
            visible(code)?;
            allowed(admin || actor.has_role(Role::OperationsManager))
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
    }
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
        }
    }

    /// Every role against every permission, in the own and in another municipality: the table an auditor reads.
    /// `A` allowed, `F` forbidden (403), `H` hidden (404: another municipality's data does not exist for him).
    #[test]
    fn authorization_table() {
        use Role::*;
        let library = BusinessId::parse("02").unwrap();
        let certificates = BusinessId::parse("01").unwrap();
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
            (Permission::ViewOperators(code(OWN)),                    ["A", "A", "A", "F", "A"]),
            (Permission::ViewOperators(code(OTHER)),                  ["A", "H", "H", "H", "H"]),
            (Permission::ManageInternalIds(code(OWN), certificates.clone()),  ["A", "F", "A", "F", "F"]),
            (Permission::ManageInternalIds(code(OWN), library),       ["A", "F", "F", "F", "F"]),
            (Permission::ManageInternalIds(code(OTHER), certificates),["A", "H", "H", "H", "H"]),
            (Permission::MigrateOperators,                            ["A", "F", "F", "F", "F"]),
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
            (Permission::ViewResidentSettings(code(OTHER)),           ["A", "H", "H", "H", "H"]),
        ];
        for (permission, expected) in table {
            for (role, want) in
                [SystemAdmin, OperationsManager, BusinessAdmin, Clerk, Auditor].into_iter().zip(expected)
            {
                let want = match want {
                    "A" => Ok(()),
                    "F" => Err(AuthzError::Forbidden),
                    _ => Err(AuthzError::NotVisible),
                };
                assert_eq!(authorize(&actor(role), &permission), want, "{role:?} × {permission:?}");
            }
        }
    }
}
