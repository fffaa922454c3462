//! Automations (seed 003, docs/automations.md): `GET/POST /v1/automations`,
//! `GET/PUT/DELETE /v1/automations/{id}`, `GET/POST /v1/automations/{id}/design`,
//! `/activate`, `/deactivate`, `POST /v1/automations/validate`, `/enroll`, `/runs`, `/nodes`
//! (per-node counts), `/migrate`, `/cancel-runs`, `GET /v1/automations/runs/{run_id}`,
//! `GET /v1/customers/{id}/automation-runs`, and the public `POST /hooks/automations/{token}` of
//! webhook triggers.

use std::collections::HashMap;

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::IntoResponse,
    Json,
};
use cairn_automations::design::Design;
use cairn_service::automations::{AutomationInput, AutomationView as Automation, RunView};
use cairn_store::automations::{RunRow, StepRow};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    envelope::{data, Data, PageQuery, Paged},
    error::{ApiResult, ErrorBody},
    extract::{ApiJson, ApiPath, ApiQuery, Auth},
    routes::created,
    AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_automations, create_automation))
        .routes(routes!(validate_design))
        .routes(routes!(get_automation, update_automation, delete_automation))
        .routes(routes!(get_design, save_design))
        .routes(routes!(activate))
        .routes(routes!(deactivate))
        .routes(routes!(enroll))
        .routes(routes!(list_runs))
        .routes(routes!(node_counts))
        .routes(routes!(migrate))
        .routes(routes!(cancel_runs))
        .routes(routes!(get_run))
        .routes(routes!(customer_runs))
        .routes(routes!(webhook_trigger))
}

/// Seed 003's automation body, plus its trigger's configuration and the run policies.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AutomationWrite {
    #[schema(example = "Welcome Series")]
    name: Option<String>,
    /// customer_created, event, segment_entered, segment_exited, rfm_changed, schedule,
    /// date_property, manual or webhook.
    #[schema(example = "customer_created")]
    trigger_type: Option<String>,
    /// The trigger's settings (docs/automations.md): `event` and `where`; `segment_id`;
    /// `to_segment`; `cron`, `timezone` and `segment_id`; `trait` and `offset_days`.
    #[schema(value_type = Option<Object>)]
    trigger_config: Option<Map<String, Value>>,
    /// Seed 003: create it active. Activation needs a complete design; until one is saved
    /// the automation stays a draft.
    is_active: Option<bool>,
    /// once, once_at_a_time (default) or every_time.
    reentry: Option<String>,
    /// A segment filter: a run leaves as soon as its customer matches (the goal, e.g.
    /// `{"event": "purchase"}`).
    #[serde(default, deserialize_with = "crate::extract::present")]
    #[schema(value_type = Option<Object>)]
    exit_filter: Option<Option<Value>>,
    /// The design, as `POST /design` takes it.
    #[schema(value_type = Option<Object>)]
    design: Option<Design>,
}

impl From<AutomationWrite> for AutomationInput {
    fn from(w: AutomationWrite) -> Self {
        AutomationInput {
            name: w.name,
            trigger_type: w.trigger_type,
            trigger_config: w.trigger_config,
            is_active: w.is_active,
            reentry: w.reentry,
            exit_filter: w.exit_filter,
            design: w.design,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct AutomationView {
    id: i64,
    name: String,
    trigger_type: String,
    #[schema(value_type = Object)]
    trigger_config: Value,
    is_active: bool,
    reentry: String,
    #[schema(value_type = Option<Object>)]
    exit_filter: Option<Value>,
    /// The latest published version (0: never activated).
    version: i64,
    /// The version new runs start on (null while inactive).
    active_version: Option<i64>,
    /// For a webhook trigger: POST here to enroll a customer.
    webhook_url: Option<String>,
    /// When a schedule or date trigger fires next.
    next_tick_at: Option<DateTime<Utc>>,
    /// Runs by status.
    runs: HashMap<String, i64>,
    activated_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

fn view(st: &AppState, v: Automation) -> AutomationView {
    let r = v.row;
    let base = st.svc.campaigns.as_deref().map(|k| k.links.base().to_string()).unwrap_or_default();
    AutomationView {
        id: r.id,
        webhook_url: (r.trigger_type == "webhook").then(|| format!("{base}/hooks/automations/{}", r.webhook_token)),
        name: r.name,
        trigger_type: r.trigger_type,
        trigger_config: r.trigger_config.0,
        is_active: r.is_active,
        reentry: r.reentry,
        exit_filter: r.exit_filter.map(|f| f.0),
        version: r.version,
        active_version: r.active_version,
        next_tick_at: r.next_tick_at,
        runs: v.runs,
        activated_at: r.activated_at,
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

#[derive(Serialize, ToSchema)]
pub struct RunSummary {
    id: i64,
    automation_id: i64,
    version: i64,
    customer_id: i64,
    /// active (due now), waiting, completed, exited, failed or cancelled.
    status: String,
    /// The node it stands at (or ended at).
    node: String,
    /// For a wait: the event it waits for.
    wait_event: Option<String>,
    /// When it moves on next.
    due_at: Option<DateTime<Utc>>,
    error: Option<String>,
    #[schema(value_type = Object)]
    context: Value,
    started_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

impl From<RunRow> for RunSummary {
    fn from(r: RunRow) -> Self {
        RunSummary {
            id: r.id,
            automation_id: r.automation_id,
            version: r.version,
            customer_id: r.customer_id,
            status: r.status,
            node: r.node,
            wait_event: r.wait_event,
            due_at: r.due_at,
            error: r.error,
            context: r.context.0,
            started_at: r.started_at,
            updated_at: r.updated_at,
            finished_at: r.finished_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct StepView {
    node: String,
    /// trigger, action, delay, condition, wait_for_event, split or exit.
    kind: String,
    /// What happened: entered, queued, done, skipped, waiting, waited, yes, no, a split's
    /// branch, exited, failed, goal_reached, unsubscribed, customer_deleted.
    outcome: String,
    /// Why (a condition's verdict, a delay's end, an action's campaign, an error).
    #[schema(value_type = Object)]
    detail: Value,
    at: DateTime<Utc>,
}

impl From<StepRow> for StepView {
    fn from(s: StepRow) -> Self {
        StepView { node: s.node, kind: s.kind, outcome: s.outcome, detail: s.detail.0, at: s.at }
    }
}

#[derive(Serialize, ToSchema)]
pub struct RunDetail {
    #[serde(flatten)]
    run: RunSummary,
    steps: Vec<StepView>,
}

impl From<RunView> for RunDetail {
    fn from(v: RunView) -> Self {
        RunDetail { run: v.run.into(), steps: v.steps.into_iter().map(Into::into).collect() }
    }
}

#[utoipa::path(get, path = "/v1/automations", tag = "automations", params(PageQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Paged<AutomationView>), (status = 403, body = ErrorBody)))]
pub async fn list_automations(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Paged<AutomationView>>> {
    let (rows, total) = st.svc.automations(&p, q.limit(), q.offset()).await?;
    Ok(q.wrap(rows.into_iter().map(|a| view(&st, a)).collect(), total))
}

/// Create an automation (seed 003's body).
#[utoipa::path(post, path = "/v1/automations", tag = "automations", request_body = AutomationWrite,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = Data<AutomationView>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create_automation(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiJson(w): ApiJson<AutomationWrite>,
) -> ApiResult<impl IntoResponse> {
    let a = st.svc.create_automation(&p, w.into()).await?;
    Ok(created(data(view(&st, a))))
}

#[derive(Deserialize, ToSchema)]
pub struct ValidateBody {
    #[schema(value_type = Vec<Object>)]
    nodes: Vec<cairn_automations::design::Node>,
    #[schema(value_type = Vec<Object>)]
    edges: Vec<cairn_automations::design::Edge>,
    /// Optional: check the trigger as well.
    trigger_type: Option<String>,
    #[schema(value_type = Option<Object>)]
    trigger_config: Option<Map<String, Value>>,
}

#[derive(Serialize, ToSchema)]
pub struct Valid {
    valid: bool,
}

/// Check a design (seed 003's `{nodes, edges}`) without saving it: 200 when it could be
/// activated, else 400 listing every problem with its node id.
#[utoipa::path(post, path = "/v1/automations/validate", tag = "automations", request_body = ValidateBody,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Valid>), (status = 400, body = ErrorBody)))]
pub async fn validate_design(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiJson(b): ApiJson<ValidateBody>,
) -> ApiResult<Json<Data<Valid>>> {
    let d = Design { nodes: b.nodes, edges: b.edges };
    let config = b.trigger_config.unwrap_or_default();
    let trigger = b.trigger_type.as_deref().map(|t| (t, &config));
    st.svc.validate_design(&p, &d, trigger).await?;
    Ok(data(Valid { valid: true }))
}

#[utoipa::path(get, path = "/v1/automations/{id}", tag = "automations", params(("id" = i64, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<AutomationView>), (status = 404, body = ErrorBody)))]
pub async fn get_automation(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<AutomationView>>> {
    Ok(data(view(&st, st.svc.automation(&p, id).await?)))
}

/// Change an automation; absent fields stay. On an active automation a change of design,
/// trigger or policies publishes a new version (runs in flight stay on theirs).
#[utoipa::path(put, path = "/v1/automations/{id}", tag = "automations", params(("id" = i64, Path)), request_body = AutomationWrite,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<AutomationView>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_automation(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(w): ApiJson<AutomationWrite>,
) -> ApiResult<Json<Data<AutomationView>>> {
    Ok(data(view(&st, st.svc.update_automation(&p, id, w.into()).await?)))
}

/// Delete an automation with its versions and runs.
#[utoipa::path(delete, path = "/v1/automations/{id}", tag = "automations", params(("id" = i64, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_automation(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    st.svc.delete_automation(&p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The design as it was saved (positions kept).
#[utoipa::path(get, path = "/v1/automations/{id}/design", tag = "automations", params(("id" = i64, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Object>), (status = 404, body = ErrorBody)))]
pub async fn get_design(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<Value>>> {
    Ok(data(st.svc.design(&p, id).await?))
}

/// Save the flow design (seed 003's `{nodes, edges}`). A draft may be incomplete; an active
/// automation's design must validate, and publishes a new version.
#[utoipa::path(post, path = "/v1/automations/{id}/design", tag = "automations", params(("id" = i64, Path)), request_body = Object,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<AutomationView>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn save_design(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(d): ApiJson<Design>,
) -> ApiResult<Json<Data<AutomationView>>> {
    Ok(data(view(&st, st.svc.save_design(&p, id, d).await?)))
}

/// Turn it on: publishes the design as a version. 400 listing, per node id, what is missing.
#[utoipa::path(post, path = "/v1/automations/{id}/activate", tag = "automations", params(("id" = i64, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<AutomationView>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn activate(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<AutomationView>>> {
    Ok(data(view(&st, st.svc.activate_automation(&p, id).await?)))
}

/// Turn it off: nobody new enters; runs in flight go on to their end.
#[utoipa::path(post, path = "/v1/automations/{id}/deactivate", tag = "automations", params(("id" = i64, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<AutomationView>), (status = 404, body = ErrorBody)))]
pub async fn deactivate(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<AutomationView>>> {
    Ok(data(view(&st, st.svc.deactivate_automation(&p, id).await?)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollBody {
    /// 1 to 1000 customer ids.
    customer_ids: Vec<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct Enrolled {
    customer_id: i64,
    run_id: i64,
}

/// Enroll customers by hand (the `manual` trigger; any active automation). Customers its
/// re-entry policy keeps out are left out of the answer.
#[utoipa::path(post, path = "/v1/automations/{id}/enroll", tag = "automations", params(("id" = i64, Path)), request_body = EnrollBody,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 202, body = Data<Vec<Enrolled>>), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn enroll(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<EnrollBody>,
) -> ApiResult<impl IntoResponse> {
    let started = st.svc.enroll(&p, id, &b.customer_ids).await?;
    let out: Vec<Enrolled> =
        started.into_iter().map(|(customer_id, run_id)| Enrolled { customer_id, run_id }).collect();
    Ok((StatusCode::ACCEPTED, data(out)))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    page: Option<u64>,
    per_page: Option<u64>,
    /// active, waiting, completed, exited, failed or cancelled.
    status: Option<String>,
    /// Runs standing at (or ended at) this node.
    node: Option<String>,
}

#[utoipa::path(get, path = "/v1/automations/{id}/runs", tag = "automations", params(("id" = i64, Path), RunsQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Paged<RunSummary>), (status = 404, body = ErrorBody)))]
pub async fn list_runs(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<RunsQuery>,
) -> ApiResult<Json<Paged<RunSummary>>> {
    let page = PageQuery { page: q.page, per_page: q.per_page };
    let (rows, total) =
        st.svc.automation_runs(&p, id, q.status.as_deref(), q.node.as_deref(), page.limit(), page.offset()).await?;
    Ok(page.wrap(rows.into_iter().map(Into::into).collect(), total))
}

#[derive(Serialize, ToSchema)]
pub struct NodeCountsView {
    node: String,
    /// Runs that reached the node.
    entered: i64,
    /// Runs standing at it now (a delay or wait, or due).
    waiting: i64,
    /// Runs that went past it.
    completed: i64,
    /// Runs that failed at it.
    failed: i64,
}

/// Per-node counts for a builder.
#[utoipa::path(get, path = "/v1/automations/{id}/nodes", tag = "automations", params(("id" = i64, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Vec<NodeCountsView>>), (status = 404, body = ErrorBody)))]
pub async fn node_counts(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<Vec<NodeCountsView>>>> {
    let counts = st.svc.node_counts(&p, id).await?;
    Ok(data(
        counts
            .into_iter()
            .map(|(node, c)| NodeCountsView {
                node,
                entered: c.entered,
                waiting: c.waiting,
                completed: c.completed,
                failed: c.failed,
            })
            .collect(),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MigrateBody {
    /// The version whose runs move to the active one.
    from_version: i64,
    /// Old node id → node id of the active version. Runs at unmapped nodes stay.
    #[schema(value_type = Object)]
    mapping: Map<String, Value>,
}

#[derive(Serialize, ToSchema)]
pub struct Migrated {
    migrated: u64,
}

/// Move runs in flight from an older version to the active one with a node mapping.
#[utoipa::path(post, path = "/v1/automations/{id}/migrate", tag = "automations", params(("id" = i64, Path)), request_body = MigrateBody,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Migrated>), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn migrate(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<MigrateBody>,
) -> ApiResult<Json<Data<Migrated>>> {
    let migrated = st.svc.migrate_runs(&p, id, b.from_version, &b.mapping).await?;
    Ok(data(Migrated { migrated }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRunsBody {
    /// Only this customer's run (default: every run in flight).
    customer_id: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct Cancelled {
    cancelled: u64,
}

#[utoipa::path(post, path = "/v1/automations/{id}/cancel-runs", tag = "automations", params(("id" = i64, Path)), request_body = CancelRunsBody,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Cancelled>), (status = 404, body = ErrorBody)))]
pub async fn cancel_runs(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<CancelRunsBody>,
) -> ApiResult<Json<Data<Cancelled>>> {
    let cancelled = st.svc.cancel_automation_runs(&p, id, b.customer_id).await?;
    Ok(data(Cancelled { cancelled }))
}

/// One run with its step history: each node it passed, when, and why each branch was taken.
#[utoipa::path(get, path = "/v1/automations/runs/{id}", tag = "automations", params(("id" = i64, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<RunDetail>), (status = 404, body = ErrorBody)))]
pub async fn get_run(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<RunDetail>>> {
    Ok(data(st.svc.automation_run(&p, id).await?.into()))
}

#[utoipa::path(get, path = "/v1/customers/{id}/automation-runs", tag = "automations", params(("id" = i64, Path), PageQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Paged<RunSummary>), (status = 404, body = ErrorBody)))]
pub async fn customer_runs(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Paged<RunSummary>>> {
    let (rows, total) = st.svc.customer_automation_runs(&p, id, q.limit(), q.offset()).await?;
    Ok(q.wrap(rows.into_iter().map(Into::into).collect(), total))
}

/// A webhook trigger's inbound URL (shown once on the automation as `webhook_url`): the body
/// names the customer (`customer_id`, `email` or `user_id`), optionally with `data` and an
/// `idempotency_key`.
#[utoipa::path(post, path = "/hooks/automations/{token}", tag = "public", params(("token" = String, Path)), request_body = Object,
    responses((status = 202, body = Data<Vec<Enrolled>>), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn webhook_trigger(
    State(st): State<AppState>,
    Path(token): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<impl IntoResponse> {
    let sig = super::inbound::signature(&headers);
    let started = st.svc.webhook_enroll(&token, &sig, &body).await?;
    let out: Vec<Enrolled> =
        started.into_iter().map(|(customer_id, run_id)| Enrolled { customer_id, run_id }).collect();
    Ok((StatusCode::ACCEPTED, data(out)))
}
