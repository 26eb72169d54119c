//! `litevault key list|add|remove|passwd`.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};

use litevault::commands::key::KeyKind;

use super::{out, password, Ctx};

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// List the key files.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add a key file for a new password.
    Add {
        #[command(flatten)]
        new: NewPassword,
        /// Make a write-only key: it can back up into the repository but
        /// can read, restore or delete nothing, not even what it wrote
        /// (format 4; README "A production host that cannot read its
        /// backups").
        #[arg(long)]
        write_only: bool,
    },
    /// Remove a key file (not the last one, nor the one in use).
    Remove {
        /// Key id or unique prefix (see `litevault key list`).
        id: String,
        /// Print the result as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Change the password of the key in use.
    Passwd(NewPassword),
}

#[derive(Debug, Args)]
pub struct NewPassword {
    /// File holding the new password (else LITEVAULT_NEW_PASSWORD, else a prompt).
    #[arg(long, env = "LITEVAULT_NEW_PASSWORD_FILE", value_name = "FILE")]
    new_password_file: Option<PathBuf>,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Ctx, cmd: KeyCommand) -> Result<()> {
    let mut repo = ctx.open()?;
    match cmd {
        KeyCommand::List { json } => {
            let keys = repo.keys()?;
            if json {
                return out(serde_json::to_string(&keys)?);
            }
            out(format_args!(
                " {:<8}  {:<10}  {:<10}  {:<16}  {:<23}  {}",
                "ID", "KIND", "USER", "HOST", "CREATED", "KDF"
            ))?;
            for k in keys {
                out(format_args!(
                    "{}{:<8}  {:<10}  {:<10}  {:<16}  {:<23}  argon2id {} MiB x{}",
                    if k.current { "*" } else { " " },
                    k.id.short(),
                    if k.write_only { "write-only" } else { "full" },
                    super::printable(&k.meta.username),
                    super::printable(&k.meta.host),
                    ctx.time(&k.meta.created),
                    k.kdf.memory_kib / 1024,
                    k.kdf.iterations
                ))?;
            }
            Ok(())
        }
        KeyCommand::Add { new: a, write_only } => {
            repo.require_full_key("key add")?;
            let pw = password::new_password(a.new_password_file.as_deref())?;
            let kind = if write_only {
                KeyKind::WriteOnly
            } else {
                KeyKind::Full
            };
            let id =
                litevault::commands::key::add_key(&repo, &pw, super::kdf_for_new_keys(), kind)?;
            if a.json {
                return out(serde_json::to_string(
                    &serde_json::json!({ "added": id, "write_only": write_only }),
                )?);
            }
            let what = if write_only { "write-only key" } else { "key" };
            ctx.summary(format_args!("added {what} {}", id.short()))
        }
        KeyCommand::Remove { id, json } => {
            repo.require_full_key("key remove")?;
            let id = repo.find_key(&id)?;
            litevault::commands::key::remove_key(&repo, &id)?;
            if json {
                return out(serde_json::to_string(
                    &serde_json::json!({ "removed": id }),
                )?);
            }
            ctx.summary(format_args!("removed key {}", id.short()))
        }
        KeyCommand::Passwd(a) => {
            repo.require_full_key("key passwd")?;
            let pw = password::new_password(a.new_password_file.as_deref())?;
            let old = repo.key_id();
            let id = litevault::commands::key::change_password(
                &mut repo,
                &pw,
                super::kdf_for_new_keys(),
            )?;
            if a.json {
                return out(serde_json::to_string(
                    &serde_json::json!({ "replaced": old, "key": id }),
                )?);
            }
            ctx.summary(format_args!(
                "changed password: key {} replaced by {}",
                old.short(),
                id.short()
            ))
        }
    }
}
