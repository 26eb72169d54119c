//! `POST /v1/prunes`, `/v1/checks`, `/v1/forgets`: repository maintenance
//! on demand, each a task (202 and its id; poll `/v1/tasks/{id}`).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{blocking, json_body, start_result, ApiError, AppState};
use crate::commands::forget::ForgetPolicy;
use crate::service::runner::{CheckRequest, Maintenance};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PruneRequest {
    #[serde(default)]
    repository: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ForgetRequest {
    database: String,
    #[serde(default)]
    repository: Option<String>,
    /// Else the retention of a job of the database.
    #[serde(default)]
    policy: Option<ForgetPolicy>,
}

/// Starts `what` on the repository `named` (else the only candidate).
async fn start(
    s: AppState,
    named: Option<String>,
    candidates: impl FnOnce(&crate::service::Config) -> Vec<String> + Send + 'static,
    what: Maintenance,
) -> Response {
    let service = s.service;
    match blocking(move || {
        let config = service.config();
        Ok(service
            .repository_for(named.as_deref(), &candidates(&config))
            .and_then(|repo| service.spawn_maintenance(&repo, what)))
    })
    .await
    {
        Ok(r) => start_result(r),
        Err(e) => e.into_response(),
    }
}

fn all(config: &crate::service::Config) -> Vec<String> {
    config.repositories.keys().cloned().collect()
}

pub(super) async fn post_prune(State(s): State<AppState>, body: Bytes) -> Response {
    let req: PruneRequest = match json_body(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    start(s, req.repository, all, Maintenance::Prune).await
}

pub(super) async fn post_check(State(s): State<AppState>, body: Bytes) -> Response {
    let req: CheckRequest = match json_body(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let read = match req.read() {
        Ok(r) => r,
        Err(why) => return ApiError(StatusCode::BAD_REQUEST, why).into_response(),
    };
    start(s, req.repository, all, Maintenance::Check { read }).await
}

pub(super) async fn post_forget(State(s): State<AppState>, body: Bytes) -> Response {
    let req: ForgetRequest = match json_body(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let database = req.database.clone();
    start(
        s,
        req.repository,
        move |c| c.repositories_of(&database),
        Maintenance::Forget {
            database: req.database,
            policy: req.policy,
        },
    )
    .await
}
