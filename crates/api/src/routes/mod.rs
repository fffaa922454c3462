//! One router per resource, merged in `crate::routes`.

pub mod auth;
pub mod automations;
pub mod campaigns;
pub mod clock;
pub mod crm;
pub mod customers;
pub mod dashboard;
pub mod inbound;
pub mod keys;
pub mod logs;
pub mod ops;
pub mod public;
pub mod scoring;
pub mod segment;
pub mod segments;
pub mod snippet;
pub mod team;
pub mod track;
pub mod webhooks;
pub mod workspace;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;

/// `201 Created` with a JSON body.
pub fn created<T: serde::Serialize>(body: Json<T>) -> impl IntoResponse {
    (StatusCode::CREATED, body)
}
