//! `litevault dump SNAPSHOT [--format sqlite|sql] [-o FILE|-]`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

use super::{snapshot_filter, Ctx, FilterArgs};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    /// The database file itself.
    Sqlite,
    /// SQL text, as `sqlite3 DB .dump` prints it.
    Sql,
}

#[derive(Debug, Args)]
pub struct DumpArgs {
    /// Snapshot id, unique id prefix, or `latest` (narrowed by the filters).
    snapshot: String,
    #[command(flatten)]
    filter: FilterArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "sqlite")]
    format: Format,
    /// Output file, or - for standard output.
    #[arg(short, long, default_value = "-", value_name = "FILE")]
    output: PathBuf,
}

pub fn run(ctx: &Ctx, args: &DumpArgs) -> Result<()> {
    let repo = ctx.open()?;
    let (id, _) = repo.find_snapshot(&args.snapshot, &snapshot_filter(&args.filter)?)?;
    let to_stdout = args.output.as_os_str() == "-";
    let mut out: Box<dyn Write> = if to_stdout {
        Box::new(std::io::BufWriter::with_capacity(
            1 << 20,
            std::io::stdout().lock(),
        ))
    } else {
        Box::new(std::io::BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(&args.output)
                .with_context(|| format!("cannot create {}", args.output.display()))?,
        ))
    };
    match args.format {
        Format::Sqlite => {
            litevault::dump_image(&repo, &id, &mut out)?;
        }
        Format::Sql => litevault::dump_sql(&repo, &id, &std::env::temp_dir(), &mut out)?,
    }
    out.flush().context("writing the dump")?;
    Ok(())
}
