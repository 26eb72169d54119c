//! `litevault generate --completions SHELL | --man DIR`: shell completion
//! scripts and man pages made from the command line's own definition (as
//! `restic generate` does).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, CommandFactory};

use super::{Cli, Ctx};

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct GenerateArgs {
    /// Print the completion script for SHELL (bash, zsh, fish, powershell,
    /// elvish); e.g. `litevault generate --completions bash > /etc/bash_completion.d/litevault`.
    #[arg(long, value_name = "SHELL", value_enum)]
    completions: Option<clap_complete::Shell>,
    /// Write man pages into DIR: litevault.1 and one per command
    /// (litevault-backup.1, ...); e.g. `--man /usr/local/share/man/man1`.
    #[arg(long, value_name = "DIR")]
    man: Option<PathBuf>,
}

pub fn run(ctx: &Ctx, args: &GenerateArgs) -> Result<()> {
    let cmd = Cli::command();
    if let Some(shell) = args.completions {
        let mut cmd = cmd;
        let mut out = std::io::stdout().lock();
        clap_complete::generate(shell, &mut cmd, "litevault", &mut out);
        return Ok(());
    }
    if let Some(dir) = &args.man {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create man page directory {}", dir.display()))?;
        clap_mangen::generate_to(cmd, dir)
            .with_context(|| format!("cannot write man pages into {}", dir.display()))?;
        ctx.status(format_args!("man pages written to {}", dir.display()));
    }
    Ok(())
}
