//! `litevault replicate DB...`: continuous capture in the foreground.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use litevault::commands::replicate::{self, ReplicateOptions, StreamStatus};

use super::backup::duration_arg;
use super::{cancel_on_signals, human, out, printable, Ctx};

#[derive(Debug, Args)]
pub struct ReplicateArgs {
    /// The WAL-mode SQLite databases to capture.
    #[arg(value_name = "DB", required = true)]
    dbs: Vec<PathBuf>,
    /// Every commit is stored within this long ("1s", "500ms").
    #[arg(long, default_value = "1s", value_name = "DURATION")]
    interval: String,
    /// Fold the captured changes into a snapshot this often.
    #[arg(long, default_value = "1h", value_name = "DURATION")]
    fold_every: String,
    /// Where the streams' state and spool are kept (default:
    /// $XDG_STATE_HOME/litevault/replicate, else ~/.local/state/litevault/replicate).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// The most a stream spools while the storage is unreachable, in MiB;
    /// past it the stream is bridged by a snapshot when the storage is back.
    #[arg(long, default_value_t = 1024, value_name = "MIB")]
    spool_limit_mib: u64,
    /// Tag the stream's snapshots (repeat, or separate with commas).
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// How long a snapshot's read waits for a database locked by a writer.
    #[arg(long, default_value = "5s", value_name = "DURATION")]
    lock_timeout: String,
    /// Print each stream's summary as JSON lines when it stops.
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Ctx, args: &ReplicateArgs) -> Result<()> {
    let mut opts = ReplicateOptions::new(
        args.state_dir
            .clone()
            .or_else(ReplicateOptions::default_state_dir)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no state directory: set HOME or XDG_STATE_HOME, or give --state-dir"
                )
            })?,
    );
    opts.interval = duration_arg(&args.interval, "--interval")?;
    if opts.interval < Duration::from_millis(100) {
        anyhow::bail!(
            "--interval {} is shorter than 100ms: give a longer one",
            args.interval
        );
    }
    opts.fold_every = duration_arg(&args.fold_every, "--fold-every")?;
    opts.spool_limit = args.spool_limit_mib << 20;
    opts.tags = litevault::repo::split_tags(&args.tags)?;
    opts.lock_timeout = duration_arg(&args.lock_timeout, "--lock-timeout")?;
    let cancel = cancel_on_signals()?;
    opts.cancel = cancel.clone();
    let repos: Vec<(String, Arc<litevault::Repository>)> = ctx
        .open_all()?
        .into_iter()
        .map(|(name, r)| (name, Arc::new(r)))
        .collect();
    let running = replicate::start(&repos, &args.dbs, &opts)?;
    ctx.status(format_args!(
        "replicating {} database(s) into {} repository(ies), every commit within {}; Ctrl-C stops",
        args.dbs.len(),
        repos.len(),
        args.interval
    ));
    let mut said: Vec<(u64, u64, Option<String>)> = vec![(0, 0, None); running.status().len()];
    while !cancel.is_cancelled() {
        std::thread::sleep(Duration::from_millis(200));
        for (i, s) in running.status().iter().enumerate() {
            // Say each new snapshot, gap and error once.
            if (s.bridges + s.folds, s.gaps, s.last_error.clone()) != said[i] {
                if s.gaps > said[i].1 {
                    ctx.status(format_args!(
                        "litevault: note: {} into {}: {}; bridging with a snapshot",
                        printable(&s.database),
                        s.repository,
                        s.last_gap.as_deref().unwrap_or("a gap")
                    ));
                }
                if let Some(e) = &s.last_error {
                    if said[i].2.as_ref() != Some(e) {
                        super::warn(&format!(
                            "{} into {}: {e}",
                            printable(&s.database),
                            s.repository
                        ));
                    }
                }
                if s.bridges + s.folds > said[i].0 {
                    ctx.status(format_args!(
                        "{} into {}: snapshot {} saved",
                        printable(&s.database),
                        s.repository,
                        s.last_snapshot
                            .as_deref()
                            .map_or("", |h| &h[..8.min(h.len())])
                    ));
                }
                said[i] = (s.bridges + s.folds, s.gaps, s.last_error.clone());
            }
        }
    }
    if running.status().iter().any(|s| s.phase == "bridging") {
        ctx.status(format_args!(
            "stopping: a bridge snapshot is being stored, so that the commits after it are kept; waiting for it (at most {} s)",
            replicate::STOP_WAITS_FOR_BRIDGE.as_secs()
        ));
    }
    let done = running.stop();
    for s in &done {
        print_stream(ctx, args.json, s)?;
    }
    Ok(())
}

fn print_stream(ctx: &Ctx, json: bool, s: &StreamStatus) -> Result<()> {
    if json {
        return out(serde_json::to_string(s)?);
    }
    ctx.summary(format_args!(
        "{} into {}: {} commits in {} change objects ({}), stored up to {}{}",
        printable(&s.database),
        s.repository,
        s.commits,
        s.objects,
        human(s.bytes),
        s.stored_seq,
        if s.stored_seq < s.seq {
            format!(
                ", {} spooled (stored on the next start)",
                s.seq - s.stored_seq
            )
        } else {
            String::new()
        }
    ))
}
