//! Roles of a user within a workspace.

use serde::{Deserialize, Serialize};

/// What a member of a workspace may do.
///
/// - `owner`: everything, including deleting the workspace and promoting owners.
/// - `admin`: everything except changing owners.
/// - `member`: works with the data (customers, leads, deals, campaigns…) but does not manage
///   the team, API keys, webhooks or settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Member,
    Admin,
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "owner" => Some(Role::Owner),
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            _ => None,
        }
    }

    /// Whether this role may manage the team, keys, webhooks and settings.
    pub fn is_manager(self) -> bool {
        self >= Role::Admin
    }
}
