//! The HTTP admin API (axum), versioned under `/v1`, described by
//! `openapi.json` at the repository's root (served at `/v1/openapi.json`).
//!
//! Every endpoint but `/healthz`, the description and the dashboard's
//! page and assets (`/`, `/dashboard/*`: `api::dashboard`) needs a bearer token
//! from the config (read at each request, so a reload takes effect at
//! once), compared in constant time, whose role allows the request
//! (`access`: 403 otherwise); `/metrics` may be configured open. Requests name databases and
//! repositories by their configured names only: nothing a caller sends
//! becomes a path, so the API writes nowhere but the configured databases
//! and repositories. Bodies are at most 64 KiB; a response must start
//! within 30 seconds. Connections are bounded and idle or stalled ones
//! closed (`http`). Work is bounded too: at most [`MAX_WORK`] requests
//! read repositories at once and [`MAX_DOWNLOADS`] downloads stream at
//! once (more get 503 with `Retry-After`); repositories are unlocked once
//! per process (`unlocked`). A download streams in chunks of 256 KiB, at
//! most 8 queued: a client that stops reading stops the work behind it.

mod dashboard;
mod download;
mod maintenance;
mod tasks;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;

use super::access::Grant;
use super::config::ApiSettings;
use super::runner::{RestoreRequest, Service, StartError};
use crate::commands::snapshots::{list, SnapshotsOptions};
use crate::error::{Error, ErrorKind};
use crate::repo::{split_tags, SnapshotFilter};

/// The API's description.
pub const OPENAPI: &str = include_str!("../../openapi.json");
/// The largest request body.
const MAX_BODY: usize = 64 * 1024;
/// Time for a request, from its headers to the start of the response.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests reading repositories at once (listings, status, metrics, the
/// start of a download).
pub const MAX_WORK: usize = 4;
/// Downloads streaming at once.
pub const MAX_DOWNLOADS: usize = 2;

#[derive(Clone)]
struct AppState {
    service: Arc<Service>,
    work: Arc<tokio::sync::Semaphore>,
    downloads: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    /// A slot for repository work, waited for (the request's own time
    /// limit bounds the wait).
    async fn work(&self) -> tokio::sync::OwnedSemaphorePermit {
        Arc::clone(&self.work)
            .acquire_owned()
            .await
            .expect("semaphore never closed")
    }
}

/// 503 with `Retry-After`: the API's bound on concurrent work is reached.
fn busy(what: &str) -> ApiError {
    ApiError(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("{what}: try again in a few seconds"),
    )
}

/// An error response: a status and `{"error": "..."}`.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if self.0 == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        r
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = match e.kind() {
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::InvalidInput | ErrorKind::Ambiguous => StatusCode::BAD_REQUEST,
            ErrorKind::Locked | ErrorKind::TargetBusy => StatusCode::CONFLICT,
            ErrorKind::Interrupted => StatusCode::SERVICE_UNAVAILABLE,
            // The repository was opened with a write-only key: the service
            // may back up into it, never read from it.
            ErrorKind::WriteOnly => StatusCode::FORBIDDEN,
            ErrorKind::Backend(_)
            | ErrorKind::RepositoryNotFound
            | ErrorKind::NotARepository
            | ErrorKind::WrongPassword
            | ErrorKind::Password
            | ErrorKind::Damaged => StatusCode::BAD_GATEWAY,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string().replace('\n', " "))
    }
}

impl From<StartError> for ApiError {
    fn from(e: StartError) -> Self {
        match e {
            StartError::Busy(_) => unreachable!("busy is answered with its task id"),
            StartError::NotFound(m) => ApiError(StatusCode::NOT_FOUND, m),
            StartError::Invalid(m) => ApiError(StatusCode::BAD_REQUEST, m),
            StartError::Failed(e) => e.into(),
        }
    }
}

/// The router over `service`, accepting the tokens of its config.
pub fn router(service: Arc<Service>) -> Router {
    let state = AppState {
        service,
        work: Arc::new(tokio::sync::Semaphore::new(MAX_WORK)),
        downloads: Arc::new(tokio::sync::Semaphore::new(MAX_DOWNLOADS)),
    };
    let authed = Router::new()
        .route("/v1/backups", post(post_backup))
        .route("/v1/restores", post(post_restore))
        .route("/v1/prunes", post(maintenance::post_prune))
        .route("/v1/checks", post(maintenance::post_check))
        .route("/v1/forgets", post(maintenance::post_forget))
        .route("/v1/tasks", get(tasks::list_tasks))
        .route(
            "/v1/tasks/{id}",
            get(tasks::get_task).delete(tasks::delete_task),
        )
        .route("/v1/snapshots", get(get_snapshots))
        .route("/v1/snapshots/{id}/database", get(download::get_database))
        .route("/v1/status", get(get_status))
        .route("/v1/history", get(dashboard::get_history))
        .route("/metrics", get(get_metrics))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/v1/openapi.json", get(openapi))
        .route("/", get(dashboard::index))
        .route("/dashboard/app.js", get(dashboard::script))
        .route("/dashboard/app.css", get(dashboard::style))
        .merge(authed)
        .fallback(|| async {
            ApiError(
                StatusCode::NOT_FOUND,
                "no such endpoint: see /v1/openapi.json".into(),
            )
        })
        .layer(axum::middleware::from_fn(request_timeout))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

async fn request_timeout(req: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError(
            StatusCode::REQUEST_TIMEOUT,
            "the request took too long".into(),
        )
        .into_response(),
    }
}

/// The token of an `Authorization` header: scheme `Bearer`, in any case
/// (RFC 7235 makes auth schemes case-insensitive).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

async fn auth(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    // The config's tokens now: a reload adds and removes them.
    let config = state.service.config();
    let Some(api) = config.api.as_ref() else {
        return ApiError(StatusCode::UNAUTHORIZED, "the API has no tokens".into()).into_response();
    };
    if api.metrics_open && req.uri().path() == "/metrics" {
        return next.run(req).await;
    }
    let grant = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .and_then(|t| super::access::grant(&api.tokens, t));
    let Some(grant) = grant else {
        return ApiError(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token: send Authorization: Bearer TOKEN with a token from the config".into(),
        )
        .into_response();
    };
    let needed = super::access::needed(req.method(), req.uri().path());
    if grant.role < needed {
        return ApiError(
            StatusCode::FORBIDDEN,
            format!(
                "this token's role is {}; this request needs a {} token",
                grant.role.name(),
                needed.name()
            ),
        )
        .into_response();
    }
    req.extensions_mut().insert(grant);
    next.run(req).await
}

/// A JSON body of type `T` (unknown fields refused), or 400. The content
/// type is not insisted on (`curl -d` sends a form type).
fn json_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("malformed JSON body: {e}")))
}

/// Runs blocking library work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error: {e}"),
        )
    })?
}

fn accepted(task_id: &str) -> Response {
    (
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/v1/tasks/{task_id}"))],
        Json(serde_json::json!({ "task_id": task_id })),
    )
        .into_response()
}

fn start_result(r: Result<String, StartError>) -> Response {
    match r {
        Ok(id) => accepted(&id),
        Err(StartError::Busy(t)) => (
            StatusCode::CONFLICT,
            Json(serde_json::json!({
                "error": format!("the database is busy with task {t}: wait for it to end"),
                "task_id": t,
            })),
        )
            .into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupRequest {
    database: String,
    #[serde(default)]
    repository: Option<String>,
}

async fn post_backup(State(s): State<AppState>, body: Bytes) -> Response {
    let req: BackupRequest = match json_body(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let service = s.service;
    match blocking(move || Ok(service.spawn_backup(&req.database, req.repository.as_deref()))).await
    {
        Ok(r) => start_result(r),
        Err(e) => e.into_response(),
    }
}

async fn post_restore(
    State(s): State<AppState>,
    Extension(grant): Extension<Grant>,
    body: Bytes,
) -> Response {
    let req: RestoreRequest = match json_body(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    if let Err(why) = grant.may_restore(&req.database) {
        return ApiError(StatusCode::FORBIDDEN, why).into_response();
    }
    let service = s.service;
    match blocking(move || Ok(service.spawn_restore(&req))).await {
        Ok(r) => start_result(r),
        Err(e) => e.into_response(),
    }
}

async fn get_status(State(s): State<AppState>) -> Result<Response, ApiError> {
    let work = s.work().await;
    let service = s.service;
    let status = blocking(move || {
        // Held by the work, not the request: a dropped request does not
        // free the slot while its work goes on.
        let _work = work;
        let config = service.config();
        let mut status = super::status::status(&config, service.history(), service.clock().now())?;
        status.replication = service.replication_status();
        Ok(status)
    })
    .await?;
    Ok(Json(status).into_response())
}

async fn get_metrics(State(s): State<AppState>) -> Result<Response, ApiError> {
    let work = s.work().await;
    let service = s.service;
    let text = blocking(move || {
        let _work = work;
        let mut text = super::status::metrics(service.history())?;
        text.push_str(&super::streams::metrics(&service.replication_status()));
        Ok(text)
    })
    .await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

#[derive(Deserialize)]
struct SnapshotsQuery {
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    database: Option<String>,
    #[serde(default)]
    repository: Option<String>,
}

/// The configured repositories a listing reads: the one named, else
/// those of the database's jobs, else every one.
fn repositories_to_list(
    service: &Service,
    repository: Option<&str>,
    database: Option<&str>,
) -> Result<Vec<String>, ApiError> {
    let config = service.config();
    if let Some(r) = repository {
        return if config.repositories.contains_key(r) {
            Ok(vec![r.to_string()])
        } else {
            Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("no repository named {r:?} in the config"),
            ))
        };
    }
    let of_database = database
        .map(|d| config.repositories_of(d))
        .unwrap_or_default();
    Ok(if of_database.is_empty() {
        config.repositories.keys().cloned().collect()
    } else {
        of_database
    })
}

async fn get_snapshots(
    State(s): State<AppState>,
    q: Result<Query<SnapshotsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let work = s.work().await;
    let service = s.service;
    let entries = blocking(move || {
        let _work = work;
        let config = service.config();
        let mut filter = SnapshotFilter::default();
        if let Some(d) = &q.database {
            let db = config.databases.get(d).ok_or_else(|| {
                ApiError(
                    StatusCode::NOT_FOUND,
                    format!("no database named {d:?} in the config"),
                )
            })?;
            filter.databases = vec![db.backup.path.to_string_lossy().into_owned()];
        }
        if let Some(t) = &q.tag {
            let set = split_tags(std::slice::from_ref(t))?;
            if !set.is_empty() {
                filter.tags.push(set);
            }
        }
        let mut out = Vec::new();
        for name in repositories_to_list(&service, q.repository.as_deref(), q.database.as_deref())?
        {
            let repo = service.open_repository(&name)?;
            let entries = list(
                &repo,
                &SnapshotsOptions {
                    filter: filter.clone(),
                    latest: None,
                },
            )?;
            for e in entries {
                let mut v = serde_json::to_value(e).map_err(|e| Error::Internal(e.to_string()))?;
                if let Some(o) = v.as_object_mut() {
                    o.insert("repository".into(), name.clone().into());
                }
                out.push(v);
            }
        }
        Ok(out)
    })
    .await?;
    Ok(Json(entries).into_response())
}

/// Serves the API on `listener` until `shutdown` resolves (see `http` for
/// the connections' bounds); uses TLS when `settings` say so.
pub async fn serve(
    service: Arc<Service>,
    settings: &ApiSettings,
    listener: std::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> crate::error::Result<()> {
    let app = router(service);
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::InvalidInput(format!("API listener: {e}")))?;
    // Connections beyond the bound wait here, unaccepted (`http`): room
    // for a burst of them.
    let _ = rustix::net::listen(&listener, 1024);
    let io_err =
        |e: std::io::Error| Error::InvalidInput(format!("HTTP API on {}: {e}", settings.listen));
    let listener = tokio::net::TcpListener::from_std(listener).map_err(io_err)?;
    let tls = match &settings.tls {
        Some((cert, key)) => Some(tls_acceptor(cert, key)?),
        None => None,
    };
    let limits = super::http::Limits {
        wait: settings.client_timeout,
        stall: settings.stall_timeout,
    };
    super::http::serve(listener, tls, app, limits, shutdown)
        .await
        .map_err(io_err)
}

/// A TLS acceptor for the PEM certificate chain and key (HTTP/1.1 only).
fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> crate::error::Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let bad = |what: &std::path::Path, e: &dyn std::fmt::Display| {
        Error::InvalidInput(format!(
            "TLS file {}: {e} (tls_cert and tls_key in [api] name PEM files)",
            what.display()
        ))
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| bad(cert, &e))?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, &e))?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| bad(cert, &e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
