//! The entity store's own guarantees, on SQLite and on PostgreSQL (fresh database each):
//! idempotent migrations, claimed jobs with leases, atomic idempotency claims.

use std::collections::HashSet;

use cairn_domain::{CustomerId, TenantId};
use cairn_store::{
    campaigns::{CampaignFields, NewSend, SendOutcome},
    customers::CustomerFields,
    idempotency::{Claim, IdemKey},
    jobs::NewJob,
    scores::ScoreRow,
    Raw, Store, StoreConfig,
};
use cairn_testkit::{FreshPg, TempDir};
use chrono::{DateTime, Duration, Utc};

struct Fresh {
    store: Store,
    _pg: Option<FreshPg>,
    _dir: TempDir,
}

async fn sqlite() -> Fresh {
    let dir = TempDir::new();
    let store = Store::connect(&StoreConfig::Sqlite { path: dir.0.join("cairn.db") }).await.unwrap();
    store.migrate().await.unwrap();
    Fresh { store, _pg: None, _dir: dir }
}

async fn postgres() -> Fresh {
    let pg = FreshPg::create().await;
    let store = Store::connect(&StoreConfig::Postgres { url: pg.url.clone(), max_connections: 8 }).await.unwrap();
    store.migrate().await.unwrap();
    Fresh { store, _pg: Some(pg), _dir: TempDir::new() }
}

macro_rules! on_every_store {
    ($($name:ident),* $(,)?) => {
        mod sqlite_store {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::sqlite().await).await })*
        }
        mod postgres_store {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::postgres().await).await })*
        }
    };
}

on_every_store!(
    migrating_twice_changes_nothing,
    a_due_job_is_claimed_by_exactly_one_of_many_workers,
    a_job_is_not_claimed_before_its_time,
    a_dead_workers_job_is_taken_over_when_its_lease_runs_out,
    only_the_lease_holder_completes_a_job,
    a_failed_job_is_retried_at_the_time_given,
    enqueueing_with_a_dedupe_key_twice_makes_one_job,
    concurrent_idempotency_claims_let_exactly_one_request_run,
    a_stale_in_flight_idempotency_claim_is_taken_over,
    a_message_whose_address_was_suppressed_after_rendering_does_not_pass_its_commit_point,
    a_status_report_that_beats_the_senders_record_keeps_its_status_and_gains_the_parts,
    an_unsynced_transaction_leaves_the_writer_synced_again_committed_or_dropped,
    due_runs_are_read_in_order_off_the_index_without_a_sort,
    starting_runs_leaves_out_each_collision_and_names_the_rest_by_index,
    erasing_or_merging_a_customer_removes_its_scores,
    an_outbox_entry_nobody_reads_is_settled_when_written,
    scores_are_written_only_for_customers_that_exist_dense_or_scattered,
    runs_move_only_from_the_revision_they_were_read_at,
);

fn t0() -> DateTime<Utc> {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

async fn enqueue(store: &Store, kind: &str, run_at: DateTime<Utc>, dedupe: Option<&str>) -> i64 {
    let mut c = store.write().await.unwrap();
    c.enqueue_job(&NewJob { tenant_id: Some(TenantId(1)), kind, dedupe_key: dedupe, payload: "{}", run_at, now: t0() })
        .await
        .unwrap()
}

async fn migrating_twice_changes_nothing(s: Fresh) {
    let before = s.store.applied_migrations().await.unwrap();
    assert!(before >= 1);
    assert_eq!(s.store.migrate().await.unwrap(), 0);
    assert_eq!(s.store.applied_migrations().await.unwrap(), before);
}

async fn a_due_job_is_claimed_by_exactly_one_of_many_workers(s: Fresh) {
    for _ in 0..50 {
        enqueue(&s.store, "work", t0(), None).await;
    }
    let mut handles = Vec::new();
    for w in 0..8 {
        let store = s.store.clone();
        handles.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let mut c = store.begin().await.unwrap();
                let jobs = c.claim_jobs("work", &format!("w{w}"), t0(), t0() + Duration::minutes(5), 3).await.unwrap();
                c.commit().await.unwrap();
                if jobs.is_empty() {
                    return mine;
                }
                mine.extend(jobs.into_iter().map(|j| j.id));
            }
        }));
    }
    let mut seen = HashSet::new();
    let mut total = 0;
    for h in handles {
        for id in h.await.unwrap() {
            total += 1;
            assert!(seen.insert(id), "job {id} was claimed twice");
        }
    }
    assert_eq!(total, 50);
}

async fn a_job_is_not_claimed_before_its_time(s: Fresh) {
    enqueue(&s.store, "later", t0() + Duration::hours(1), None).await;
    let mut c = s.store.begin().await.unwrap();
    assert!(c.claim_jobs("later", "w", t0(), t0() + Duration::minutes(5), 10).await.unwrap().is_empty());
    let due = c.claim_jobs("later", "w", t0() + Duration::hours(1), t0() + Duration::hours(2), 10).await.unwrap();
    c.commit().await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].attempts, 1);
}

async fn a_dead_workers_job_is_taken_over_when_its_lease_runs_out(s: Fresh) {
    let id = enqueue(&s.store, "work", t0(), None).await;
    let mut c = s.store.begin().await.unwrap();
    let claimed = c.claim_jobs("work", "dead", t0(), t0() + Duration::minutes(5), 1).await.unwrap();
    assert_eq!(claimed[0].id, id);
    // While the lease holds, nobody else gets it.
    assert!(c
        .claim_jobs("work", "other", t0() + Duration::minutes(4), t0() + Duration::minutes(9), 1)
        .await
        .unwrap()
        .is_empty());
    let taken =
        c.claim_jobs("work", "other", t0() + Duration::minutes(6), t0() + Duration::minutes(11), 1).await.unwrap();
    c.commit().await.unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].locked_by.as_deref(), Some("other"));
    assert_eq!(taken[0].attempts, 2);
}

async fn only_the_lease_holder_completes_a_job(s: Fresh) {
    let id = enqueue(&s.store, "work", t0(), None).await;
    let mut c = s.store.begin().await.unwrap();
    c.claim_jobs("work", "a", t0(), t0() + Duration::minutes(5), 1).await.unwrap();
    c.claim_jobs("work", "b", t0() + Duration::minutes(6), t0() + Duration::minutes(11), 1).await.unwrap();
    assert!(!c.complete_job(id, "a", t0() + Duration::minutes(7)).await.unwrap(), "a lost its lease");
    assert!(!c.heartbeat_job(id, "a", t0() + Duration::minutes(20), Some("50%"), t0()).await.unwrap());
    assert!(c.heartbeat_job(id, "b", t0() + Duration::minutes(20), Some("50%"), t0()).await.unwrap());
    assert!(c.complete_job(id, "b", t0() + Duration::minutes(7)).await.unwrap());
    let job = c.job(id).await.unwrap();
    c.commit().await.unwrap();
    assert_eq!(job.status, "done");
    assert_eq!(job.progress.as_deref(), Some("50%"));
}

async fn a_failed_job_is_retried_at_the_time_given(s: Fresh) {
    let id = enqueue(&s.store, "work", t0(), None).await;
    let mut c = s.store.begin().await.unwrap();
    c.claim_jobs("work", "a", t0(), t0() + Duration::minutes(5), 1).await.unwrap();
    assert!(c.fail_job(id, "a", "smtp timeout", Some(t0() + Duration::minutes(1)), t0()).await.unwrap());
    assert!(c
        .claim_jobs("work", "a", t0() + Duration::seconds(30), t0() + Duration::minutes(5), 1)
        .await
        .unwrap()
        .is_empty());
    let again = c.claim_jobs("work", "a", t0() + Duration::minutes(1), t0() + Duration::minutes(6), 1).await.unwrap();
    assert_eq!(again[0].last_error.as_deref(), Some("smtp timeout"));
    assert!(c.fail_job(id, "a", "gave up", None, t0()).await.unwrap());
    assert_eq!(c.job(id).await.unwrap().status, "failed");
    c.commit().await.unwrap();
}

async fn enqueueing_with_a_dedupe_key_twice_makes_one_job(s: Fresh) {
    let a = enqueue(&s.store, "recompute", t0(), Some("recompute:1")).await;
    let b = enqueue(&s.store, "recompute", t0(), Some("recompute:1")).await;
    assert_eq!(a, b);
    let depths = s.store.read().await.unwrap().job_depths().await.unwrap();
    assert_eq!(depths, vec![("recompute".to_string(), "pending".to_string(), 1)]);
}

async fn concurrent_idempotency_claims_let_exactly_one_request_run(s: Fresh) {
    let mut handles = Vec::new();
    for _ in 0..10 {
        let store = s.store.clone();
        handles.push(tokio::spawn(async move {
            let mut c = store.write().await.unwrap();
            let k = IdemKey { tenant: TenantId(1), principal: "key:1", key: "abc" };
            c.claim_idempotency_key(&k, "hash", t0(), t0() + Duration::seconds(60), t0() - Duration::hours(24))
                .await
                .unwrap()
        }));
    }
    let mut fresh = 0;
    for h in handles {
        match h.await.unwrap() {
            Claim::Fresh => fresh += 1,
            Claim::InProgress => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(fresh, 1);
    let mut c = s.store.write().await.unwrap();
    let k = IdemKey { tenant: TenantId(1), principal: "key:1", key: "abc" };
    c.complete_idempotency_key(&k, 201, Some("application/json"), b"{\"id\":1}").await.unwrap();
    let replay = c.claim_idempotency_key(&k, "hash", t0(), t0(), t0() - Duration::hours(24)).await.unwrap();
    assert_eq!(
        replay,
        Claim::Done {
            request_hash: "hash".into(),
            status: 201,
            content_type: Some("application/json".into()),
            body: b"{\"id\":1}".to_vec()
        }
    );
    assert_eq!(
        c.claim_idempotency_key(&k, "other", t0(), t0(), t0() - Duration::hours(24)).await.unwrap(),
        Claim::Mismatch
    );
    // Past 24 hours the key is forgotten and a new request may use it.
    let later = t0() + Duration::hours(25);
    assert_eq!(
        c.claim_idempotency_key(&k, "other", later, later, later - Duration::hours(24)).await.unwrap(),
        Claim::Fresh
    );
}

async fn a_stale_in_flight_idempotency_claim_is_taken_over(s: Fresh) {
    let mut c = s.store.write().await.unwrap();
    let k = IdemKey { tenant: TenantId(1), principal: "user:1", key: "x" };
    let day = Duration::hours(24);
    assert_eq!(
        c.claim_idempotency_key(&k, "h", t0(), t0() + Duration::seconds(60), t0() - day).await.unwrap(),
        Claim::Fresh
    );
    let soon = t0() + Duration::seconds(30);
    assert_eq!(
        c.claim_idempotency_key(&k, "h", soon, soon + Duration::seconds(60), soon - day).await.unwrap(),
        Claim::InProgress
    );
    let late = t0() + Duration::seconds(61);
    assert_eq!(
        c.claim_idempotency_key(&k, "h", late, late + Duration::seconds(60), late - day).await.unwrap(),
        Claim::Fresh
    );
}

/// The sender renders a batch ahead of sending; an unsubscribe (or hard bounce) landing in
/// between must still stop the message: the commit point refuses a suppressed address, and a
/// cancelled record, and moves the rest once.
async fn a_message_whose_address_was_suppressed_after_rendering_does_not_pass_its_commit_point(s: Fresh) {
    let mut c = s.store.write().await.unwrap();
    let (tenant, campaign) = campaign_with_sends(&mut c, "email", &["a@x.test", "b@x.test", "c@x.test"]).await;
    let due = c.due_sends(campaign, 0, t0(), 10).await.unwrap();
    assert_eq!(due.len(), 3);
    let ids: Vec<i64> = due.iter().map(|d| d.id).collect();
    // After rendering: b unsubscribes; the same address on another channel or in another
    // workspace does not count.
    c.suppress(tenant, "email", "b@x.test", "unsubscribed", t0()).await.unwrap();
    c.suppress(tenant, "sms", "c@x.test", "manual", t0()).await.unwrap();
    let moved: HashSet<i64> = c.commit_sends(&ids, t0()).await.unwrap().into_iter().collect();
    assert_eq!(moved, HashSet::from([ids[0], ids[2]]));
    assert_eq!(c.send_record(ids[1]).await.unwrap().status, "queued");
    // Moved once only; the cursor reads past what was read.
    assert!(c.commit_sends(&ids, t0()).await.unwrap().is_empty());
    let rest = c.due_sends(campaign, ids[0], t0(), 10).await.unwrap();
    assert_eq!(rest.iter().map(|d| d.id).collect::<Vec<_>>(), vec![ids[1]]);
}

/// The provider answers, then reports delivery before the sender's batch is recorded: the
/// callback's status stands and the sender's facts (parts, attempts) still land. A record the
/// callback did not settle, or settled under another provider id, is not touched; a late
/// `sent` report never takes a delivered record back.
async fn a_status_report_that_beats_the_senders_record_keeps_its_status_and_gains_the_parts(s: Fresh) {
    let mut c = s.store.write().await.unwrap();
    let (_, campaign) = campaign_with_sends(&mut c, "sms", &["+385911", "+385912", "+385913"]).await;
    let ids: Vec<i64> = c.due_sends(campaign, 0, t0(), 10).await.unwrap().iter().map(|d| d.id).collect();
    assert_eq!(c.commit_sends(&ids, t0()).await.unwrap().len(), 3);
    let later = t0() + Duration::seconds(1);
    c.settle_send(ids[0], "delivered", Some("SM1"), None, later).await.unwrap();
    c.settle_send(ids[2], "failed", Some("SM-other"), Some("provider error 30003"), later).await.unwrap();
    let sent = |id: i64, sid: &str| SendOutcome {
        id,
        status: "sent",
        reason: None,
        provider_id: Some(sid.into()),
        error: None,
        parts: Some(2),
        attempts: 1,
        next_attempt_at: t0(),
    };
    c.finish_sends(&[sent(ids[0], "SM1"), sent(ids[1], "SM2"), sent(ids[2], "SM3")], later).await.unwrap();
    let a = c.send_record(ids[0]).await.unwrap();
    assert_eq!(
        (a.status.as_str(), a.provider_id.as_deref(), a.parts, a.attempts),
        ("delivered", Some("SM1"), Some(2), 1)
    );
    assert_eq!(a.delivered_at, Some(later));
    let b = c.send_record(ids[1]).await.unwrap();
    assert_eq!((b.status.as_str(), b.provider_id.as_deref(), b.parts), ("sent", Some("SM2"), Some(2)));
    let other = c.send_record(ids[2]).await.unwrap();
    assert_eq!((other.status.as_str(), other.provider_id.as_deref(), other.parts), ("failed", Some("SM-other"), None));
    assert_eq!(other.error.as_deref(), Some("provider error 30003"));
    c.settle_send(ids[0], "sent", Some("SM1"), None, later).await.unwrap();
    assert_eq!(c.send_record(ids[0]).await.unwrap().status, "delivered");
    c.settle_send(ids[1], "delivered", Some("SM2"), None, later).await.unwrap();
    assert_eq!(c.send_record(ids[1]).await.unwrap().status, "delivered");
}

/// A workspace with a draft campaign on `channel` and one queued record per address.
async fn campaign_with_sends(c: &mut cairn_store::Conn, channel: &str, addresses: &[&str]) -> (TenantId, i64) {
    let tenant: TenantId = c.insert_tenant("Shop", "shop", t0()).await.unwrap().id;
    let fields = CampaignFields {
        name: "Sale".into(),
        kind: channel.into(),
        segment_id: None,
        subject: Some("Hi".into()),
        body: Some("Hello".into()),
        from_name: None,
        from_email: Some("news@shop.test".into()),
        reply_to: None,
        track_opens: false,
        track_clicks: false,
        rate_limit: None,
        require_consent: false,
    };
    let campaign = c.insert_campaign(tenant, &fields, t0()).await.unwrap().id;
    let sends: Vec<NewSend> = addresses
        .iter()
        .enumerate()
        .map(|(i, a)| NewSend {
            customer_id: i as i64 + 1,
            address: Some(a.to_string()),
            status: "queued",
            reason: None,
            occurrence: 0,
        })
        .collect();
    c.insert_sends(tenant, campaign, channel, &sends, t0(), t0()).await.unwrap();
    (tenant, campaign)
}

/// `begin_unsynced` relaxes durability for one transaction only: whether it commits or is
/// dropped half-way, the next writer waits for the disk again (SQLite `synchronous` back to
/// FULL = 2; PostgreSQL `synchronous_commit` back to on). What it committed is there.
async fn an_unsynced_transaction_leaves_the_writer_synced_again_committed_or_dropped(s: Fresh) {
    async fn synced(store: &Store) -> bool {
        let mut c = store.write().await.unwrap();
        match c.raw() {
            Raw::Sqlite(c) => sqlx::query_scalar::<_, i64>("PRAGMA synchronous").fetch_one(c).await.unwrap() == 2,
            Raw::Postgres(c) => {
                sqlx::query_scalar::<_, String>("SHOW synchronous_commit").fetch_one(c).await.unwrap() == "on"
            }
        }
    }
    assert!(synced(&s.store).await);
    let mut tx = s.store.begin_unsynced().await.unwrap();
    let tenant = tx.insert_tenant("Shop", "shop", t0()).await.unwrap().id;
    tx.commit().await.unwrap();
    assert!(synced(&s.store).await);
    {
        let mut tx = s.store.begin_unsynced().await.unwrap();
        tx.insert_tenant("Other", "other", t0()).await.unwrap();
        // Dropped without a commit: rolled back.
    }
    assert!(synced(&s.store).await);
    s.store.sync().await.unwrap();
    let mut c = s.store.read().await.unwrap();
    let n: i64 = match c.raw() {
        Raw::Sqlite(c) => sqlx::query_scalar("SELECT COUNT(*) FROM tenants").fetch_one(c).await.unwrap(),
        Raw::Postgres(c) => sqlx::query_scalar("SELECT COUNT(*) FROM tenants").fetch_one(c).await.unwrap(),
    };
    assert_eq!(n, 1, "the committed tenant {tenant:?} only");
}

/// Looking given customers up by id stays on the primary key on SQLite, with or without planner
/// statistics. Without them SQLite rated the workspace's `(tenant_id, created_at)` index the
/// better path and walked every customer of the workspace for each lookup: 10 ms per automation
/// tick at 100,000 customers (docs/benchmarks.md, automations, session 22).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_looks_given_customers_up_by_primary_key() {
    let s = sqlite().await;
    let mut c = s.store.write().await.unwrap();
    let Raw::Sqlite(c) = c.raw() else { unreachable!("a SQLite store") };
    sqlx::query("INSERT INTO tenants (name, slug, created_at) VALUES ('Shop', 'shop', '2026-01-01T00:00:00Z')")
        .execute(&mut *c)
        .await
        .unwrap();
    sqlx::query(
        "WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < 2000)
         INSERT INTO customers (tenant_id, email, traits, created_at, updated_at)
         SELECT 1, 'c' || x || '@shop.test', '{}', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z' FROM g",
    )
    .execute(&mut *c)
    .await
    .unwrap();
    for analyzed in [false, true] {
        if analyzed {
            sqlx::query("ANALYZE").execute(&mut *c).await.unwrap();
        }
        // SQLite's choice depends on the length of the list (three ids stayed on the key, four
        // did not); an automation tick looks up tens to a thousand.
        let list = (1..=50).map(|i| (i * 37).to_string()).collect::<Vec<_>>().join(", ");
        for sql in cairn_store::plans::sqlite_customer_lookups(&list) {
            let plan: Vec<(i64, i64, i64, String)> =
                sqlx::query_as(&format!("EXPLAIN QUERY PLAN {sql}")).fetch_all(&mut *c).await.unwrap();
            let on_customers: Vec<&str> =
                plan.iter().map(|p| p.3.as_str()).filter(|d| d.contains("customers") || d.contains(" c ")).collect();
            assert!(!on_customers.is_empty(), "{sql}: {plan:?}");
            assert!(
                on_customers.iter().all(|d| d.contains("PRIMARY KEY")),
                "analyzed: {analyzed}; {sql}\nplan: {on_customers:?}"
            );
        }
    }
}

/// The scheduler's batch of due runs comes straight off the due index, in order, with no sort:

/// A workspace with one manual, every-time automation (the runs' tests need one to point at).
async fn manual_automation(tx: &mut cairn_store::Conn) -> (TenantId, i64) {
    let tenant = tx.insert_tenant("Shop", "shop", t0()).await.unwrap().id;
    let fields = cairn_store::automations::AutomationFields {
        name: "flow".into(),
        trigger_type: "manual".into(),
        trigger_config: serde_json::json!({}),
        reentry: "every_time".into(),
        exit_filter: None,
        design: serde_json::json!({"nodes": [], "edges": []}),
    };
    (tenant, tx.insert_automation(tenant, &fields, "tok", t0()).await.unwrap().id)
}
/// with an index on `due_at` alone PostgreSQL read every run due at the same instant and sorted
/// them by id for each batch — a million runs enrolled at once made each batch of 1,000 cost a
/// scan of up to a million (docs/benchmarks.md, automations, session 22).
async fn due_runs_are_read_in_order_off_the_index_without_a_sort(s: Fresh) {
    let mut tx = s.store.begin().await.unwrap();
    let (tenant, automation) = manual_automation(&mut tx).await;
    let backend = s.store.backend();
    // 20,000 runs of one automation, all due at the same instant.
    let series = match backend {
        cairn_store::Backend::Postgres => "SELECT g AS x FROM generate_series(1, 20000) g",
        cairn_store::Backend::Sqlite => {
            "WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < 20000) SELECT x FROM g"
        }
    };
    let insert = format!(
        "INSERT INTO automation_runs (tenant_id, automation_id, version, customer_id, occurrence, status, node,
                                     due_at, context, started_at, updated_at)
         SELECT $1, $2, 1, x, 'o', 'active', 't', $3, '{{}}', $3, $3 FROM ({series}) AS s"
    );
    match tx.raw() {
        Raw::Postgres(c) => {
            sqlx::query(&insert).bind(tenant.0).bind(automation).bind(t0()).execute(&mut *c).await.unwrap();
        }
        Raw::Sqlite(c) => {
            sqlx::query(&insert).bind(tenant.0).bind(automation).bind(t0()).execute(&mut *c).await.unwrap();
        }
    }
    tx.commit().await.unwrap();
    let sql = cairn_store::plans::due_runs(backend);
    let mut c = s.store.write().await.unwrap();
    let plan: Vec<String> = match c.raw() {
        Raw::Postgres(c) => {
            sqlx::query("ANALYZE automation_runs").execute(&mut *c).await.unwrap();
            sqlx::query_scalar(&format!("EXPLAIN {sql}")).bind(t0()).bind(1000i64).fetch_all(&mut *c).await.unwrap()
        }
        Raw::Sqlite(c) => {
            sqlx::query("ANALYZE").execute(&mut *c).await.unwrap();
            let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(&format!("EXPLAIN QUERY PLAN {sql}"))
                .bind(t0())
                .bind(1000i64)
                .fetch_all(&mut *c)
                .await
                .unwrap();
            rows.into_iter().map(|r| r.3).collect()
        }
    };
    assert!(plan.iter().any(|l| l.contains("automation_runs_due")), "{plan:#?}");
    assert!(!plan.iter().any(|l| l.contains("Sort") || l.contains("TEMP B-TREE")), "{plan:#?}");
    // And the batch is the first 1,000 by id.
    drop(c);
    let mut tx = s.store.begin().await.unwrap();
    let due = tx.due_runs(t0(), 1000).await.unwrap();
    let ids: Vec<i64> = due.iter().map(|r| r.id).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!((ids.len(), ids == sorted), (1000, true));
}

fn score(customer: i64) -> ScoreRow {
    ScoreRow {
        customer_id: customer,
        transactions: 2,
        first_purchase_day: 20_000,
        last_purchase_day: 20_010,
        last_purchase_at: t0(),
        gross: 30.0,
        first_day_gross: 10.0,
        refunds: 0.0,
        rfm_recency: 3,
        rfm_frequency: 3,
        rfm_monetary: 3,
        rfm_score: 9,
        rfm_segment: "Loyal Customers".into(),
        clv_total: 30.0,
        clv_order_count: 2,
        clv_average_order: 15.0,
        clv_predicted: 12.0,
        p_alive: Some(0.8),
        clv_method: "simple".into(),
    }
}

/// Three scored customers in a new workspace.
async fn scored_customers(store: &Store) -> (TenantId, [CustomerId; 3]) {
    let mut tx = store.begin().await.unwrap();
    let tenant = tx.insert_tenant("Shop", "shop", t0()).await.unwrap().id;
    let mut ids = [CustomerId(0); 3];
    for (i, id) in ids.iter_mut().enumerate() {
        let fields = CustomerFields {
            email: Some(format!("c{i}@example.com")),
            traits: serde_json::json!({}),
            ..Default::default()
        };
        *id = tx.insert_customer(tenant, &fields, t0()).await.unwrap().id;
    }
    let rows: Vec<ScoreRow> = ids.iter().map(|c| score(c.0)).collect();
    tx.upsert_scores(tenant, &rows, t0()).await.unwrap();
    tx.commit().await.unwrap();
    (tenant, ids)
}

async fn scored(store: &Store, tenant: TenantId, ids: &[CustomerId]) -> Vec<i64> {
    let rows = store.read().await.unwrap().scores_for(tenant, ids).await.unwrap();
    let mut out: Vec<i64> = rows.into_iter().map(|r| r.customer_id).collect();
    out.sort_unstable();
    out
}

/// PostgreSQL keeps no foreign key from scores to customers (migration 0014: it doubled the
/// cost of a recompute's writes): erasure and merges remove the scores themselves.
async fn erasing_or_merging_a_customer_removes_its_scores(s: Fresh) {
    let (tenant, [a, b, c]) = scored_customers(&s.store).await;
    assert_eq!(scored(&s.store, tenant, &[a, b, c]).await, vec![a.0, b.0, c.0]);
    let mut tx = s.store.begin().await.unwrap();
    assert!(tx.delete_customer(tenant, a).await.unwrap());
    tx.merge_customers(tenant, b, c, t0()).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        scored(&s.store, tenant, &[a, b, c]).await,
        vec![c.0],
        "the erased and the merged-away customer's scores went"
    );
}

/// Runs started in one call come back as (id, index) for exactly the rows that went in: a
/// repeat of an occurrence (in the same call or an earlier one) and a second run in flight of a
/// once-at-a-time automation are left out, and each new id is the run at its index.
async fn starting_runs_leaves_out_each_collision_and_names_the_rest_by_index(s: Fresh) {
    use cairn_store::automations::NewRun;
    let mut tx = s.store.begin().await.unwrap();
    let (tenant, automation) = manual_automation(&mut tx).await;
    let run = |customer: i64, occurrence: &str, exclusive: bool| NewRun {
        tenant_id: tenant.0,
        automation_id: automation,
        version: 1,
        customer_id: customer,
        occurrence: occurrence.into(),
        exclusive,
        node: "t".into(),
        context: serde_json::json!({"n": format!("{customer}/{occurrence}")}),
    };
    let first = tx.insert_runs(&[run(1, "a", false)], t0()).await.unwrap();
    assert_eq!(first.len(), 1);
    let batch = [
        run(1, "a", false), // the occurrence started above
        run(2, "a", false),
        run(2, "a", false), // the same occurrence twice in one call
        run(3, "a", true),
        run(3, "b", true), // a second run in flight of a once-at-a-time automation
        run(4, "a", false),
    ];
    let started = tx.insert_runs(&batch, t0()).await.unwrap();
    let indexes: Vec<usize> = started.iter().map(|(_, i)| *i).collect();
    assert_eq!(indexes, vec![1, 3, 5]);
    for (id, i) in &started {
        let (customer, occurrence, context): (i64, String, String) = match tx.raw() {
            Raw::Postgres(c) => {
                sqlx::query_as("SELECT customer_id, occurrence, context::text FROM automation_runs WHERE id = $1")
                    .bind(id)
                    .fetch_one(&mut *c)
                    .await
                    .unwrap()
            }
            Raw::Sqlite(c) => {
                sqlx::query_as("SELECT customer_id, occurrence, context FROM automation_runs WHERE id = $1")
                    .bind(id)
                    .fetch_one(&mut *c)
                    .await
                    .unwrap()
            }
        };
        let r = &batch[*i];
        assert_eq!((customer, occurrence.as_str()), (r.customer_id, r.occurrence.as_str()));
        assert_eq!(serde_json::from_str::<serde_json::Value>(&context).unwrap(), r.context);
    }
}

/// An outbox entry is owed to the webhook dispatcher only while its workspace has an active
/// endpoint, and to the automation intake only while it has an active automation; otherwise it
/// is written settled (neither consumer reads it, and it stays in the workspace's feed).
async fn an_outbox_entry_nobody_reads_is_settled_when_written(s: Fresh) {
    let mut tx = s.store.begin().await.unwrap();
    let (tenant, automation) = manual_automation(&mut tx).await;
    let other = tx.insert_tenant("Other", "other", t0()).await.unwrap().id;
    tx.insert_webhook(other, "https://hooks.test/x", "[\"*\"]", "secret", t0()).await.unwrap();
    // Nobody listens in this workspace (the other's endpoint does not count).
    let first = write_entries(&mut tx, tenant, "nobody").await;
    assert_eq!(pending_entries(&mut tx).await, (vec![], vec![]));
    // An active endpoint: entries are owed to the dispatcher only.
    let hook = tx.insert_webhook(tenant, "https://hooks.test/a", "[\"*\"]", "secret", t0()).await.unwrap();
    write_entries(&mut tx, tenant, "hooked").await;
    assert_eq!(pending_entries(&mut tx).await, (vec!["hooked".to_string(); 3], vec![]));
    // An active automation as well: owed to both.
    let row = tx.automation(tenant, automation).await.unwrap();
    tx.publish_automation(&row, &serde_json::json!({}), &[], None, t0()).await.unwrap();
    write_entries(&mut tx, tenant, "both").await;
    let (dispatch, automate) = pending_entries(&mut tx).await;
    assert_eq!((dispatch.len(), automate), (6, vec!["both".to_string(); 3]));
    // The endpoint disabled: owed to the intake only.
    tx.disable_webhook(hook.id, "test", t0()).await.unwrap();
    write_entries(&mut tx, tenant, "flows").await;
    let (dispatch, automate) = pending_entries(&mut tx).await;
    assert_eq!((dispatch.len(), automate.len()), (6, 6));
    assert_eq!(automate[3..], vec!["flows".to_string(); 3]);
    // Every entry is in the workspace's feed, settled or not.
    let feed = tx.outbox_after(tenant, first - 1, 100).await.unwrap();
    assert_eq!(feed.len(), 12);
}

/// Writes three entries named `name` (one alone, two together); returns the first's id.
async fn write_entries(tx: &mut cairn_store::Conn, tenant: TenantId, name: &'static str) -> i64 {
    let payload = serde_json::json!({"customer_id": 1});
    let one = tx.insert_outbox(tenant, name, &payload, t0()).await.unwrap();
    tx.insert_outbox_many(tenant, &[(name, payload.clone()), (name, payload)], t0()).await.unwrap();
    one
}

/// The names of the entries owed to the dispatcher and to the automation intake.
async fn pending_entries(tx: &mut cairn_store::Conn) -> (Vec<String>, Vec<String>) {
    let dispatch = tx.undispatched_outbox(100).await.unwrap().into_iter().map(|r| r.event).collect();
    let automate = tx.unautomated_outbox(100).await.unwrap().into_iter().map(|r| r.event).collect();
    (dispatch, automate)
}

/// Both ways of writing scores skip customers that do not exist, whether the ids form a dense
/// run (a recompute's chunk, checked against one range of the key) or are scattered (the
/// incremental path, probed one by one); a plain insert over a stored row fails and writes
/// nothing, where the upsert replaces it.
async fn scores_are_written_only_for_customers_that_exist_dense_or_scattered(s: Fresh) {
    let (tenant, [a, b, c]) = scored_customers(&s.store).await;
    let mut tx = s.store.begin().await.unwrap();
    let mut made = Vec::new();
    for i in 0..40 {
        let fields = CustomerFields { email: Some(format!("n{i}@example.com")), ..Default::default() };
        made.push(tx.insert_customer(tenant, &fields, t0()).await.unwrap().id.0);
    }
    let missing = made.last().unwrap() + 1_000_000;
    // Dense: the first ten new customers and an id in their run that was erased.
    assert!(tx.delete_customer(tenant, CustomerId(made[4])).await.unwrap());
    let dense: Vec<ScoreRow> = made[..10].iter().map(|c| score(*c)).collect();
    tx.insert_new_scores(tenant, &dense, t0()).await.unwrap();
    // Scattered: two more and an id far away that never existed.
    let scattered = vec![score(made[20]), score(made[39]), score(missing)];
    tx.insert_new_scores(tenant, &scattered, t0()).await.unwrap();
    tx.commit().await.unwrap();
    let all: Vec<CustomerId> = made.iter().chain(&[missing]).map(|c| CustomerId(*c)).collect();
    let mut want: Vec<i64> =
        made[..10].iter().chain(&[made[20], made[39]]).copied().filter(|c| *c != made[4]).collect();
    want.sort_unstable();
    assert_eq!(scored(&s.store, tenant, &all).await, want);
    // A stored row: the plain insert fails, the upsert replaces.
    let mut tx = s.store.begin().await.unwrap();
    assert!(tx.insert_new_scores(tenant, &[score(a.0)], t0()).await.is_err());
    drop(tx);
    let mut changed = score(b.0);
    changed.rfm_score = 15;
    let mut tx = s.store.begin().await.unwrap();
    tx.upsert_scores(tenant, &[changed, score(c.0)], t0()).await.unwrap();
    tx.commit().await.unwrap();
    let rows = s.store.read().await.unwrap().scores_for(tenant, &[b]).await.unwrap();
    assert_eq!(rows[0].rfm_score, 15);
}

/// A batch of run moves (one statement per chunk on both stores) moves exactly the runs still
/// at the revision they were read at and names them: a run moved meanwhile by someone else is
/// left as that writer left it. Each moved run's revision goes up by one; a finished one gets
/// its time and leaves the one-at-a-time guard (`live`).
async fn runs_move_only_from_the_revision_they_were_read_at(s: Fresh) {
    use cairn_store::automations::{NewRun, RunUpdate};
    let mut tx = s.store.begin().await.unwrap();
    let (tenant, automation) = manual_automation(&mut tx).await;
    let runs: Vec<NewRun> = (1..=3)
        .map(|customer| NewRun {
            tenant_id: tenant.0,
            automation_id: automation,
            version: 1,
            customer_id: customer,
            occurrence: "o".into(),
            exclusive: true,
            node: "t".into(),
            context: serde_json::json!({}),
        })
        .collect();
    let ids: Vec<i64> = tx.insert_runs(&runs, t0()).await.unwrap().into_iter().map(|(id, _)| id).collect();
    let later = t0() + Duration::seconds(5);
    let due = t0() + Duration::hours(1);
    let update = |id: i64, rev: i64, status: &'static str| RunUpdate {
        id,
        rev,
        status,
        node: "d".into(),
        parked: status == "waiting",
        matched: false,
        wait_event: None,
        due_at: (status == "waiting").then_some(due),
        parked_at: (status == "waiting").then_some(later),
        error: None,
    };
    let before: Vec<i64> = {
        let mut revs = Vec::new();
        for id in &ids {
            revs.push(tx.run(tenant, *id).await.unwrap().rev);
        }
        revs
    };
    // The third was moved by someone else since it was read.
    let moved = tx.update_runs(&[update(ids[2], before[2], "waiting")], t0()).await.unwrap();
    assert_eq!(moved, HashSet::from([ids[2]]));
    let batch = [
        update(ids[0], before[0], "waiting"),
        update(ids[1], before[1], "completed"),
        update(ids[2], before[2], "completed"),
    ];
    let moved = tx.update_runs(&batch, later).await.unwrap();
    assert_eq!(moved, HashSet::from([ids[0], ids[1]]));
    let a = tx.run(tenant, ids[0]).await.unwrap();
    assert_eq!(
        (a.status.as_str(), a.node.as_str(), a.parked, a.due_at, a.rev),
        ("waiting", "d", true, Some(due), before[0] + 1)
    );
    assert_eq!((a.finished_at, a.updated_at, a.live.is_some()), (None, later, true));
    let b = tx.run(tenant, ids[1]).await.unwrap();
    assert_eq!((b.status.as_str(), b.rev, b.finished_at, b.live), ("completed", before[1] + 1, Some(later), None));
    let c = tx.run(tenant, ids[2]).await.unwrap();
    assert_eq!((c.status.as_str(), c.rev, c.finished_at, c.updated_at), ("waiting", before[2] + 1, None, t0()));
}
