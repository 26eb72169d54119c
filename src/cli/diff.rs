//! `litevault diff SNAPSHOT1 SNAPSHOT2` and `litevault diff SNAPSHOT --target LIVE.db`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use litevault::commands::diff::{diff, DiffTarget};

use super::{cancel_on_signals, human, out, printable, snapshot_filter, Ctx, FilterArgs};

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The first snapshot: id, unique prefix, or `latest` (narrowed by the filters).
    from: String,
    /// The second snapshot (id or prefix).
    #[arg(required_unless_present = "target", conflicts_with = "target")]
    to: Option<String>,
    /// Compare with this live database instead ("what would a restore undo?").
    #[arg(long, value_name = "DB")]
    target: Option<PathBuf>,
    #[command(flatten)]
    filter: FilterArgs,
    /// Directory for the snapshots' temporary copies (mode 0600, removed
    /// at exit; default: the system's temporary directory).
    #[arg(long, value_name = "DIR")]
    temp_dir: Option<PathBuf>,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Ctx, args: &DiffArgs) -> Result<()> {
    let filter = snapshot_filter(&args.filter)?;
    let cancel = cancel_on_signals()?;
    let repo = ctx.open_reading("diff")?;
    let (from, _) = repo.find_snapshot(&args.from, &filter)?;
    let to = match (&args.to, &args.target) {
        (Some(s), _) => DiffTarget::Snapshot(repo.find_snapshot(s, &filter)?.0),
        (None, Some(p)) => DiffTarget::Live(p.clone()),
        (None, None) => unreachable!("clap requires one"),
    };
    let temp = args.temp_dir.clone().unwrap_or_else(std::env::temp_dir);
    let d = diff(&repo, &from, &to, &temp, &cancel)?;
    super::warn_notes(&repo);
    if args.json {
        return out(serde_json::to_string(&d)?);
    }
    let name = |s: &litevault::commands::diff::Side| match s.snapshot {
        Some(id) => format!("snapshot {} of {}", id.short(), printable(&s.database)),
        None => format!("live database {}", printable(&s.database)),
    };
    out(format_args!("from {}\n  to {}", name(&d.from), name(&d.to)))?;
    if !d.same_database {
        out("note: these are two different databases")?;
    }
    if d.schema.is_empty() {
        out("schema: unchanged")?;
    } else {
        out("schema:")?;
        for c in &d.schema {
            let mark = match c.change.as_str() {
                "added" => "+",
                "removed" => "-",
                _ => "~",
            };
            out(format_args!("  {mark} {} {}", c.kind, printable(&c.name)))?;
        }
    }
    out(format_args!(
        "{:<28} {:>10} {:>10} {:>10} {:>10}",
        "table", "inserted", "deleted", "updated", "unchanged"
    ))?;
    for t in &d.tables {
        out(format_args!(
            "{:<28} {:>10} {:>10} {:>10} {:>10}{}",
            printable(&t.table),
            t.inserted,
            t.deleted,
            t.updated,
            t.unchanged,
            t.note
                .as_deref()
                .map(|n| format!("  ({n})"))
                .unwrap_or_default()
        ))?;
    }
    out(format_args!(
        "pages: {} of {} changed (page size {}){}",
        d.pages.changed,
        d.pages.pages.0.max(d.pages.pages.1),
        d.pages.page_size.1,
        d.to.added_bytes
            .map(|b| format!("; the second snapshot added {} to the repository", human(b)))
            .unwrap_or_default()
    ))
}
