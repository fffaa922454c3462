//! Cairn's entity store: customers, users, keys, jobs and everything else that is not a raw
//! event. One API over SQLite (the embedded default) and PostgreSQL (for scale-out).
//!
//! The store writes what it is given inside the transaction it is given: ids of new rows come
//! from the database, everything else (timestamps, hashes, decisions) from the caller.
//! SQL is written once, in the common dialect of both backends (`$N` placeholders, `RETURNING`,
//! `ON CONFLICT`); the [`on!`] macro compiles each statement for both drivers.

#[macro_use]
mod db;
pub mod api_logs;
pub mod automations;
pub mod campaigns;
pub mod crm;
pub mod customers;
pub mod idempotency;
pub mod identity;
pub mod inbound;
pub mod invitations;
pub mod jobs;
pub mod keys;
mod marks;
pub mod notifications;
pub mod scores;
pub mod segments;
pub mod sessions;
pub mod tenants;
pub mod users;
pub mod webhooks;

#[doc(hidden)]
pub use db::Raw;

/// The SQL text of queries whose plans the store's tests check (`EXPLAIN`).
#[doc(hidden)]
pub mod plans {
    use crate::Backend;

    /// Every lookup of given customers by id on SQLite, which must stay on the primary key
    /// (`$1` is the workspace, `$2`/`$3` segment and time where used).
    pub fn sqlite_customer_lookups(list: &str) -> Vec<String> {
        vec![
            crate::customers::sqlite_by_ids_sql(list),
            crate::segments::sqlite_add_members_sql(list),
            crate::segments::customer_ids_sql("1 = 1", Some(list)),
            crate::segments::customer_emails_sql(list),
        ]
    }

    /// The scheduler's due runs (`$1` now, `$2` the batch size), which must not sort.
    pub fn due_runs(backend: Backend) -> String {
        crate::automations::due_runs_sql(backend)
    }
}
pub use db::{Backend, Conn, Store, StoreConfig, QUERY_LATENCY};
pub use sqlx::types::Json;

/// What can go wrong in the store that a caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint was violated; the payload names the constraint or column.
    #[error("duplicate: {0}")]
    Duplicate(String),
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Db(sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => {
                StoreError::Duplicate(d.constraint().unwrap_or(d.message()).to_string())
            }
            sqlx::Error::RowNotFound => StoreError::NotFound,
            _ => StoreError::Db(e),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
