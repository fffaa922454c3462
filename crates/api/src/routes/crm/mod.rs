//! The CRM API (seeds 004 and 000): leads, opportunities (also served as `/v1/deals`),
//! pipelines, people, prospects, activities, notes, files, custom fields, forms, imports,
//! reports and search. Bodies are read field by field by the service (`cairn_service::crm::body`),
//! which names the field at fault and accepts the other seeds' field names.

pub mod deals;
pub mod leads;
pub mod people;
pub mod prospects;
pub mod records;
pub mod settings;

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult};

/// `custom_fields.<key>=value` pairs of a query string (custom field filters).
pub fn custom_query(raw: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .filter_map(|(k, v)| k.strip_prefix("custom_fields.").map(|k| (k.to_string(), v.into_owned())))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

/// An ISO 8601 date or time from a query parameter.
pub fn time_param(field: &str, v: Option<&str>) -> ApiResult<Option<DateTime<Utc>>> {
    match v.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => cairn_service::crm::body::parse_time(field, s).map(Some).map_err(ApiError::from),
    }
}

#[derive(Serialize, ToSchema)]
pub struct Deleted {
    pub id: i64,
    pub deleted: bool,
}

/// A service's detail view as JSON.
pub fn to_json<T: Serialize>(v: T) -> ApiResult<serde_json::Value> {
    serde_json::to_value(v).map_err(|e| ApiError::internal(&e))
}
