//! The service's config file: TOML naming repositories, databases and the
//! jobs that back the one up into the other on a schedule, with retention,
//! prune and check cadences, a heartbeat URL and the HTTP API's settings.
//! `examples/litevault.toml` is the commented example (printed by the
//! command line's `config example`).
//!
//! A database's table holds the library's own [`BackupOptions`] fields
//! (`tags`, `strategy`, `lock_timeout`, ...) beside `path` and an optional
//! `schedule`; its `restore` table holds [`RestoreOptions`] fields; a
//! job's `retention` is a [`ForgetPolicy`] and its `prune` table holds
//! [`PruneOptions`] fields beside `schedule`: one option struct per
//! command, shared with the command line.
//!
//! `$VAR` and `${VAR}` in any string value are replaced by the environment
//! variable (an unset one is an error naming it; `$$` is a `$`), so
//! secrets stay out of the file, as in rqlite's config.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use super::access::ApiSettings;
mod expand;
mod files;
mod raw;

pub use expand::Needs;
pub use files::not_there;

use super::access::resolve_api;
use super::schedule::Schedule;
use crate::backend::choose::{BackendOptions, Location};
use crate::commands::backup::BackupOptions;
use crate::commands::forget::ForgetPolicy;
use crate::commands::prune::PruneOptions;
use crate::commands::restore::RestoreOptions;
use crate::error::{Error, Result};
use crate::repo::password::PasswordSource;
use expand::expand_value;
use raw::RawConfig;

/// The commented example config.
pub const EXAMPLE: &str = include_str!("../../examples/litevault.toml");

/// How long a job's hook may run by default.
const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(300);

/// How long run history is kept by default.
const DEFAULT_HISTORY_KEEP: Duration = Duration::from_secs(90 * 86_400);

/// A configured repository.
#[derive(Clone, Debug)]
pub struct RepositorySettings {
    /// Its location.
    pub location: Location,
    /// Where its password comes from.
    pub password: PasswordSource,
    /// Storage options.
    pub options: BackendOptions,
    /// The local cache's root (`None`: no cache).
    pub cache_root: Option<PathBuf>,
}

/// A configured database: what backs it up and how it is restored into.
#[derive(Clone, Debug)]
pub struct DatabaseSettings {
    /// Backup options (path included).
    pub backup: BackupOptions,
    /// A schedule overriding its jobs' (as written; evaluated in each
    /// job's zone).
    pub schedule: Option<String>,
    /// Restore options (target: the database's path).
    pub restore: RestoreOptions,
}

/// A job: databases into repositories on a schedule.
#[derive(Clone, Debug)]
pub struct Job {
    /// Its databases, by name.
    pub databases: Vec<String>,
    /// Its repositories, by name.
    pub repositories: Vec<String>,
    /// When each database is backed up (database overrides applied).
    pub schedules: BTreeMap<String, Schedule>,
    /// Called (GET) after each run in which every backup succeeded.
    pub heartbeat_url: Option<String>,
    /// Who is told of each backup's start and end (see
    /// [`super::notify`]).
    pub notify: Notify,
    /// Commands run around each backup (see [`super::hooks`]).
    pub hooks: Hooks,
    /// Retention applied after each backup that added a snapshot.
    pub retention: Option<ForgetPolicy>,
    /// Prune cadence and options.
    pub prune: Option<(Schedule, PruneOptions)>,
    /// Check cadence and the number of read-data subsets (0: structure only).
    pub check: Option<(Schedule, u32)>,
    /// Continuous capture of the job's databases (then `schedules` is
    /// empty: nothing is backed up on a schedule).
    pub continuous: Option<ContinuousSettings>,
}

/// A job's command hooks (see [`super::hooks`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hooks {
    /// Run before each backup; a failure (or time-out) stops the backup.
    pub before: Option<String>,
    /// Run after each backup in which every repository succeeded.
    pub after: Option<String>,
    /// Run after each backup that failed.
    pub after_failure: Option<String>,
    /// How long a hook may run (default 5 minutes).
    pub timeout: Duration,
}

/// A job's notifications (see [`super::notify`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Notify {
    /// healthchecks.io's convention: GET `URL/start` when a backup starts,
    /// GET `URL` when it succeeded, POST `URL/fail` with the error.
    pub healthchecks_url: Option<String>,
    /// POSTed a JSON body when a backup failed.
    pub webhook_url: Option<String>,
    /// ... and when it succeeded.
    pub webhook_on_success: bool,
    /// Alert when a database of the job has had no successful backup for
    /// this long (see [`super::overdue`]).
    pub alert_after: Option<Duration>,
}

/// A continuous job's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContinuousSettings {
    /// Every commit stored within this long.
    pub interval: Duration,
    /// How often the changes are folded into a snapshot.
    pub fold_every: Duration,
    /// The heartbeat is sent only while every stream's lag is under this.
    pub max_lag: Duration,
}

/// A loaded, validated config.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it came from.
    pub file: PathBuf,
    /// The run-history database.
    pub state: PathBuf,
    /// How long run history is kept.
    pub history_keep: Duration,
    /// The HTTP API, if configured.
    pub api: Option<ApiSettings>,
    /// Repositories by name.
    pub repositories: BTreeMap<String, RepositorySettings>,
    /// Databases by name.
    pub databases: BTreeMap<String, DatabaseSettings>,
    /// Jobs by name.
    pub jobs: BTreeMap<String, Job>,
}

/// A config error naming the file and, where it has one, the line.
pub(super) fn config_error(file: &Path, message: impl Into<String>) -> Error {
    Error::Config {
        file: file.to_path_buf(),
        message: message.into(),
    }
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// A duration at `key.field`, if given: at least a second.
fn duration_of(
    key: &str,
    field: &str,
    v: Option<&str>,
) -> std::result::Result<Option<Duration>, String> {
    v.map(|v| {
        crate::sys::parse_duration(v)
            .ok()
            .filter(|d| d.as_secs() >= 1)
            .ok_or_else(|| {
                format!("{key}.{field}: {v:?} is not a duration of a second or more (write e.g. \"26h\")")
            })
    })
    .transpose()
}

/// A table deserialized into one of the library's option types, errors
/// prefixed by the table's key.
fn options_from<T: serde::de::DeserializeOwned>(
    file: &Path,
    key: &str,
    table: toml::Table,
) -> Result<T> {
    T::deserialize(toml::Value::Table(table))
        .map_err(|e| config_error(file, format!("{key}: {}", e.message().trim())))
}

/// A name usable as a key in the API and in history: letters, digits, `_`, `-`, `.`.
fn check_name(file: &Path, what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(config_error(
            file,
            format!("{what} name {name:?}: use letters, digits, '_', '-' and '.' (at most 64)"),
        ))
    }
}

/// The largest config file read.
pub const MAX_CONFIG: u64 = 1024 * 1024;

impl Config {
    /// Reads and validates the config file at `file` (see the module docs).
    /// Checks its syntax, keys, names, schedules and references; the
    /// databases' and repositories' reachability is checked by
    /// [`Config::check_databases`] and by opening the repositories.
    pub fn load(file: &Path) -> Result<Config> {
        Self::load_for(file, Needs::All)
    }

    /// [`Config::load`] for a command that needs only part of it: a
    /// variable it does not need may be unset (see [`Needs`]).
    pub fn load_for(file: &Path, needs: Needs) -> Result<Config> {
        let bytes = crate::sys::read_file_limited(file, MAX_CONFIG)
            .map_err(|e| config_error(file, format!("cannot read it: {e}")))?;
        let text =
            String::from_utf8(bytes).map_err(|_| config_error(file, "it is not UTF-8 text"))?;
        Self::parse_for(file, &text, needs)
    }

    /// Parses config `text` (named `file` in errors).
    pub fn parse(file: &Path, text: &str) -> Result<Config> {
        Self::parse_for(file, text, Needs::All)
    }

    /// [`Config::parse`] for a command that needs only part of it.
    pub fn parse_for(file: &Path, text: &str, needs: Needs) -> Result<Config> {
        // Pass 1, as written: syntax and unknown keys, with line numbers.
        toml::from_str::<RawConfig>(text).map_err(|e| {
            let at = e
                .span()
                .map(|s| format!("line {}: ", line_of(text, s.start)))
                .unwrap_or_default();
            config_error(file, format!("{at}{}", e.message().trim()))
        })?;
        // Pass 2: with the environment's values.
        let mut value: toml::Value =
            toml::from_str(text).map_err(|e| config_error(file, e.message().trim().to_string()))?;
        if needs == Needs::Status {
            if let Some(t) = value.as_table_mut() {
                t.remove("api");
            }
        }
        expand_value(&mut value, "", needs).map_err(|m| config_error(file, m))?;
        let raw = RawConfig::deserialize(value)
            .map_err(|e| config_error(file, e.message().trim().to_string()))?;
        Self::resolve(file, raw)
    }

    #[allow(clippy::too_many_lines)] // one validation after another, in the file's order
    fn resolve(file: &Path, raw: RawConfig) -> Result<Config> {
        let err = |m: String| config_error(file, m);
        let state = match raw.state {
            Some(p) if p.is_absolute() => p,
            Some(p) => {
                return Err(err(format!(
                    "state: relative path {}: write an absolute path",
                    p.display()
                )))
            }
            None => default_state().ok_or_else(|| {
                err(
                    "state: no default place (neither XDG_STATE_HOME nor HOME is set): give a path"
                        .into(),
                )
            })?,
        };
        let history_keep = match raw.history_keep {
            None => DEFAULT_HISTORY_KEEP,
            Some(s) => {
                crate::sys::parse_duration(&s).map_err(|m| err(format!("history_keep: {m}")))?
            }
        };
        let mut repositories = BTreeMap::new();
        for (name, r) in raw.repositories {
            check_name(file, "repository", &name)?;
            let key = format!("repositories.{name}");
            let location =
                Location::parse(&r.location).map_err(|e| err(format!("{key}.location: {e}")))?;
            let pairs: Vec<String> = r.options.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let options =
                BackendOptions::parse(&pairs).map_err(|e| err(format!("{key}.options: {e}")))?;
            let cache_root = if r.no_cache {
                None
            } else if let Some(d) = r.cache_dir {
                Some(d)
            } else if location.is_remote() {
                crate::backend::cache::default_root()
            } else {
                None
            };
            repositories.insert(
                name,
                RepositorySettings {
                    location,
                    password: r.password,
                    options,
                    cache_root,
                },
            );
        }

        let mut databases = BTreeMap::new();
        for (name, d) in raw.databases {
            check_name(file, "database", &name)?;
            let key = format!("databases.{name}");
            if !d.path.is_absolute() {
                return Err(err(format!(
                    "{key}.path: relative path {}: write an absolute path",
                    d.path.display()
                )));
            }
            for refused in ["time", "force", "recorded_path"] {
                if d.backup.contains_key(refused) {
                    return Err(err(format!(
                        "{key}.{refused}: not a setting for scheduled backups: remove it"
                    )));
                }
            }
            let mut backup_table = d.backup;
            backup_table.insert(
                "path".into(),
                toml::Value::String(d.path.to_string_lossy().into_owned()),
            );
            let backup: BackupOptions = options_from(file, &key, backup_table)?;
            backup.validate().map_err(|e| err(format!("{key}: {e}")))?;
            let mut restore_table = d.restore.unwrap_or_default();
            if restore_table.contains_key("target") {
                return Err(err(format!(
                    "{key}.restore.target: a database is restored into its own path: remove it"
                )));
            }
            restore_table.insert(
                "target".into(),
                toml::Value::String(d.path.to_string_lossy().into_owned()),
            );
            let restore: RestoreOptions =
                options_from(file, &format!("{key}.restore"), restore_table)?;
            if let Some(s) = &d.schedule {
                Schedule::parse(s, "UTC").map_err(|m| err(format!("{key}.schedule: {m}")))?;
            }
            databases.insert(
                name,
                DatabaseSettings {
                    backup,
                    schedule: d.schedule,
                    restore,
                },
            );
        }

        let api = raw
            .api
            .map(|a| resolve_api(a, &|n| databases.contains_key(n)).map_err(err))
            .transpose()?;

        let mut jobs = BTreeMap::new();
        for (name, j) in raw.jobs {
            check_name(file, "job", &name)?;
            let key = format!("jobs.{name}");
            if j.databases.is_empty() || j.repositories.is_empty() {
                return Err(err(format!(
                    "{key}: a job needs at least one database and one repository"
                )));
            }
            for d in &j.databases {
                if !databases.contains_key(d) {
                    return Err(err(format!(
                        "{key}.databases: no database named {d:?}: add a [databases.{d}] table"
                    )));
                }
            }
            for r in &j.repositories {
                if !repositories.contains_key(r) {
                    return Err(err(format!(
                        "{key}.repositories: no repository named {r:?}: add a [repositories.{r}] table"
                    )));
                }
            }
            let zone = j.timezone.as_deref().unwrap_or("UTC");
            let continuous = j.continuous || j.schedule.as_deref() == Some("continuous");
            let mut schedules = BTreeMap::new();
            let continuous = if continuous {
                let dur = |field: &str, v: &Option<String>, default: &str| {
                    crate::sys::parse_duration(v.as_deref().unwrap_or(default))
                        .map_err(|m| err(format!("{key}.{field}: {m}")))
                };
                let c = ContinuousSettings {
                    interval: dur("interval", &j.interval, "1s")?,
                    fold_every: dur("fold_every", &j.fold_every, "1h")?,
                    max_lag: dur("max_lag", &j.max_lag, "10s")?,
                };
                if c.interval < Duration::from_millis(100) {
                    return Err(err(format!(
                        "{key}.interval: shorter than 100ms: give a longer one"
                    )));
                }
                Some(c)
            } else {
                for field in [
                    (&j.interval, "interval"),
                    (&j.fold_every, "fold_every"),
                    (&j.max_lag, "max_lag"),
                ] {
                    if field.0.is_some() {
                        return Err(err(format!(
                            "{key}.{}: only a continuous job has it: set `continuous = true`, or remove it",
                            field.1
                        )));
                    }
                }
                None
            };
            let schedule_text = match (&j.schedule, &continuous) {
                (Some(s), _) if s != "continuous" => Some(s.as_str()),
                (_, Some(_)) => None,
                (_, None) => {
                    return Err(err(format!(
                        "{key}.schedule: missing: say when to back up (\"1d\", \"0 3 * * *\"), or `continuous = true`"
                    )))
                }
            };
            if continuous.is_some() && schedule_text.is_some() {
                return Err(err(format!(
                    "{key}: a continuous job has no schedule: remove `schedule`, or set `continuous = false`"
                )));
            }
            let base = schedule_text
                .map(|t| Schedule::parse(t, zone).map_err(|m| err(format!("{key}.schedule: {m}"))))
                .transpose()?;
            for d in j.databases.iter().filter(|_| base.is_some()) {
                let s = match &databases[d].schedule {
                    Some(text) => Schedule::parse(text, zone)
                        .map_err(|m| err(format!("databases.{d}.schedule: {m}")))?,
                    None => base.clone().expect("filtered: a schedule"),
                };
                schedules.insert(d.clone(), s);
            }
            if let Some(p) = &j.retention {
                if p.is_empty() {
                    return Err(err(format!(
                        "{key}.retention: no rule given: set keep_last, keep_daily, ... or remove the table"
                    )));
                }
            }
            let prune = match j.prune {
                None => None,
                Some(mut t) => {
                    let Some(toml::Value::String(text)) = t.remove("schedule") else {
                        return Err(err(format!(
                            "{key}.prune.schedule: missing: say when to prune (\"0 4 * * Sun\")"
                        )));
                    };
                    let s = Schedule::parse(&text, zone)
                        .map_err(|m| err(format!("{key}.prune.schedule: {m}")))?;
                    let o: PruneOptions = options_from(file, &format!("{key}.prune"), t)?;
                    if !(0.0..=1.0).contains(&o.max_unused) {
                        return Err(err(format!(
                            "{key}.prune.max_unused: {} is not a share between 0.0 and 1.0",
                            o.max_unused
                        )));
                    }
                    Some((s, o))
                }
            };
            let check = j
                .check
                .map(|c| {
                    Schedule::parse(&c.schedule, zone)
                        .map(|s| (s, c.read_data_subsets))
                        .map_err(|m| err(format!("{key}.check.schedule: {m}")))
                })
                .transpose()?;
            for (field, url) in [
                ("heartbeat_url", &j.heartbeat_url),
                ("healthchecks_url", &j.healthchecks_url),
                ("webhook_url", &j.webhook_url),
            ] {
                if let Some(u) = url {
                    if !(u.starts_with("http://") || u.starts_with("https://")) {
                        return Err(err(format!(
                            "{key}.{field}: not an http(s) URL: write https://..."
                        )));
                    }
                }
            }
            let on = j.webhook_on.unwrap_or_else(|| vec!["failure".into()]);
            if let Some(bad) = on
                .iter()
                .find(|o| !matches!(o.as_str(), "failure" | "success"))
            {
                return Err(err(format!(
                    "{key}.webhook_on: unknown event {bad:?}: write [\"failure\"], [\"success\"] or both"
                )));
            }
            let notify = Notify {
                healthchecks_url: j
                    .healthchecks_url
                    .map(|u| u.trim_end_matches('/').to_string()),
                webhook_url: j.webhook_url,
                webhook_on_success: on.iter().any(|o| o == "success"),
                alert_after: duration_of(&key, "alert_after", j.alert_after.as_deref())
                    .map_err(err)?,
            };
            let hooks = Hooks {
                before: j.run_before,
                after: j.run_after,
                after_failure: j.run_after_failure,
                timeout: duration_of(&key, "hook_timeout", j.hook_timeout.as_deref())
                    .map_err(err)?
                    .unwrap_or(DEFAULT_HOOK_TIMEOUT),
            };
            jobs.insert(
                name,
                Job {
                    databases: j.databases,
                    repositories: j.repositories,
                    schedules,
                    heartbeat_url: j.heartbeat_url,
                    notify,
                    hooks,
                    retention: j.retention,
                    prune,
                    check,
                    continuous,
                },
            );
        }
        Ok(Config {
            file: file.to_path_buf(),
            state,
            history_keep,
            api,
            repositories,
            databases,
            jobs,
        })
    }

    /// The repositories a backup of database `name` goes to: those of every
    /// job naming it.
    pub fn repositories_of(&self, database: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for j in self.jobs.values() {
            if j.databases.iter().any(|d| d == database) {
                for r in &j.repositories {
                    if !out.contains(r) {
                        out.push(r.clone());
                    }
                }
            }
        }
        out
    }
}

/// The default state database: `$XDG_STATE_HOME/litevault/state.db`, else
/// `~/.local/state/litevault/state.db`.
pub fn default_state() -> Option<PathBuf> {
    Some(crate::sys::state_home()?.join("litevault").join("state.db"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_numbers() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 4), 3);
    }
}
