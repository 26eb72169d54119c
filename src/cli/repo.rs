//! `litevault init` and `litevault unlock`.

use anyhow::Result;
use clap::Args;
use litevault::{CompressionParams, Config, InitOptions, Repository};

use super::{out, password, Ctx};

#[derive(Debug, Args)]
pub struct InitArgs {
    /// zstd level for data (0 stores uncompressed, 1..=22).
    #[arg(long, default_value_t = CompressionParams::DEFAULT.zstd_level, value_name = "LEVEL")]
    compression_level: i32,
    /// Target pack file size in MiB.
    #[arg(long, default_value_t = Config::DEFAULT_PACK_SIZE >> 20, value_name = "MIB")]
    pack_size: u32,
}

pub fn init(ctx: &Ctx, args: &InitArgs) -> Result<()> {
    let location = ctx.location()?;
    let password = password::repository(ctx.password_file.as_deref(), true)?;
    let opts = InitOptions {
        kdf: super::kdf_for_new_keys(),
        compression: CompressionParams {
            zstd_level: args.compression_level,
        },
        pack_size: args.pack_size.saturating_mul(1 << 20),
        ..InitOptions::default()
    };
    let repo = Repository::init(location.for_init()?, &password, &opts)?;
    out(format_args!(
        "created litevault repository {} at {location}",
        repo.config().id.short(),
    ))?;
    ctx.status("Keep the password safe: without it the repository cannot be read, by anyone.");
    Ok(())
}

#[derive(Debug, Args)]
pub struct UnlockArgs {
    /// Remove every lock, also those that may still be held.
    #[arg(long)]
    remove_all: bool,
}

pub fn unlock(ctx: &Ctx, args: &UnlockArgs) -> Result<()> {
    let repo = ctx.open()?;
    let removed = repo.unlock(args.remove_all)?;
    for l in &removed {
        let who = l.record.as_ref().map_or_else(
            || "unreadable lock".to_string(),
            litevault::LockRecord::holder,
        );
        let why = l.stale.as_deref().unwrap_or("--remove-all");
        out(format_args!("removed lock {} ({who}): {why}", l.id.short()))?;
    }
    for l in repo.locks()? {
        if let Some(r) = &l.record {
            ctx.status(format_args!(
                "lock {} is still held by {} (use --remove-all only if that process is gone)",
                l.id.short(),
                r.holder()
            ));
        }
    }
    if removed.is_empty() {
        ctx.status("no stale locks");
    }
    Ok(())
}
