//! Outbound channels. Today: webhooks — the outbox fanned out to each subscribed endpoint as a
//! durable delivery, sent signed, retried on a schedule, logged.

pub mod catalogue;
pub mod signing;
pub mod webhooks;
