//! API keys: `eck_…` secret keys and `pk_live_…` / `pk_test_…` public keys.

use axum::{extract::State, response::IntoResponse, Json};
use cairn_domain::{credential::KeyKind, ApiKeyId};
use cairn_service::keys::KeyRequest;
use cairn_store::keys::ApiKey;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
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
    OpenApiRouter::new().routes(routes!(create_key, list_keys)).routes(routes!(get_key, revoke_key))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    #[schema(example = "Production server")]
    name: String,
    /// `secret` (`eck_…`, server side) or `public` (`pk_live_…`/`pk_test_…`, for web pages).
    #[serde(rename = "type")]
    #[schema(example = "secret")]
    kind: String,
    /// For public keys: `live` (default) or `test`.
    environment: Option<String>,
    /// Default: every scope the creator holds for a secret key; `events:write` and
    /// `widget:access` for a public key.
    #[schema(example = json!(["leads:read", "events:write"]))]
    scopes: Option<Vec<String>>,
    /// Requests per minute on the CRM API (default 120 secret, 30 public).
    rate_limit: Option<i64>,
    /// Requests per minute on the ingestion routes.
    ingest_rate_limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct KeyView {
    id: ApiKeyId,
    name: String,
    /// `secret` or `public`.
    #[serde(rename = "type")]
    kind: &'static str,
    /// `live` or `test` for public keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    environment: Option<&'static str>,
    /// The visible start of the key, for telling keys apart.
    prefix: String,
    scopes: Vec<String>,
    rate_limit: Option<i64>,
    ingest_rate_limit: Option<i64>,
    /// `active` or `revoked`.
    status: &'static str,
    created_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl From<ApiKey> for KeyView {
    fn from(k: ApiKey) -> Self {
        let (kind, environment) = match k.kind {
            KeyKind::Secret => ("secret", None),
            KeyKind::PublicLive => ("public", Some("live")),
            KeyKind::PublicTest => ("public", Some("test")),
        };
        KeyView {
            id: k.id,
            name: k.name,
            kind,
            environment,
            prefix: k.prefix,
            scopes: k.scopes.names(),
            rate_limit: k.rate_limit,
            ingest_rate_limit: k.ingest_rate_limit,
            status: if k.revoked_at.is_some() { "revoked" } else { "active" },
            created_at: k.created_at,
            last_used_at: k.last_used_at,
            revoked_at: k.revoked_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    view: KeyView,
    /// The full key. Shown this once; Cairn keeps only its hash.
    key: String,
}

/// Create a key. Its scopes can never exceed the creator's.
#[utoipa::path(post, path = "/v1/api-keys", tag = "api keys", request_body = CreateKeyRequest,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = Data<CreatedKey>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create_key(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiJson(r): ApiJson<CreateKeyRequest>,
) -> ApiResult<impl IntoResponse> {
    let (key, secret) = st
        .svc
        .create_key(
            p.tenant_id,
            Some(&p),
            KeyRequest {
                name: &r.name,
                kind: &r.kind,
                environment: r.environment.as_deref(),
                scopes: r.scopes,
                rate_limit: r.rate_limit,
                ingest_rate_limit: r.ingest_rate_limit,
            },
        )
        .await?;
    Ok(created(data(CreatedKey { view: key.into(), key: secret })))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListKeysQuery {
    page: Option<u64>,
    per_page: Option<u64>,
    /// Include revoked keys (default false).
    include_revoked: Option<bool>,
}

/// The workspace's keys, newest first, by prefix (never the full key).
#[utoipa::path(get, path = "/v1/api-keys", tag = "api keys", params(ListKeysQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Paged<KeyView>), (status = 403, body = ErrorBody)))]
pub async fn list_keys(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<ListKeysQuery>,
) -> ApiResult<Json<Paged<KeyView>>> {
    let page = PageQuery { page: q.page, per_page: q.per_page };
    let (keys, total) = st.svc.list_keys(&p, q.include_revoked.unwrap_or(false), page.limit(), page.offset()).await?;
    Ok(page.wrap(keys.into_iter().map(KeyView::from).collect(), total))
}

/// One key.
#[utoipa::path(get, path = "/v1/api-keys/{id}", tag = "api keys", params(("id" = i64, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<KeyView>), (status = 404, body = ErrorBody)))]
pub async fn get_key(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<KeyView>>> {
    Ok(data(st.svc.get_key(&p, ApiKeyId(id)).await?.into()))
}

/// Revoke a key: it stops working on the next request, on every instance.
#[utoipa::path(delete, path = "/v1/api-keys/{id}", tag = "api keys", params(("id" = i64, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<KeyView>), (status = 404, body = ErrorBody)))]
pub async fn revoke_key(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<KeyView>>> {
    Ok(data(st.svc.revoke_key(p.tenant_id, Some(&p), ApiKeyId(id)).await?.into()))
}
