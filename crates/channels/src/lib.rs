//! Outbound channels: webhooks — the outbox fanned out to each subscribed endpoint as a durable
//! delivery, sent signed, retried on a schedule, logged —, email over SMTP and SMS through a
//! Twilio-compatible provider (the transports campaigns and automations send through).

pub mod catalogue;
pub mod email;
pub mod signing;
pub mod sms;
pub mod webhooks;
