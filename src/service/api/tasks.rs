//! The tasks the service runs (scheduled and API-started backups, API
//! restores): listed, shown, and stopped.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{ApiError, AppState};
use crate::service::runner::{Cancelled, TaskFilter};

/// `GET /v1/tasks?state=&kind=&database=&limit=`: newest first.
pub(super) async fn list_tasks(
    State(s): State<AppState>,
    q: Result<Query<TaskFilter>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(filter) = q.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    if filter.limit.is_some_and(|n| n == 0 || n > 1000) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "limit: give 1 to 1000".into(),
        ));
    }
    Ok(Json(s.service.tasks(&filter)).into_response())
}

/// `GET /v1/tasks/{id}`.
pub(super) async fn get_task(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match s.service.task(&id) {
        Some(v) => Ok(Json(v).into_response()),
        None => Err(no_task(&id)),
    }
}

/// `DELETE /v1/tasks/{id}`: 202 once asked to stop (poll it to see it
/// cancelled), 409 if it had ended.
pub(super) async fn delete_task(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match s.service.cancel_task(&id) {
        Some(Cancelled::Requested(v)) => Ok((StatusCode::ACCEPTED, Json(v)).into_response()),
        Some(Cancelled::Ended(v)) => Err(ApiError(
            StatusCode::CONFLICT,
            format!(
                "task {id} has ended already ({}): nothing to stop",
                serde_json::to_value(v.state)
                    .ok()
                    .and_then(|s| s.as_str().map(str::to_string))
                    .unwrap_or_default()
            ),
        )),
        Some(Cancelled::Unstoppable(v)) => Err(ApiError(
            StatusCode::CONFLICT,
            format!(
                "task {id} is a {} and cannot be stopped midway: it ends by itself",
                v.kind
            ),
        )),
        None => Err(no_task(&id)),
    }
}

fn no_task(id: &str) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!("no task {id:?}: list them with GET /v1/tasks"),
    )
}
