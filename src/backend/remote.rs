//! Repositories off the machine: S3-compatible object stores and SFTP
//! servers, through OpenDAL (the storage library rustic uses for the same
//! purpose), not a hand-written HTTP or SSH client.
//!
//! * **Layout**: the same object paths as a local repository (`config`,
//!   `keys/…`, `data/xx/…`), under the bucket's prefix or the SFTP
//!   directory.
//! * **Writes are all or nothing**: an S3 `PUT` is atomic by itself; over
//!   SFTP an object is uploaded under a temporary name (`.tmp-…`, never
//!   listed as an object) and renamed into place.
//! * **Retries**: transient failures (timeouts, connection resets, HTTP 5xx
//!   and 429) are retried with exponential backoff and jitter, up to a
//!   bound ([`RemoteOptions::retries`]); every operation has a time limit
//!   ([`RemoteOptions::timeout`]). Permanent failures (403, a missing
//!   bucket, bad credentials, a host key that does not match) fail at once.
//! * **Errors** keep OpenDAL's verdict (not found, permission, transient,
//!   permanent) as a [`BackendErrorKind`] and name the object; credentials
//!   never appear in them, nor in [`Backend::location`].
//!
//! The backend is synchronous, as the [`Backend`] trait is: it owns a small
//! tokio runtime and blocks on each operation, from any number of threads.

use std::time::Duration;

use opendal::layers::{RetryLayer, TimeoutLayer};
use opendal::{ErrorKind as OdErrorKind, Operator};

use super::object_lock::{BucketAdmin, Retention};
use super::{check_name, is_object_name, Backend, FileInfo, FileType, Interrupted};
use crate::error::{BackendError, BackendErrorKind, BackendOp, Error, Result};

/// The smallest range an S3 read asks for (see [`RemoteBackend`]'s
/// `read_range`).
const MIN_RANGE: u64 = 64 << 10;

/// Sorts after every pack's key (`data/xx/…`, hex digits) and before
/// `index/`.
const PACKS_END: &str = "data/~";

/// Which protocol a remote repository speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// An S3-compatible object store.
    S3,
    /// An SFTP server.
    Sftp,
}

/// How patient a remote backend is.
#[derive(Clone, Debug)]
pub struct RemoteOptions {
    /// Time limit of one attempt at a request that moves no data (stat,
    /// list, delete), of making a connection (at most 10 s of it), and of
    /// a silence while receiving; an attempt that moves an object's data
    /// gets ten times as long in all.
    pub timeout: Duration,
    /// Retries of a transient failure.
    pub retries: usize,
}

impl RemoteOptions {
    /// Time limit of connecting.
    pub fn connect_timeout(&self) -> Duration {
        self.timeout.min(Duration::from_secs(10))
    }

    /// Time limit of one attempt at moving an object's data.
    pub fn io_timeout(&self) -> Duration {
        self.timeout * 10
    }
}

impl Default for RemoteOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            retries: 4,
        }
    }
}

/// A repository in an object store or on an SFTP server.
pub struct RemoteBackend {
    op: Operator,
    rt: tokio::runtime::Runtime,
    protocol: Protocol,
    location: String,
    /// The known hosts file an SFTP host key message names.
    known_hosts_shown: String,
    /// An SFTP account that may not rename or delete (`sftp.append-only`):
    /// objects are written under their own names, and deletes are refused
    /// without asking the server.
    append_only: bool,
    /// Who reads and sets the bucket's Object Lock retention (S3).
    bucket_admin: Option<(BucketAdmin, reqwest::Client)>,
}

impl std::fmt::Debug for RemoteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteBackend")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

/// The causes of an OpenDAL error on one line: its message, then each
/// source not already said (ssh's multi-line banners reduced to their last
/// lines), at most 400 characters.
fn causes(e: &opendal::Error) -> String {
    let mut parts = vec![e.message().to_string()];
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        let text = if text.contains('\n') {
            let lines: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('@'))
                .collect();
            lines[lines.len().saturating_sub(2)..].join(" ")
        } else {
            text
        };
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    if parts.iter().all(String::is_empty) {
        // A response without a body (to a HEAD request): its status.
        let full = e.to_string();
        if let Some(i) = full.find("status: ") {
            let status: String = full[i + 8..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            parts = vec![format!("HTTP status {status}")];
        } else {
            parts = vec![e.kind().to_string()];
        }
    }
    let line = parts.join(": ").replace(['\r', '\n'], " ");
    let mut out: String = line.chars().take(400).collect();
    if out.len() < line.len() {
        out.push('…');
    }
    out
}

/// `field: "value"` out of a debug-printed S3 error.
fn s3_field<'a>(message: &'a str, field: &str) -> Option<&'a str> {
    let start = message.find(&format!("{field}: \""))? + field.len() + 3;
    let len = message[start..].find('"')?;
    Some(&message[start..start + len])
}

/// Turns an OpenDAL error into a backend error about `object`: what it
/// means ([`BackendErrorKind`]) and a one-line account of the cause.
fn backend_error(
    protocol: Protocol,
    known_hosts: &str,
    op: BackendOp,
    object: &str,
    e: &opendal::Error,
) -> Error {
    let all = causes(e);
    let mut kind = match e.kind() {
        OdErrorKind::NotFound => BackendErrorKind::NotFound,
        OdErrorKind::PermissionDenied => BackendErrorKind::PermissionDenied,
        OdErrorKind::RangeNotSatisfied => BackendErrorKind::OutOfRange,
        OdErrorKind::RateLimited => BackendErrorKind::Transient,
        _ if e.is_temporary() => BackendErrorKind::Transient,
        _ => BackendErrorKind::Permanent,
    };
    let mut detail = all.clone();
    if let Some(code) = s3_field(e.message(), "code") {
        let said = s3_field(e.message(), "message").unwrap_or("");
        let what = format!("{code}: {said}");
        (kind, detail) = match code {
            "NoSuchBucket" => (
                BackendErrorKind::Permanent,
                format!("the bucket does not exist ({what})"),
            ),
            "AccessDenied"
            | "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "InvalidToken"
            | "ExpiredToken"
            | "InvalidSecurity" => (
                BackendErrorKind::PermissionDenied,
                format!("the storage refused the credentials or the access ({what})"),
            ),
            "AuthorizationHeaderMalformed"
            | "AuthorizationQueryParametersError"
            | "IllegalLocationConstraintException"
            | "PermanentRedirect" => (
                BackendErrorKind::Permanent,
                format!("the requests are signed for another region than the storage's ({what})"),
            ),
            "SlowDown" | "InternalError" | "ServiceUnavailable" | "RequestTimeout" => {
                (BackendErrorKind::Transient, what)
            }
            // AWS says InvalidRequest, moto its own code; both name Object
            // Lock and Content-MD5.
            _ if said.contains("Object Lock") || code.contains("ObjectLock") => (
                BackendErrorKind::PermissionDenied,
                format!(
                    "the bucket has S3 Object Lock with a default retention, whose writes need a \
                     checksum: add -o s3.object-lock=true ({what})"
                ),
            ),
            _ => (kind, what),
        };
    } else if protocol == Protocol::S3
        && op == BackendOp::Read
        && kind == BackendErrorKind::NotFound
    {
        // A real S3 store answers a GET of a missing object with NoSuchKey
        // (a HEAD has no body); a bare 404 comes from something else at
        // that address (a web server, a proxy).
        kind = BackendErrorKind::Permanent;
        detail = "the endpoint answered 404 Not Found without an S3 error, so it is not an S3 store (or not at that address)".to_string();
    } else if all.contains("Host key verification failed") || all.contains("host key") {
        kind = BackendErrorKind::Permanent;
        detail = host_key_detail(&all, known_hosts);
    } else if all.contains("Permission denied (") {
        kind = BackendErrorKind::PermissionDenied;
        detail = format!("the server refused the ssh login: {all}");
    } else if [
        "Connection refused",
        "connect",
        "timed out",
        "timeout",
        "No route",
        "resolve",
        "reset",
    ]
    .iter()
    .any(|w| all.contains(w))
        && kind != BackendErrorKind::NotFound
    {
        kind = BackendErrorKind::Transient;
        detail = format!("cannot reach the storage: {all}");
    } else if kind == BackendErrorKind::PermissionDenied {
        detail = format!("permission denied: {all}");
    }
    BackendError::new(kind, op, object, detail).into()
}

/// What ssh's refusal of a host key means: a host known_hosts has no key
/// for (first contact: check the key, then record it), or one whose key
/// changed since it was recorded (a reinstalled server, or someone in
/// between).
fn host_key_detail(all: &str, known_hosts: &str) -> String {
    if all.contains("HAS CHANGED") || all.contains("has changed") {
        return format!(
            "the server's host key changed since {known_hosts} recorded it (a reinstalled server, or someone in between): {all}"
        );
    }
    // "No ED25519 host key is known for [127.0.0.1]:2222 and you have
    // requested strict checking."
    if let Some(host) = all
        .split_once("host key is known for ")
        .and_then(|(_, rest)| rest.split_once(" and "))
        .map(|(host, _)| host)
    {
        let scan = match host.strip_prefix('[').and_then(|h| h.split_once("]:")) {
            Some((h, port)) => format!("ssh-keyscan -p {port} {h}"),
            None => format!("ssh-keyscan {host}"),
        };
        return format!(
            "the server's host key is unknown: {known_hosts} has no key for {host} (first contact: compare `{scan}` with the key the server's owner gives, then `{scan} >> {known_hosts}`)"
        );
    }
    format!("the server's host key is not the one known for it: {all}")
}

impl RemoteBackend {
    /// A backend over an OpenDAL operator (built by `choose`); `location`
    /// names it in messages and holds no secret.
    pub fn new(
        op: Operator,
        protocol: Protocol,
        location: String,
        opts: &RemoteOptions,
    ) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("litevault-remote")
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("starting the network runtime: {e}")))?;
        let op = match protocol {
            Protocol::S3 => {
                let client = reqwest::Client::builder()
                    .connect_timeout(opts.connect_timeout())
                    // A response that stops coming for this long failed,
                    // however long the whole transfer may take.
                    .read_timeout(opts.timeout)
                    .tcp_nodelay(true)
                    .build()
                    .map_err(|e| Error::Internal(format!("making the HTTP client: {e}")))?;
                let transport = opendal::HttpTransporter::new(
                    opendal_http_transport_reqwest::ReqwestTransport::new(client),
                );
                let ctx = op.context().with_http_transport(transport);
                op.with_context(ctx)
            }
            Protocol::Sftp => op,
        };
        let op = op
            .layer(
                TimeoutLayer::new()
                    .with_timeout(opts.timeout)
                    .with_io_timeout(opts.io_timeout()),
            )
            .layer(
                RetryLayer::new()
                    .with_jitter()
                    .with_factor(2.0)
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_delay(Duration::from_secs(5))
                    .with_max_times(opts.retries),
            );
        Ok(Self {
            op,
            rt,
            protocol,
            location,
            known_hosts_shown: "~/.ssh/known_hosts".to_string(),
            append_only: false,
            bucket_admin: None,
        })
    }

    /// Reads and sets the Object Lock retention of an S3 bucket as
    /// `admin` (SPEC.md 11.2).
    pub fn with_bucket_admin(mut self, admin: BucketAdmin, opts: &RemoteOptions) -> Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(opts.connect_timeout())
            .timeout(opts.timeout)
            .build()
            .map_err(|e| Error::Internal(format!("making the HTTP client: {e}")))?;
        self.bucket_admin = Some((admin, client));
        Ok(self)
    }

    /// Treats the SFTP account as append-only (SPEC.md 11.1): it may
    /// create files but not rename, delete or overwrite them.
    #[must_use]
    pub fn with_append_only(mut self, on: bool) -> Self {
        self.append_only = on;
        self
    }

    /// Names `file` as the known hosts file in host key messages (the
    /// one `sftp.known-hosts-file` gave).
    #[must_use]
    pub fn with_known_hosts_shown(mut self, file: String) -> Self {
        self.known_hosts_shown = file;
        self
    }

    /// A failure of `op` on `object` as litevault says it.
    fn error(&self, op: BackendOp, object: &str, e: &opendal::Error) -> Error {
        backend_error(self.protocol, &self.known_hosts_shown, op, object, e)
    }

    fn block<T>(
        &self,
        f: impl std::future::IntoFuture<Output = opendal::Result<T>>,
    ) -> opendal::Result<T> {
        self.rt.block_on(f.into_future())
    }

    /// An object as messages name it: `index/3fa2… in s3:http://…`.
    fn object(&self, ty: FileType, name: &str) -> String {
        format!("{} in {}", ty.describe(name), self.location)
    }

    fn put(&self, path: &str, data: &[u8], ty: FileType, name: &str) -> Result<()> {
        let object = self.object(ty, name);
        match self.protocol {
            Protocol::S3 => self
                .block(self.op.write(path, data.to_vec()))
                .map(|_| ())
                .map_err(|e| self.error(BackendOp::Write, &object, &e)),
            Protocol::Sftp if self.append_only => {
                // Written under its own name: the account can neither
                // rename nor delete. A broken upload leaves a short
                // object, which readers refuse (it is authenticated) and
                // `check` names; prune on a full host removes it.
                match self.block(self.op.write(path, data.to_vec())) {
                    Ok(_) => Ok(()),
                    Err(_) if self.already_there(path, data, ty) => Ok(()),
                    Err(e) => Err(self.error(BackendOp::Write, &object, &e)),
                }
            }
            Protocol::Sftp => {
                // Uploaded whole under a temporary name, then renamed: a
                // broken upload never shows under the object's name.
                let tmp = temp_path(path, name);
                self.block(self.op.write(&tmp, data.to_vec()))
                    .map_err(|e| self.error(BackendOp::Write, &object, &e))?;
                match self.block(self.op.rename(&tmp, path)) {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        let there = self.already_there(path, data, ty);
                        let _ = self.block(self.op.delete(&tmp));
                        if there {
                            Ok(())
                        } else if e.kind() == OdErrorKind::PermissionDenied {
                            Err(BackendError::new(
                                BackendErrorKind::PermissionDenied,
                                BackendOp::Write,
                                &object,
                                "permission denied: the server refuses to rename the uploaded \
                                 file into place; for an append-only account, add \
                                 -o sftp.append-only=true",
                            )
                            .into())
                        } else {
                            Err(self.error(BackendOp::Write, &object, &e))
                        }
                    }
                }
            }
        }
    }

    /// True if an object other than the config is already stored under
    /// `path` with `data`'s length: content-addressed, so these very bytes.
    fn already_there(&self, path: &str, data: &[u8], ty: FileType) -> bool {
        ty != FileType::Config
            && self
                .block(self.op.stat(path))
                .is_ok_and(|m| m.content_length() == data.len() as u64)
    }

    fn list_dir(&self, dir: &str, ty: FileType) -> Result<Vec<FileInfo>> {
        let object = format!("{}/ in {}", ty.dir(), self.location);
        let entries = match self.block(self.op.list_with(dir).recursive(true)) {
            Ok(e) => e,
            Err(e) if e.kind() == OdErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.error(BackendOp::List, &object, &e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let name = entry.name();
            if entry.metadata().is_file() && is_object_name(name) {
                out.push(FileInfo {
                    name: name.to_string(),
                    size: entry.metadata().content_length(),
                    modified: entry.metadata().last_modified().map(Into::into),
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

/// Why an append-only SFTP account deletes nothing.
const APPEND_ONLY: &str =
    "the repository is opened append-only (sftp.append-only=true), which cannot delete";

/// A delete an append-only account may not make, refused here; commands
/// that delete were refused before they began (`Repository::lock`), so
/// this is the backstop of a path that deletes one object.
fn append_only_refusal(object: &str) -> Error {
    super::delete_refused(object, "removing this object", APPEND_ONLY)
}

/// The file that holds an SFTP repository's reserve of space.
const RESERVE: &str = ".reserve";

/// `dir/.tmp-<name>-<random>` beside `path`.
fn temp_path(path: &str, name: &str) -> String {
    let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
    let tmp = format!(".tmp-{name}-{}", crate::sys::random_hex(8));
    if dir.is_empty() {
        tmp
    } else {
        format!("{dir}/{tmp}")
    }
}

impl Backend for RemoteBackend {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn create(&self) -> Result<()> {
        let location = self.location.clone();
        let fail = |e: &opendal::Error| self.error(BackendOp::Create, &location, e);
        // A GET, not a HEAD: an error response then says why.
        match self.block(self.op.read("config")) {
            Ok(_) => {
                return Err(Error::AlreadyExists {
                    location,
                    reason: "a repository already exists there".into(),
                })
            }
            Err(e) if e.kind() == OdErrorKind::NotFound => {}
            Err(e) => return Err(fail(&e)),
        }
        let anything = match self.block(self.op.list_with("/").limit(2)) {
            Ok(entries) => entries
                .into_iter()
                .any(|e| !e.path().is_empty() && e.path() != "/"),
            Err(e) if e.kind() == OdErrorKind::NotFound => false,
            Err(e) => return Err(fail(&e)),
        };
        if anything {
            return Err(Error::AlreadyExists {
                location,
                reason: "it is not empty".into(),
            });
        }
        if self.protocol == Protocol::Sftp {
            // Every directory an object will go in is made now, pack
            // fan-out included: a server that refuses `mkdir` later (an
            // append-only account, SPEC.md 11) still takes every write.
            let dirs = FileType::ALL
                .into_iter()
                .filter(|ty| *ty != FileType::Config)
                .map(|ty| format!("{}/", ty.dir()))
                .chain((0..=255u8).map(|i| format!("data/{i:02x}/")));
            for dir in dirs {
                self.block(self.op.create_dir(&dir)).map_err(|e| fail(&e))?;
                // The SFTP client takes every refusal to create a
                // directory for "it exists": check that it does.
                if self.block(self.op.stat(&dir)).is_err() {
                    return Err(BackendError::new(
                        BackendErrorKind::PermissionDenied,
                        BackendOp::Create,
                        &location,
                        format!("permission denied: the server did not create the directory {dir}"),
                    )
                    .into());
                }
            }
        }
        Ok(())
    }

    fn write(&self, ty: FileType, name: &str, data: &[u8]) -> Result<()> {
        check_name(ty, name, BackendOp::Write)?;
        self.put(&ty.path(name), data, ty, name)
    }

    fn read(&self, ty: FileType, name: &str) -> Result<Vec<u8>> {
        check_name(ty, name, BackendOp::Read)?;
        self.block(self.op.read(&ty.path(name)))
            .map(|b| b.to_vec())
            .map_err(|e| self.error(BackendOp::Read, &self.object(ty, name), &e))
    }

    fn read_range(&self, ty: FileType, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        check_name(ty, name, BackendOp::Read)?;
        let object = self.object(ty, name);
        let end = offset.checked_add(len).ok_or_else(|| {
            Error::from(BackendError::new(
                BackendErrorKind::OutOfRange,
                BackendOp::Read,
                &object,
                "the range does not fit in 64 bits",
            ))
        })?;
        if len == 0 {
            return Ok(Vec::new());
        }
        let path = ty.path(name);
        // A small range is widened backwards to MIN_RANGE (it ends where it
        // ended, so it never runs past the object): a response smaller than
        // a TCP segment can wait for the server's Nagle timer (40 ms on
        // loopback with Garage, below 64 KiB), which costs more than the
        // extra bytes.
        let start = if self.protocol == Protocol::S3 && len < MIN_RANGE {
            end.saturating_sub(MIN_RANGE)
        } else {
            offset
        };
        let bytes = match self.block(self.op.read_with(&path).range(start..end)) {
            Ok(b) => {
                let mut v = b.to_vec();
                let skip = usize::try_from(offset - start).unwrap_or(usize::MAX);
                if skip > 0 && v.len() > skip {
                    v.drain(..skip);
                } else if skip > 0 {
                    v.clear();
                }
                v
            }
            Err(e) => {
                let err = self.error(BackendOp::Read, &object, &e);
                // A range past the end: the store answers with what there
                // is (or 416), which must read as a truncated object.
                if matches!(&err, Error::Backend(b) if matches!(b.kind, BackendErrorKind::Permanent | BackendErrorKind::OutOfRange))
                {
                    if let Ok(m) = self.block(self.op.stat(&path)) {
                        if m.content_length() < end {
                            return Err(BackendError::new(
                                BackendErrorKind::OutOfRange,
                                BackendOp::Read,
                                object,
                                format!(
                                    "truncated: bytes {offset}..{end} requested, the object has {}",
                                    m.content_length()
                                ),
                            )
                            .into());
                        }
                    }
                }
                return Err(err);
            }
        };
        if bytes.len() as u64 != len {
            return Err(BackendError::new(
                BackendErrorKind::OutOfRange,
                BackendOp::Read,
                object,
                format!(
                    "truncated: bytes {offset}..{end} requested, {} returned",
                    bytes.len()
                ),
            )
            .into());
        }
        Ok(bytes)
    }

    fn size(&self, ty: FileType, name: &str) -> Result<u64> {
        check_name(ty, name, BackendOp::Stat)?;
        self.block(self.op.stat(&ty.path(name)))
            .map(|m| m.content_length())
            .map_err(|e| self.error(BackendOp::Stat, &self.object(ty, name), &e))
    }

    fn list(&self, ty: FileType) -> Result<Vec<FileInfo>> {
        if ty == FileType::Config {
            return match self.block(self.op.stat("config")) {
                Ok(m) => Ok(vec![FileInfo {
                    name: "config".into(),
                    size: m.content_length(),
                    modified: m.last_modified().map(Into::into),
                }]),
                Err(e) if e.kind() == OdErrorKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(self.error(
                    BackendOp::List,
                    &self.object(FileType::Config, "config"),
                    &e,
                )),
            };
        }
        self.list_dir(&format!("{}/", ty.dir()), ty)
    }

    fn list_many(&self, types: &[FileType]) -> Result<Vec<Vec<FileInfo>>> {
        if !self.lists_together()
            || types
                .iter()
                .any(|t| matches!(t, FileType::Pack | FileType::Config))
        {
            return types.iter().map(|ty| self.list(*ty)).collect();
        }
        // Keys sort as config < data/ < index/ < keys/ < locks/ <
        // snapshots/: everything after the packs, in one listing.
        let object = format!("the objects in {}", self.location);
        let entries = match self.block(
            self.op
                .list_with("/")
                .recursive(true)
                .start_after(PACKS_END),
        ) {
            Ok(e) => e,
            Err(e) if e.kind() == OdErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(self.error(BackendOp::List, &object, &e)),
        };
        let mut out = vec![Vec::new(); types.len()];
        for entry in entries {
            let Some((dir, name)) = entry.path().split_once('/') else {
                continue;
            };
            if !entry.metadata().is_file() || !is_object_name(name) {
                continue;
            }
            if let Some(i) = types.iter().position(|t| t.dir() == dir) {
                out[i].push(FileInfo {
                    name: name.to_string(),
                    size: entry.metadata().content_length(),
                    modified: entry.metadata().last_modified().map(Into::into),
                });
            }
        }
        for v in &mut out {
            v.sort_by(|a, b| a.name.cmp(&b.name));
        }
        Ok(out)
    }

    fn lists_together(&self) -> bool {
        self.protocol == Protocol::S3
    }

    fn read_parallelism(&self) -> usize {
        // Reads wait on the network far more than on the cores.
        8
    }

    fn list_requests(&self, objects: usize) -> u64 {
        match self.protocol {
            // ListObjectsV2 answers at most 1000 keys per request.
            Protocol::S3 => objects.div_ceil(1000).max(1) as u64,
            Protocol::Sftp => 1,
        }
    }

    fn refuses_deletes(&self) -> Option<String> {
        self.append_only.then(|| APPEND_ONLY.to_string())
    }

    fn object_lock(&self) -> Result<Option<Retention>> {
        match &self.bucket_admin {
            Some((admin, client)) => self.rt.block_on(admin.retention(client)),
            None => Ok(None),
        }
    }

    fn set_object_lock(&self, retention: Retention) -> Result<()> {
        match &self.bucket_admin {
            Some((admin, client)) => self.rt.block_on(admin.set_retention(client, retention)),
            None if self.protocol == Protocol::S3 => Err(Error::InvalidInput(format!(
                "{}: Object Lock needs -o s3.object-lock=true",
                self.location
            ))),
            None => Err(Error::InvalidInput(format!(
                "{} is not an S3 bucket: Object Lock is an S3 feature (for SFTP, give the host an append-only account: README, \"On SFTP\")",
                self.location
            ))),
        }
    }

    fn remove(&self, ty: FileType, name: &str) -> Result<()> {
        check_name(ty, name, BackendOp::Delete)?;
        if self.append_only {
            return Err(append_only_refusal(&self.object(ty, name)));
        }
        match self.block(self.op.delete(&ty.path(name))) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == OdErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.error(BackendOp::Delete, &self.object(ty, name), &e)),
        }
    }

    fn reserve(&self, bytes: u64) -> Result<()> {
        // An object store does not fill up; an SFTP server's disk does.
        if self.protocol != Protocol::Sftp {
            return Ok(());
        }
        let zeros = vec![0u8; usize::try_from(bytes).unwrap_or(usize::MAX).min(64 << 20)];
        self.block(self.op.write(RESERVE, zeros))
            .map(|_| ())
            .map_err(|e| self.error(BackendOp::Write, RESERVE, &e))
    }

    fn release_reserve(&self) -> Result<bool> {
        if self.protocol != Protocol::Sftp {
            return Ok(false);
        }
        let there = self.block(self.op.stat(RESERVE)).is_ok();
        if there {
            self.block(self.op.delete(RESERVE))
                .map_err(|e| self.error(BackendOp::Delete, RESERVE, &e))?;
        }
        Ok(there)
    }

    fn list_leftovers(&self) -> Result<Vec<super::Leftover>> {
        // Only SFTP uploads under temporary names.
        if self.protocol != Protocol::Sftp {
            return Ok(Vec::new());
        }
        let object = format!("the temporary files in {}", self.location);
        let entries = match self.block(self.op.list_with("/").recursive(true)) {
            Ok(e) => e,
            Err(e) if e.kind() == OdErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.error(BackendOp::List, &object, &e)),
        };
        Ok(entries
            .into_iter()
            .filter(|e| e.metadata().is_file() && super::is_leftover_name(e.name()))
            .map(|e| super::Leftover {
                path: e.path().trim_start_matches('/').to_string(),
                size: e.metadata().content_length(),
                modified: e
                    .metadata()
                    .last_modified()
                    .map(std::time::SystemTime::from),
            })
            .collect())
    }

    fn remove_leftover(&self, path: &str) -> Result<()> {
        super::check_leftover_path(path)?;
        if self.append_only {
            return Err(append_only_refusal(path));
        }
        match self.block(self.op.delete(path)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == OdErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.error(BackendOp::Delete, path, &e)),
        }
    }

    fn leave_interrupted_write(&self, ty: FileType, name: &str, data: &[u8], _how: Interrupted) {
        // An interrupted S3 upload leaves nothing; an SFTP one its
        // temporary file.
        if self.protocol == Protocol::Sftp {
            let _ = self.block(
                self.op
                    .write(&temp_path(&ty.path(name), name), data.to_vec()),
            );
        }
    }
}
