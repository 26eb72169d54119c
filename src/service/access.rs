//! The HTTP API's settings and who may do what through it: each token has
//! a role, and a `restore` token may be limited to named databases.
//!
//! Roles, each allowing what the ones before it do:
//! * `read`: list snapshots, status, tasks, metrics;
//! * `backup`: start backups and checks;
//! * `restore`: restore into a configured database and download
//!   snapshots; with `databases`, only into those, and only their
//!   snapshots downloaded;
//! * `admin`: everything, prune and forget included (a token written as
//!   a bare string).
//!
//! A token a deploy script holds (`backup`) cannot restore over production.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use subtle::ConstantTimeEq;

/// What a token may do; each role allows what the ones before it do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// List, status, tasks, metrics.
    Read,
    /// And start backups.
    Backup,
    /// And restore and download (of its databases, if limited).
    Restore,
    /// Everything.
    Admin,
}

impl Role {
    fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "read" => Role::Read,
            "backup" => Role::Backup,
            "restore" => Role::Restore,
            "admin" => Role::Admin,
            _ => return None,
        })
    }

    /// Its name in the config.
    pub fn name(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Backup => "backup",
            Role::Restore => "restore",
            Role::Admin => "admin",
        }
    }
}

/// A bearer token the API accepts.
#[derive(Clone, Debug)]
pub struct Token {
    /// The secret the client sends.
    pub secret: String,
    /// What it may do.
    pub role: Role,
    /// With role `restore`: the configured databases it may restore into
    /// and download snapshots of (none named: every one).
    pub databases: Vec<String>,
}

/// What the token of a request may do.
#[derive(Clone, Debug)]
pub struct Grant {
    /// Its role.
    pub role: Role,
    /// The databases a `restore` token is limited to (empty: none).
    pub databases: Vec<String>,
}

impl Grant {
    /// Whether it may restore into (or download snapshots of) configured
    /// database `name`; if not, why.
    pub fn may_restore(&self, name: &str) -> std::result::Result<(), String> {
        if self.role < Role::Restore {
            return Err(format!(
                "this token's role is {}: restoring and downloading need a restore or admin token",
                self.role.name()
            ));
        }
        if self.role == Role::Restore
            && !self.databases.is_empty()
            && !self.databases.iter().any(|d| d == name)
        {
            return Err(format!(
                "this token may restore only into {}, not into {name:?}",
                self.databases.join(", ")
            ));
        }
        Ok(())
    }
}

/// The grant of the token `presented`, if a configured token matches it.
/// Every token is compared, each in constant time.
pub fn grant(tokens: &[Token], presented: &str) -> Option<Grant> {
    let given = blake3::hash(presented.as_bytes());
    let mut found: Option<&Token> = None;
    for t in tokens {
        let same: bool = blake3::hash(t.secret.as_bytes())
            .as_bytes()
            .ct_eq(given.as_bytes())
            .into();
        if same && found.is_none() {
            found = Some(t);
        }
    }
    found.map(|t| Grant {
        role: t.role,
        databases: t.databases.clone(),
    })
}

/// The role a request to `path` with `method` needs.
pub fn needed(method: &axum::http::Method, path: &str) -> Role {
    use axum::http::Method;
    match (method, path) {
        (&Method::POST, "/v1/backups" | "/v1/checks") => Role::Backup,
        (&Method::POST, "/v1/restores") => Role::Restore,
        (&Method::GET, p) if p.starts_with("/v1/snapshots/") && p.ends_with("/database") => {
            Role::Restore
        }
        (&Method::GET | &Method::HEAD, _) => Role::Read,
        _ => Role::Admin,
    }
}

/// The HTTP API's settings.
#[derive(Clone, Debug)]
pub struct ApiSettings {
    /// Where it listens.
    pub listen: SocketAddr,
    /// Bearer tokens it accepts.
    pub tokens: Vec<Token>,
    /// `/metrics` answers without a token (Prometheus scrapers that carry
    /// none); off unless set.
    pub metrics_open: bool,
    /// Certificate chain and key (PEM) for TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// How long a connection may wait for a request, or a request for its
    /// headers, without a byte from the client (default 10 s).
    pub client_timeout: std::time::Duration,
    /// How long a request in progress may go without a byte moving either
    /// way before its connection is closed (default 30 s).
    pub stall_timeout: std::time::Duration,
}

/// `[api]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApi {
    listen: String,
    /// Strings (admin tokens) or tables `{ token, role, databases }`.
    tokens: Vec<toml::Value>,
    #[serde(default)]
    metrics_open: bool,
    #[serde(default)]
    tls_cert: Option<PathBuf>,
    #[serde(default)]
    tls_key: Option<PathBuf>,
    #[serde(default)]
    client_timeout: Option<String>,
    #[serde(default)]
    stall_timeout: Option<String>,
}

/// One of `api.tokens` (named `key` in errors): a string is an admin
/// token; a table gives `token`, `role` and, for `restore`, `databases`.
fn token(
    key: &str,
    v: &toml::Value,
    has_database: &dyn Fn(&str) -> bool,
) -> std::result::Result<Token, String> {
    let (secret, role, names) = match v {
        toml::Value::String(s) => (s.clone(), Role::Admin, Vec::new()),
        toml::Value::Table(t) => {
            if let Some(k) = t
                .keys()
                .find(|k| !matches!(k.as_str(), "token" | "token_file" | "role" | "databases"))
            {
                return Err(format!(
                    "{key}.{k}: unknown key: a token table has token (or token_file), role and databases"
                ));
            }
            let secret = match (t.get("token"), t.get("token_file")) {
                (Some(v), None) => v
                    .as_str()
                    .ok_or_else(|| format!("{key}.token: a string (\"$VARIABLE\")"))?
                    .to_string(),
                (None, Some(v)) => {
                    let path = v.as_str().ok_or_else(|| {
                        format!("{key}.token_file: a path (\"$CREDENTIALS_DIRECTORY/api-token\")")
                    })?;
                    token_from_file(&format!("{key}.token_file"), Path::new(path))?
                }
                _ => {
                    return Err(format!(
                        "{key}: give token = \"$VARIABLE\" or token_file = PATH (one of them)"
                    ))
                }
            };
            let role = t
                .get("role")
                .and_then(toml::Value::as_str)
                .ok_or_else(|| format!("{key}.role: missing: read, backup, restore or admin"))?;
            let role = Role::parse(role).ok_or_else(|| {
                format!("{key}.role: {role:?} is not a role: read, backup, restore or admin")
            })?;
            let mut names = Vec::new();
            if let Some(d) = t.get("databases") {
                let list = d.as_array().ok_or_else(|| {
                    format!("{key}.databases: a list of configured database names")
                })?;
                if role != Role::Restore {
                    return Err(format!(
                        "{key}.databases: only a restore token is limited to databases"
                    ));
                }
                for n in list {
                    let n = n.as_str().ok_or_else(|| {
                        format!("{key}.databases: a list of configured database names")
                    })?;
                    if !has_database(n) {
                        return Err(format!(
                            "{key}.databases: no database named {n:?} in the config"
                        ));
                    }
                    names.push(n.to_string());
                }
            }
            (secret, role, names)
        }
        _ => {
            return Err(format!(
            "{key}: a token is a string, or a table {{ token = \"$VARIABLE\", role = \"read\" }}"
        ))
        }
    };
    if secret.len() < 16 || secret.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{key}: a token must be at least 16 characters with no spaces: generate one with `openssl rand -hex 32`"
        ));
    }
    Ok(Token {
        secret,
        role,
        databases: names,
    })
}

/// A token read from the file at `path` (systemd's `LoadCredential=`):
/// its first line.
fn token_from_file(key: &str, path: &Path) -> std::result::Result<String, String> {
    let bytes = crate::sys::read_file_limited(path, 4096).map_err(|e| {
        format!(
            "{key}: cannot read {}: {e}: give the path of a file holding the token",
            path.display()
        )
    })?;
    let text = String::from_utf8(bytes)
        .map_err(|_| format!("{key}: {} is not UTF-8 text", path.display()))?;
    Ok(text.lines().next().unwrap_or("").trim_end().to_string())
}

/// Validates `[api]` (`has_database` says which database names the
/// config has); the error is the line to show.
pub(super) fn resolve_api(
    a: RawApi,
    has_database: &dyn Fn(&str) -> bool,
) -> std::result::Result<ApiSettings, String> {
    let listen: SocketAddr = a.listen.parse().map_err(|_| {
        format!(
            "api.listen: {:?} is not an address: write IP:PORT, e.g. 127.0.0.1:8790",
            a.listen
        )
    })?;
    if a.tokens.is_empty() {
        return Err(
            "api.tokens: no token: give at least one (from the environment: \"$LITEVAULT_API_TOKEN\")".into(),
        );
    }
    let tokens = a
        .tokens
        .iter()
        .enumerate()
        .map(|(i, t)| token(&format!("api.tokens[{i}]"), t, has_database))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let tls = match (a.tls_cert, a.tls_key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => return Err("api: tls_cert and tls_key go together: give both or neither".into()),
    };
    if tls.is_none() && !listen.ip().is_loopback() {
        return Err(format!(
            "api.listen: {listen} is not a loopback address, and tokens must not cross a network in clear text: set tls_cert and tls_key, or listen on 127.0.0.1"
        ));
    }
    let timeout = |key: &str, v: Option<&str>, default: u64| {
        v.map_or(Ok(std::time::Duration::from_secs(default)), |v| {
            crate::sys::parse_duration(v)
                .ok()
                .filter(|d| *d >= std::time::Duration::from_millis(100) && d.as_secs() <= 3600)
                .ok_or_else(|| {
                    format!(
                        "api.{key}: {v:?} is not a duration from 100ms to 1h (write e.g. \"10s\")"
                    )
                })
        })
    };
    Ok(ApiSettings {
        listen,
        tokens,
        metrics_open: a.metrics_open,
        tls,
        client_timeout: timeout("client_timeout", a.client_timeout.as_deref(), 10)?,
        stall_timeout: timeout("stall_timeout", a.stall_timeout.as_deref(), 30)?,
    })
}
