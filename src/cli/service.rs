//! `litevault config example|check`, `run`, `serve`, `status`: the
//! service's commands. The library's `service` module does the work; this
//! file reads flags and signals, prints events and views.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use litevault::service::runner::Event;
use litevault::service::{self, Clock, Config, Service, SystemClock, TestClock};

use super::{cancel_on_signals, out, printable, Ctx, ExitWith};

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print a commented example config.
    Example,
    /// Validate a config file, open its repositories, and print what would run.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The config file.
    file: PathBuf,
}

#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum LogFormat {
    /// One line of text per event.
    #[default]
    Text,
    /// One JSON object per event.
    Json,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The config file.
    #[arg(long, short = 'c', value_name = "FILE", env = "LITEVAULT_CONFIG")]
    config: PathBuf,
    /// Run every due job once, then exit (for cron).
    #[arg(long)]
    once: bool,
    /// Serve the HTTP API on this address (default: the config's [api] listen).
    #[arg(long, value_name = "ADDR", conflicts_with = "once")]
    listen: Option<String>,
    /// How events are logged to stderr.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The config file.
    #[arg(long, short = 'c', value_name = "FILE", env = "LITEVAULT_CONFIG")]
    config: PathBuf,
    /// Listen here (default: the config's [api] listen).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// How events are logged to stderr.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The config file.
    #[arg(long, short = 'c', value_name = "FILE", env = "LITEVAULT_CONFIG")]
    config: PathBuf,
    /// Print the status as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn config(ctx: &Ctx, cmd: &ConfigCommand) -> Result<()> {
    match cmd {
        ConfigCommand::Example => {
            print!("{}", service::config::EXAMPLE);
            Ok(())
        }
        ConfigCommand::Check(a) => check(ctx, &a.file),
    }
}

/// The clock: the system's, or the test-only one from
/// `LITEVAULT_TEST_ONLY_CLOCK=TIME[*SPEED]`.
fn clock() -> Result<Arc<dyn Clock>> {
    match std::env::var("LITEVAULT_TEST_ONLY_CLOCK") {
        Ok(v) if !v.is_empty() => {
            let c = TestClock::parse(&v)
                .map_err(|m| anyhow::anyhow!("LITEVAULT_TEST_ONLY_CLOCK: {m}"))?;
            eprintln!("litevault: warning: LITEVAULT_TEST_ONLY_CLOCK is set: the service runs on a simulated clock");
            Ok(Arc::new(c))
        }
        _ => Ok(Arc::new(SystemClock)),
    }
}

/// Loads and checks the config: keys, schedules, references, database
/// files (one that does not exist yet is said, and waited for).
fn load(file: &Path) -> litevault::Result<Config> {
    let c = Config::load(file)?;
    for (_, line) in c.check_databases()? {
        eprintln!("litevault: warning: {line}");
    }
    Ok(c)
}

fn check(ctx: &Ctx, file: &Path) -> Result<()> {
    let config = load(file)?;
    let sink: service::EventSink = Arc::new(|_: &Event| {});
    let clock = clock()?;
    let svc = Service::new(
        config.clone(),
        Arc::clone(&clock),
        litevault::Cancel::new(),
        sink,
    )?;
    svc.check_repositories()?;
    let now = clock.now();
    ctx.summary(format_args!("config {} is valid", file.display()))?;
    ctx.summary(format_args!("  state     {}", config.state.display()))?;
    if let Some(api) = &config.api {
        ctx.summary(format_args!(
            "  api       {}://{} ({} token(s))",
            if api.tls.is_some() { "https" } else { "http" },
            api.listen,
            api.tokens.len()
        ))?;
    }
    for (name, r) in &config.repositories {
        ctx.summary(format_args!("  repository {name}: {} (opened)", r.location))?;
    }
    for (job, j) in &config.jobs {
        ctx.summary(format_args!(
            "  job {job}: into {}",
            j.repositories.join(", ")
        ))?;
        if let Some(c) = &j.continuous {
            for db in &j.databases {
                ctx.summary(format_args!(
                    "    capture every commit of {db} ({}) within {:?}, folded every {:?}",
                    printable(&config.databases[db].backup.path.display().to_string()),
                    c.interval,
                    c.fold_every
                ))?;
            }
        }
        for (db, s) in &j.schedules {
            let d = &config.databases[db];
            let unit = service::units::Unit::Backup {
                job: job.clone(),
                database: db.clone(),
            };
            let next = svc.next_run(&unit, s, now)?;
            ctx.summary(format_args!(
                "    backup {db} ({}), {s}; next {}",
                printable(&d.backup.path.display().to_string()),
                next.map_or_else(|| "never".into(), |t| t.to_string())
            ))?;
        }
        if let Some(p) = &j.retention {
            let rules: Vec<String> = serde_json::to_value(p)?
                .as_object()
                .map(|o| {
                    o.iter()
                        .filter(|(_, v)| {
                            !(v.is_null() || *v == 0 || v.as_array().is_some_and(Vec::is_empty))
                        })
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect()
                })
                .unwrap_or_default();
            ctx.summary(format_args!(
                "    retention after each new snapshot: {}",
                rules.join(" ")
            ))?;
        }
        if let Some((s, o)) = &j.prune {
            ctx.summary(format_args!("    prune {s} (max unused {})", o.max_unused))?;
        }
        if let Some((s, n)) = &j.check {
            let what = if *n == 0 {
                "structure".to_string()
            } else {
                format!("structure and 1/{n} of the data each run")
            };
            ctx.summary(format_args!("    check {s} ({what})"))?;
        }
        if let (Some(_), Some(c)) = (&j.heartbeat_url, &j.continuous) {
            ctx.summary(format_args!(
                "    heartbeat every 30 s while every stream lags under {:?}",
                c.max_lag
            ))?;
        } else if j.heartbeat_url.is_some() {
            ctx.summary(format_args!("    heartbeat after each successful run"))?;
        }
    }
    for (name, d) in &config.databases {
        if !config.jobs.values().any(|j| j.databases.contains(name)) {
            ctx.summary(format_args!(
                "  database {name} ({}): restore target only",
                printable(&d.backup.path.display().to_string())
            ))?;
        }
    }
    Ok(())
}

/// Prints events to stderr, as text or JSON lines.
fn sink(format: LogFormat) -> service::EventSink {
    Arc::new(move |e: &Event| {
        let line = match format {
            LogFormat::Json => serde_json::to_string(e).unwrap_or_default(),
            LogFormat::Text => {
                let mut parts = vec![e.time.clone(), e.level.to_string(), e.event.to_string()];
                for (k, v) in [
                    ("job", &e.job),
                    ("database", &e.database),
                    ("repository", &e.repository),
                ] {
                    if let Some(v) = v {
                        parts.push(format!("{k}={v}"));
                    }
                }
                if let Some(o) = e.outcome {
                    parts.push(format!("outcome={}", o.as_str()));
                }
                if let Some(id) = &e.snapshot {
                    parts.push(format!("snapshot={id}"));
                }
                if let Some(ms) = e.duration_ms {
                    parts.push(format!("duration={:.2}s", ms as f64 / 1000.0));
                }
                let mut s = parts.join(" ");
                if !e.message.is_empty() {
                    s = format!("{s}: {}", e.message);
                }
                printable(&s)
            }
        };
        eprintln!("{line}");
    })
}

/// The API settings for `listen` (else the config's).
fn api_settings(
    config: &Config,
    listen: Option<&str>,
) -> Result<Option<service::config::ApiSettings>> {
    let Some(mut api) = config.api.clone() else {
        if let Some(l) = listen {
            anyhow::bail!(
                "cannot serve the API on {l}: config {} has no [api] table with tokens (add one; see `litevault config example`)",
                config.file.display()
            );
        }
        return Ok(None);
    };
    if let Some(l) = listen {
        api.listen = l.parse().map_err(|_| {
            anyhow::anyhow!("--listen {l:?} is not an address: write IP:PORT, e.g. 127.0.0.1:8790")
        })?;
        if api.tls.is_none() && !api.listen.ip().is_loopback() {
            anyhow::bail!("--listen {l}: not a loopback address, and the config sets no TLS certificate (set tls_cert and tls_key in [api], or listen on 127.0.0.1)");
        }
    }
    Ok(Some(api))
}

/// Starts the API on its own runtime thread; it stops when `cancel` is set.
fn start_api(
    svc: &Arc<Service>,
    api: service::config::ApiSettings,
) -> Result<std::thread::JoinHandle<litevault::Result<()>>> {
    let listener = std::net::TcpListener::bind(api.listen).map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {}: {e} (choose another address with --listen or in [api])",
            api.listen
        )
    })?;
    let bound = listener.local_addr()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let svc = Arc::clone(svc);
    let cancel = svc.cancel().clone();
    svc.event(Event {
        event: "listen",
        message: format!(
            "HTTP API on {}://{bound}",
            if api.tls.is_some() { "https" } else { "http" }
        ),
        ..Event::default()
    });
    Ok(std::thread::spawn(move || {
        rt.block_on(async move {
            let stop = async move {
                while !cancel.is_cancelled() {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            };
            service::api::serve(svc, &api, listener, stop).await
        })
    }))
}

/// A long-running process asks glibc's malloc to give freed memory back
/// to the system (`trim_threshold=0`): without it, the arenas of a
/// backup's worker threads keep what they held, and an idle daemon stays
/// at its peak. glibc reads the setting only at start, so the process
/// re-executes itself once with it (same pid, same arguments); a
/// `GLIBC_TUNABLES` set by the user is left alone.
fn reexec_trimming_memory() {
    use std::os::unix::process::CommandExt;
    const VAR: &str = "GLIBC_TUNABLES";
    if std::env::var_os(VAR).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let name = args.next().unwrap_or_else(|| exe.clone().into_os_string());
    // `exec` returns only if it failed: then run on as we are.
    let _ = std::process::Command::new(&exe)
        .arg0(name)
        .args(args)
        .env(VAR, "glibc.malloc.trim_threshold=0")
        .exec();
}

pub fn run(_ctx: &Ctx, args: &RunArgs) -> Result<()> {
    if !args.once {
        reexec_trimming_memory();
    }
    let file = args.config.clone();
    let config = load(&file)?;
    let api = if args.once {
        None
    } else {
        api_settings(&config, args.listen.as_deref())?
    };
    let cancel = cancel_on_signals()?;
    let reload = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload))
        .map_err(|e| anyhow::anyhow!("installing the signal handler: {e}"))?;
    let svc = Service::new(config, clock()?, cancel.clone(), sink(args.log_format))?;
    svc.check_repositories()?;
    svc.history().mark_interrupted()?;
    if args.once {
        let (ran, failed) = svc.run_due()?;
        // Cron runs this: overdue backups are looked for once, at the end
        // (and told again at each run while they last).
        if let Err(e) = svc.check_overdue() {
            super::warn(&format!("overdue backups could not be looked for: {e}"));
        }
        svc.event(Event {
            event: "done",
            message: format!("{ran} unit(s) ran, {failed} failed"),
            ..Event::default()
        });
        if failed > 0 {
            return Err(ExitWith(
                super::errors::code::FAILURE,
                format!("{failed} of {ran} scheduled run(s) failed (see the log above and `litevault status`)"),
            )
            .into());
        }
        return Ok(());
    }
    let config = svc.config();
    svc.event(Event {
        event: "start",
        message: format!(
            "litevault {} running {} job(s) from {}",
            env!("CARGO_PKG_VERSION"),
            config.jobs.len(),
            file.display()
        ),
        ..Event::default()
    });
    let api_thread = api.map(|a| start_api(&svc, a)).transpose()?;
    svc.start_continuous();
    let result = service::daemon::run(&svc, &reload, &|| load(&file));
    cancel.cancel();
    svc.stop_continuous();
    svc.wait_idle(std::time::Duration::from_secs(30));
    if let Some(t) = api_thread {
        if let Ok(Err(e)) = t.join() {
            super::warn(&e.to_string());
        }
    }
    svc.event(Event {
        event: "stop",
        message: "stopped".into(),
        ..Event::default()
    });
    result?;
    Ok(())
}

pub fn serve(_ctx: &Ctx, args: &ServeArgs) -> Result<()> {
    reexec_trimming_memory();
    let config = load(&args.config)?;
    let Some(api) = api_settings(&config, args.listen.as_deref())? else {
        anyhow::bail!(
            "config {} has no [api] table: add one with listen and tokens (see `litevault config example`)",
            args.config.display()
        );
    };
    let cancel = cancel_on_signals()?;
    let reload = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload))
        .map_err(|e| anyhow::anyhow!("installing the signal handler: {e}"))?;
    let svc = Service::new(config, clock()?, cancel.clone(), sink(args.log_format))?;
    svc.check_repositories()?;
    svc.history().mark_interrupted()?;
    let t = start_api(&svc, api)?;
    // SIGHUP reloads the config (tokens included) while the API serves.
    while !t.is_finished() {
        if reload.swap(false, std::sync::atomic::Ordering::SeqCst) {
            match load(&args.config) {
                Ok(c) => svc.reload(c),
                Err(e) => svc.event(Event {
                    event: "reload",
                    level: "error",
                    message: format!("config not reloaded, the old one stays: {e}"),
                    ..Event::default()
                }),
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let r = t
        .join()
        .map_err(|_| anyhow::anyhow!("the API thread panicked"))?;
    cancel.cancel();
    svc.wait_idle(std::time::Duration::from_secs(30));
    r?;
    Ok(())
}

pub fn status(ctx: &Ctx, args: &StatusArgs) -> Result<()> {
    // The API's token, the repositories' secrets: not needed to read the
    // history, so they may be unset where `status` runs.
    let config = Config::load_for(&args.config, service::config::Needs::Status)?;
    let history = service::history::History::open(&config.state)?;
    let view = service::status::status(&config, &history, clock()?.now())?;
    if args.json {
        return out(serde_json::to_string(&view)?);
    }
    for j in &view.jobs {
        ctx.summary(format_args!(
            "job {}: last success {}, next run {}, {} failure(s) since",
            j.job,
            j.last_success
                .as_deref()
                .map_or("never".into(), |t| ctx.time(t)),
            j.next_run
                .as_deref()
                .map_or("never".into(), |t| ctx.time(t)),
            j.failures_since_success
        ))?;
        for u in &j.units {
            let what = u
                .database
                .as_deref()
                .or(u.repository.as_deref())
                .unwrap_or("");
            let last = u.last_run.as_ref().map_or_else(
                || "never ran".to_string(),
                |r| {
                    format!(
                        "last {} {}{}",
                        ctx.time(&r.start),
                        serde_json::to_value(r.outcome)
                            .ok()
                            .and_then(|v| v.as_str().map(String::from))
                            .unwrap_or_default(),
                        r.error
                            .as_deref()
                            .map(|e| format!(" ({})", printable(e)))
                            .unwrap_or_default()
                    )
                },
            );
            ctx.summary(format_args!(
                "  {:<7} {:<16} {}; next {}; {}",
                u.operation,
                what,
                u.schedule,
                u.next_run
                    .as_deref()
                    .map_or("never".into(), |t| ctx.time(t)),
                last
            ))?;
        }
    }
    Ok(())
}
