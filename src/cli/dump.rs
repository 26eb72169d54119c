//! `litevault dump SNAPSHOT [--format sqlite|sql] [--output FILE|-] [--json]`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use litevault::commands::dump::{dump, dump_to_file, DumpFormat};

use super::{cancel_on_signals, snapshot_filter, Ctx, FilterArgs};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    /// The database file itself.
    Sqlite,
    /// SQL text, as `sqlite3 DB .dump` prints it.
    Sql,
}

#[derive(Debug, Args)]
pub struct DumpArgs {
    /// Snapshot id, unique id prefix, or `latest` (narrowed by the filters;
    /// for a database captured continuously, its newest captured commit).
    /// Not needed with --at.
    #[arg(required_unless_present = "at")]
    snapshot: Option<String>,
    /// The database as it was after the last commit captured at or before
    /// TIME (as `restore --at`: RFC 3339 with fractional seconds, local
    /// time as listed, a duration ago, or `latest`). Select the database
    /// with --db.
    #[arg(long, value_name = "TIME", conflicts_with = "before")]
    at: Option<String>,
    #[command(flatten)]
    filter: FilterArgs,
    /// With `latest`: the newest snapshot taken at or before TIME (RFC 3339,
    /// "YYYY-MM-DD[ HH:MM[:SS]]" in the zone times are listed in, or a
    /// duration ago: 2h, 3d).
    #[arg(long, value_name = "TIME")]
    before: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "sqlite")]
    format: Format,
    /// Output file (written beside it and renamed into place at the end),
    /// or - for standard output.
    #[arg(long, default_value = "-", value_name = "FILE")]
    output: PathBuf,
    /// Directory for the temporary copy an SQL dump reads (default: the
    /// system's temporary directory).
    #[arg(long, value_name = "DIR")]
    temp_dir: Option<PathBuf>,
    /// With --output FILE: print what was written as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Ctx, args: &DumpArgs) -> Result<()> {
    let format = match args.format {
        Format::Sqlite => DumpFormat::Sqlite,
        Format::Sql => DumpFormat::Sql,
    };
    let to_stdout = args.output.as_os_str() == "-";
    if to_stdout && args.json {
        bail!("--json describes a dump written to a file: give --output FILE (standard output carries the dump itself)");
    }
    if to_stdout && format == DumpFormat::Sqlite && std::io::stdout().is_terminal() {
        bail!("refusing to write a database image to a terminal: give --output FILE, or redirect the output to a file");
    }
    let mut filter = snapshot_filter(&args.filter)?;
    filter.before = super::restore::before_arg(ctx, args.before.as_deref())?;
    let cancel = cancel_on_signals()?;
    let temp_dir = args.temp_dir.clone().unwrap_or_else(std::env::temp_dir);
    let repo = ctx.open_reading("dump")?;
    let (id, _, at) = super::restore::choose(
        ctx,
        &repo,
        args.snapshot.as_deref(),
        args.at.as_deref(),
        &filter,
    )?;
    let result = if to_stdout {
        let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
        dump(&repo, &id, format, at, &temp_dir, &mut out, &cancel)
            .map_err(anyhow::Error::from)
            .and_then(|_| out.flush().context("writing the dump to standard output"))
    } else {
        dump_to_file(&repo, &id, format, at, &args.output, &temp_dir, &cancel)
            .map_err(anyhow::Error::from)
            .and_then(|s| {
                if args.json {
                    super::out(serde_json::to_string(&s)?)
                } else {
                    Ok(())
                }
            })
    };
    super::warn_notes(&repo);
    result
}
