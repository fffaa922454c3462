//! People (seed 004) — the customer profiles as CRM contacts: `GET/POST /v1/people`,
//! `GET/PUT/DELETE /v1/people/{id}`.

use axum::{
    extract::{RawQuery, State},
    response::IntoResponse,
    Json,
};
use cairn_store::crm::people::PersonFilter;
use serde::Deserialize;
use serde_json::Value;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{custom_query, Deleted};
use crate::{
    envelope::{data, Data, PageQuery, Paged},
    error::{ApiResult, ErrorBody},
    extract::{ApiJson, ApiPath, ApiQuery, Auth},
    routes::created,
    AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_people, create_person)).routes(routes!(
        get_person,
        update_person,
        delete_person
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PeopleQuery {
    page: Option<u64>,
    per_page: Option<u64>,
    /// Part of the name or email.
    search: Option<String>,
    prospect_id: Option<i64>,
    tag: Option<String>,
    lifecycle_stage: Option<String>,
}

/// List people (seed 004: `search`, `prospect_id`, `tag`; also `lifecycle_stage` and
/// `custom_fields.<key>=value`).
#[utoipa::path(get, path = "/v1/people", tag = "people", params(PeopleQuery), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Paged<Object>), (status = 403, body = ErrorBody)))]
pub async fn list_people(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<PeopleQuery>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Paged<Value>>> {
    let page = PageQuery { page: q.page, per_page: q.per_page };
    let f = PersonFilter {
        search: q.search.filter(|s| !s.trim().is_empty()).map(|s| s.trim().to_string()),
        prospect_id: q.prospect_id,
        tag: q.tag.filter(|s| !s.is_empty()),
        lifecycle_stage: q.lifecycle_stage.filter(|s| !s.is_empty()),
        custom: cairn_service::crm::custom_filters(&custom_query(raw.as_deref())),
    };
    let (rows, total) = st.svc.people(&p, &f, page.limit(), page.offset()).await?;
    Ok(page.wrap(rows.iter().map(|(c, crm)| cairn_service::crm::people::view(c, crm)).collect(), total))
}

/// Create a person (a customer profile): email and/or user_id, first_name, last_name or name,
/// phone, city, country, designation, prospect_id, lifecycle_stage, tags, traits, custom_fields.
#[utoipa::path(post, path = "/v1/people", tag = "people", request_body = Object, security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = Data<Object>), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_person(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<impl IntoResponse> {
    let (c, crm) = st.svc.create_person(&p, body).await?;
    Ok(created(data(cairn_service::crm::people::view(&c, &crm))))
}

/// One person.
#[utoipa::path(get, path = "/v1/people/{id}", tag = "people", params(("id" = i64, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Object>), (status = 404, body = ErrorBody)))]
pub async fn get_person(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<Value>>> {
    let (c, crm) = st.svc.person(&p, id).await?;
    Ok(data(cairn_service::crm::people::view(&c, &crm)))
}

/// Update a person: the fields given change; `tags` replaces the list.
#[utoipa::path(put, path = "/v1/people/{id}", tag = "people", params(("id" = i64, Path)), request_body = Object,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Object>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_person(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<Data<Value>>> {
    let (c, crm) = st.svc.update_person(&p, id, body).await?;
    Ok(data(cairn_service::crm::people::view(&c, &crm)))
}

/// Delete a person: the profile and its tracked events are erased.
#[utoipa::path(delete, path = "/v1/people/{id}", tag = "people", params(("id" = i64, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Deleted>), (status = 404, body = ErrorBody)))]
pub async fn delete_person(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<Deleted>>> {
    st.svc.delete_person(&p, id).await?;
    Ok(data(Deleted { id, deleted: true }))
}
