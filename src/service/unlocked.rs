//! Repositories unlocked once per service process.
//!
//! Opening a repository derives its key with Argon2id (128 MiB, a third
//! of a second): done for every API request and every scheduled run, 24
//! parallel requests took the daemon to 3.1 GB. Here each configured
//! repository is unlocked once, the first time it is needed (parallel
//! first requests wait for that one unlock instead of each making their
//! own), and every operation then starts from a fresh handle on it
//! ([`Repository::fresh`]: the same storage and key, nothing listed yet).
//! A failed unlock is not remembered: the next operation tries again. A
//! config reload forgets them all (a password or a location may have
//! changed).
//!
//! Memory: one unlocked repository per configured repository (its key and
//! its storage client); the key derivation's 128 MiB are freed once it is
//! done, and at most one derivation per repository runs at a time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::config::RepositorySettings;
use crate::error::{Error, Result};
use crate::repo::{OpenOptions, Repository};

/// The unlocked repositories, by configured name.
#[derive(Default)]
pub struct Unlocked {
    slots: Mutex<HashMap<String, Arc<Mutex<Option<Repository>>>>>,
}

impl Unlocked {
    /// A fresh handle on repository `name` (settings `r`), unlocking it
    /// first if this process has not yet.
    pub fn get(&self, name: &str, r: &RepositorySettings) -> Result<Repository> {
        let slot = Arc::clone(
            self.slots
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .entry(name.to_string())
                .or_default(),
        );
        // Held while unlocking: others asking for it wait for this one.
        let mut held = slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(repo) = held.as_ref() {
            return Ok(repo.fresh());
        }
        let repo = open(r)?;
        let handle = repo.fresh();
        *held = Some(repo);
        Ok(handle)
    }

    /// Forgets every unlocked repository (a reload).
    pub fn clear(&self) {
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }
}

/// Opens repository `r` with its password (a key derivation).
pub fn open(r: &RepositorySettings) -> Result<Repository> {
    let backend = r.location.open(&r.options)?;
    let password = r.password.read()?.ok_or_else(|| {
        Error::Password(match &r.password {
            crate::repo::password::PasswordSource::Env(v) => {
                format!("environment variable {v} (the repository's password) is not set")
            }
            _ => "the repository's password source gave nothing".into(),
        })
    })?;
    Repository::open_with(
        backend,
        &password,
        &OpenOptions {
            cache_root: r.cache_root.clone(),
        },
    )
}
