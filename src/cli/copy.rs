//! `litevault copy --from-repo A --repo B [SNAPSHOT...]`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use clap::Args;
use litevault::{CopyOptions, Progress};

use super::{cancel_on_signals, human, out, password, snapshot_filter, Ctx, FilterArgs, Reporter};

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// Snapshots to copy (ids, unique prefixes or `latest`); all that match
    /// the filters by default.
    snapshots: Vec<String>,
    /// The repository to copy from (a location, as --repo takes).
    #[arg(long, env = "LITEVAULT_FROM_REPOSITORY", value_name = "LOCATION")]
    from_repo: String,
    /// File holding the source repository's password (else
    /// LITEVAULT_FROM_PASSWORD, else a prompt).
    #[arg(long, env = "LITEVAULT_FROM_PASSWORD_FILE", value_name = "FILE")]
    from_password_file: Option<PathBuf>,
    /// A storage option of the source, key=value (repeatable; -o sets the target's).
    #[arg(long = "from-option", value_name = "KEY=VALUE")]
    from_options: Vec<String>,
    #[command(flatten)]
    filter: FilterArgs,
    /// Directory for the temporary image of each snapshot (default: the
    /// system's temporary directory).
    #[arg(long, value_name = "DIR")]
    temp_dir: Option<PathBuf>,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Ctx, args: &CopyArgs) -> Result<()> {
    let filter = snapshot_filter(&args.filter)?;
    let from_location = litevault::Location::parse(&args.from_repo)?;
    let from_options = litevault::BackendOptions::parse(&args.from_options)?;
    let to_location = ctx.location()?;
    let to_options = ctx.backend_options()?;
    let from = ctx.open_at(&from_location, &from_options, || {
        password::source_repository(args.from_password_file.as_deref())
    })?;
    // The source is only read: a read-only one is read without a lock.
    from.set_lock_policy(if ctx.no_lock {
        litevault::repo::LockPolicy::Never
    } else {
        litevault::repo::LockPolicy::IfWritable
    });
    let to = ctx.open_at(&to_location, &to_options, || {
        password::repository(
            ctx.password_file.as_deref(),
            ctx.password_command.as_deref(),
            false,
        )
    })?;
    let report = Reporter::new(ctx, args.json, &[&from, &to]);
    let opts = CopyOptions {
        filter,
        snapshots: args.snapshots.clone(),
        temp_dir: args.temp_dir.clone(),
        cancel: cancel_on_signals()?,
        progress: report.clone().map(|r| r as Arc<dyn Progress>),
    };
    let result = litevault::copy(&from, &to, &opts);
    if let Some(r) = &report {
        r.finish();
    }
    super::warn_notes(&from);
    super::warn_notes(&to);
    let s = result?;
    if args.json {
        return out(serde_json::to_string(&s)?);
    }
    for c in &s.copied {
        ctx.summary(format_args!(
            "copied snapshot {} as {} ({}, {} added)",
            c.source.short(),
            c.target.short(),
            human(c.bytes),
            human(c.added_bytes)
        ))?;
    }
    for (source, there) in &s.already_present {
        ctx.status(format_args!(
            "snapshot {} is already in the target as {}",
            source.short(),
            there.short()
        ));
    }
    ctx.summary(format_args!(
        "{} snapshot(s) copied, {} already there; sent {} in {} request(s)",
        s.copied.len(),
        s.already_present.len(),
        human(s.target_io.bytes_sent),
        s.target_io.requests()
    ))
}
