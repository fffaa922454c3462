//! Cairn's HTTP API: axum routers, the request pipeline (auth, rate limits, idempotency,
//! request logs, metrics), and the OpenAPI document generated from the routes themselves.
//!
//! Every route is registered through `utoipa_axum::routes!`, which needs the handler's
//! `#[utoipa::path]`: a route cannot exist without its OpenAPI entry (and a test checks that
//! nothing bypasses this).

pub mod api_log;
pub mod envelope;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod middleware;
pub mod ratelimit;
mod routes;

use std::{ops::Deref, sync::Arc, time::Instant};

use axum::{middleware::from_fn_with_state, Router};
use cairn_events::EventStore;
use cairn_service::{Actor, Principal, Services};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use api_log::ApiLogSink;
pub use metrics::Metrics;
pub use ratelimit::RateLimiter;

/// Settings of the HTTP layer (read from configuration by the binary).
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Largest accepted request body on the CRM API, in bytes.
    pub max_body_bytes: usize,
    /// Largest request body on the ingestion routes (a batch).
    pub max_batch_bytes: usize,
    /// Largest single tracked message.
    pub max_event_bytes: usize,
    /// Largest file attached to a CRM entity (`POST /v1/files`).
    pub max_file_bytes: usize,
    /// Largest CSV import body (`POST /v1/imports`).
    pub max_import_bytes: usize,
    /// Requests per minute, per credential, on the CRM API (seed 004's defaults: 120 for
    /// secret keys, 30 for public keys); sessions get `session_rate_limit`.
    pub secret_key_rate_limit: u64,
    pub public_key_rate_limit: u64,
    pub session_rate_limit: u64,
    /// Requests per minute, per key, on the ingestion routes.
    pub ingest_rate_limit: u64,
    /// Requests per minute per client address without (valid) credentials.
    pub anonymous_rate_limit: u64,
    /// Whether `/v1/test/clock` exists (`CAIRN_TEST_CLOCK=1`).
    pub test_clock: bool,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            max_body_bytes: 1024 * 1024,
            max_batch_bytes: 500 * 1024,
            max_event_bytes: 32 * 1024,
            max_file_bytes: 10 * 1024 * 1024,
            max_import_bytes: 64 * 1024 * 1024,
            secret_key_rate_limit: 120,
            public_key_rate_limit: 30,
            session_rate_limit: 600,
            ingest_rate_limit: 6_000_000,
            anonymous_rate_limit: 60,
            test_clock: false,
        }
    }
}

impl ApiSettings {
    /// The limit for a credential on a class of route; a key's own setting wins.
    pub fn limit_for(&self, p: &Principal, ingest: bool) -> u64 {
        match &p.actor {
            Actor::Key { ingest_rate_limit, .. } if ingest => {
                ingest_rate_limit.map(|n| n as u64).unwrap_or(self.ingest_rate_limit)
            }
            Actor::Key { rate_limit, kind, .. } => rate_limit.map(|n| n as u64).unwrap_or(if kind.is_public() {
                self.public_key_rate_limit
            } else {
                self.secret_key_rate_limit
            }),
            Actor::Session { .. } if ingest => self.ingest_rate_limit,
            Actor::Session { .. } => self.session_rate_limit,
        }
    }
}

pub struct Inner {
    pub svc: Services,
    pub events: Arc<dyn EventStore>,
    pub ingest: cairn_ingest::IngestLog,
    pub settings: ApiSettings,
    pub limiter: RateLimiter,
    pub metrics: Arc<Metrics>,
    pub api_logs: ApiLogSink,
    pub started: Instant,
}

/// Shared state of every handler. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(inner: Inner) -> AppState {
        AppState(Arc::new(inner))
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Cairn API",
        description = "Self-hosted customer data platform and CRM. Envelope: {\"success\": true, \"data\": …}; \
                       errors: {\"success\": false, \"error\", \"code\"}. Authenticate with \
                       `Authorization: Bearer <token or key>` or `X-API-Key: <key>`."
    ),
    components(schemas(error::ErrorBody, envelope::Pagination)),
    modifiers(&SecurityAddon)
)]
struct ApiDoc;

struct SecurityAddon;

impl utoipa::Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components
            .add_security_scheme("api_key", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))));
    }
}

/// The routes and their OpenAPI document, before state and middleware.
pub fn routes(settings: &ApiSettings) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let mut router = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::ops::router())
        .merge(routes::auth::router())
        .merge(routes::keys::router())
        .merge(routes::customers::router())
        .merge(routes::scoring::router())
        .merge(routes::segments::router())
        .merge(routes::campaigns::router())
        .merge(routes::automations::router())
        .merge(routes::public::router())
        .merge(routes::track::router())
        .merge(routes::segment::router())
        .merge(routes::webhooks::router())
        .merge(routes::team::router())
        .merge(routes::workspace::router())
        .merge(routes::logs::router())
        .merge(routes::crm::leads::router())
        .merge(routes::crm::deals::router())
        .merge(routes::crm::people::router())
        .merge(routes::crm::prospects::router())
        .merge(routes::crm::records::router())
        .merge(routes::crm::settings::router())
        .merge(routes::inbound::router())
        .merge(routes::snippet::router())
        .merge(routes::dashboard::router());
    if settings.test_clock {
        router = router.merge(routes::clock::router());
    }
    router.split_for_parts()
}

/// The whole application: routes, the OpenAPI document at `/v1/openapi.json`, and the
/// request pipeline.
pub fn app(state: AppState) -> Router {
    let (router, _) = routes(&state.settings);
    router
        .fallback(routes::ops::fallback)
        .method_not_allowed_fallback(routes::ops::method_not_allowed)
        .layer(from_fn_with_state(state.clone(), middleware::idempotency))
        .layer(from_fn_with_state(state.clone(), middleware::gate))
        .layer(axum::middleware::from_fn(middleware::cors))
        .layer(from_fn_with_state(state.clone(), middleware::observe))
        .with_state(state)
}
