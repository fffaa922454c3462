//! Test harness: a real server on a random loopback port, on a fresh database of the chosen
//! backend. PostgreSQL must be running (scripts/test.sh makes sure); a missing server fails
//! the PostgreSQL tests, it never skips them.
#![allow(dead_code)]

use std::{net::SocketAddr, sync::Arc, time::Instant};

use cairn_api::{ApiLogSink, ApiSettings, AppState, Inner, Metrics, RateLimiter};
use cairn_domain::Clock;
use cairn_events::SqliteEventStore;
use cairn_service::{ServiceSettings, Services};
use cairn_store::{Store, StoreConfig};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Backend {
    /// The embedded default: SQLite for entities and events.
    Sqlite,
    /// PostgreSQL entities, SQLite events.
    Postgres,
    /// PostgreSQL entities, ClickHouse events: the scale-out combination.
    PostgresClickHouse,
}

pub use cairn_testkit::{FreshClickHouse, FreshPg, TempDir};

/// A running server and a client for it.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub backend: Backend,
    pub clock: Clock,
    pub store: Store,
    pub events: Arc<dyn cairn_events::EventStore>,
    pub scorer: Arc<cairn_scoring::Scorer>,
    pub segmenter: Arc<cairn_segments::Segmenter>,
    pub engine: Arc<cairn_automations::engine::Engine>,
    _pg: Option<FreshPg>,
    _ch: Option<FreshClickHouse>,
    _dir: TempDir,
    server: tokio::task::JoinHandle<()>,
    processor: tokio::task::JoinHandle<()>,
    webhooks: tokio::task::JoinHandle<()>,
    scoring: tokio::task::JoinHandle<()>,
    segments: tokio::task::JoinHandle<()>,
    campaigns: tokio::task::JoinHandle<()>,
    automations: tokio::task::JoinHandle<()>,
    notices: tokio::task::JoinHandle<()>,
    _stop: tokio::sync::watch::Sender<bool>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
        self.processor.abort();
        self.webhooks.abort();
        self.scoring.abort();
        self.segments.abort();
        self.campaigns.abort();
        self.automations.abort();
        self.notices.abort();
    }
}

pub async fn spawn(backend: Backend) -> TestApp {
    spawn_with(backend, |_| {}).await
}

/// Spawns a server whose rate limits are generous unless the test says otherwise, with the
/// test clock on.
pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut ApiSettings)) -> TestApp {
    spawn_full(backend, tweak, cairn_campaigns::settings::Defaults::default()).await
}

/// Spawns a server whose campaigns send through these channel defaults.
pub async fn spawn_channels(backend: Backend, channels: cairn_campaigns::settings::Defaults) -> TestApp {
    spawn_full(backend, |_| {}, channels).await
}

pub async fn spawn_full(
    backend: Backend,
    tweak: impl FnOnce(&mut ApiSettings),
    channels: cairn_campaigns::settings::Defaults,
) -> TestApp {
    spawn_services(backend, tweak, channels, ServiceSettings::default()).await
}

/// Spawns a server with these service settings (the environment's CRM webhook secret, …).
pub async fn spawn_services(
    backend: Backend,
    tweak: impl FnOnce(&mut ApiSettings),
    channels: cairn_campaigns::settings::Defaults,
    service_settings: ServiceSettings,
) -> TestApp {
    let dir = TempDir::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (config, pg) = match backend {
        Backend::Sqlite => (StoreConfig::Sqlite { path: dir.0.join("cairn.db") }, None),
        Backend::Postgres | Backend::PostgresClickHouse => {
            let pg = FreshPg::create().await;
            (StoreConfig::Postgres { url: pg.url.clone(), max_connections: 8 }, Some(pg))
        }
    };
    let store = Store::connect(&config).await.expect("connect store");
    store.migrate().await.expect("migrate store");
    let (events, ch): (Arc<dyn cairn_events::EventStore>, _) = if backend == Backend::PostgresClickHouse {
        let ch = FreshClickHouse::new("cairn_api");
        let events = cairn_events::ClickHouseStore::new(cairn_events::ClickHouseConfig {
            url: ch.url.clone(),
            database: ch.database.clone(),
            user: None,
            password: None,
        });
        (Arc::new(events), Some(ch))
    } else {
        (Arc::new(SqliteEventStore::open(&dir.0.join("events.db")).await.expect("open event store")), None)
    };
    events.migrate().await.expect("migrate event store");
    let clock = Clock::test();
    let links = cairn_campaigns::Links::new(&format!("http://{addr}"), b"test-link-secret");
    let sender = Arc::new(cairn_campaigns::sender::Sender::new(
        store.clone(),
        clock.clone(),
        "test-sender".into(),
        channels.clone(),
        links.clone(),
        cairn_campaigns::sender::SenderConfig {
            lanes: 4,
            batch: 50,
            poll: std::time::Duration::from_millis(50),
            retry_base: std::time::Duration::from_millis(200),
            ..Default::default()
        },
    ));
    let engine = Arc::new(
        cairn_automations::engine::Engine::new(
            store.clone(),
            events.clone(),
            clock.clone(),
            cairn_automations::engine::EngineConfig {
                poll: std::time::Duration::from_millis(50),
                ..Default::default()
            },
        )
        .with_campaigns_wake(sender.waker()),
    );
    let svc = Services::new(store.clone(), events.clone(), clock.clone(), service_settings)
        .with_campaigns(cairn_service::campaigns::CampaignKit {
            links,
            defaults: channels.clone(),
            wake: sender.waker(),
        })
        .with_automations(engine.waker());
    let mut settings = ApiSettings {
        secret_key_rate_limit: 10_000,
        public_key_rate_limit: 10_000,
        session_rate_limit: 10_000,
        anonymous_rate_limit: 10_000,
        test_clock: true,
        ..ApiSettings::default()
    };
    tweak(&mut settings);
    let (ingest, reader) = cairn_ingest::IngestLog::open(cairn_ingest::LogConfig {
        dir: dir.0.join("ingest-log"),
        segment_bytes: 1024 * 1024,
        budget_bytes: 64 * 1024 * 1024,
    })
    .expect("open ingest log");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let scorer = Arc::new(cairn_scoring::Scorer::new(
        store.clone(),
        events.clone(),
        clock.clone(),
        cairn_scoring::ScoringSettings { chunk: 50, poll: std::time::Duration::from_millis(50), ..Default::default() },
    ));
    let segmenter = Arc::new(cairn_segments::Segmenter::new(
        store.clone(),
        events.clone(),
        clock.clone(),
        cairn_segments::SegmentSettings { chunk: 3, poll: std::time::Duration::from_millis(50), ..Default::default() },
    ));
    let processor = tokio::spawn(
        cairn_ingest::Processor::new(reader, store.clone(), events.clone(), clock.clone())
            .with_scoring_wake(scorer.wake())
            .with_segments_wake(segmenter.wake())
            .with_automations_wake(engine.waker())
            .run(stopped.clone()),
    );
    let scoring = tokio::spawn(scorer.clone().run(stopped.clone()));
    let segments = tokio::spawn(segmenter.clone().run(stopped.clone()));
    let campaigns = tokio::spawn(sender.clone().run(stopped.clone()));
    let automations = tokio::spawn(engine.clone().run(stopped.clone()));
    let dispatcher = cairn_channels::webhooks::Dispatcher::new(
        store.clone(),
        clock.clone(),
        cairn_channels::webhooks::WebhookSettings { allow_private: true, ..Default::default() },
    )
    .expect("webhook client");
    let notifier = Arc::new(cairn_campaigns::notify::Notifier::new(
        store.clone(),
        clock.clone(),
        channels.clone(),
        "cairn@cairn.test".into(),
        std::time::Duration::from_millis(100),
    ));
    let dispatcher = dispatcher.with_notifier_wake(notifier.waker());
    let notices = tokio::spawn(notifier.run(stopped.clone()));
    let webhooks = tokio::spawn(dispatcher.run(stopped.clone()));
    let metrics = Arc::new(Metrics::default());
    let (api_logs, _writer) = ApiLogSink::start(store.clone(), metrics.clone());
    let state = AppState::new(Inner {
        svc,
        events: events.clone(),
        ingest,
        settings,
        limiter: RateLimiter::default(),
        metrics,
        api_logs,
        started: Instant::now(),
    });
    let app = cairn_api::app(state).into_make_service_with_connect_info::<SocketAddr>();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    TestApp {
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
        backend,
        clock,
        store,
        events,
        scorer,
        _pg: pg,
        _ch: ch,
        _dir: dir,
        server,
        processor,
        webhooks,
        scoring,
        segmenter,
        segments,
        campaigns,
        engine,
        automations,
        notices,
        _stop: stop,
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the error envelope with this status and code.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(self.body["success"], json!(false), "body: {}", self.body);
        assert_eq!(self.body["code"], json!(code), "body: {}", self.body);
        assert!(self.body["error"].as_str().is_some_and(|s| !s.is_empty()), "body: {}", self.body);
    }

    #[track_caller]
    pub fn assert_ok(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        &self.body
    }
}

impl TestApp {
    pub async fn call(&self, method: Method, path: &str, auth: Option<&str>, body: Option<Value>) -> Resp {
        self.call_with(method, path, auth, body, &[]).await
    }

    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut req = self.client.request(method, format!("{}{}", self.base, path));
        if let Some(a) = auth {
            req = req.bearer_auth(a);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Resp { status, headers, body }
    }

    pub async fn get(&self, path: &str, auth: &str) -> Resp {
        self.call(Method::GET, path, Some(auth), None).await
    }

    pub async fn post(&self, path: &str, auth: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(auth), Some(body)).await
    }

    pub async fn put(&self, path: &str, auth: &str, body: Value) -> Resp {
        self.call(Method::PUT, path, Some(auth), Some(body)).await
    }

    pub async fn delete(&self, path: &str, auth: &str) -> Resp {
        self.call(Method::DELETE, path, Some(auth), None).await
    }

    /// Registers a workspace and returns the owner's session token.
    pub async fn register(&self, email: &str, workspace: &str) -> String {
        let r = self
            .call(
                Method::POST,
                "/v1/auth/register",
                None,
                Some(json!({"email": email, "password": "correct horse battery", "name": "Owner", "workspace": workspace})),
            )
            .await;
        r.assert_ok(201);
        r.body["token"].as_str().unwrap().to_string()
    }

    /// Creates a key with the given body; returns (id, key).
    pub async fn create_key(&self, auth: &str, body: Value) -> (i64, String) {
        let r = self.post("/v1/api-keys", auth, body).await;
        r.assert_ok(201);
        (r.body["data"]["id"].as_i64().unwrap(), r.body["data"]["key"].as_str().unwrap().to_string())
    }
}

/// Runs each listed async test function on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
              async fn $name() { super::$name($crate::common::spawn($crate::common::Backend::Sqlite).await).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
              async fn $name() { super::$name($crate::common::spawn($crate::common::Backend::Postgres).await).await })*
        }
    };
}

/// Runs each listed async test function on both backend combinations: SQLite + SQLite, and
/// PostgreSQL + ClickHouse.
#[macro_export]
macro_rules! on_both_combinations {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
              async fn $name() { super::$name($crate::common::spawn($crate::common::Backend::Sqlite).await).await })*
        }
        mod postgres_clickhouse {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
              async fn $name() {
                  super::$name($crate::common::spawn($crate::common::Backend::PostgresClickHouse).await).await
              })*
        }
    };
}

/// Like `on_both_backends!`, for tests that spawn their own server (custom settings): each
/// listed function takes the backend.
#[macro_export]
macro_rules! on_both_backends_raw {
    ($($name:ident),* $(,)?) => {
        mod sqlite_custom {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
              async fn $name() { super::$name($crate::common::Backend::Sqlite).await })*
        }
        mod postgres_custom {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
              async fn $name() { super::$name($crate::common::Backend::Postgres).await })*
        }
    };
}

impl TestApp {
    /// Waits until the workspace's event store holds `n` events (ingestion is asynchronous
    /// after the durable acknowledgement), failing after 15 s.
    pub async fn wait_for_events(&self, tenant: i64, n: u64) {
        let started = Instant::now();
        loop {
            let have = self.events.count(cairn_domain::TenantId(tenant)).await.expect("count events");
            if have >= n {
                assert_eq!(have, n, "more events than expected");
                return;
            }
            assert!(started.elapsed().as_secs() < 15, "only {have} of {n} events arrived");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// Runs each listed async test function (taking the `Backend`) on the embedded stores (SQLite +
/// SQLite events) and on the scale stores (PostgreSQL + ClickHouse).
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
              async fn $name() { super::$name(crate::common::Backend::Sqlite).await })*
        }
        mod postgres_clickhouse {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
              async fn $name() { super::$name(crate::common::Backend::PostgresClickHouse).await })*
        }
    };
}
