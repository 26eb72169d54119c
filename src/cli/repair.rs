//! `litevault repair index|snapshots`: the way back from a damaged index
//! file or snapshot manifest.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use litevault::{RepairIndexOptions, RepairSnapshotsOptions};

use super::{out, printable, Ctx};

#[derive(Debug, Subcommand)]
pub enum RepairCommand {
    /// Rebuild the index from the packs: damaged index files are replaced,
    /// packs no index lists are taken in, entries of missing packs dropped.
    Index(IndexArgs),
    /// Set damaged snapshot manifests aside: their bytes are saved to a
    /// local directory, then they are removed from the repository.
    Snapshots(SnapshotsArgs),
}

#[derive(Debug, Args)]
pub struct IndexArgs {
    /// Read every pack's header, not only those no readable index lists.
    #[arg(long)]
    read_all_packs: bool,
    /// Only say what would be done.
    #[arg(short = 'n', long)]
    dry_run: bool,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct SnapshotsArgs {
    /// Where the damaged manifests' bytes are saved (created, mode 0700).
    #[arg(
        long,
        value_name = "DIR",
        default_value = "litevault-damaged-snapshots"
    )]
    save_dir: PathBuf,
    /// Only say what would be done.
    #[arg(short = 'n', long)]
    dry_run: bool,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Ctx, cmd: &RepairCommand) -> Result<()> {
    let repo = ctx.open_full("repair")?;
    let result = match cmd {
        RepairCommand::Index(a) => index(ctx, &repo, a),
        RepairCommand::Snapshots(a) => snapshots(ctx, &repo, a),
    };
    super::warn_notes(&repo);
    result
}

fn index(ctx: &Ctx, repo: &litevault::Repository, a: &IndexArgs) -> Result<()> {
    let s = litevault::repair_index(
        repo,
        &RepairIndexOptions {
            read_all_packs: a.read_all_packs,
            dry_run: a.dry_run,
        },
    )?;
    if a.json {
        return out(serde_json::to_string(&s)?);
    }
    for id in &s.damaged_index_files {
        ctx.summary(format_args!(
            "damaged index file index/{}: replaced by the rebuilt index",
            id.short()
        ))?;
    }
    for p in &s.damaged_packs {
        super::warn(&format!(
            "pack {} is not indexed: {}",
            p.pack.short(),
            p.error
        ));
    }
    if !s.missing_packs.is_empty() {
        super::warn(&format!(
            "{} pack(s) the index listed are gone; their entries are dropped (`litevault check` names the snapshots that needed them)",
            s.missing_packs.len()
        ));
    }
    let verb = if s.dry_run { "would write" } else { "wrote" };
    if s.index_files_written == 0 && !s.dry_run {
        return ctx.summary(format_args!(
            "the index is sound: {} pack(s), {} blob(s); nothing to repair",
            s.packs, s.blobs
        ));
    }
    ctx.summary(format_args!(
        "{} pack(s) ({} header(s) read, {} taken in), {} blob(s): {verb} a new index{}",
        s.packs,
        s.headers_read,
        s.packs_added,
        s.blobs,
        if s.dry_run {
            String::new()
        } else {
            format!(
                " ({} file(s)), removed {} old index file(s)",
                s.index_files_written, s.index_files_removed
            )
        }
    ))
}

fn snapshots(ctx: &Ctx, repo: &litevault::Repository, a: &SnapshotsArgs) -> Result<()> {
    let s = litevault::repair_snapshots(
        repo,
        &RepairSnapshotsOptions {
            save_dir: a.save_dir.clone(),
            dry_run: a.dry_run,
        },
    )?;
    if a.json {
        return out(serde_json::to_string(&s)?);
    }
    for d in &s.damaged {
        let what = match &d.saved_to {
            Some(p) => format!("saved to {} and removed", p.display()),
            None => "would be saved and removed".into(),
        };
        ctx.summary(format_args!(
            "snapshot {} is damaged ({}): {what}",
            d.snapshot.short(),
            printable(&d.error)
        ))?;
    }
    ctx.summary(format_args!(
        "read {} snapshot(s): {} damaged, {} removed",
        s.snapshots,
        s.damaged.len(),
        s.removed
    ))
}
