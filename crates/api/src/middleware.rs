//! The request pipeline, outermost first:
//! 1. `observe` — metrics by route and a trace span (no personal data).
//! 2. `gate` — early 413 by Content-Length, authentication, rate limit and its headers, the
//!    per-credential request log.
//! 3. `idempotency` — replays the first response of a retried mutating request.

use std::{net::SocketAddr, time::Instant};

use axum::{
    body::Body,
    extract::{ConnectInfo, MatchedPath, Request, State},
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use cairn_service::Principal;
use cairn_store::{
    api_logs::NewApiLog,
    idempotency::{Claim, IdemKey},
};
use chrono::Duration;
use sha2::{Digest, Sha256};

use crate::{
    api_log::redact_path,
    error::ApiError,
    extract::{read_body, BodyLimit},
    ratelimit::{is_ingest_path, Decision},
    AppState,
};

pub async fn observe(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string());
    let resp = next.run(req).await;
    let elapsed = started.elapsed();
    let route = route.as_deref().unwrap_or("unmatched");
    st.metrics.record(method.as_str(), route, resp.status().as_u16(), elapsed);
    tracing::debug!(http.method = %method, http.route = route, http.status = resp.status().as_u16(),
                    latency_ms = elapsed.as_secs_f64() * 1e3, "request");
    resp
}

/// CORS for the ingestion routes only: any origin, no credentials (browsers send keys in a
/// header or the body, never cookies). Preflights are answered here. Other routes send no
/// CORS headers, so browsers keep other sites' scripts away from them.
pub async fn cors(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if !is_ingest_path(path) && !path.starts_with("/v1/public/") {
        return next.run(req).await;
    }
    let mut resp = if req.method() == Method::OPTIONS {
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST, GET, OPTIONS"));
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("Content-Type, Authorization, X-API-Key, Idempotency-Key"),
        );
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
        r
    } else {
        next.run(req).await
    };
    let h = resp.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, Retry-After"),
    );
    resp
}

/// The credential a request presents: `Authorization: Bearer …` or `X-API-Key: …`.
/// Segment's SDKs send HTTP Basic with the write key as the user name (and no password).
pub fn presented_secret(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(v.trim().to_string());
    }
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = auth.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.trim().to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        use base64::Engine;
        let decoded = base64::engine::general_purpose::STANDARD.decode(rest.trim()).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let user = text.split_once(':').map(|(u, _)| u).unwrap_or(&text);
        return Some(user.to_string());
    }
    None
}

pub async fn gate(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let path = req.uri().path().to_string();
    if !path.starts_with("/v1/") && !path.starts_with("/analytics/") {
        // Operational endpoints (/healthz, /readyz, /metrics) are for probes and scrapers:
        // no credentials, no rate limit.
        return next.run(req).await;
    }
    let limit = if is_ingest_path(&path) {
        st.settings.max_batch_bytes
    } else if path == "/v1/imports" {
        st.settings.max_import_bytes
    } else if path == "/v1/files" {
        // The file and the multipart framing around it.
        st.settings.max_file_bytes + 64 * 1024
    } else {
        st.settings.max_body_bytes
    };
    req.extensions_mut().insert(BodyLimit(limit));
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared.filter(|&n| n > limit as u64) {
        // Refused without keeping the body. A small overflow is read and discarded first so the
        // client, still uploading, can read the answer (see `extract::drain`); a large one is
        // answered at once and the connection closed.
        if n <= crate::extract::DRAIN_BYTES as u64 {
            crate::extract::drain(req.into_body()).await;
        }
        return ApiError::too_large(limit).into_response();
    }

    let ip = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string()).unwrap_or_default();
    let secret = presented_secret(req.headers()).filter(|s| !s.is_empty());
    if secret.is_none() && is_ingest_path(&path) {
        // Browsers' beacons and Segment's analytics.js put the key in the body: the tracking
        // handler authenticates and rate-limits those itself (see routes::track).
        req.extensions_mut().insert(ClientIp(ip));
        return next.run(req).await;
    }
    let principal = match secret {
        None => None,
        Some(secret) => match if is_ingest_path(&path) {
            st.svc.authenticate_for_ingest(&secret).await
        } else {
            st.svc.authenticate(&secret).await
        } {
            Ok(p) => Some(p),
            Err(e) => {
                // Failed attempts count against the caller's address, so guessing is slow.
                let d = st.limiter.check(&format!("ip:{ip}"), st.settings.anonymous_rate_limit);
                let resp = if d.allowed {
                    ApiError::from(e).into_response()
                } else {
                    ApiError::rate_limited(d.retry_after).into_response()
                };
                return with_limit_headers(resp, &d);
            }
        },
    };

    let ingest = is_ingest_path(&path);
    let (bucket, limit) = match &principal {
        Some(p) => {
            (format!("{}:{}", p.label(), if ingest { "ingest" } else { "api" }), st.settings.limit_for(p, ingest))
        }
        None => (format!("ip:{ip}"), st.settings.anonymous_rate_limit),
    };
    let decision = st.limiter.check(&bucket, limit);
    if !decision.allowed {
        return with_limit_headers(ApiError::rate_limited(decision.retry_after).into_response(), &decision);
    }

    let method = req.method().to_string();
    if let Some(p) = &principal {
        req.extensions_mut().insert(p.clone());
    }
    let resp = next.run(req).await;

    if let Some(p) = principal {
        let status = resp.status().as_u16();
        let line = || NewApiLog {
            tenant_id: p.tenant_id,
            api_key_id: p.key_id(),
            user_id: p.user_id(),
            method,
            path: redact_path(&path),
            status,
            latency_ms: started.elapsed().as_secs_f64() * 1e3,
            at: st.svc.clock.now(),
        };
        if ingest {
            st.api_logs.push_sampled(&bucket, status, line);
        } else {
            st.api_logs.push(line());
        }
    }
    with_limit_headers(resp, &decision)
}

/// The caller's address, for rate-limiting failed body-key authentication.
#[derive(Debug, Clone)]
pub struct ClientIp(pub String);

pub fn with_limit_headers(mut resp: Response, d: &Decision) -> Response {
    let h = resp.headers_mut();
    h.insert("x-ratelimit-limit", HeaderValue::from(d.limit));
    h.insert("x-ratelimit-remaining", HeaderValue::from(d.remaining));
    h.insert("x-ratelimit-reset", HeaderValue::from(d.reset));
    if !d.allowed {
        h.insert(header::RETRY_AFTER, HeaderValue::from(d.retry_after));
    }
    resp
}

/// How long a stored response is replayed (seed 000's advice; Stripe keeps 24 hours too).
const IDEMPOTENCY_TTL_HOURS: i64 = 24;
/// How long an in-flight claim blocks a concurrent retry before it is considered abandoned.
const IN_FLIGHT_SECS: i64 = 60;

/// `Idempotency-Key` on a mutating request: the first response (2xx or 4xx) is stored and
/// replayed to retries with the same key and body for 24 hours; the same key with another
/// body is a 400; a retry while the first is still running is a 409. A 5xx is not stored, so
/// the retry runs again.
pub async fn idempotency(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let mutating = matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH | Method::DELETE);
    let key = req.headers().get("idempotency-key").map(|v| v.to_str().map(str::to_string));
    let Some(key) = key.filter(|_| mutating) else {
        return next.run(req).await;
    };
    let key = match key {
        Ok(k) if !k.is_empty() && k.len() <= 255 => k,
        _ => {
            return ApiError::validation("Idempotency-Key", "must be 1 to 255 visible ASCII characters").into_response()
        }
    };
    let (tenant, principal) = match req.extensions().get::<Principal>() {
        Some(p) => (p.tenant_id, p.label()),
        // Unauthenticated calls (register, login) share one namespace; the request hash
        // includes the body, so a replay only reaches someone who sent the identical request.
        None => (cairn_domain::TenantId(0), "anonymous".to_string()),
    };

    let (parts, body) = req.into_parts();
    let limit = parts.extensions.get::<BodyLimit>().map(|l| l.0).unwrap_or(st.settings.max_body_bytes);
    let bytes = match read_body(Request::from_parts(parts.clone(), body), limit).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let mut hasher = Sha256::new();
    hasher.update(parts.method.as_str());
    hasher.update(b" ");
    hasher.update(parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or(""));
    hasher.update(b"\n");
    hasher.update(&bytes);
    let request_hash = hex::encode(hasher.finalize());

    let idem = IdemKey { tenant, principal: &principal, key: &key };
    let now = st.svc.clock.now();
    let claim = async {
        st.svc
            .store
            .write()
            .await?
            .claim_idempotency_key(
                &idem,
                &request_hash,
                now,
                now + Duration::seconds(IN_FLIGHT_SECS),
                now - Duration::hours(IDEMPOTENCY_TTL_HOURS),
            )
            .await
    }
    .await;
    match claim {
        Err(e) => return ApiError::internal(&e).into_response(),
        Ok(Claim::Mismatch) => {
            return ApiError::validation(
                "Idempotency-Key",
                "this key was already used for a different request; use a new key for a new request",
            )
            .into_response()
        }
        Ok(Claim::InProgress) => {
            return ApiError::duplicate(
                Some("Idempotency-Key".into()),
                "a request with this Idempotency-Key is still being processed; retry shortly",
            )
            .into_response()
        }
        Ok(Claim::Done { status, content_type, body, .. }) => {
            let mut resp = Response::new(Body::from(body));
            *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            if let Some(ct) = content_type.and_then(|c| HeaderValue::from_str(&c).ok()) {
                resp.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            resp.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
            return resp;
        }
        Ok(Claim::Fresh) => {}
    }

    let resp = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    let (rparts, rbody) = resp.into_parts();
    let rbytes = axum::body::to_bytes(rbody, usize::MAX).await.unwrap_or_default();
    let store_result = async {
        let mut c = st.svc.store.write().await?;
        if rparts.status.is_server_error() {
            c.release_idempotency_key(&idem).await
        } else {
            let ct = rparts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
            c.complete_idempotency_key(&idem, rparts.status.as_u16(), ct, &rbytes).await
        }
    }
    .await;
    if let Err(e) = store_result {
        tracing::warn!(error = %e, "could not record the idempotent response");
    }
    Response::from_parts(rparts, Body::from(rbytes))
}
