//! Where a repository password comes from: a file, an environment
//! variable, a command's output, or a value the caller already has. The
//! command-line tool decides the order and prompts at a terminal; a daemon
//! reads its configured source before each job.
//!
//! A password file's or command's single trailing newline is not part of
//! the password. Passwords live in zeroized buffers.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// A password in memory, wiped when dropped.
pub type Password = Zeroizing<Vec<u8>>;

/// One place a password can come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PasswordSource {
    /// A file holding the password.
    File(PathBuf),
    /// An environment variable holding the password.
    Env(String),
    /// A shell command printing the password (`pass show litevault`).
    Command(String),
}

fn strip_newline(bytes: &mut Vec<u8>) {
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
}

/// The longest password litevault reads from a file or a command.
pub const MAX_PASSWORD: u64 = 64 * 1024;

impl PasswordSource {
    /// Reads the password; `Ok(None)` when an environment variable is not
    /// set (so a caller can try the next source).
    pub fn read(&self) -> Result<Option<Password>> {
        match self {
            PasswordSource::File(path) => {
                let mut bytes = std::fs::File::open(path)
                    .and_then(|f| crate::sys::read_secret_limited(f, MAX_PASSWORD))
                    .map_err(|e| {
                        Error::Password(format!(
                            "cannot read password file {}: {e}",
                            path.display()
                        ))
                    })?;
                strip_newline(&mut bytes);
                if bytes.is_empty() {
                    return Err(Error::Password(format!(
                        "password file {} is empty: write the password into it",
                        path.display()
                    )));
                }
                Ok(Some(bytes))
            }
            PasswordSource::Env(var) => match std::env::var_os(var) {
                None => Ok(None),
                Some(v) if v.is_empty() => Err(Error::Password(format!(
                    "{var} is set but empty: unset it or give a password"
                ))),
                Some(v) => Ok(Some(Zeroizing::new(v.into_encoded_bytes()))),
            },
            PasswordSource::Command(cmd) => {
                let mut child = Command::new("sh")
                    .arg("-c")
                    .arg(cmd)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .map_err(|e| {
                        Error::Password(format!("cannot run the password command: {e}"))
                    })?;
                let stdout = child.stdout.take().expect("piped");
                let read = crate::sys::read_secret_limited(stdout, MAX_PASSWORD);
                if read.is_err() {
                    let _ = child.kill();
                }
                let status = child.wait().map_err(|e| {
                    Error::Password(format!("cannot run the password command: {e}"))
                })?;
                let mut bytes = read.map_err(|e| {
                    Error::Password(format!("reading the password command's output: {e}"))
                })?;
                if !status.success() {
                    return Err(Error::Password(format!(
                        "the password command failed ({status})"
                    )));
                }
                strip_newline(&mut bytes);
                if bytes.is_empty() {
                    return Err(Error::Password(
                        "the password command printed nothing".into(),
                    ));
                }
                Ok(Some(bytes))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "secret\r\n").unwrap();
        assert_eq!(
            PasswordSource::File(f.clone())
                .read()
                .unwrap()
                .unwrap()
                .as_slice(),
            b"secret"
        );
        std::fs::write(&f, "\n").unwrap();
        assert!(PasswordSource::File(f).read().is_err());
        assert!(PasswordSource::Env("LITEVAULT_TEST_SURELY_UNSET".into())
            .read()
            .unwrap()
            .is_none());
        assert_eq!(
            PasswordSource::Command("echo hunter2".into())
                .read()
                .unwrap()
                .unwrap()
                .as_slice(),
            b"hunter2"
        );
        assert!(PasswordSource::Command("exit 3".into()).read().is_err());
    }
}
