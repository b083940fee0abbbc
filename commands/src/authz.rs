//! Who may do what: authorization as its own step, decided here and nowhere else.
//!
//! Shared use (共同利用) is enforced here too: an operator of one municipality never learns that another
//! municipality's data exists, so asking for it is "not found" ([`AuthzError::NotVisible`]), never "forbidden".
//! Only the system administrator works across municipalities.

use cardap_domain::operator::Role;
use cardap_domain::{MunicipalityCode, OperatorKey};

/// The authenticated operator behind a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub operator: OperatorKey,
    /// `None` for the system administrator.
    pub municipality: Option<MunicipalityCode>,
    pub roles: Vec<Role>,
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

/// What a command or query needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Permission {
    /// Register, rename, reorder or abolish municipalities (システム管理 only).
    ManageMunicipalities,
    /// List municipalities: every operator sees those he may see.
    ListMunicipalities,
    /// Read one municipality's own record.
    ViewMunicipality(MunicipalityCode),
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
    match permission {
        Permission::ManageMunicipalities => {
            if actor.is_system_admin() {
                Ok(())
            } else {
                Err(AuthzError::Forbidden)
            }
        }
        Permission::ListMunicipalities => Ok(()),
        Permission::ViewMunicipality(code) => {
            if actor.can_see(code) {
                Ok(())
            } else {
                Err(AuthzError::NotVisible)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn actor(municipality: Option<&str>, roles: &[Role]) -> Actor {
        Actor {
            operator: OperatorKey::from_uuid(Uuid::nil()),
            municipality: municipality.map(|m| MunicipalityCode::parse(m).unwrap()),
            roles: roles.to_vec(),
        }
    }

    /// Every role against every permission: the table an auditor reads.
    #[test]
    fn authorization_table() {
        let chiyoda = MunicipalityCode::parse("131016").unwrap();
        let sapporo = MunicipalityCode::parse("011002").unwrap();
        let admin = actor(None, &[Role::SystemAdmin]);
        let ok = Ok(());
        let forbidden = Err(AuthzError::Forbidden);
        let hidden = Err(AuthzError::NotVisible);
        for role in Role::ALL {
            let a = if role == Role::SystemAdmin { admin.clone() } else { actor(Some("131016"), &[role]) };
            let admin_only = if role == Role::SystemAdmin { ok.clone() } else { forbidden.clone() };
            let other_town = if role == Role::SystemAdmin { ok.clone() } else { hidden.clone() };
            assert_eq!(authorize(&a, &Permission::ManageMunicipalities), admin_only, "{role:?} manage");
            assert_eq!(authorize(&a, &Permission::ListMunicipalities), ok, "{role:?} list");
            assert_eq!(authorize(&a, &Permission::ViewMunicipality(chiyoda.clone())), ok, "{role:?} own");
            assert_eq!(authorize(&a, &Permission::ViewMunicipality(sapporo.clone())), other_town, "{role:?} other");
        }
    }
}
