//! Automations (docs/automations.md): seed 003's node-edge designs ([`design`]), their
//! triggers ([`trigger`]), durations ([`duration`]) and the engine that enrolls customers and
//! walks each durable run through its nodes ([`engine`]).

pub mod design;
pub mod duration;
pub mod engine;
pub mod trigger;

pub use design::{compile, Design, Plan, Problem, Step};
