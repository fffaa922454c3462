//! Cairn's pure types and rules. Nothing in this crate performs I/O: every other crate
//! depends on it, and it depends on none of them.

pub mod clock;
pub mod credential;
pub mod email;
pub mod ids;
pub mod metrics;
pub mod role;
pub mod scope;
pub mod text;
pub mod worker;

pub use clock::Clock;
pub use email::Email;
pub use ids::*;
pub use role::Role;
pub use scope::{Scope, ScopeSet};

/// A value that failed validation, with the field it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}
