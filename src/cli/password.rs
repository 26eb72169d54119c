//! The command line's order of password sources, over the library's
//! [`litevault::PasswordSource`]: `--password-file` (or
//! `LITEVAULT_PASSWORD_FILE`), `--password-command` (or
//! `LITEVAULT_PASSWORD_COMMAND`), then `LITEVAULT_PASSWORD`, then a no-echo
//! prompt when standard input is a terminal. New passwords (`key add`,
//! `key passwd`) use `--new-password-file`, `LITEVAULT_NEW_PASSWORD_FILE`,
//! `LITEVAULT_NEW_PASSWORD`, then a prompt asked twice.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{bail, Context, Result};
use litevault::{Password, PasswordSource};
use zeroize::Zeroizing;

fn from_file(path: &Path, flag: &str) -> Result<Password> {
    PasswordSource::File(path.to_path_buf())
        .read()
        .map(|p| p.expect("a file always gives a password"))
        .map_err(|e| match e {
            litevault::Error::Password(m) if m.starts_with("cannot read") => {
                anyhow::anyhow!("{m} (given by {flag}; check the path)")
            }
            e => e.into(),
        })
}

fn from_env(var: &str) -> Result<Option<Password>> {
    Ok(PasswordSource::Env(var.into()).read()?)
}

fn prompt(text: &str) -> Result<Password> {
    let p = rpassword::prompt_password(text).context("reading the password from the terminal")?;
    if p.is_empty() {
        bail!("the password is empty: type a non-empty password");
    }
    Ok(Zeroizing::new(p.into_bytes()))
}

fn prompt_twice(text: &str) -> Result<Password> {
    let first = prompt(text)?;
    let again = prompt("enter the password again: ")?;
    if first != again {
        bail!("the passwords do not match: run the command again");
    }
    Ok(first)
}

/// The password of an existing repository. `confirm` asks twice at a prompt
/// (for `init`, which sets it).
pub fn repository(file: Option<&Path>, command: Option<&str>, confirm: bool) -> Result<Password> {
    if let Some(f) = file {
        return from_file(f, "--password-file/LITEVAULT_PASSWORD_FILE");
    }
    if let Some(c) = command {
        return PasswordSource::Command(c.to_string())
            .read()
            .map(|p| p.expect("a command always gives a password"))
            .map_err(|e| {
                anyhow::anyhow!("{e} (given by --password-command/LITEVAULT_PASSWORD_COMMAND)")
            });
    }
    if let Some(p) = from_env("LITEVAULT_PASSWORD")? {
        return Ok(p);
    }
    if std::io::stdin().is_terminal() {
        return if confirm {
            prompt_twice("enter the password for the new repository: ")
        } else {
            prompt("enter the repository password: ")
        };
    }
    bail!("no password given: use --password-file or --password-command, or set LITEVAULT_PASSWORD_FILE, LITEVAULT_PASSWORD_COMMAND or LITEVAULT_PASSWORD")
}

/// The password of `copy`'s source repository: `--from-password-file`
/// (or `LITEVAULT_FROM_PASSWORD_FILE`), `LITEVAULT_FROM_PASSWORD`, a prompt.
pub fn source_repository(file: Option<&Path>) -> Result<Password> {
    if let Some(f) = file {
        return from_file(f, "--from-password-file/LITEVAULT_FROM_PASSWORD_FILE");
    }
    if let Some(p) = from_env("LITEVAULT_FROM_PASSWORD")? {
        return Ok(p);
    }
    if std::io::stdin().is_terminal() {
        return prompt("enter the source repository's password: ");
    }
    bail!("no password given for the source repository: use --from-password-file, or set LITEVAULT_FROM_PASSWORD_FILE or LITEVAULT_FROM_PASSWORD")
}

/// A new password for `key add` / `key passwd`.
pub fn new_password(file: Option<&Path>) -> Result<Password> {
    if let Some(f) = file {
        return from_file(f, "--new-password-file/LITEVAULT_NEW_PASSWORD_FILE");
    }
    if let Some(p) = from_env("LITEVAULT_NEW_PASSWORD")? {
        return Ok(p);
    }
    if std::io::stdin().is_terminal() {
        return prompt_twice("enter the new password: ");
    }
    bail!("no new password given: use --new-password-file, or set LITEVAULT_NEW_PASSWORD_FILE or LITEVAULT_NEW_PASSWORD")
}
