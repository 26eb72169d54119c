//! `litevault show SNAPSHOT`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use litevault::commands::show::show;

use super::{cancel_on_signals, human, out, printable, snapshot_filter, Ctx, FilterArgs};

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Snapshot id, unique id prefix, or `latest` (narrowed by the filters).
    snapshot: String,
    #[command(flatten)]
    filter: FilterArgs,
    /// Directory for the snapshot's temporary copy (mode 0600, removed at
    /// exit; default: the system's temporary directory).
    #[arg(long, value_name = "DIR")]
    temp_dir: Option<PathBuf>,
    /// Print it as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Ctx, args: &ShowArgs) -> Result<()> {
    let filter = snapshot_filter(&args.filter)?;
    let cancel = cancel_on_signals()?;
    let repo = ctx.open_reading("show")?;
    let (id, _) = repo.find_snapshot(&args.snapshot, &filter)?;
    let temp = args.temp_dir.clone().unwrap_or_else(std::env::temp_dir);
    let s = show(&repo, &id, &temp, &cancel)?;
    super::warn_notes(&repo);
    if args.json {
        return out(serde_json::to_string(&s)?);
    }
    let m = &s.manifest;
    let zone = ctx.zone();
    out(format_args!(
        "snapshot {} of {} ({}) on host {} by {}",
        s.short_id,
        printable(&m.database.name),
        printable(&m.database.shown_path()),
        printable(&m.host),
        printable(&m.username)
    ))?;
    out(format_args!("  id         {}", s.id))?;
    out(format_args!(
        "  time       {}",
        super::format_time(m.timestamp(), &zone)
    ))?;
    out(format_args!(
        "  tags       {}",
        if m.tags.is_empty() {
            "(none)".to_string()
        } else {
            printable(&m.tags.join(", "))
        }
    ))?;
    if let Some(c) = &m.continuous {
        let kind = match c.kind {
            litevault::format::manifest::ContinuousKind::Bridge => "bridge",
            litevault::format::manifest::ContinuousKind::Fold => "fold",
        };
        out(format_args!(
            "  stream     {} ({kind} after change object {}): the database as of {}{}",
            &c.stream[..8],
            c.seq,
            super::restore::moment(ctx, c.time_ns),
            c.gap
                .as_ref()
                .filter(|g| *g != litevault::commands::ranges::STARTS)
                .map_or_else(String::new, |g| format!(
                    "; bridges a gap: {}",
                    printable(g)
                ))
        ))?;
        let pairs = repo.snapshots()?;
        for r in litevault::commands::ranges::ranges(&repo, &pairs)?
            .into_iter()
            .filter(|r| r.stream == c.stream)
        {
            out(format_args!(
                "  restores   any commit from {} to {} (`restore --at`)",
                super::restore::moment(ctx, r.from_ns),
                super::restore::moment(ctx, r.to_ns)
            ))?;
        }
    }
    let strategy = match m.image.strategy {
        litevault::Strategy::Pages => "pages",
        litevault::Strategy::Vacuum => "vacuum",
    };
    out(format_args!(
        "  image      {} ({} pages of {} bytes), {strategy} strategy, journal mode {}, SQLite {}",
        human(m.image.bytes),
        m.image.page_count,
        m.image.page_size,
        printable(&m.image.journal_mode),
        printable(&m.image.sqlite_version)
    ))?;
    out(format_args!(
        "  added      {} to the repository when made: {} of {} chunks new ({})",
        human(m.stats.added_bytes),
        m.stats.new_chunks,
        m.stats.chunks,
        human(m.stats.new_bytes)
    ))?;
    out(format_args!(
        "  schema     {} table(s), {} index(es), {} view(s), {} trigger(s)",
        s.tables.len(),
        s.indexes,
        s.views,
        s.triggers
    ))?;
    out(format_args!("  {:<32} {:>12}", "table", "rows"))?;
    for t in &s.tables {
        out(format_args!(
            "  {:<32} {:>12}",
            printable(&t.name),
            t.rows
                .map_or_else(|| "(virtual)".to_string(), |n| n.to_string())
        ))?;
    }
    Ok(())
}
