//! API key roles and what each may do.

use std::fmt;
use std::str::FromStr;

/// The role an API key carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Checkout frontends: availability and reservations.
    Storefront,
    /// Call-centre apps: as storefront, with a longer TTL ceiling.
    Callcentre,
    /// Admin tools: everything.
    Admin,
}

impl Role {
    /// Whether a key of this role may do what `needed` may do.
    pub fn includes(self, needed: Role) -> bool {
        match needed {
            Role::Storefront => true,
            Role::Callcentre => matches!(self, Role::Callcentre | Role::Admin),
            Role::Admin => self == Role::Admin,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Storefront => "storefront",
            Role::Callcentre => "callcentre",
            Role::Admin => "admin",
        })
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "storefront" => Ok(Role::Storefront),
            "callcentre" => Ok(Role::Callcentre),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role {other:?}: expected storefront, callcentre or admin"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_may_do_everything_and_storefront_only_its_own() {
        assert!(Role::Admin.includes(Role::Callcentre));
        assert!(Role::Callcentre.includes(Role::Storefront));
        assert!(!Role::Storefront.includes(Role::Admin));
        assert!(!Role::Callcentre.includes(Role::Admin));
    }
}
