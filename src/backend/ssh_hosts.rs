//! How an SFTP repository's ssh is told which host keys to trust and which
//! configuration to read: the `sftp.known-hosts`, `sftp.known-hosts-file`
//! and `sftp.ssh-config` options turned into ssh's own settings.
//!
//! * `strict` (the default): only a key recorded in the known hosts file.
//! * `accept`: an unknown host's key is trusted for this run and recorded
//!   nowhere (ssh writes new keys to the first `UserKnownHostsFile`, here
//!   `/dev/null`); a changed key is still refused.
//! * `add`: an unknown host's key is trusted and recorded in the known
//!   hosts file (the one given, else ssh's default); a changed key is
//!   refused.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The files ssh reads when none is configured (ssh_config(5)).
const SSH_DEFAULT_FILES: &[&str] = &["~/.ssh/known_hosts", "~/.ssh/known_hosts2"];

/// What ssh is to be given for one SFTP repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SshHosts {
    /// OpenDAL's host key strategy: `strict` or `add` (ssh's
    /// `StrictHostKeyChecking` `yes` or `accept-new`).
    pub strategy: &'static str,
    /// The value of ssh's `UserKnownHostsFile`, if it is to be set.
    pub known_hosts_files: Option<String>,
    /// The configuration file for `ssh -F`, if given.
    pub ssh_config: Option<String>,
    /// The known hosts file to name in messages.
    pub known_hosts_shown: String,
}

impl SshHosts {
    /// Reads the options' values (`known_hosts` one of `strict`, `accept`,
    /// `add`; the files as given), refusing files that cannot be used.
    pub fn new(
        known_hosts: Option<&str>,
        known_hosts_file: Option<&str>,
        ssh_config: Option<&str>,
    ) -> Result<Self> {
        let file = known_hosts_file
            .map(|f| usable_path("sftp.known-hosts-file", f))
            .transpose()?;
        let ssh_config = match ssh_config {
            Some(c) => {
                let path = usable_path("sftp.ssh-config", c)?;
                if !Path::new(&path).is_file() {
                    return Err(Error::option(
                        "options",
                        format!(
                            "option sftp.ssh-config={c:?}: no such file: give an ssh_config(5) file"
                        ),
                    ));
                }
                Some(path)
            }
            None => None,
        };
        // The file ssh checks without `sftp.known-hosts-file`: the one the
        // given configuration names, else ssh's default.
        let configured = ssh_config.as_deref().and_then(configured_known_hosts);
        let quoted = |files: &[&str]| {
            files
                .iter()
                .map(|f| format!("\"{f}\""))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let (strategy, known_hosts_files) = match known_hosts.unwrap_or("strict") {
            "accept" => {
                let mut files = vec!["/dev/null"];
                match (&file, &configured) {
                    (Some(f), _) | (None, Some(f)) => files.push(f),
                    (None, None) => files.extend(SSH_DEFAULT_FILES),
                }
                ("add", Some(quoted(&files)))
            }
            "add" => ("add", file.as_deref().map(|f| quoted(&[f]))),
            _ => ("strict", file.as_deref().map(|f| quoted(&[f]))),
        };
        Ok(SshHosts {
            strategy,
            known_hosts_files,
            ssh_config,
            known_hosts_shown: file
                .or(configured)
                .unwrap_or_else(|| SSH_DEFAULT_FILES[0].to_string()),
        })
    }
}

/// The first `UserKnownHostsFile` an ssh configuration file sets (its
/// first file), as ssh takes the first value it obtains. Which `Host` or
/// `Match` block the line is in is not weighed: a configuration that
/// names different files per host is named by its first.
fn configured_known_hosts(config: &str) -> Option<String> {
    let text = std::fs::read_to_string(config).ok()?;
    text.lines().find_map(|line| {
        let line = line.trim();
        let (key, rest) = line.split_once(|c: char| c.is_whitespace() || c == '=')?;
        if !key.eq_ignore_ascii_case("UserKnownHostsFile") {
            return None;
        }
        let value = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '=');
        let first = match value.strip_prefix('"') {
            Some(quoted) => quoted.split('"').next()?,
            None => value.split_whitespace().next()?,
        };
        (!first.is_empty() && !first.eq_ignore_ascii_case("none")).then(|| first.to_string())
    })
}

/// `given` as ssh is to read it: `~/…` as is (ssh expands it), anything
/// else made absolute; refused if ssh could not take it in a quoted list.
fn usable_path(option: &str, given: &str) -> Result<String> {
    let bad = |why: &str| {
        Error::option(
            "options",
            format!("option {option}={given:?}: {why}: give a file's path"),
        )
    };
    if given.is_empty() {
        return Err(bad("empty"));
    }
    if given.contains(['"', '\n', '\r', '\0']) {
        return Err(bad("ssh cannot read a path with quotes or line breaks"));
    }
    if given.starts_with("~/") {
        return Ok(given.to_string());
    }
    let path = std::path::absolute(PathBuf::from(given)).map_err(|_| bad("not a path"))?;
    path.to_str()
        .map(String::from)
        .ok_or_else(|| bad("not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_records_nowhere_and_add_records_in_the_given_file() {
        let strict = SshHosts::new(None, None, None).unwrap();
        assert_eq!(strict.strategy, "strict");
        assert_eq!(strict.known_hosts_files, None);
        assert_eq!(strict.known_hosts_shown, "~/.ssh/known_hosts");

        let accept = SshHosts::new(Some("accept"), None, None).unwrap();
        assert_eq!(accept.strategy, "add");
        assert_eq!(
            accept.known_hosts_files.as_deref(),
            Some("\"/dev/null\" \"~/.ssh/known_hosts\" \"~/.ssh/known_hosts2\"")
        );

        let accept = SshHosts::new(Some("accept"), Some("/etc/lv/hosts"), None).unwrap();
        assert_eq!(
            accept.known_hosts_files.as_deref(),
            Some("\"/dev/null\" \"/etc/lv/hosts\"")
        );
        assert_eq!(accept.known_hosts_shown, "/etc/lv/hosts");

        let add = SshHosts::new(Some("add"), Some("/etc/lv/my hosts"), None).unwrap();
        assert_eq!(add.strategy, "add");
        assert_eq!(
            add.known_hosts_files.as_deref(),
            Some("\"/etc/lv/my hosts\"")
        );

        let relative = SshHosts::new(None, Some("hosts"), None).unwrap();
        assert!(relative.known_hosts_shown.starts_with('/'));
    }

    #[test]
    fn unusable_files_are_refused_naming_the_option() {
        for (file, config, what) in [
            (Some("a\"b"), None, "sftp.known-hosts-file"),
            (Some(""), None, "sftp.known-hosts-file"),
            (None, Some("/no/such/ssh_config"), "sftp.ssh-config"),
            (None, Some("/"), "sftp.ssh-config"),
        ] {
            let e = SshHosts::new(None, file, config).unwrap_err().to_string();
            assert!(e.contains(what), "{e}");
        }
    }

    #[test]
    fn a_given_ssh_config_names_the_known_hosts_file_checked() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("ssh_config");
        std::fs::write(
            &config,
            "# ours\nHost vault\n  Port 2222\n  UserKnownHostsFile=\"/etc/lv/known hosts\" /etc/lv/other\n",
        )
        .unwrap();
        let c = config.to_str().unwrap();
        let strict = SshHosts::new(None, None, Some(c)).unwrap();
        assert_eq!(strict.known_hosts_shown, "/etc/lv/known hosts");
        assert_eq!(strict.known_hosts_files, None);
        let accept = SshHosts::new(Some("accept"), None, Some(c)).unwrap();
        assert_eq!(
            accept.known_hosts_files.as_deref(),
            Some("\"/dev/null\" \"/etc/lv/known hosts\"")
        );
        // The option still wins; a configuration naming none leaves ssh's.
        let given = SshHosts::new(None, Some("/etc/lv/given"), Some(c)).unwrap();
        assert_eq!(given.known_hosts_shown, "/etc/lv/given");
        std::fs::write(&config, "Host *\n  Port 22\n").unwrap();
        let plain = SshHosts::new(None, None, Some(c)).unwrap();
        assert_eq!(plain.known_hosts_shown, "~/.ssh/known_hosts");
    }
}
