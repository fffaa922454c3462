//! Segments (issue 5, in progress): so far the filter language — parsing and validation with
//! errors that name the bad node's path. Storage, evaluation in both stores, live membership and
//! the API build on it.

pub mod filter;

pub use filter::{parse, Filter};
