//! From a location string (and `key=value` options) to a backend.
//!
//! A location is what a user types after `--repo`:
//!
//! * a path (`/srv/backup`, `backups/app`) or `file:PATH`: a local
//!   directory;
//! * `s3:http://HOST:PORT/BUCKET/PREFIX` or `s3:https://…`: an S3-compatible
//!   store at that endpoint, path-style; `s3://BUCKET/PREFIX`: the endpoint
//!   comes from `AWS_ENDPOINT_URL` or the option `s3.endpoint` (else AWS);
//! * `sftp:USER@HOST:/PATH`, `sftp:USER@HOST:PORT:/PATH` or
//!   `sftp://USER@HOST:PORT/PATH`: a directory on an SFTP server, reached
//!   with the usual ssh configuration (keys, known hosts).
//!
//! Credentials never go in a location: S3 takes the standard variables
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//! `AWS_DEFAULT_REGION`/`AWS_REGION`, `AWS_ENDPOINT_URL`), SFTP the ssh
//! agent and key files. Strings that look like they name a scheme this
//! build does not know are refused rather than taken for a relative
//! directory of that name.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::counting::CountingBackend;
use super::local::LocalBackend;
use super::object_lock::BucketAdmin;
use super::remote::{Protocol, RemoteBackend, RemoteOptions};
use super::ssh_hosts::SshHosts;
use super::Backend;
use crate::error::{Error, Result};

/// Where a repository lives.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Location {
    /// A local directory.
    Local(PathBuf),
    /// An S3-compatible object store.
    S3 {
        /// `http(s)://host[:port]`, or `None` for `AWS_ENDPOINT_URL` / AWS.
        endpoint: Option<String>,
        /// The bucket.
        bucket: String,
        /// The key prefix inside it (may be empty).
        prefix: String,
    },
    /// A directory on an SFTP server.
    Sftp {
        /// The user, if given.
        user: Option<String>,
        /// The host.
        host: String,
        /// The port, if not 22.
        port: Option<u16>,
        /// The directory.
        path: String,
    },
}

/// Options of remote backends, as `-o key=value` gives them.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct BackendOptions(pub BTreeMap<String, String>);

/// The option keys, with what they mean.
pub const OPTION_KEYS: &[(&str, &str)] = &[
    ("s3.region", "the S3 region (default: AWS_DEFAULT_REGION, AWS_REGION, else us-east-1)"),
    ("s3.endpoint", "the S3 endpoint for s3://BUCKET locations (default: AWS_ENDPOINT_URL)"),
    ("s3.virtual-host", "true for virtual-host style requests (default: path style)"),
    ("s3.object-lock", "true for a bucket with S3 Object Lock and a default retention: every write carries the Content-MD5 such a bucket requires, and prune reads the retention (default false)"),
    ("sftp.key", "an ssh private key file (default: the ssh configuration's)"),
    ("sftp.known-hosts", "strict (default: only a recorded key), accept (an unknown host's key for this run, recorded nowhere) or add (and recorded in the known hosts file); a changed key is always refused"),
    ("sftp.known-hosts-file", "the known hosts file to check (and, with add, to record in) instead of ~/.ssh/known_hosts"),
    ("sftp.ssh-config", "an ssh configuration file read instead of ~/.ssh/config (ssh -F)"),
    ("sftp.append-only", "true for an account the server lets create files but not rename, delete or overwrite them: objects are written under their own names and deletes are refused (default false)"),
    ("timeout", "time limit of one attempt at a storage request (default 30s; connecting gets at most 10s, moving data ten times as long)"),
    ("retries", "retries of a transient failure (default 4)"),
];

impl BackendOptions {
    /// Parses `key=value` strings, refusing unknown keys.
    pub fn parse<S: AsRef<str>>(pairs: &[S]) -> Result<Self> {
        let mut map = BTreeMap::new();
        for p in pairs {
            let p = p.as_ref();
            let (k, v) = p.split_once('=').ok_or_else(|| {
                Error::option("options", format!("option {p:?} is not key=value"))
            })?;
            if !OPTION_KEYS.iter().any(|(key, _)| *key == k) {
                let known: Vec<&str> = OPTION_KEYS.iter().map(|(k, _)| *k).collect();
                return Err(Error::option(
                    "options",
                    format!("unknown option {k:?}: the options are {}", known.join(", ")),
                ));
            }
            map.insert(k.to_string(), v.to_string());
        }
        Ok(Self(map))
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// The value of `key`, which must be one of `allowed`.
    fn choice(&self, key: &str, allowed: &[&'static str]) -> Result<Option<&'static str>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        allowed
            .iter()
            .find(|a| **a == v)
            .map(|a| Some(*a))
            .ok_or_else(|| {
                Error::option(
                    "options",
                    format!("option {key}={v:?}: give {}", allowed.join(" or ")),
                )
            })
    }

    fn remote(&self) -> Result<RemoteOptions> {
        let mut o = RemoteOptions::default();
        if let Some(t) = self.get("timeout") {
            o.timeout = crate::sys::parse_duration(t)
                .ok()
                .filter(|d| (Duration::from_secs(1)..=Duration::from_secs(3600)).contains(d))
                .ok_or_else(|| {
                    Error::option("options", format!("option timeout={t:?}: give 1s to 1h"))
                })?;
        }
        if let Some(r) = self.get("retries") {
            o.retries = r.parse().ok().filter(|n| *n <= 20).ok_or_else(|| {
                Error::option("options", format!("option retries={r:?}: give 0 to 20"))
            })?;
        }
        Ok(o)
    }
}

fn env(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.is_empty())
}

impl Location {
    /// Parses a location string.
    pub fn parse(s: &str) -> Result<Self> {
        if s.is_empty() {
            return Err(Error::InvalidInput(
                "the repository location is empty".into(),
            ));
        }
        if let Some(path) = s.strip_prefix("file://") {
            return Ok(Location::Local(PathBuf::from(path)));
        }
        if let Some(path) = s.strip_prefix("file:") {
            return Ok(Location::Local(PathBuf::from(path)));
        }
        if let Some(rest) = s.strip_prefix("s3:") {
            return parse_s3(s, rest);
        }
        if let Some(rest) = s.strip_prefix("sftp:") {
            return parse_sftp(s, rest);
        }
        if let Some(scheme) = scheme_of(s) {
            return Err(Error::InvalidInput(format!(
                "repository location {s:?} has the unknown scheme {scheme:?}: give a directory path, file:PATH, s3:http(s)://HOST/BUCKET/PREFIX, s3://BUCKET/PREFIX or sftp:USER@HOST:/PATH (write ./{s} for a local directory with a colon in its name)"
            )));
        }
        Ok(Location::Local(PathBuf::from(s)))
    }

    /// True for a repository off this machine (worth a local cache).
    pub fn is_remote(&self) -> bool {
        !matches!(self, Location::Local(_))
    }

    /// A backend for the existing repository at this location; a local
    /// one fails if nothing is there.
    pub fn open(&self, options: &BackendOptions) -> Result<Arc<dyn Backend>> {
        match self {
            Location::Local(p) => Ok(Arc::new(CountingBackend::new(Arc::new(
                LocalBackend::open(p)?,
            )))),
            _ => self.remote(options),
        }
    }

    /// A backend for a repository to be created at this location.
    pub fn for_init(&self, options: &BackendOptions) -> Result<Arc<dyn Backend>> {
        match self {
            Location::Local(p) => Ok(Arc::new(CountingBackend::new(Arc::new(LocalBackend::new(
                p,
            ))))),
            _ => self.remote(options),
        }
    }

    fn remote(&self, options: &BackendOptions) -> Result<Arc<dyn Backend>> {
        let opts = options.remote()?;
        let location = self.to_string();
        let bad = |e: opendal::Error| {
            Error::InvalidInput(format!("repository location {location}: {}", e.message()))
        };
        let backend = match self {
            Location::Local(_) => unreachable!("local locations are opened above"),
            Location::S3 {
                endpoint,
                bucket,
                prefix,
            } => s3_remote(
                bucket,
                prefix,
                endpoint.as_deref(),
                options,
                &opts,
                location,
            )?,
            Location::Sftp {
                user,
                host,
                port,
                path,
            } => {
                let endpoint = match port {
                    Some(p) => format!("ssh://{host}:{p}"),
                    None => format!("ssh://{host}"),
                };
                let mut b = opendal::services::Sftp::default()
                    .endpoint(&endpoint)
                    .root(path);
                if let Some(u) = user {
                    b = b.user(u);
                }
                if let Some(k) = options.get("sftp.key") {
                    b = b.key(k);
                }
                let hosts = SshHosts::new(
                    options.choice("sftp.known-hosts", &["strict", "accept", "add"])?,
                    options.get("sftp.known-hosts-file"),
                    options.get("sftp.ssh-config"),
                )?;
                b = b.known_hosts_strategy(hosts.strategy);
                if let Some(files) = &hosts.known_hosts_files {
                    b = b.user_known_hosts_file(files);
                }
                if let Some(c) = &hosts.ssh_config {
                    b = b.config_file(c);
                }
                let op = opendal::Operator::new(b).map_err(bad)?;
                RemoteBackend::new(op, Protocol::Sftp, location, &opts)?
                    .with_known_hosts_shown(hosts.known_hosts_shown)
                    .with_append_only(
                        options.choice("sftp.append-only", &["false", "true"])? == Some("true"),
                    )
            }
        };
        Ok(Arc::new(CountingBackend::new(Arc::new(backend))))
    }
}

/// `s` with any `user:password@` part of it replaced, for messages.
fn redact(s: &str) -> String {
    match (s.find("//").map(|i| i + 2), s.rfind('@')) {
        (Some(start), Some(at)) if at > start && s[start..at].contains(':') => {
            format!("{}***{}", &s[..start], &s[at..])
        }
        (None, Some(at)) => match s[..at].rfind(':') {
            Some(colon) if s[..colon].contains(':') => format!("{}:***{}", &s[..colon], &s[at..]),
            _ => s.to_string(),
        },
        _ => s.to_string(),
    }
}

fn parse_s3(whole: &str, rest: &str) -> Result<Location> {
    let whole = &redact(whole);
    let bad = |why: &str| {
        Error::InvalidInput(format!(
            "repository location {whole:?}: {why}; write s3:http(s)://HOST[:PORT]/BUCKET[/PREFIX] or s3://BUCKET[/PREFIX]"
        ))
    };
    let (endpoint, path) = if let Some(r) = rest.strip_prefix("//") {
        (None, r)
    } else if let Some(r) = rest
        .strip_prefix("http://")
        .map(|r| ("http", r))
        .or_else(|| rest.strip_prefix("https://").map(|r| ("https", r)))
    {
        let (scheme, r) = r;
        let (host, path) = r
            .split_once('/')
            .ok_or_else(|| bad("no bucket after the endpoint"))?;
        if host.contains('@') {
            return Err(bad("credentials do not go in the location: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"));
        }
        if host.is_empty() {
            return Err(bad("no host in the endpoint"));
        }
        (Some(format!("{scheme}://{host}")), path)
    } else {
        return Err(bad("unknown form"));
    };
    let path = path.trim_matches('/');
    let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
    if bucket.is_empty()
        || !bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return Err(bad("the bucket name is missing or not a valid bucket name"));
    }
    Ok(Location::S3 {
        endpoint,
        bucket: bucket.to_string(),
        prefix: prefix.trim_matches('/').to_string(),
    })
}

fn parse_sftp(whole: &str, rest: &str) -> Result<Location> {
    let whole = &redact(whole);
    let bad = |why: &str| {
        Error::InvalidInput(format!(
            "repository location {whole:?}: {why}; write sftp:USER@HOST:/PATH, sftp:USER@HOST:PORT:/PATH or sftp://USER@HOST[:PORT]/PATH"
        ))
    };
    // `user:password@host:…`: the part before an `@` has a colon and no
    // slash (a path may hold `@` and colons, after a slash).
    if let Some((before, _)) = rest.trim_start_matches('/').split_once('@') {
        if before.contains(':') && !before.contains('/') {
            return Err(bad("passwords do not go in the location: use an ssh key"));
        }
    }
    let (authority, port, path) = if let Some(r) = rest.strip_prefix("//") {
        let (auth, path) = r.split_once('/').ok_or_else(|| bad("no path"))?;
        let (auth, port) = match auth.rsplit_once(':') {
            Some((a, p)) => (a, Some(p)),
            None => (auth, None),
        };
        (auth, port, format!("/{path}"))
    } else {
        let (auth, rest) = rest
            .split_once(':')
            .ok_or_else(|| bad("no path after the host"))?;
        match rest.split_once(':') {
            Some((p, path)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                (auth, Some(p), path.to_string())
            }
            _ => (auth, None, rest.to_string()),
        }
    };
    let port = port
        .map(|p| {
            p.parse::<u16>()
                .map_err(|_| bad("the port is not a number from 1 to 65535"))
        })
        .transpose()?;
    let (user, host) = match authority.rsplit_once('@') {
        Some((u, h)) => {
            if u.contains(':') {
                return Err(bad("passwords do not go in the location: use an ssh key"));
            }
            (Some(u.to_string()), h)
        }
        None => (None, authority),
    };
    if host.is_empty() || host.contains('/') {
        return Err(bad("no host"));
    }
    if path.is_empty() {
        return Err(bad("no path"));
    }
    Ok(Location::Sftp {
        user,
        host: host.to_string(),
        port,
        path,
    })
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::S3 {
                endpoint,
                bucket,
                prefix,
            } => {
                let prefix = if prefix.is_empty() {
                    String::new()
                } else {
                    format!("/{prefix}")
                };
                match endpoint {
                    Some(e) => write!(f, "s3:{e}/{bucket}{prefix}"),
                    None => write!(f, "s3://{bucket}{prefix}"),
                }
            }
            Location::Sftp {
                user,
                host,
                port,
                path,
            } => {
                let user = user.as_ref().map(|u| format!("{u}@")).unwrap_or_default();
                match port {
                    Some(p) => write!(f, "sftp:{user}{host}:{p}:{path}"),
                    None => write!(f, "sftp:{user}{host}:{path}"),
                }
            }
        }
    }
}

/// The scheme of `s` if it starts like `scheme:` (letters, digits, `+-.`,
/// starting with a letter, at least two characters), else `None`.
fn scheme_of(s: &str) -> Option<&str> {
    let (scheme, _) = s.split_once(':')?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (scheme.len() >= 2
        && first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some(scheme)
}

/// An S3 repository location as a backend (and, with `s3.object-lock`,
/// the bucket's Object Lock configuration read and set as the same user).
fn s3_remote(
    bucket: &str,
    prefix: &str,
    endpoint: Option<&str>,
    options: &BackendOptions,
    opts: &RemoteOptions,
    location: String,
) -> Result<RemoteBackend> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let key = env("AWS_ACCESS_KEY_ID");
    let secret = env("AWS_SECRET_ACCESS_KEY");
    let (Some(key), Some(secret)) = (key, secret) else {
        return Err(Error::InvalidInput(format!(
            "no S3 credentials for {location}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )));
    };
    let region = options
        .get("s3.region")
        .map(String::from)
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .or_else(|| env("AWS_REGION"))
        .unwrap_or_else(|| "us-east-1".into());
    let endpoint = endpoint
        .map(String::from)
        .or_else(|| options.get("s3.endpoint").map(String::from))
        .or_else(|| env("AWS_ENDPOINT_URL_S3"))
        .or_else(|| env("AWS_ENDPOINT_URL"));
    let mut b = opendal::services::S3::default()
        .bucket(bucket)
        .root(&format!("/{prefix}"))
        .region(&region)
        .access_key_id(&key)
        .secret_access_key(&secret)
        .disable_config_load()
        .disable_ec2_metadata();
    if let Some(token) = env("AWS_SESSION_TOKEN") {
        b = b.session_token(&token);
    }
    if let Some(e) = &endpoint {
        b = b.endpoint(e);
    }
    if options.choice("s3.virtual-host", &["false", "true"])? == Some("true") {
        b = b.enable_virtual_host_style();
    }
    let locked = options.choice("s3.object-lock", &["false", "true"])? == Some("true");
    if locked {
        // Object Lock refuses writes without a checksum header;
        // Content-MD5 is the one every store takes (objects
        // are written in one request: SPEC.md 11).
        b = b.checksum_algorithm("md5");
    }
    let op = opendal::Operator::new(b).map_err(|e| {
        Error::InvalidInput(format!("repository location {location}: {}", e.message()))
    })?;
    let remote = RemoteBackend::new(op, Protocol::S3, location, opts)?;
    if locked {
        let admin = BucketAdmin {
            endpoint: endpoint
                .clone()
                .unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"))
                .trim_end_matches('/')
                .to_string(),
            bucket: bucket.to_string(),
            virtual_host: options.get("s3.virtual-host") == Some("true"),
            region,
            key,
            secret,
            token: env("AWS_SESSION_TOKEN"),
        };
        remote.with_bucket_admin(admin, opts)
    } else {
        Ok(remote)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(
            Location::parse("/srv/lv").unwrap(),
            Location::Local("/srv/lv".into())
        );
        assert_eq!(
            Location::parse("file:/srv/lv").unwrap(),
            Location::Local("/srv/lv".into())
        );
        assert_eq!(
            Location::parse("file:///srv/lv").unwrap(),
            Location::Local("/srv/lv".into())
        );
        assert_eq!(
            Location::parse("rel/dir").unwrap(),
            Location::Local("rel/dir".into())
        );
        assert_eq!(
            Location::parse("./odd:name").unwrap(),
            Location::Local("./odd:name".into())
        );
        for bad in ["gopher:host/x", "", "ftp://example.com/x"] {
            assert!(Location::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn remote_locations() {
        let s3 = Location::parse("s3:http://127.0.0.1:3900/bucket/some/prefix").unwrap();
        assert_eq!(
            s3,
            Location::S3 {
                endpoint: Some("http://127.0.0.1:3900".into()),
                bucket: "bucket".into(),
                prefix: "some/prefix".into()
            }
        );
        assert_eq!(
            s3.to_string(),
            "s3:http://127.0.0.1:3900/bucket/some/prefix"
        );
        assert_eq!(
            Location::parse("s3://lv-backups").unwrap(),
            Location::S3 {
                endpoint: None,
                bucket: "lv-backups".into(),
                prefix: String::new()
            }
        );
        let sftp = Location::parse("sftp:backup@db1.example:2222:/srv/lv").unwrap();
        assert_eq!(
            sftp,
            Location::Sftp {
                user: Some("backup".into()),
                host: "db1.example".into(),
                port: Some(2222),
                path: "/srv/lv".into()
            }
        );
        assert_eq!(sftp.to_string(), "sftp:backup@db1.example:2222:/srv/lv");
        assert_eq!(
            Location::parse("sftp:backup@db1:/srv/lv").unwrap(),
            Location::parse("sftp://backup@db1/srv/lv").unwrap()
        );
        for bad in [
            "s3:http://127.0.0.1:3900",
            "s3:http://key:secret@host/bucket",
            "s3:ftp://x/y",
            "s3://Bad_Bucket",
            "sftp:host",
            "sftp:user:pw@host:/x",
            "sftp:user@host:99999:/x",
            "sftp:@:/x",
        ] {
            let e = Location::parse(bad).unwrap_err().to_string();
            assert!(!e.contains("secret") && !e.contains("pw@"), "{bad}: {e}");
        }
        assert!(BackendOptions::parse(&["s3.region=garage", "timeout=5s"]).is_ok());
        assert!(BackendOptions::parse(&["s3.regoin=x"])
            .unwrap_err()
            .to_string()
            .contains("s3.region"));
        assert!(BackendOptions::parse(&["novalue"]).is_err());
    }
}
