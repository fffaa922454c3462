//! The SSRF guard end to end: with private targets not allowed, deliveries to loopback — by IP
//! or by a name that resolves there — fail as refused, and nothing connects.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use cairn_channels::webhooks::{Dispatcher, WebhookSettings};
use cairn_domain::{Clock, TenantId};
use cairn_store::{Store, StoreConfig};
use cairn_testkit::TempDir;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_to_private_addresses_are_refused_without_connecting() {
    let dir = TempDir::new();
    let store = Store::connect(&StoreConfig::Sqlite { path: dir.0.join("cairn.db") }).await.unwrap();
    store.migrate().await.unwrap();
    let now = chrono::Utc::now();
    let mut tx = store.begin().await.unwrap();
    let tenant = tx.insert_tenant("T", "t", now).await.unwrap();
    tx.commit().await.unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let seen = connections.clone();
    tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            seen.fetch_add(1, Ordering::SeqCst);
        }
    });

    let mut c = store.write().await.unwrap();
    for url in [format!("http://127.0.0.1:{port}/hook"), format!("http://localhost:{port}/hook")] {
        c.insert_webhook(tenant.id, &url, "*", "whsec_c2VjcmV0c2VjcmV0c2VjcmV0", now).await.unwrap();
    }
    c.insert_outbox(TenantId(tenant.id.0), "customer.created", &json!({"customer_id": 1}), now).await.unwrap();
    drop(c);

    let dispatcher = Dispatcher::new(store.clone(), Clock::system(), WebhookSettings::default()).unwrap();
    assert_eq!(dispatcher.fan_out().await.unwrap(), 1);
    assert_eq!(dispatcher.send_due().await.unwrap(), 2);
    let mut failed = Vec::new();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut c = store.read().await.unwrap();
        failed.clear();
        for hook in 1..=2 {
            let (d, _) = c.list_deliveries(TenantId(tenant.id.0), hook, 10, 0).await.unwrap();
            failed.extend(d.into_iter().filter(|d| d.status == "failed"));
        }
        if failed.len() == 2 {
            break;
        }
    }
    assert_eq!(failed.len(), 2, "both deliveries are refused for good");
    for d in &failed {
        assert!(d.last_error.as_deref().unwrap_or("").starts_with("refused"), "{:?}", d.last_error);
        assert_eq!(d.attempts, 1, "a refusal is not retried");
    }
    assert_eq!(connections.load(Ordering::SeqCst), 0, "nothing connected to the private address");
}
