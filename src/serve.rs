//! `cairn serve`: opens the stores, bootstraps the first workspace if asked, serves HTTP, runs
//! housekeeping, and shuts down gracefully on SIGINT/SIGTERM (stop accepting, finish in-flight
//! requests, flush buffers, close the stores).

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use cairn_api::{ApiLogSink, ApiSettings, AppState, Inner, Metrics, RateLimiter};
use cairn_channels::webhooks::{Dispatcher, WebhookSettings};
use cairn_domain::Clock;
use cairn_ingest::{IngestLog, LogConfig, Processor};
use cairn_scoring::{Scorer, ScoringSettings};
use cairn_segments::{SegmentSettings, Segmenter};
use cairn_service::{accounts::Registration, ServiceSettings, Services};

use crate::{
    config::{ServeArgs, StoreArgs},
    stores,
};

pub async fn run(store_args: &StoreArgs, args: ServeArgs) -> anyhow::Result<()> {
    let signals = shutdown_signal();
    let stores = stores::open(store_args).await?;
    let clock = if args.test_clock { Clock::test() } else { Clock::system() };
    let settings = ServiceSettings {
        session_ttl: chrono::Duration::hours(args.session_ttl_hours as i64),
        allow_registration: args.allow_registration,
        crm_webhook: cairn_service::inbound::CrmWebhookEnv::from_env(
            args.crm_webhook_secret.clone(),
            args.crm_callback_secret.clone(),
            args.crm_webhook_signing_secret.clone(),
            args.crm_webhook_workspace.clone(),
        ),
        ..ServiceSettings::default()
    };
    let svc = Services::new(stores.entities.clone(), stores.events.clone(), clock, settings);
    bootstrap(&svc, &args).await?;
    let public_url = args.public_url.clone().unwrap_or_else(|| format!("http://{}", args.listen));
    let secret = {
        let fresh = hex::encode(rand::random::<[u8; 32]>());
        stores.entities.write().await?.server_secret("campaign_links", &fresh, svc.clock.now()).await?
    };
    let links = cairn_campaigns::Links::new(&public_url, secret.as_bytes());
    let defaults = cairn_campaigns::settings::Defaults {
        smtp: args.smtp_url.clone(),
        sms: match (&args.sms_api_url, &args.sms_account_sid, &args.sms_auth_token, &args.sms_from) {
            (Some(api_url), Some(account_sid), Some(auth_token), Some(from)) => {
                Some(cairn_channels::sms::SmsSettings {
                    api_url: api_url.clone(),
                    account_sid: account_sid.clone(),
                    auth_token: auth_token.clone(),
                    from: from.clone(),
                })
            }
            _ => None,
        },
    };
    let sender = Arc::new(cairn_campaigns::sender::Sender::new(
        stores.entities.clone(),
        svc.clock.clone(),
        format!("sender-{:016x}", rand::random::<u64>()),
        defaults.clone(),
        links.clone(),
        cairn_campaigns::sender::SenderConfig { lanes: args.smtp_connections as usize, ..Default::default() },
    ));
    let notifier = Arc::new(cairn_campaigns::notify::Notifier::new(
        stores.entities.clone(),
        svc.clock.clone(),
        defaults.clone(),
        fallback_from(&public_url),
        Duration::from_secs(30),
    ));
    let svc = svc.with_campaigns(cairn_service::campaigns::CampaignKit { links, defaults, wake: sender.waker() });
    let engine = Arc::new(
        cairn_automations::engine::Engine::new(
            stores.entities.clone(),
            stores.events.clone(),
            svc.clock.clone(),
            cairn_automations::engine::EngineConfig::default(),
        )
        .with_campaigns_wake(sender.waker()),
    );
    let svc = svc.with_automations(engine.waker());

    let (ingest, reader) = IngestLog::open(LogConfig {
        dir: store_args.data_dir.join("ingest-log"),
        segment_bytes: 64 * 1024 * 1024,
        budget_bytes: args.ingest_log_budget_mb * 1024 * 1024,
    })
    .with_context(|| format!("CAIRN_DATA_DIR: cannot open the ingest log in {}", store_args.data_dir.display()))?;
    let (stop_processor, processor_stop) = tokio::sync::watch::channel(false);
    let processor_stop_for_webhooks = processor_stop.clone();
    let scorer = Arc::new(Scorer::new(
        stores.entities.clone(),
        stores.events.clone(),
        svc.clock.clone(),
        ScoringSettings {
            horizon_months: args.clv_horizon_months as f64,
            boundaries_schedule: args.scoring_boundaries_cron.clone(),
            fit_schedule: args.scoring_fit_cron.clone(),
            ..ScoringSettings::default()
        },
    ));
    let segmenter = Arc::new(Segmenter::new(
        stores.entities.clone(),
        stores.events.clone(),
        svc.clock.clone(),
        SegmentSettings::default(),
    ));
    let processor = tokio::spawn(
        Processor::new(reader, stores.entities.clone(), stores.events.clone(), svc.clock.clone())
            .with_scoring_wake(scorer.wake())
            .with_segments_wake(segmenter.wake())
            .with_automations_wake(engine.waker())
            .run(processor_stop.clone()),
    );
    let scoring = tokio::spawn(scorer.run(processor_stop.clone()));
    let segments = tokio::spawn(segmenter.run(processor_stop.clone()));
    let campaigns = tokio::spawn(sender.run(processor_stop.clone()));
    let automations = tokio::spawn(engine.run(processor_stop.clone()));

    let dispatcher = Dispatcher::new(
        stores.entities.clone(),
        svc.clock.clone(),
        WebhookSettings { allow_private: args.webhook_allow_private, ..WebhookSettings::default() },
    )
    .context("could not set up the webhook HTTP client")?
    .with_notifier_wake(notifier.waker());
    let notices = tokio::spawn(notifier.run(processor_stop.clone()));
    let webhooks = tokio::spawn(dispatcher.run(processor_stop_for_webhooks));

    let metrics = Arc::new(Metrics::default());
    let (api_logs, log_writer) = ApiLogSink::start(stores.entities.clone(), metrics.clone());
    let state = AppState::new(Inner {
        svc: svc.clone(),
        events: stores.events.clone(),
        ingest,
        settings: ApiSettings {
            max_body_bytes: args.max_body_bytes as usize,
            max_batch_bytes: args.max_batch_bytes as usize,
            max_event_bytes: args.max_event_bytes as usize,
            max_file_bytes: args.max_file_bytes as usize,
            max_import_bytes: args.max_import_bytes as usize,
            secret_key_rate_limit: args.rate_limit_secret,
            public_key_rate_limit: args.rate_limit_public,
            session_rate_limit: args.rate_limit_session,
            ingest_rate_limit: args.rate_limit_ingest,
            anonymous_rate_limit: args.rate_limit_anonymous,
            test_clock: args.test_clock,
        },
        limiter: RateLimiter::default(),
        metrics,
        api_logs,
        started: Instant::now(),
    });
    let housekeeping = tokio::spawn(housekeeping(svc.clone()));

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("CAIRN_LISTEN: cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, entity_store = ?stores.entities.backend(), event_store = stores.events.backend(),
                   test_clock = args.test_clock, roles = %args.roles, "cairn listening");
    println!("Cairn {} listening on http://{addr}", env!("CARGO_PKG_VERSION"));

    let app = cairn_api::app(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        signals.await;
        let _ = stop_tx.send(true);
    });
    let grace = Duration::from_secs(args.shutdown_timeout_secs);
    let mut stop_rx2 = stop_rx.clone();
    tokio::select! {
        res = server => res.context("the HTTP server failed")?,
        _ = async {
            let _ = stop_rx2.wait_for(|s| *s).await;
            tokio::time::sleep(grace).await;
        } => tracing::warn!("in-flight requests did not finish within CAIRN_SHUTDOWN_TIMEOUT_SECS; exiting"),
    }

    tracing::info!("shutting down: flushing buffers");
    housekeeping.abort();
    drop(state); // the last sender of the request log: its writer drains and ends
                 // Acknowledged events are already durable in the ingest log; processing what is there
                 // now only saves the next start the work.
    let _ = stop_processor.send(true);
    if tokio::time::timeout(Duration::from_secs(30), processor).await.is_err() {
        tracing::warn!("the ingest processor did not finish in 30 s; the rest is processed at the next start");
    }
    // A recompute stopped mid-way resumes from its last committed chunk at the next start.
    let _ = tokio::time::timeout(Duration::from_secs(5), scoring).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), segments).await;
    // A batch in flight finishes (its messages are committed); the rest resumes at the next start.
    let _ = tokio::time::timeout(Duration::from_secs(15), campaigns).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), automations).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), notices).await;
    // Deliveries in flight finish or time out (10 s); unfinished ones are retried after a restart.
    let _ = tokio::time::timeout(Duration::from_secs(15), webhooks).await;
    if tokio::time::timeout(Duration::from_secs(10), log_writer).await.is_err() {
        tracing::warn!("the request log did not drain in 10 s");
    }
    stores.entities.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// The sender of owner notices when a workspace set no `from_email`: `cairn@<public host>`.
fn fallback_from(public_url: &str) -> String {
    let host = url::Url::parse(public_url).ok().and_then(|u| u.host_str().map(str::to_string));
    let host = host.filter(|h| h.contains('.') && h.parse::<std::net::IpAddr>().is_err());
    format!("cairn@{}", host.unwrap_or_else(|| "localhost.localdomain".into()))
}

/// On first start: create the workspace named by `CAIRN_ADMIN_*`, or say how to get going.
async fn bootstrap(svc: &Services, args: &ServeArgs) -> anyhow::Result<()> {
    if svc.has_workspaces().await? {
        return Ok(());
    }
    match (&args.admin_email, &args.admin_password) {
        (Some(email), Some(password)) => {
            let r = Registration { email, password, name: "Admin", workspace: &args.admin_workspace };
            let (tenant, _) = svc
                .create_workspace_with_owner(&r)
                .await
                .map_err(|e| anyhow::anyhow!("CAIRN_ADMIN_EMAIL / CAIRN_ADMIN_PASSWORD: {e}"))?;
            println!(
                "Created workspace {:?} (slug {}) with the owner from CAIRN_ADMIN_EMAIL.",
                tenant.name, tenant.slug
            );
            println!(
                "Sign in with POST /v1/auth/login, or create a key: cairn keys create --tenant {} --name server",
                tenant.slug
            );
        }
        _ => {
            let base = format!("http://{}", args.listen);
            println!("No workspace yet. Create one and sign in:");
            println!(
                "  curl -s -X POST {base}/v1/auth/register -H 'Content-Type: application/json' \\\n    \
                 -d '{{\"email\":\"you@example.com\",\"password\":\"a-long-password\",\"name\":\"You\",\"workspace\":\"Acme\"}}'"
            );
            println!("Or, without the server: cairn tenants create --name Acme && cairn keys create --tenant acme --name server");
        }
    }
    Ok(())
}

/// Purges what has expired: sessions, idempotency records (24 h), request logs (7 days),
/// finished jobs (7 days), inbound delivery ids (24 h). Every instance may run it; each statement is idempotent.
async fn housekeeping(svc: Services) {
    let mut tick = tokio::time::interval(Duration::from_secs(600));
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = svc.clock.now();
        let res = async {
            let mut c = svc.store.write().await?;
            let s = c.purge_sessions(now - chrono::Duration::days(1)).await?;
            let i = c.purge_idempotency_keys(now - chrono::Duration::hours(24)).await?;
            let l = c.purge_api_logs(now - chrono::Duration::days(7)).await?;
            let j = c.purge_jobs(now - chrono::Duration::days(7)).await?;
            c.prune_inbound_deliveries(now - cairn_service::inbound::DELIVERY_MEMORY).await?;
            let stale = c.fail_stale_imports(now - chrono::Duration::minutes(10), now).await?;
            if stale > 0 {
                tracing::warn!(
                    imports = stale,
                    "imports interrupted by a stopped instance marked failed; run them again"
                );
            }
            Ok::<_, cairn_store::StoreError>((s, i, l, j))
        }
        .await;
        match res {
            Ok((s, i, l, j)) => tracing::debug!(sessions = s, idempotency = i, api_logs = l, jobs = j, "housekeeping"),
            Err(e) => tracing::warn!(error = %e, "housekeeping failed"),
        }
    }
}

/// Installs the SIGTERM and SIGINT handlers now — a signal that arrives before the server runs
/// (say, right after it answered its first health check) must stop it gracefully, not kill it
/// with the default action — and returns what resolves on the first of them.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let (term, int) = {
        use tokio::signal::unix::{signal, SignalKind};
        (signal(SignalKind::terminate()).ok(), signal(SignalKind::interrupt()).ok())
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! { _ = wait(term) => {}, _ = wait(int) => {} }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("signal received: no new connections; finishing in-flight requests");
    }
}
