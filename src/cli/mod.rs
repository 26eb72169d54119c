//! Command-line parsing and dispatch. Each command is a thin wrapper over
//! the library's public API: parse, call, print. Errors become one line
//! with advice and an exit code in [`errors`].

mod backup;
mod copy;
mod diff;
mod dump;
pub mod errors;
mod generate;
mod import;
mod key;
mod manage;
mod password;
mod repair;
mod replicate;
mod repo;
mod report;
mod restore;
mod service;
mod show;

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// litevault: deduplicating, encrypted backups of SQLite databases.
#[derive(Debug, Parser)]
#[command(
    name = "litevault",
    version,
    about,
    long_about = None,
    arg_required_else_help = true
)]
pub struct Cli {
    /// Repository location: a directory, s3:http(s)://HOST[:PORT]/BUCKET[/PREFIX],
    /// s3://BUCKET[/PREFIX] or sftp:USER@HOST[:PORT]:/PATH (`replicate`
    /// takes several, with the same password).
    #[arg(
        short = 'r',
        long,
        env = "LITEVAULT_REPOSITORY",
        global = true,
        value_name = "LOCATION",
        action = clap::ArgAction::Append
    )]
    repo: Vec<String>,

    /// File holding the repository password (else LITEVAULT_PASSWORD, else a prompt).
    #[arg(
        short = 'p',
        long,
        env = "LITEVAULT_PASSWORD_FILE",
        global = true,
        value_name = "FILE"
    )]
    password_file: Option<PathBuf>,

    /// A command printing the repository password (`pass show litevault`),
    /// run by `sh -c`; its trailing newline is not part of the password.
    #[arg(
        long,
        env = "LITEVAULT_PASSWORD_COMMAND",
        global = true,
        value_name = "COMMAND",
        conflicts_with = "password_file"
    )]
    password_command: Option<String>,

    /// Print only errors and requested data (no summaries, no progress).
    #[arg(short, long, global = true)]
    quiet: bool,

    /// Print on stderr what each phase took: its time, the bytes it
    /// processed, and the requests and bytes it cost the storage.
    #[arg(short, long, global = true, conflicts_with = "quiet")]
    verbose: bool,

    /// Show times in UTC (default: local time, with the zone).
    #[arg(long, global = true)]
    utc: bool,

    /// Read the repository without taking a lock (commands that only read;
    /// a read-only repository is read without one anyway, with a warning).
    #[arg(long, global = true)]
    no_lock: bool,

    /// When the repository is locked by another process, wait for it up to
    /// DURATION (5m, 2h), trying again with growing pauses and saying who
    /// holds it, instead of failing at once (exit 11 when the time is up).
    #[arg(long, global = true, value_name = "DURATION", value_parser = retry_lock_arg)]
    retry_lock: Option<std::time::Duration>,

    /// A storage option, key=value (repeatable): s3.region, s3.endpoint,
    /// s3.virtual-host, sftp.key, sftp.known-hosts, sftp.known-hosts-file,
    /// sftp.ssh-config, timeout, retries.
    #[arg(short = 'o', long = "option", global = true, value_name = "KEY=VALUE")]
    options: Vec<String>,

    /// The local cache of a remote repository's index and snapshots
    /// (default: $XDG_CACHE_HOME/litevault, else ~/.cache/litevault).
    #[arg(long, env = "LITEVAULT_CACHE_DIR", global = true, value_name = "DIR")]
    cache_dir: Option<PathBuf>,

    /// Use no local cache: read everything from the repository.
    #[arg(long, global = true, conflicts_with = "cache_dir")]
    no_cache: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a new repository.
    Init(repo::InitArgs),
    /// Back up an SQLite database into a new snapshot.
    Backup(backup::BackupArgs),
    /// Restore a snapshot into a database file, verified, replacing it safely.
    Restore(restore::RestoreArgs),
    /// Write a snapshot as a database file or SQL text, touching no live database.
    Dump(dump::DumpArgs),
    /// Manage the key files (passwords) that open the repository.
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// List snapshots.
    Snapshots(manage::SnapshotsArgs),
    /// Add, remove or set a snapshot's tags.
    Tag(manage::TagArgs),
    /// Remove snapshots by a retention policy.
    Forget(manage::ForgetArgs),
    /// Delete data no snapshot needs; repack mostly-unused packs.
    Prune(manage::PruneArgs),
    /// Check the repository's consistency (and, with --read-data, its data).
    Check(manage::CheckArgs),
    /// Show sizes, dedup and compression ratios.
    Stats(manage::StatsArgs),
    /// Remove stale locks left by processes that are gone.
    Unlock(repo::UnlockArgs),
    /// Repair a damaged repository: rebuild the index, set damaged
    /// snapshots aside.
    #[command(subcommand)]
    Repair(repair::RepairCommand),
    /// Copy snapshots from another repository into this one, sending only
    /// what it lacks.
    Copy(copy::CopyArgs),
    /// The service's config file: print an example, or check one.
    #[command(subcommand)]
    Config(service::ConfigCommand),
    /// Run the service: scheduled backups, retention, prune and check from
    /// a config file, and the HTTP API.
    Run(service::RunArgs),
    /// Serve only the HTTP API of a config file.
    Serve(service::ServeArgs),
    /// Per job of a config file: last run, last success, next run, failures.
    Status(service::StatusArgs),
    /// Capture WAL-mode databases continuously: every commit into the
    /// repositories within a second, restorable to any moment (`restore --at`).
    Replicate(replicate::ReplicateArgs),
    /// Shell completion scripts and man pages.
    Generate(generate::GenerateArgs),
    /// What changed between two snapshots (schema, rows per table, pages),
    /// or between a snapshot and a live database.
    Diff(diff::DiffArgs),
    /// Bring existing backup files (SQLite, gzip, zstd, SQL dumps) in as
    /// snapshots of a database.
    Import(import::ImportArgs),
    /// One snapshot in full: its manifest, what it added, its tables and
    /// their row counts.
    Show(show::ShowArgs),
}

/// Snapshot filters shared by the commands that select snapshots.
#[derive(Debug, Default, clap::Args)]
pub struct FilterArgs {
    /// Only snapshots with these tags: `--tag a,b` means both, repeating
    /// `--tag` means either.
    #[arg(long = "tag", value_name = "TAGS")]
    tags: Vec<String>,
    /// Only snapshots from this host (repeatable).
    #[arg(long = "host", value_name = "HOST")]
    hosts: Vec<String>,
    /// Only snapshots of this database, by name or absolute path (repeatable;
    /// a path that is not UTF-8 as given, or as listed: `caf\xe9.db`).
    #[arg(long = "db", value_name = "NAME")]
    databases: Vec<std::ffi::OsString>,
}

/// The library filter for `FilterArgs`.
fn snapshot_filter(f: &FilterArgs) -> Result<litevault::SnapshotFilter> {
    Ok(litevault::SnapshotFilter {
        hosts: f.hosts.clone(),
        databases: f
            .databases
            .iter()
            .filter_map(|d| d.to_str().map(String::from))
            .collect(),
        database_paths: f
            .databases
            .iter()
            .filter(|d| d.to_str().is_none())
            .map(|d| litevault::format::manifest::DbPath::of(std::path::Path::new(d)))
            .collect(),
        ..litevault::SnapshotFilter::default()
    }
    .with_tag_sets(&f.tags)?)
}

/// Shared context for commands.
pub struct Ctx {
    repo: Vec<String>,
    password_file: Option<PathBuf>,
    password_command: Option<String>,
    quiet: bool,
    verbose: bool,
    utc: bool,
    no_lock: bool,
    retry_lock: Option<std::time::Duration>,
    options: Vec<String>,
    cache_dir: Option<PathBuf>,
    no_cache: bool,
    started: Instant,
    /// The storage of every repository this run opened, for `--verbose`'s
    /// totals.
    opened: Mutex<Vec<(String, Arc<dyn litevault::backend::Backend>)>>,
    /// Their notes, said once the command is done if it did not say them.
    notes: Mutex<Vec<litevault::repo::repository::Notes>>,
}

impl Ctx {
    fn location(&self) -> Result<litevault::Location> {
        match self.repo.as_slice() {
            [] => anyhow::bail!(
                "no repository given: use --repo LOCATION or set LITEVAULT_REPOSITORY"
            ),
            [one] => Ok(litevault::Location::parse(one)?),
            more => anyhow::bail!(
                "--repo given {} times: only `replicate` writes to several repositories; give one",
                more.len()
            ),
        }
    }

    /// Every repository given (`replicate`), each opened with the same
    /// password: (location as given, repository).
    fn open_all(&self) -> Result<Vec<(String, litevault::Repository)>> {
        if self.repo.is_empty() {
            anyhow::bail!(
                "no repository given: use --repo LOCATION (repeatable) or set LITEVAULT_REPOSITORY"
            );
        }
        let options = self.backend_options()?;
        let mut password: Option<litevault::Password> = None;
        let mut out = Vec::new();
        for r in &self.repo {
            let location = litevault::Location::parse(r)?;
            let repo = self.open_at(&location, &options, || {
                if let Some(p) = &password {
                    return Ok(p.clone());
                }
                let p = password::repository(
                    self.password_file.as_deref(),
                    self.password_command.as_deref(),
                    false,
                )?;
                password = Some(p.clone());
                Ok(p)
            })?;
            out.push((location.to_string(), repo));
        }
        Ok(out)
    }

    /// The `-o key=value` storage options.
    fn backend_options(&self) -> Result<litevault::BackendOptions> {
        Ok(litevault::BackendOptions::parse(&self.options)?)
    }

    /// Where the cache of `location` lives: none with `--no-cache`; the
    /// given `--cache-dir` for any repository; else the default root for
    /// a remote one (a local repository is as fast to read as a cache).
    fn cache_root(&self, location: &litevault::Location) -> Option<PathBuf> {
        if self.no_cache {
            None
        } else if let Some(d) = &self.cache_dir {
            Some(d.clone())
        } else if location.is_remote() {
            litevault::backend::cache::default_root()
        } else {
            None
        }
    }

    /// Opens the repository, asking for its password.
    fn open(&self) -> Result<litevault::Repository> {
        self.open_at(&self.location()?, &self.backend_options()?, || {
            password::repository(
                self.password_file.as_deref(),
                self.password_command.as_deref(),
                false,
            )
        })
    }

    /// Opens the repository at `location` (with this run's cache settings).
    fn open_at(
        &self,
        location: &litevault::Location,
        options: &litevault::BackendOptions,
        password: impl FnOnce() -> Result<litevault::Password>,
    ) -> Result<litevault::Repository> {
        // Fail on a missing location before asking for a password.
        let backend = location.open(options)?;
        let password = password()?;
        let opts = litevault::repo::OpenOptions {
            cache_root: self.cache_root(location),
        };
        let repo = litevault::Repository::open_with(backend, &password, &opts)?;
        if let Some(up_to) = self.retry_lock {
            let quiet = self.quiet;
            repo.set_lock_wait(Some(litevault::repo::LockWait {
                up_to,
                say: Arc::new(move |line| {
                    if !quiet {
                        eprintln!("litevault: note: {line}");
                    }
                }),
                cancel: signals(),
            }));
        }
        self.opened
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((location.to_string(), Arc::clone(repo.backend())));
        self.notes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(repo.notes());
        Ok(repo)
    }

    /// The zone times are shown in (`--utc`, else the system's).
    fn zone(&self) -> jiff::tz::TimeZone {
        display_zone(self.utc)
    }

    /// A time argument (`--before`, `--time`): one without a zone is read
    /// in the zone listings use (local, or UTC with `--utc`), and the
    /// instant it resolved to is said on stderr; with `ago`, a duration
    /// (`2h`) is that long before now.
    fn time_arg(&self, flag: &str, s: &str, ago: bool) -> Result<jiff::Timestamp> {
        let zone = self.zone();
        let t = if ago {
            litevault::sys::parse_time_or_ago(s, jiff::Timestamp::now(), &zone)
        } else {
            litevault::sys::parse_time_in(s, &zone)
        }
        .map_err(|m| anyhow::anyhow!("{m} (check {flag})"))?;
        if !litevault::sys::time_has_zone(s) && litevault::sys::parse_duration(s).is_err() {
            self.status(format_args!(
                "litevault: note: {flag} {:?} is {} ({})",
                printable(s),
                format_time(t, &zone),
                t.round(jiff::Unit::Second).unwrap_or(t)
            ));
        }
        Ok(t)
    }

    /// A time from a repository (RFC 3339) as listings show it; the text
    /// itself if it does not parse.
    fn time(&self, rfc3339: &str) -> String {
        match rfc3339.parse::<jiff::Timestamp>() {
            Ok(t) => format_time(t, &self.zone()),
            Err(_) => printable(rfc3339),
        }
    }

    /// With `--verbose`: the run's time and, per repository opened, the
    /// requests and bytes it cost, on stderr.
    fn report_totals(&self) {
        if !self.verbose {
            return;
        }
        for (location, backend) in self
            .opened
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            let io = backend.io_stats().unwrap_or_default();
            eprintln!(
                "litevault: repository {}: {}",
                printable(location),
                report::io_line(&io)
            );
        }
        eprintln!(
            "litevault: total {:.3} s",
            self.started.elapsed().as_secs_f64()
        );
    }

    /// Opens the repository for `command`, which reads or deletes what is
    /// stored: a write-only key is refused before anything is read.
    fn open_full(&self, command: &str) -> Result<litevault::Repository> {
        let repo = self.open()?;
        repo.require_full_key(command)?;
        Ok(repo)
    }

    /// Opens the repository for `command`, which only reads: no lock with
    /// `--no-lock`, and none on a repository that cannot be written.
    fn open_reading(&self, command: &str) -> Result<litevault::Repository> {
        let repo = self.open_full(command)?;
        repo.set_lock_policy(if self.no_lock {
            litevault::repo::LockPolicy::Never
        } else {
            litevault::repo::LockPolicy::IfWritable
        });
        Ok(repo)
    }

    /// Writes a status line to stderr unless `--quiet`.
    fn status(&self, msg: impl std::fmt::Display) {
        if !self.quiet {
            eprintln!("{msg}");
        }
    }

    /// Writes a summary line to stdout unless `--quiet`.
    fn summary(&self, msg: impl std::fmt::Display) -> Result<()> {
        if self.quiet {
            return Ok(());
        }
        out(msg)
    }
}

/// Prints what the repository noted (warnings that did not stop the
/// command), even with `--quiet`.
fn warn_notes(repo: &litevault::Repository) {
    for n in repo.take_notes() {
        warn(&n);
    }
}

/// A warning on stderr (even with `--quiet`: it is not a success to stay
/// silent about).
fn warn(msg: &str) {
    eprintln!("litevault: warning: {}", printable(msg));
}

/// A name or text from a repository or a file system as it can safely be
/// shown on one line: control characters (a newline, an escape sequence)
/// are escaped, so a crafted name cannot forge rows or move the cursor.
pub fn printable(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

pub use report::Reporter;

/// A cancellation token set by SIGINT and SIGTERM, which stop long
/// operations cleanly.
fn cancel_on_signals() -> Result<litevault::Cancel> {
    static INSTALLED: std::sync::OnceLock<std::result::Result<(), String>> =
        std::sync::OnceLock::new();
    let cancel = signals();
    INSTALLED
        .get_or_init(|| {
            for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                signal_hook::flag::register(sig, Arc::clone(cancel.flag()))
                    .map_err(|e| format!("installing the signal handler: {e}"))?;
            }
            Ok(())
        })
        .clone()
        .map_err(|e| anyhow::anyhow!(e))?;
    Ok(cancel)
}

/// The process's one cancellation token: set by SIGINT and SIGTERM once a
/// command installed their handler ([`cancel_on_signals`]); before that
/// the signals end the process as usual.
fn signals() -> litevault::Cancel {
    static TOKEN: std::sync::OnceLock<litevault::Cancel> = std::sync::OnceLock::new();
    TOKEN.get_or_init(litevault::Cancel::new).clone()
}

/// `--retry-lock`'s value.
fn retry_lock_arg(s: &str) -> std::result::Result<std::time::Duration, String> {
    litevault::sys::parse_duration(s).map_err(|m| format!("{m} (the longest wait for a lock)"))
}

/// The zone listings show times in: the system's (from `TZ` or
/// /etc/localtime), or UTC when asked or when it cannot be found.
pub fn display_zone(utc: bool) -> jiff::tz::TimeZone {
    if utc {
        jiff::tz::TimeZone::UTC
    } else {
        jiff::tz::TimeZone::try_system().unwrap_or(jiff::tz::TimeZone::UTC)
    }
}

/// A time as listings show it: "2026-11-22 05:30:00 CET", seconds rounded.
pub fn format_time(t: jiff::Timestamp, zone: &jiff::tz::TimeZone) -> String {
    let t = t.round(jiff::Unit::Second).unwrap_or(t);
    t.to_zoned(zone.clone())
        .strftime("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

/// "12.3 MiB".
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Writes to stdout, reporting a closed pipe as an error `main` ignores.
fn out(text: impl std::fmt::Display) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}")?;
    stdout.flush()?;
    Ok(())
}

/// Key-derivation parameters for new keys: the real default, or the cheap
/// test-only ones when `LITEVAULT_TEST_ONLY_INSECURE_KDF=1`.
fn kdf_for_new_keys() -> litevault::KdfParams {
    if std::env::var("LITEVAULT_TEST_ONLY_INSECURE_KDF").as_deref() == Ok("1") {
        eprintln!("litevault: warning: LITEVAULT_TEST_ONLY_INSECURE_KDF=1: this key is trivial to brute-force; never use it for real data");
        litevault::KdfParams::TEST_ONLY_INSECURE
    } else {
        litevault::KdfParams::DEFAULT
    }
}

/// Parses the command line and runs the command.
pub fn run() -> Result<()> {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            // --help, --version
            e.print()?;
            return Ok(());
        }
        Err(e) => {
            eprint!("{}", usage_message(&e));
            return Err(Reported(errors::code::USAGE).into());
        }
    };
    let ctx = Ctx {
        repo: cli.repo,
        password_file: cli.password_file,
        password_command: cli.password_command,
        quiet: cli.quiet,
        verbose: cli.verbose,
        utc: cli.utc,
        no_lock: cli.no_lock,
        retry_lock: cli.retry_lock,
        options: cli.options,
        cache_dir: cli.cache_dir,
        no_cache: cli.no_cache,
        started: Instant::now(),
        opened: Mutex::new(Vec::new()),
        notes: Mutex::new(Vec::new()),
    };
    let result = match cli.command {
        Command::Init(a) => repo::init(&ctx, &a),
        Command::Backup(a) => backup::run(&ctx, &a),
        Command::Dump(a) => dump::run(&ctx, &a),
        Command::Restore(a) => restore::run(&ctx, &a),
        Command::Key(k) => key::run(&ctx, k),
        Command::Unlock(a) => repo::unlock(&ctx, &a),
        Command::Repair(c) => repair::run(&ctx, &c),
        Command::Snapshots(a) => manage::snapshots(&ctx, &a),
        Command::Tag(a) => manage::tag(&ctx, &a),
        Command::Forget(a) => manage::forget(&ctx, &a),
        Command::Prune(a) => manage::prune(&ctx, &a),
        Command::Check(a) => manage::check(&ctx, &a),
        Command::Stats(a) => manage::stats(&ctx, &a),
        Command::Copy(a) => copy::run(&ctx, &a),
        Command::Config(c) => service::config(&ctx, &c),
        Command::Run(a) => service::run(&ctx, &a),
        Command::Serve(a) => service::serve(&ctx, &a),
        Command::Status(a) => service::status(&ctx, &a),
        Command::Generate(a) => generate::run(&ctx, &a),
        Command::Diff(a) => diff::run(&ctx, &a),
        Command::Import(a) => import::run(&ctx, &a),
        Command::Show(a) => show::run(&ctx, &a),
        Command::Replicate(a) => replicate::run(&ctx, &a),
    };
    for n in ctx
        .notes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .flat_map(litevault::repo::repository::Notes::take)
    {
        warn(&n);
    }
    ctx.report_totals();
    result
}

/// An error with a command-specific exit code (`check`: 1 problems found,
/// 2 could not run).
#[derive(Debug)]
pub struct ExitWith(pub u8, pub String);

impl std::fmt::Display for ExitWith {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}

impl std::error::Error for ExitWith {}

/// clap's whole message for a usage error: what is wrong (with "did you
/// mean" and the possible values), then always the (sub)command's usage
/// line and where its help is, which clap leaves out of some messages.
fn usage_message(e: &clap::Error) -> String {
    use clap::CommandFactory;
    let text = e.render().to_string();
    let text = text.trim_end();
    let mut cmd = Cli::command();
    cmd.build();
    // (args_os: an argument that is not UTF-8 must not panic here.)
    let usage = std::env::args_os()
        .skip(1)
        .find_map(|a| {
            a.to_str()
                .and_then(|a| cmd.find_subcommand(a))
                .map(|s| s.clone().render_usage().to_string())
        })
        .unwrap_or_else(|| cmd.render_usage().to_string());
    let more = "For more information, try '--help'.";
    let (body, tail) = match text.find(more) {
        Some(i) => (text[..i].trim_end(), &text[i..]),
        None => (text, more),
    };
    if body.contains("Usage:") {
        format!("{body}\n\n{tail}\n")
    } else {
        format!("{body}\n\n{usage}\n\n{tail}\n")
    }
}

/// An error already reported on stderr (clap's usage message): exit with
/// the code, print nothing more.
#[derive(Debug)]
pub struct Reported(pub u8);

impl std::fmt::Display for Reported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "reported (exit code {})", self.0)
    }
}

impl std::error::Error for Reported {}

/// The exit code for an error (README.md, "Exit codes").
pub fn exit_code_of(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<litevault::Error>() {
            return errors::exit_code(e);
        }
        if let Some(ExitWith(code, _)) = cause.downcast_ref::<ExitWith>() {
            return *code;
        }
        if let Some(Reported(code)) = cause.downcast_ref::<Reported>() {
            return *code;
        }
    }
    errors::code::FAILURE
}

/// The one-line message for an error: the contexts around it, then the
/// library error with this tool's advice (its own sources are already in
/// its message and are not repeated).
pub fn message_of(err: &anyhow::Error) -> String {
    let mut parts = Vec::new();
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<litevault::Error>() {
            parts.push(errors::render(e));
            break;
        }
        parts.push(cause.to_string());
    }
    parts.join(": ").replace('\n', " ")
}

/// True if the error was already reported (nothing more to print).
pub fn is_reported(err: &anyhow::Error) -> bool {
    err.chain().any(|c| c.downcast_ref::<Reported>().is_some())
}

/// True if the error is a write to a closed stdout.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
