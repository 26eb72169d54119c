//! `litevault init` and `litevault unlock`.

use anyhow::Result;
use clap::Args;
use litevault::{ChunkerParams, CompressionParams, Config, InitOptions, Repository};

use super::{password, Ctx};

#[derive(Debug, Args)]
pub struct InitArgs {
    /// zstd level for data (0 stores uncompressed, 1..=22).
    #[arg(long, default_value_t = CompressionParams::DEFAULT.zstd_level, value_name = "LEVEL")]
    compression_level: i32,
    /// Target pack file size in MiB.
    #[arg(long, default_value_t = Config::DEFAULT_PACK_SIZE >> 20, value_name = "MIB")]
    pack_size: u32,
    /// Repository format: 4 also takes write-only keys (`key add
    /// --write-only`); 3 holds continuous capture's changes (`replicate`)
    /// and is read by releases before format 4; 2 stores changed chunks as
    /// deltas and is read by releases before format 3; 1 by releases
    /// before format 2.
    #[arg(long, default_value_t = litevault::format::REPOSITORY_VERSION, value_name = "N",
          value_parser = clap::value_parser!(u8).range(1..=4))]
    repository_version: u8,
    /// Longest chain of delta blobs a backup writes (format 2): a restore
    /// decodes at most this many blobs before each chunk; 0 stores every
    /// changed chunk whole.
    #[arg(long, default_value_t = litevault::format::config::DeltaParams::DEFAULT.max_depth,
          value_name = "N", value_parser = clap::value_parser!(u16).range(0..=64))]
    max_delta_depth: u16,
    /// Chunk sizes in pages, MIN,AVG,MAX (fixed for the repository's life;
    /// SPEC.md section 15 has the measurements behind the default).
    #[arg(long, value_name = "MIN,AVG,MAX", value_parser = parse_chunker)]
    chunker_params: Option<ChunkerParams>,
    /// In an S3 bucket with Object Lock: set the bucket's default
    /// retention to DAYS first, so that no credential can delete or
    /// overwrite any object the repository writes for that long (implies
    /// -o s3.object-lock=true, which every later command needs too).
    #[arg(long, value_name = "DAYS",
          value_parser = clap::value_parser!(u32).range(1..=36_500))]
    object_lock: Option<u32>,
    /// How the retention holds: compliance (no credential can shorten it)
    /// or governance (credentials allowed to bypass governance can).
    #[arg(
        long,
        value_name = "MODE",
        default_value = "compliance",
        requires = "object_lock"
    )]
    object_lock_mode: litevault::RetentionMode,
    /// Print the new repository's id, location and key as one JSON object.
    #[arg(long)]
    json: bool,
}

fn parse_chunker(s: &str) -> std::result::Result<ChunkerParams, String> {
    let n: Vec<u32> = s
        .split(',')
        .map(|p| p.trim().parse::<u32>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| format!("{s:?} is not three page counts MIN,AVG,MAX: {e}"))?;
    let [min_pages, avg_pages, max_pages] = n[..] else {
        return Err(format!("{s:?} is not three page counts MIN,AVG,MAX"));
    };
    let p = ChunkerParams {
        min_pages,
        avg_pages,
        max_pages,
    };
    p.validate()?;
    Ok(p)
}

pub fn init(ctx: &Ctx, args: &InitArgs) -> Result<()> {
    let location = ctx.location()?;
    let max = Config::PACK_SIZE_RANGE.end() >> 20;
    if !(1..=max).contains(&args.pack_size) {
        anyhow::bail!(
            "invalid --pack-size {}: give 1 to {max} (MiB)",
            args.pack_size
        );
    }
    let existing = match &location {
        litevault::Location::Local(p) => {
            std::fs::metadata(p).ok().filter(std::fs::Metadata::is_dir)
        }
        _ => None,
    };
    let password = password::repository(
        ctx.password_file.as_deref(),
        ctx.password_command.as_deref(),
        true,
    )?;
    let opts = InitOptions {
        kdf: super::kdf_for_new_keys(),
        compression: CompressionParams {
            zstd_level: args.compression_level,
        },
        pack_size: args.pack_size << 20,
        version: args.repository_version,
        chunker: args.chunker_params,
        max_delta_depth: args.max_delta_depth,
    };
    let mut backend_options = ctx.backend_options()?;
    let object_lock = args.object_lock.map(|days| litevault::Retention {
        mode: args.object_lock_mode,
        days,
    });
    if object_lock.is_some() {
        backend_options
            .0
            .insert("s3.object-lock".into(), "true".into());
    }
    let repo = Repository::init_with_object_lock(
        location.for_init(&backend_options)?,
        &password,
        &opts,
        object_lock,
    )?;
    if args.json {
        super::out(serde_json::to_string(&serde_json::json!({
            "id": repo.config().id,
            "location": location.to_string(),
            "key": repo.key_id(),
        }))?)?;
    } else {
        ctx.summary(format_args!(
            "created litevault repository {} at {location}",
            repo.config().id.short(),
        ))?;
    }
    if let Some(r) = object_lock {
        ctx.status(format_args!(
            "every object written to {location} is kept for {} days ({:?} mode): give -o s3.object-lock=true to every command on it",
            r.days, r.mode
        ));
    }
    if let Some(m) = existing {
        use std::os::unix::fs::PermissionsExt;
        ctx.status(format_args!(
            "the existing directory {location} keeps its permissions (mode {:o}); new files are private unless it grants its group access",
            m.permissions().mode() & 0o7777
        ));
    }
    ctx.status("Keep the password safe: without it the repository cannot be read, by anyone.");
    Ok(())
}

#[derive(Debug, Args)]
pub struct UnlockArgs {
    /// Remove every lock, also those that may still be held.
    #[arg(long)]
    remove_all: bool,
    /// Print what was removed and what is still held as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn unlock(ctx: &Ctx, args: &UnlockArgs) -> Result<()> {
    let repo = ctx.open()?;
    let removed = repo.unlock(args.remove_all)?;
    if args.json {
        let holder = |r: Option<&litevault::LockRecord>| r.map(litevault::LockRecord::holder);
        let still: Vec<serde_json::Value> = repo
            .locks()?
            .iter()
            .filter(|l| l.record.is_some())
            .map(|l| serde_json::json!({"id": l.id, "holder": holder(l.record.as_ref())}))
            .collect();
        let gone: Vec<serde_json::Value> = removed
            .iter()
            .map(|l| {
                serde_json::json!({
                    "id": l.id,
                    "holder": holder(l.record.as_ref()),
                    "reason": l.stale.as_deref().unwrap_or("removed with --remove-all"),
                })
            })
            .collect();
        return super::out(serde_json::to_string(&serde_json::json!({
            "removed": gone,
            "still_held": still,
            "io": repo.io_stats(),
        }))?);
    }
    for l in &removed {
        let who = l.record.as_ref().map_or_else(
            || "unreadable lock".to_string(),
            litevault::LockRecord::holder,
        );
        let why = l.stale.as_deref().unwrap_or("--remove-all");
        ctx.summary(format_args!(
            "removed lock {} ({}): {}",
            l.id.short(),
            super::printable(&who),
            super::printable(why)
        ))?;
    }
    for l in repo.locks()? {
        if let Some(r) = &l.record {
            ctx.status(format_args!(
                "lock {} is still held by {} (use --remove-all only if that process is gone)",
                l.id.short(),
                super::printable(&r.holder())
            ));
        }
    }
    if removed.is_empty() {
        ctx.status("no stale locks");
    }
    Ok(())
}
