//! From a location string to a backend.
//!
//! A location is what a user types after `--repo`: a path (`/srv/backup`,
//! `backups/app`), or a URL-like string with a scheme (`file:/srv/backup`).
//! Strings that look like they name a scheme this build does not know are
//! refused rather than taken for a relative directory of that name
//! (`sftp:host:/path` must never silently become a local folder).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use super::local::LocalBackend;
use super::Backend;
use crate::error::{Error, Result};

/// Where a repository lives.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Location {
    /// A local directory.
    Local(PathBuf),
}

impl Location {
    /// Parses a location string.
    pub fn parse(s: &str) -> Result<Self> {
        if s.is_empty() {
            return Err(Error::InvalidInput(
                "the repository location is empty".into(),
            ));
        }
        if let Some(path) = s.strip_prefix("file://") {
            return Ok(Location::Local(PathBuf::from(path)));
        }
        if let Some(path) = s.strip_prefix("file:") {
            return Ok(Location::Local(PathBuf::from(path)));
        }
        if let Some(scheme) = scheme_of(s) {
            return Err(Error::InvalidInput(format!(
                "repository location {s:?} has the unknown scheme {scheme:?}: give a directory path or file:PATH (write ./{s} for a local directory with a colon in its name)"
            )));
        }
        Ok(Location::Local(PathBuf::from(s)))
    }

    /// A backend for the existing repository at this location; fails if
    /// nothing is there.
    pub fn open(&self) -> Result<Arc<dyn Backend>> {
        match self {
            Location::Local(p) => Ok(Arc::new(LocalBackend::open(p)?)),
        }
    }

    /// A backend for a repository to be created at this location.
    pub fn for_init(&self) -> Result<Arc<dyn Backend>> {
        match self {
            Location::Local(p) => Ok(Arc::new(LocalBackend::new(p))),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The scheme of `s` if it starts like `scheme:` (letters, digits, `+-.`,
/// starting with a letter, at least two characters), else `None`.
fn scheme_of(s: &str) -> Option<&str> {
    let (scheme, _) = s.split_once(':')?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (scheme.len() >= 2
        && first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some(scheme)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(
            Location::parse("/srv/lv").unwrap(),
            Location::Local("/srv/lv".into())
        );
        assert_eq!(
            Location::parse("file:/srv/lv").unwrap(),
            Location::Local("/srv/lv".into())
        );
        assert_eq!(
            Location::parse("file:///srv/lv").unwrap(),
            Location::Local("/srv/lv".into())
        );
        assert_eq!(
            Location::parse("rel/dir").unwrap(),
            Location::Local("rel/dir".into())
        );
        assert_eq!(
            Location::parse("./odd:name").unwrap(),
            Location::Local("./odd:name".into())
        );
        for bad in ["gopher:host/x", "", "ftp://example.com/x"] {
            assert!(Location::parse(bad).is_err(), "{bad}");
        }
    }
}
