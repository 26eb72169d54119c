//! `GET /v1/snapshots/{id}/database`: a snapshot's database file or SQL
//! text, streamed.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::Deserialize;

use super::{blocking, busy, ApiError, AppState, MAX_DOWNLOADS};
use crate::commands::dump::{dump_held, DumpFormat};
use crate::commands::restore::At;
use crate::error::Error;
use crate::format::manifest::{DbPath, Manifest};
use crate::progress::Cancel;
use crate::repo::SnapshotFilter;
use crate::service::access::{Grant, Role};
use crate::service::runner::Service;

#[derive(Deserialize)]
pub(super) struct DatabaseQuery {
    #[serde(default)]
    format: Option<String>,
    /// The configured repository (else every one is searched).
    #[serde(default)]
    repository: Option<String>,
    /// `latest` or an RFC 3339 time: the snapshot's stream of captured
    /// changes applied up to then.
    #[serde(default)]
    at: Option<String>,
    /// With the snapshot `latest`: of this configured database...
    #[serde(default)]
    database: Option<String>,
    /// ... and with these tags (`a,b`: both).
    #[serde(default)]
    tag: Option<String>,
}

/// Streams a snapshot's database file (with its length) or its SQL text
/// (made from a private temporary copy in the service's state directory,
/// removed on every path).
pub(super) async fn get_database(
    State(s): State<AppState>,
    Extension(grant): Extension<Grant>,
    Path(id): Path<String>,
    q: Result<Query<DatabaseQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let format = match q.format.as_deref() {
        None | Some("sqlite") => DumpFormat::Sqlite,
        Some("sql") => DumpFormat::Sql,
        Some(f) => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("format {f:?}: use sqlite or sql"),
            ))
        }
    };
    if id != "latest"
        && (id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("snapshot {id:?}: give a snapshot id (hex digits) or latest"),
        ));
    }
    let at =
        q.at.as_deref()
            .map(At::parse)
            .transpose()
            .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
    let download = Arc::clone(&s.downloads)
        .try_acquire_owned()
        .map_err(|_| busy(&format!("{MAX_DOWNLOADS} downloads are streaming already")))?;
    let work = s.work().await;
    let service = s.service;
    let temp_dir = service.temp_dir().map_err(ApiError::from)?;
    // The shared lock is taken before answering (a prune running now is a
    // 409, not a truncated download) and held until the stream ends.
    let (repo, snapshot, manifest, lock) = blocking(move || {
        let _work = work;
        let filter = latest_filter(&service, &q)?;
        let (_, repo, snapshot, manifest) =
            service.find_snapshot(&id, q.repository.as_deref(), &filter)?;
        may_download(&service, &grant, &manifest)?;
        let lock = repo.lock_reading("dump")?;
        Ok((repo, snapshot, manifest, lock))
    })
    .await?;
    let file_name = format!(
        "{}-{}",
        manifest.database.name.replace(
            |c: char| c == '"' || c == '/' || c == '\\' || c.is_control(),
            "_"
        ),
        snapshot.short()
    );
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    // The client gone (its stream dropped): stop the work behind it, also
    // while it writes nothing yet (SQL text first reassembles the image).
    let cancel = Cancel::new();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    {
        let watch = tx.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = watch.closed() => cancel.cancel(),
                _ = done_rx => {}
            }
        });
    }
    tokio::task::spawn_blocking(move || {
        let _lock = lock;
        let _download = download;
        let mut w = ChannelWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
        };
        let r =
            dump_held(&repo, &snapshot, format, at, &temp_dir, &mut w, &cancel).and_then(|_| {
                use std::io::Write;
                w.flush().map_err(|e| Error::InvalidInput(e.to_string()))
            });
        if let Err(e) = r {
            let _ =
                w.tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
        let _ = done_tx.send(());
    });
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
    let mut response = Body::from_stream(stream).into_response();
    // With `at` the size is known only once the changes are applied.
    let length = at.is_none().then_some(manifest.image.bytes);
    download_headers(&mut response, &file_name, format, length);
    Ok(response)
}

/// The filter `latest` is narrowed by: the query's database (by its
/// configured name) and tags.
fn latest_filter(service: &Service, q: &DatabaseQuery) -> Result<SnapshotFilter, ApiError> {
    let mut filter = SnapshotFilter::default();
    if let Some(d) = &q.database {
        let config = service.config();
        let db = config.databases.get(d).ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                format!("no database named {d:?} in the config"),
            )
        })?;
        filter.database_paths = vec![DbPath::of(&db.backup.path)];
    }
    if let Some(t) = &q.tag {
        let set = crate::repo::split_tags(std::slice::from_ref(t))?;
        if !set.is_empty() {
            filter.tags.push(set);
        }
    }
    Ok(filter)
}

/// Whether `grant` may download a snapshot of `manifest`'s database: a
/// token limited to databases, only snapshots of theirs.
fn may_download(service: &Service, grant: &Grant, manifest: &Manifest) -> Result<(), ApiError> {
    if grant.role == Role::Restore && !grant.databases.is_empty() {
        let config = service.config();
        let path = manifest.database.key();
        let ok = grant.databases.iter().any(|d| {
            config
                .databases
                .get(d)
                .is_some_and(|db| DbPath::of(&db.backup.path) == path)
        });
        if !ok {
            return Err(ApiError(
                StatusCode::FORBIDDEN,
                format!(
                    "this token may download only snapshots of {}",
                    grant.databases.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// A download's name, type and (for a database file) length.
fn download_headers(r: &mut Response, file_name: &str, format: DumpFormat, bytes: Option<u64>) {
    let ext = if format == DumpFormat::Sql {
        "sql"
    } else {
        "db"
    };
    let mut headers = vec![(
        header::CONTENT_DISPOSITION,
        format!("attachment; filename=\"{file_name}.{ext}\""),
    )];
    if format == DumpFormat::Sql {
        headers.push((
            header::CONTENT_TYPE,
            "application/sql; charset=utf-8".to_string(),
        ));
    } else {
        headers.push((header::CONTENT_TYPE, "application/vnd.sqlite3".to_string()));
        if let Some(bytes) = bytes {
            headers.push((header::CONTENT_LENGTH, bytes.to_string()));
        }
    }
    for (k, v) in headers {
        if let Ok(v) = HeaderValue::from_str(&v) {
            r.headers_mut().insert(k, v);
        }
    }
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
