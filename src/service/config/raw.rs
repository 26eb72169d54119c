//! The config file as written: the tables serde reads before anything is
//! checked or expanded (`Config::resolve` turns them into the settings).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::super::access::RawApi;
use crate::commands::forget::ForgetPolicy;
use crate::repo::password::PasswordSource;

/// The file's top level, as written (before `$VAR` expansion).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) state: Option<PathBuf>,
    #[serde(default)]
    pub(super) history_keep: Option<String>,
    #[serde(default)]
    pub(super) api: Option<RawApi>,
    #[serde(default)]
    pub(super) repositories: BTreeMap<String, RawRepository>,
    #[serde(default)]
    pub(super) databases: BTreeMap<String, RawDatabase>,
    #[serde(default)]
    pub(super) jobs: BTreeMap<String, RawJob>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRepository {
    pub(super) location: String,
    pub(super) password: PasswordSource,
    #[serde(default)]
    pub(super) options: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) cache_dir: Option<PathBuf>,
    #[serde(default)]
    pub(super) no_cache: bool,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawDatabase {
    pub(super) path: PathBuf,
    #[serde(default)]
    pub(super) schedule: Option<String>,
    #[serde(default)]
    pub(super) restore: Option<toml::Table>,
    /// The [`BackupOptions`] fields.
    #[serde(flatten)]
    pub(super) backup: toml::Table,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJob {
    pub(super) databases: Vec<String>,
    pub(super) repositories: Vec<String>,
    #[serde(default)]
    pub(super) schedule: Option<String>,
    /// Capture every commit (`replicate`) instead of scheduled backups.
    #[serde(default)]
    pub(super) continuous: bool,
    /// Continuous: every commit stored within this long (default "1s").
    #[serde(default)]
    pub(super) interval: Option<String>,
    /// Continuous: how often the changes are folded into a snapshot
    /// (default "1h").
    #[serde(default)]
    pub(super) fold_every: Option<String>,
    /// Continuous: the heartbeat is sent only while every stream's lag is
    /// under this (default "10s").
    #[serde(default)]
    pub(super) max_lag: Option<String>,
    #[serde(default)]
    pub(super) timezone: Option<String>,
    #[serde(default)]
    pub(super) heartbeat_url: Option<String>,
    /// healthchecks.io's convention: `/start`, the URL, `/fail`.
    #[serde(default)]
    pub(super) healthchecks_url: Option<String>,
    /// A JSON POST on failure (and on success, if `webhook_on` says so).
    #[serde(default)]
    pub(super) webhook_url: Option<String>,
    /// "failure" (the default) and/or "success".
    #[serde(default)]
    pub(super) webhook_on: Option<Vec<String>>,
    /// Alert (log, webhook, healthchecks) when a database of the job has
    /// had no successful backup for this long.
    #[serde(default)]
    pub(super) alert_after: Option<String>,
    /// Shell commands run before each backup (a failure stops it), after a
    /// successful one, and after a failed one.
    #[serde(default)]
    pub(super) run_before: Option<String>,
    #[serde(default)]
    pub(super) run_after: Option<String>,
    #[serde(default)]
    pub(super) run_after_failure: Option<String>,
    /// How long a hook may run before it is killed (default "5m").
    #[serde(default)]
    pub(super) hook_timeout: Option<String>,
    #[serde(default)]
    pub(super) retention: Option<ForgetPolicy>,
    #[serde(default)]
    pub(super) prune: Option<toml::Table>,
    #[serde(default)]
    pub(super) check: Option<RawCheck>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCheck {
    pub(super) schedule: String,
    /// Read one of this many subsets of the packs per run, in turn (0:
    /// structure only).
    #[serde(default)]
    pub(super) read_data_subsets: u32,
}
