//! The web dashboard at `/`: one page, its script and its style, embedded
//! in the binary (no build step, nothing fetched from elsewhere, works
//! offline). The page holds no data and needs no token; it asks for one
//! (kept in the browser's session storage, gone when the tab closes) and
//! then reads and acts through the API with it, within the token's role.
//! Its content security policy allows only its own script, style and API.
//! Also here: `GET /v1/history`, each day's backups per repository, which
//! its chart draws.

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::{blocking, ApiError, AppState};

const INDEX: &str = include_str!("../../../assets/dashboard/index.html");
const SCRIPT: &str = include_str!("../../../assets/dashboard/app.js");
const STYLE: &str = include_str!("../../../assets/dashboard/app.css");

/// What the page may load and where it may connect: itself only.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

pub(super) async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

pub(super) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

pub(super) async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

#[derive(Deserialize)]
pub(super) struct HistoryQuery {
    #[serde(default)]
    days: Option<u32>,
}

/// `GET /v1/history?days=N` (default 30, at most 366).
pub(super) async fn get_history(
    State(s): State<AppState>,
    q: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let days = q.days.unwrap_or(30);
    if !(1..=366).contains(&days) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "days: give 1 to 366".into(),
        ));
    }
    let work = s.work().await;
    let service = s.service;
    let rows = blocking(move || {
        let _work = work;
        let now = service.clock().now();
        let since = now
            .checked_sub(jiff::SignedDuration::from_hours(24 * i64::from(days)))
            .unwrap_or(now);
        Ok(service.history().daily(since)?)
    })
    .await?;
    Ok(Json(serde_json::json!({ "days": rows })).into_response())
}
