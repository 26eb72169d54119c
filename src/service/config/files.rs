//! The files a config names, checked at start: the databases to back up
//! (SQLite files, or not there yet) and the directories restores go to.

use std::path::Path;

use super::{config_error, Config};
use crate::error::Result;

impl Config {
    /// Checks that every database a job backs up is an SQLite file, and
    /// that every restore-only database's directory is a directory. A
    /// database a job backs up that does not exist yet is no error: its
    /// units wait for it (a container's first boot); nor is a missing
    /// directory of a restore-only one. Those are returned, each with its
    /// line.
    pub fn check_databases(&self) -> Result<Vec<(String, String)>> {
        let mut waiting = Vec::new();
        for (name, d) in &self.databases {
            let path = &d.backup.path;
            let backed_up = self.jobs.values().any(|j| j.databases.contains(name));
            let key = format!("databases.{name}.path");
            let missing = not_there(path);
            if backed_up && missing {
                waiting.push((
                    name.clone(),
                    format!(
                        "{key}: {} does not exist yet: its backups wait for it and begin once it appears",
                        path.display()
                    ),
                ));
            } else if backed_up {
                check_sqlite_file(path).map_err(|m| {
                    config_error(&self.file, format!("{key}: {}: {m}", path.display()))
                })?;
            } else {
                let dir = path.parent().unwrap_or(Path::new("/"));
                if not_there(dir) {
                    waiting.push((
                        name.clone(),
                        format!(
                            "{key}: directory {} does not exist yet: restores into it fail until it does",
                            dir.display()
                        ),
                    ));
                } else if !dir.is_dir() {
                    return Err(config_error(
                        &self.file,
                        format!("{key}: {} is not a directory: fix the path", dir.display()),
                    ));
                }
            }
        }
        Ok(waiting)
    }
}

/// True if nothing is at `path` (a database a first boot has not made yet).
pub fn not_there(path: &Path) -> bool {
    matches!(std::fs::symlink_metadata(path), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
}

/// `Ok` if `path` is a regular file starting with SQLite's header.
fn check_sqlite_file(path: &Path) -> std::result::Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "does not exist: fix the path".to_string(),
        _ => format!("cannot read it: {e}"),
    })?;
    if !meta.is_file() {
        return Err("not a regular file: give the database file".into());
    }
    if meta.len() == 0 {
        // An empty file is a valid, empty database.
        return Ok(());
    }
    if !crate::sqlite::has_sqlite_header(path) {
        return Err("not an SQLite database (no SQLite header): fix the path".into());
    }
    Ok(())
}
