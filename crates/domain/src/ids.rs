//! Identifier newtypes. Ids are integers on the wire (the seeds use integers), but never
//! bare integers across crates, so a tenant id cannot be passed where a user id belongs.

macro_rules! id_type {
    ($($(#[$meta:meta])* $name:ident),* $(,)?) => {$(
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
                 serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = std::num::ParseIntError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map($name)
            }
        }
    )*};
}

id_type!(
    /// A workspace: the unit of isolation. Every other object belongs to exactly one.
    TenantId,
    /// A person who signs in to the dashboard or API with a password.
    UserId,
    /// An API key (`eck_…`, `pk_live_…`, `pk_test_…`).
    ApiKeyId,
    /// A signed-in session (a Bearer token obtained from `/v1/auth/login`).
    SessionId,
    /// An invitation to join a workspace.
    InvitationId,
    /// A customer profile (seed 003's customer, seed 004's person).
    CustomerId,
);
