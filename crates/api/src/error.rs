//! The one API error type: every failure leaves as the seeds' envelope
//! `{"success": false, "error": "...", "code": "..."}` (plus `field` when one field is at fault).

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use cairn_service::ServiceError;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    pub retry_after: Option<u64>,
    pub errors: Vec<cairn_service::Problem>,
}

/// The error envelope.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Always false.
    pub success: bool,
    /// What went wrong, in words that say what to fix.
    pub error: String,
    /// `AUTH_REQUIRED`, `FORBIDDEN`, `NOT_FOUND`, `VALIDATION_ERROR`, `DUPLICATE`,
    /// `RATE_LIMITED`, `PAYLOAD_TOO_LARGE`, `UNAVAILABLE` or `SERVER_ERROR`.
    pub code: String,
    /// The offending field (a JSON path such as `items[2].price`, or a header name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Every problem, when there are several (an automation design): each with its `field`,
    /// `message`, and the `node` or `edge` id it concerns.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub errors: Vec<cairn_service::Problem>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), field: None, retry_after: None, errors: Vec::new() }
    }

    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        let field = field.into();
        let message = message.into();
        let text = if field.is_empty() { message } else { format!("{field}: {message}") };
        let mut e = ApiError::new(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", text);
        e.field = Some(field).filter(|f| !f.is_empty());
        e
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message)
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "VALIDATION_ERROR", message);
        e.field = Some("Content-Type".into());
        e
    }

    pub fn unauthenticated(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "AUTH_REQUIRED", message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "FORBIDDEN", message)
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", format!("{what} not found"))
    }

    pub fn duplicate(field: Option<String>, message: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(StatusCode::CONFLICT, "DUPLICATE", message);
        e.field = field;
        e
    }

    pub fn too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!("request body is larger than {limit} bytes"),
        )
    }

    pub fn rate_limited(retry_after: u64) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            format!("rate limit exceeded; retry in {retry_after} s"),
        );
        e.retry_after = Some(retry_after);
        e
    }

    pub fn unavailable(message: impl Into<String>, retry_after: u64) -> ApiError {
        let mut e = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", message);
        e.retry_after = Some(retry_after);
        e
    }

    /// A failure on our side. The cause is logged here, once; the client learns nothing internal.
    pub fn internal(cause: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(error = %cause, "request failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "SERVER_ERROR", "internal server error")
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Invalid(f) => ApiError::validation(f.field, f.message),
            ServiceError::Problems(list) => {
                let summary: Vec<String> = list.iter().take(5).map(|p| format!("{}: {}", p.field, p.message)).collect();
                let more = if list.len() > 5 { format!(" (and {} more)", list.len() - 5) } else { String::new() };
                let mut e = ApiError::bad_request(format!(
                    "{} problem{}: {}{more}",
                    list.len(),
                    if list.len() == 1 { "" } else { "s" },
                    summary.join("; ")
                ));
                e.field = list.first().map(|p| p.field.clone());
                e.errors = list;
                e
            }
            ServiceError::Unauthenticated(m) => ApiError::unauthenticated(m),
            ServiceError::Forbidden(m) => ApiError::forbidden(m),
            ServiceError::NotFound(what) => ApiError::not_found(what),
            ServiceError::Duplicate { field, message } => ApiError::duplicate(Some(field), message),
            ServiceError::Conflict(message) => ApiError::new(StatusCode::CONFLICT, "CONFLICT", message),
            ServiceError::Unavailable(message) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", message)
            }
            e @ (ServiceError::Store(_) | ServiceError::Events(_) | ServiceError::Internal(_)) => {
                ApiError::internal(&e)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            success: false,
            error: self.message,
            code: self.code.to_string(),
            field: self.field,
            errors: self.errors,
        };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
