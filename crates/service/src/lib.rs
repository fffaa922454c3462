//! Cairn's business logic. A service function decides everything — ids of credentials,
//! timestamps (from the injected clock), hashes, permission rules, which events fire — and
//! hands the store rows to write. Handlers (HTTP or CLI) only translate in and out.

pub mod accounts;
pub mod auth;
pub mod automations;
pub mod campaigns;
pub mod crm;
pub mod customers;
pub mod inbound;
pub mod keys;
pub mod password;
pub mod scoring;
pub mod segments;
pub mod team;
pub mod webhooks;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Instant,
};

use cairn_domain::{ApiKeyId, Clock, FieldError};
use cairn_events::EventStore;
use cairn_store::{Store, StoreError};
use chrono::Duration;

pub use auth::{Actor, Principal};

/// Settings the services need (read from configuration by the binary, never here).
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// How long a session token from login lives.
    pub session_ttl: Duration,
    /// How long an invitation can be accepted.
    pub invitation_ttl: Duration,
    /// Whether `POST /v1/auth/register` may create new workspaces.
    pub allow_registration: bool,
    /// How long an ingestion route may reuse a key it has authenticated (0: never). A key
    /// revoked on another instance can keep ingesting for at most this long; on the CRM API,
    /// and on the instance that revoked it, revocation is immediate.
    pub ingest_key_cache: std::time::Duration,
    /// Seed 002's CRM webhook secrets from the environment.
    pub crm_webhook: inbound::CrmWebhookEnv,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        ServiceSettings {
            session_ttl: Duration::days(30),
            invitation_ttl: Duration::days(7),
            allow_registration: true,
            ingest_key_cache: std::time::Duration::from_secs(1),
            crm_webhook: Default::default(),
        }
    }
}

/// The services over one entity store and one clock. Cheap to clone.
#[derive(Clone)]
pub struct Services {
    pub store: Store,
    pub events: Arc<dyn EventStore>,
    pub clock: Clock,
    pub settings: ServiceSettings,
    /// Links, channel defaults and the sender's wake-up (absent: campaign sending, test sends
    /// and tracking links are unavailable).
    pub campaigns: Option<Arc<campaigns::CampaignKit>>,
    /// Wakes the automation engine (absent: runs start at its next poll).
    pub automations_wake: Option<Arc<tokio::sync::Notify>>,
    key_touches: Arc<Mutex<HashMap<ApiKeyId, Instant>>>,
    /// Ingestion's short-lived cache of authenticated keys, by the key's hash.
    ingest_keys: Arc<Mutex<HashMap<String, (Principal, Instant)>>>,
}

impl Services {
    pub fn new(store: Store, events: Arc<dyn EventStore>, clock: Clock, settings: ServiceSettings) -> Services {
        Services {
            store,
            events,
            clock,
            settings,
            campaigns: None,
            automations_wake: None,
            key_touches: Default::default(),
            ingest_keys: Default::default(),
        }
    }

    /// Turns on campaign sending, test sends and tracking links.
    pub fn with_campaigns(mut self, kit: campaigns::CampaignKit) -> Services {
        self.campaigns = Some(Arc::new(kit));
        self
    }
}

/// Errors a caller can act on; the API maps each to the seeds' error codes.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// 400 `VALIDATION_ERROR`, naming the field.
    #[error("{0}")]
    Invalid(#[from] FieldError),
    /// 401 `AUTH_REQUIRED`.
    #[error("{0}")]
    Unauthenticated(String),
    /// 403 `FORBIDDEN`.
    #[error("{0}")]
    Forbidden(String),
    /// 404 `NOT_FOUND`: missing, or another workspace's (indistinguishable on purpose).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// 409 `DUPLICATE`.
    #[error("{message}")]
    Duplicate { field: String, message: String },
    /// 400 `VALIDATION_ERROR` with every problem listed (an automation's design).
    #[error("{} problems", .0.len())]
    Problems(Vec<Problem>),
    /// 409 `CONFLICT`: the resource is not in a state that allows this (a campaign already sent).
    #[error("{0}")]
    Conflict(String),
    /// 503 `UNAVAILABLE`: something this needs is not configured (no SMTP server).
    #[error("{0}")]
    Unavailable(String),
    /// 500: the store failed. The message is logged, never shown.
    #[error(transparent)]
    Store(StoreError),
    /// 500: the event store failed.
    #[error(transparent)]
    Events(#[from] cairn_events::EventStoreError),
    /// 500: something else failed on our side (a panicked blocking task, a hashing error).
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<cairn_scoring::ScoringError> for ServiceError {
    fn from(e: cairn_scoring::ScoringError) -> Self {
        match e {
            cairn_scoring::ScoringError::Store(s) => s.into(),
            cairn_scoring::ScoringError::Events(e) => ServiceError::Events(e),
            other => ServiceError::Internal(other.to_string()),
        }
    }
}

impl From<cairn_segments::SegmentError> for ServiceError {
    fn from(e: cairn_segments::SegmentError) -> Self {
        match e {
            cairn_segments::SegmentError::Store(s) => s.into(),
            cairn_segments::SegmentError::Events(e) => ServiceError::Events(e),
            other => ServiceError::Internal(other.to_string()),
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        ServiceError::Store(e)
    }
}

impl ServiceError {
    pub fn invalid(field: &str, message: impl Into<String>) -> ServiceError {
        ServiceError::Invalid(FieldError::new(field, message))
    }

    pub fn duplicate(field: &str, message: impl Into<String>) -> ServiceError {
        ServiceError::Duplicate { field: field.into(), message: message.into() }
    }
}

/// Maps a store's "not found" to the named resource's 404.
/// One of several problems with a request (an automation design), with the node or edge it
/// concerns.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Problem {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edge: Option<String>,
    pub field: String,
    pub message: String,
}

pub(crate) fn found<T>(r: Result<T, StoreError>, what: &'static str) -> Result<T, ServiceError> {
    r.map_err(|e| match e {
        StoreError::NotFound => ServiceError::NotFound(what),
        e => ServiceError::Store(e),
    })
}

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;
