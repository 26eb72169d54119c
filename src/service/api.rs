//! The HTTP admin API (axum), versioned under `/v1`, described by
//! `openapi.json` at the repository's root (served at `/v1/openapi.json`).
//!
//! Every endpoint but `/healthz` and the description needs a bearer token
//! from the config, compared in constant time. Requests name databases
//! and repositories by their configured names only: nothing a caller
//! sends becomes a path, so the API writes nowhere but the configured
//! databases and repositories. Bodies are at most 64 KiB; a client has 10
//! seconds to send its headers and 30 for its request.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::config::ApiSettings;
use super::runner::{Service, StartError};
use crate::commands::dump::{dump_image, dump_sql_in_memory};
use crate::commands::snapshots::{list, SnapshotsOptions};
use crate::error::{Error, ErrorKind};
use crate::repo::{split_tags, SnapshotFilter};

/// The API's description.
pub const OPENAPI: &str = include_str!("../../openapi.json");
/// The largest request body.
const MAX_BODY: usize = 64 * 1024;
/// Time for a request, from its headers to the start of the response.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Time for a client to send its headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct AppState {
    service: Arc<Service>,
    tokens: Arc<Vec<blake3::Hash>>,
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

/// The router over `service`, accepting `tokens`.
pub fn router(service: Arc<Service>, tokens: &[String]) -> Router {
    let state = AppState {
        service,
        tokens: Arc::new(tokens.iter().map(|t| blake3::hash(t.as_bytes())).collect()),
    };
    let authed = Router::new()
        .route("/v1/backups", post(post_backup))
        .route("/v1/restores", post(post_restore))
        .route("/v1/tasks/{id}", get(get_task))
        .route("/v1/snapshots", get(get_snapshots))
        .route("/v1/snapshots/{id}/database", get(get_database))
        .route("/v1/status", get(get_status))
        .route("/metrics", get(get_metrics))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/v1/openapi.json", get(openapi))
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

async fn auth(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| blake3::hash(t.trim().as_bytes()));
    let ok = given.is_some_and(|g| {
        // Every token is compared, each in constant time.
        state
            .tokens
            .iter()
            .fold(subtle::Choice::from(0), |acc, t| {
                acc | t.as_bytes().ct_eq(g.as_bytes())
            })
            .into()
    });
    if ok {
        next.run(req).await
    } else {
        ApiError(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token: send Authorization: Bearer TOKEN with a token from the config".into(),
        )
        .into_response()
    }
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RestoreRequest {
    snapshot: String,
    database: String,
    #[serde(default)]
    repository: Option<String>,
}

async fn post_restore(State(s): State<AppState>, body: Bytes) -> Response {
    let req: RestoreRequest = match json_body(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let service = s.service;
    match blocking(move || {
        Ok(service.spawn_restore(&req.snapshot, &req.database, req.repository.as_deref()))
    })
    .await
    {
        Ok(r) => start_result(r),
        Err(e) => e.into_response(),
    }
}

async fn get_task(State(s): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    match s.service.task(&id) {
        Some(v) => Ok(Json(v).into_response()),
        None => Err(ApiError(StatusCode::NOT_FOUND, format!("no task {id:?}"))),
    }
}

async fn get_status(State(s): State<AppState>) -> Result<Response, ApiError> {
    let service = s.service;
    let status = blocking(move || {
        let config = service.config();
        super::status::status(&config, service.history(), service.clock().now())
            .map_err(ApiError::from)
    })
    .await?;
    Ok(Json(status).into_response())
}

async fn get_metrics(State(s): State<AppState>) -> Result<Response, ApiError> {
    let service = s.service;
    let text =
        blocking(move || super::status::metrics(service.history()).map_err(ApiError::from)).await?;
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

/// The configured repository a read goes to: the one named, else the first
/// of the database's jobs, else the first configured.
fn pick_repository(
    service: &Service,
    repository: Option<&str>,
    database: Option<&str>,
) -> Result<String, ApiError> {
    let config = service.config();
    if let Some(r) = repository {
        return if config.repositories.contains_key(r) {
            Ok(r.to_string())
        } else {
            Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("no repository named {r:?} in the config"),
            ))
        };
    }
    database
        .and_then(|d| config.repositories_of(d).into_iter().next())
        .or_else(|| config.repositories.keys().next().cloned())
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "no repository in the config".into()))
}

async fn get_snapshots(
    State(s): State<AppState>,
    q: Result<Query<SnapshotsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let service = s.service;
    let entries = blocking(move || {
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
        let name = pick_repository(&service, q.repository.as_deref(), q.database.as_deref())?;
        let repo = service.open_repository(&name)?;
        Ok(list(
            &repo,
            &SnapshotsOptions {
                filter,
                latest: None,
            },
        )?)
    })
    .await?;
    Ok(Json(entries).into_response())
}

#[derive(Deserialize)]
struct DatabaseQuery {
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    repository: Option<String>,
}

/// Streams a snapshot's database file (with its length) or its SQL text.
async fn get_database(
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: Result<Query<DatabaseQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let sql = match q.format.as_deref() {
        None | Some("sqlite") => false,
        Some("sql") => true,
        Some(f) => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("format {f:?}: use sqlite or sql"),
            ))
        }
    };
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("snapshot {id:?}: give a snapshot id (hex digits)"),
        ));
    }
    let service = s.service;
    // The shared lock is taken before answering (a prune running now is a
    // 409, not a truncated download) and held until the stream ends.
    let (repo, snapshot, manifest, lock) = blocking(move || {
        let name = pick_repository(&service, q.repository.as_deref(), None)?;
        let repo = service.open_repository(&name)?;
        let (snapshot, manifest) = repo.find_snapshot(&id, &SnapshotFilter::default())?;
        let lock = if sql {
            None
        } else {
            Some(repo.lock_reading("dump")?)
        };
        Ok((repo, snapshot, manifest, lock))
    })
    .await?;
    let file_name = format!(
        "{}-{}",
        manifest.database.name.replace(['"', '/', '\\'], "_"),
        snapshot.short()
    );
    if sql {
        let text = blocking(move || {
            let mut out = Vec::new();
            dump_sql_in_memory(&repo, &snapshot, &mut out)?;
            Ok(out)
        })
        .await?;
        return Ok((
            [
                (
                    header::CONTENT_TYPE,
                    "application/sql; charset=utf-8".to_string(),
                ),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{file_name}.sql\""),
                ),
            ],
            text,
        )
            .into_response());
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    tokio::task::spawn_blocking(move || {
        let _lock = lock;
        let mut w = ChannelWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
        };
        let r = dump_image(&repo, &snapshot, &mut w)
            .map(|_| ())
            .and_then(|()| {
                use std::io::Write;
                w.flush().map_err(|e| Error::InvalidInput(e.to_string()))
            });
        if let Err(e) = r {
            let _ =
                w.tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
    Ok((
        [
            (header::CONTENT_TYPE, "application/vnd.sqlite3".to_string()),
            (header::CONTENT_LENGTH, manifest.image.bytes.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file_name}.db\""),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

const CHUNK: usize = 256 * 1024;

/// A writer sending chunks into the response stream.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
        })
    }
}

/// Serves the API on `settings.listen` until `shutdown` resolves; running
/// requests get 10 seconds to finish. Uses TLS when configured.
pub async fn serve(
    service: Arc<Service>,
    settings: &ApiSettings,
    listener: std::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> crate::error::Result<()> {
    let app = router(service, &settings.tokens);
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        h.graceful_shutdown(Some(Duration::from_secs(10)));
    });
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::InvalidInput(format!("API listener: {e}")))?;
    let io_err =
        |e: std::io::Error| Error::InvalidInput(format!("HTTP API on {}: {e}", settings.listen));
    if let Some((cert, key)) = &settings.tls {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
            .await
            .map_err(|e| {
                Error::InvalidInput(format!(
                    "TLS certificate {} or key {}: {e}",
                    cert.display(),
                    key.display()
                ))
            })?;
        let mut server = axum_server::from_tcp_rustls(listener, tls)
            .map_err(io_err)?
            .handle(handle);
        server
            .http_builder()
            .http1()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT);
        return server.serve(app.into_make_service()).await.map_err(io_err);
    }
    let mut server = axum_server::from_tcp(listener)
        .map_err(io_err)?
        .handle(handle);
    server
        .http_builder()
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    server.serve(app.into_make_service()).await.map_err(io_err)
}
