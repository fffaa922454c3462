//! Ingestion: the durable local log every tracked event passes through, the validation of
//! incoming messages, and the processor that resolves identities and writes the event store.

pub mod log;
pub mod message;
pub mod processor;

pub use log::{IngestLog, LogConfig, LogError, LogReader};
pub use processor::Processor;
