//! Activities (seed 004), notes (seed 004) and files (seed 000) on any CRM entity:
//! `GET/POST /v1/activities`, `GET/PUT/DELETE /v1/activities/{id}`, `GET/POST /v1/notes`,
//! `GET/PUT/DELETE /v1/notes/{id}`, `GET/POST /v1/files`, `GET/DELETE /v1/files/{id}`,
//! `GET /v1/files/{id}/content`.

use axum::{
    extract::{DefaultBodyLimit, Multipart, State},
    http::{header, HeaderValue},
    response::{IntoResponse, Response},
    Json,
};
use cairn_store::crm::records::{Activity, ActivityFilter, FileMeta, Note};
use serde::Deserialize;
use serde_json::Value;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::Deleted;
use crate::{
    envelope::{data, Data, PageQuery, Paged},
    error::{ApiError, ApiResult, ErrorBody},
    extract::{ApiJson, ApiPath, ApiQuery, Auth},
    routes::created,
    AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_activities, create_activity))
        .routes(routes!(get_activity, update_activity, delete_activity))
        .routes(routes!(list_notes, create_note))
        .routes(routes!(get_note, update_note, delete_note))
        .routes(routes!(list_files, upload_file))
        .routes(routes!(get_file, delete_file))
        .routes(routes!(download_file))
        // The gate bounds these bodies (CAIRN_MAX_FILE_BYTES); axum's own 2 MB default must not.
        .layer(DefaultBodyLimit::disable())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ActivityQuery {
    page: Option<u64>,
    per_page: Option<u64>,
    /// call, email, meeting, task or note.
    #[serde(rename = "type")]
    kind: Option<String>,
    /// lead, contact, opportunity or prospect (also person, deal, client).
    entity_type: Option<String>,
    entity_id: Option<i64>,
    assigned_to: Option<i64>,
    completed: Option<bool>,
}

/// List activities across all CRM entities.
#[utoipa::path(get, path = "/v1/activities", tag = "activities", params(ActivityQuery), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Paged<Activity>), (status = 400, body = ErrorBody)))]
pub async fn list_activities(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<ActivityQuery>,
) -> ApiResult<Json<Paged<Activity>>> {
    let page = PageQuery { page: q.page, per_page: q.per_page };
    if let Some(k) = &q.kind {
        if !cairn_service::crm::records::ACTIVITY_TYPES.contains(&k.as_str()) {
            return Err(ApiError::validation("type", "must be call, email, meeting, task or note"));
        }
    }
    let entity_type =
        q.entity_type.as_deref().map(|t| cairn_service::crm::parse_entity_type("entity_type", t)).transpose()?;
    let f = ActivityFilter {
        kind: q.kind,
        entity_type,
        entity_id: q.entity_id,
        assigned_to: q.assigned_to,
        completed: q.completed,
    };
    let (rows, total) = st.svc.activities(&p, &f, page.limit(), page.offset()).await?;
    Ok(page.wrap(rows, total))
}

/// Create an activity (seed 004: type, subject, description, entity_type, entity_id,
/// assigned_to, due_date, duration_minutes; also completed, outcome).
#[utoipa::path(post, path = "/v1/activities", tag = "activities", request_body = Object, security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = Data<Activity>), (status = 400, body = ErrorBody)))]
pub async fn create_activity(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<impl IntoResponse> {
    Ok(created(data(st.svc.create_activity(&p, body).await?)))
}

/// One activity.
#[utoipa::path(get, path = "/v1/activities/{id}", tag = "activities", params(("id" = i64, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Activity>), (status = 404, body = ErrorBody)))]
pub async fn get_activity(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<Activity>>> {
    Ok(data(st.svc.activity(&p, id).await?))
}

/// Mark complete (`{"completed": true}` emits `activity.completed`), reschedule (`due_date`),
/// reassign (`assigned_to`), edit.
#[utoipa::path(put, path = "/v1/activities/{id}", tag = "activities", params(("id" = i64, Path)), request_body = Object,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Activity>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_activity(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<Data<Activity>>> {
    Ok(data(st.svc.update_activity(&p, id, body).await?))
}

/// Delete an activity.
#[utoipa::path(delete, path = "/v1/activities/{id}", tag = "activities", params(("id" = i64, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Deleted>), (status = 404, body = ErrorBody)))]
pub async fn delete_activity(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<Deleted>>> {
    st.svc.delete_activity(&p, id).await?;
    Ok(data(Deleted { id, deleted: true }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EntityQuery {
    /// lead, contact, opportunity or prospect.
    entity_type: Option<String>,
    entity_id: Option<i64>,
    page: Option<u64>,
    per_page: Option<u64>,
}

/// Notes of an entity, pinned first, newest first.
#[utoipa::path(get, path = "/v1/notes", tag = "notes", params(EntityQuery), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Paged<Note>), (status = 400, body = ErrorBody)))]
pub async fn list_notes(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<EntityQuery>,
) -> ApiResult<Json<Paged<Note>>> {
    let page = PageQuery { page: q.page, per_page: q.per_page };
    let (rows, total) = st.svc.notes(&p, q.entity_type.as_deref(), q.entity_id, page.limit(), page.offset()).await?;
    Ok(page.wrap(rows, total))
}

/// Add a note to any CRM entity (seed 004: entity_type, entity_id, content, is_pinned).
#[utoipa::path(post, path = "/v1/notes", tag = "notes", request_body = Object, security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = Data<Note>), (status = 400, body = ErrorBody)))]
pub async fn create_note(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<impl IntoResponse> {
    Ok(created(data(st.svc.create_note(&p, body).await?)))
}

/// One note.
#[utoipa::path(get, path = "/v1/notes/{id}", tag = "notes", params(("id" = i64, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Note>), (status = 404, body = ErrorBody)))]
pub async fn get_note(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<Note>>> {
    Ok(data(st.svc.note(&p, id).await?))
}

/// Update a note's content or pin.
#[utoipa::path(put, path = "/v1/notes/{id}", tag = "notes", params(("id" = i64, Path)), request_body = Object,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Note>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_note(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<Data<Note>>> {
    Ok(data(st.svc.update_note(&p, id, body).await?))
}

/// Delete a note.
#[utoipa::path(delete, path = "/v1/notes/{id}", tag = "notes", params(("id" = i64, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Deleted>), (status = 404, body = ErrorBody)))]
pub async fn delete_note(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<Deleted>>> {
    st.svc.delete_note(&p, id).await?;
    Ok(data(Deleted { id, deleted: true }))
}

/// Files of an entity, newest first.
#[utoipa::path(get, path = "/v1/files", tag = "files", params(EntityQuery), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Paged<FileMeta>), (status = 400, body = ErrorBody)))]
pub async fn list_files(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<EntityQuery>,
) -> ApiResult<Json<Paged<FileMeta>>> {
    let page = PageQuery { page: q.page, per_page: q.per_page };
    let (rows, total) = st.svc.files(&p, q.entity_type.as_deref(), q.entity_id, page.limit(), page.offset()).await?;
    Ok(page.wrap(rows, total))
}

/// Attach a file: `multipart/form-data` with `entity_type`, `entity_id` and `file` (up to
/// 10 MB by default).
#[utoipa::path(post, path = "/v1/files", tag = "files", request_body(content_type = "multipart/form-data", content = Object),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = Data<FileMeta>), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn upload_file(
    State(st): State<AppState>,
    Auth(p): Auth,
    mut form: Multipart,
) -> ApiResult<impl IntoResponse> {
    let (mut entity_type, mut entity_id, mut file) = (None, None, None);
    let bad = |e: axum::extract::multipart::MultipartError| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(st.settings.max_file_bytes)
        } else {
            ApiError::validation("file", format!("malformed multipart body: {}", e.body_text()))
        }
    };
    while let Some(field) = form.next_field().await.map_err(bad)? {
        match field.name().unwrap_or("") {
            "entity_type" => entity_type = Some(field.text().await.map_err(bad)?),
            "entity_id" => {
                let t = field.text().await.map_err(bad)?;
                entity_id = Some(
                    t.trim().parse::<i64>().map_err(|_| ApiError::validation("entity_id", "must be a whole number"))?,
                );
            }
            "file" => {
                let name = field.file_name().unwrap_or("").to_string();
                let ct = field.content_type().unwrap_or("application/octet-stream").to_string();
                let bytes = field.bytes().await.map_err(bad)?;
                if bytes.len() > st.settings.max_file_bytes {
                    return Err(ApiError::too_large(st.settings.max_file_bytes));
                }
                file = Some((name, ct, bytes));
            }
            _ => {}
        }
    }
    let entity_type = entity_type.ok_or_else(|| ApiError::validation("entity_type", "is required"))?;
    let entity_id = entity_id.ok_or_else(|| ApiError::validation("entity_id", "is required"))?;
    let (name, ct, bytes) = file.ok_or_else(|| ApiError::validation("file", "is required"))?;
    let meta = st.svc.upload_file(&p, &entity_type, entity_id, &name, &ct, &bytes).await?;
    Ok(created(data(meta)))
}

/// A file's description.
#[utoipa::path(get, path = "/v1/files/{id}", tag = "files", params(("id" = i64, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<FileMeta>), (status = 404, body = ErrorBody)))]
pub async fn get_file(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<FileMeta>>> {
    Ok(data(st.svc.file(&p, id).await?.0))
}

/// Download a file, with its content type.
#[utoipa::path(get, path = "/v1/files/{id}/content", tag = "files", params(("id" = i64, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, description = "the file's bytes"), (status = 404, body = ErrorBody)))]
pub async fn download_file(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Response> {
    let (meta, content) = st.svc.file(&p, id).await?;
    let mut resp = content.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&meta.content_type).unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    let safe: String =
        meta.filename.chars().map(|c| if c.is_ascii_alphanumeric() || ".-_ ".contains(c) { c } else { '_' }).collect();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    Ok(resp)
}

/// Delete a file.
#[utoipa::path(delete, path = "/v1/files/{id}", tag = "files", params(("id" = i64, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Deleted>), (status = 404, body = ErrorBody)))]
pub async fn delete_file(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<Deleted>>> {
    st.svc.delete_file(&p, id).await?;
    Ok(data(Deleted { id, deleted: true }))
}
