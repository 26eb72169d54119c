//! Counting what a backend is asked: requests by kind and bytes each way.
//! Every backend a location opens is wrapped in it, so every command can
//! say what it cost ([`super::Backend::io_stats`]): on object storage,
//! requests are money and latency.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Backend, FileInfo, FileType, Interrupted};
use crate::error::Result;

/// Requests made to the storage and bytes moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoStats {
    /// Listings.
    pub lists: u64,
    /// Reads of whole objects or ranges, and size queries.
    pub gets: u64,
    /// Writes.
    pub puts: u64,
    /// Deletions.
    pub deletes: u64,
    /// Bytes written.
    pub bytes_sent: u64,
    /// Bytes read.
    pub bytes_received: u64,
    /// Reads served by the local cache instead.
    pub cache_hits: u64,
}

impl IoStats {
    /// All requests.
    pub fn requests(&self) -> u64 {
        self.lists + self.gets + self.puts + self.deletes
    }

    /// The two together (several backends, or several phases).
    #[must_use]
    pub fn plus(&self, other: &IoStats) -> IoStats {
        IoStats {
            lists: self.lists + other.lists,
            gets: self.gets + other.gets,
            puts: self.puts + other.puts,
            deletes: self.deletes + other.deletes,
            bytes_sent: self.bytes_sent + other.bytes_sent,
            bytes_received: self.bytes_received + other.bytes_received,
            cache_hits: self.cache_hits + other.cache_hits,
        }
    }

    /// What happened between `earlier` and `self`.
    #[must_use]
    pub fn since(&self, earlier: &IoStats) -> IoStats {
        IoStats {
            lists: self.lists - earlier.lists,
            gets: self.gets - earlier.gets,
            puts: self.puts - earlier.puts,
            deletes: self.deletes - earlier.deletes,
            bytes_sent: self.bytes_sent - earlier.bytes_sent,
            bytes_received: self.bytes_received - earlier.bytes_received,
            cache_hits: self.cache_hits - earlier.cache_hits,
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    lists: AtomicU64,
    gets: AtomicU64,
    puts: AtomicU64,
    deletes: AtomicU64,
    sent: AtomicU64,
    received: AtomicU64,
}

/// Counts the requests made to the backend it wraps.
#[derive(Debug)]
pub struct CountingBackend {
    inner: Arc<dyn Backend>,
    counters: Counters,
}

impl CountingBackend {
    /// Counts `inner`'s requests.
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        Self {
            inner,
            counters: Counters::default(),
        }
    }
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl Backend for CountingBackend {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn create(&self) -> Result<()> {
        self.inner.create()
    }

    fn write(&self, ty: FileType, name: &str, data: &[u8]) -> Result<()> {
        add(&self.counters.puts, 1);
        add(&self.counters.sent, data.len() as u64);
        self.inner.write(ty, name, data)
    }

    fn read(&self, ty: FileType, name: &str) -> Result<Vec<u8>> {
        add(&self.counters.gets, 1);
        let r = self.inner.read(ty, name);
        if let Ok(b) = &r {
            add(&self.counters.received, b.len() as u64);
        }
        r
    }

    fn read_range(&self, ty: FileType, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        add(&self.counters.gets, 1);
        let r = self.inner.read_range(ty, name, offset, len);
        if let Ok(b) = &r {
            add(&self.counters.received, b.len() as u64);
        }
        r
    }

    fn size(&self, ty: FileType, name: &str) -> Result<u64> {
        add(&self.counters.gets, 1);
        self.inner.size(ty, name)
    }

    fn list(&self, ty: FileType) -> Result<Vec<FileInfo>> {
        let r = self.inner.list(ty);
        let n = r.as_ref().map_or(0, Vec::len);
        add(&self.counters.lists, self.inner.list_requests(n));
        r
    }

    fn list_many(&self, types: &[FileType]) -> Result<Vec<Vec<FileInfo>>> {
        let r = self.inner.list_many(types);
        let sizes: Vec<usize> = r.as_ref().map_or_else(
            |_| vec![0; types.len()],
            |v| v.iter().map(Vec::len).collect(),
        );
        let requests = if self.inner.lists_together() {
            self.inner.list_requests(sizes.iter().sum())
        } else {
            sizes.iter().map(|n| self.inner.list_requests(*n)).sum()
        };
        add(&self.counters.lists, requests);
        r
    }

    fn lists_together(&self) -> bool {
        self.inner.lists_together()
    }

    fn list_requests(&self, objects: usize) -> u64 {
        self.inner.list_requests(objects)
    }

    fn read_parallelism(&self) -> usize {
        self.inner.read_parallelism()
    }

    fn remove(&self, ty: FileType, name: &str) -> Result<()> {
        add(&self.counters.deletes, 1);
        self.inner.remove(ty, name)
    }

    fn list_leftovers(&self) -> Result<Vec<super::Leftover>> {
        add(&self.counters.lists, 1);
        self.inner.list_leftovers()
    }

    fn remove_leftover(&self, path: &str) -> Result<()> {
        add(&self.counters.deletes, 1);
        self.inner.remove_leftover(path)
    }

    fn refuses_deletes(&self) -> Option<String> {
        self.inner.refuses_deletes()
    }

    fn object_lock(&self) -> Result<Option<super::object_lock::Retention>> {
        self.inner.object_lock()
    }

    fn set_object_lock(&self, retention: super::object_lock::Retention) -> Result<()> {
        self.inner.set_object_lock(retention)
    }

    fn reserve(&self, bytes: u64) -> Result<()> {
        self.inner.reserve(bytes)
    }

    fn release_reserve(&self) -> Result<bool> {
        self.inner.release_reserve()
    }

    fn leave_interrupted_write(&self, ty: FileType, name: &str, data: &[u8], how: Interrupted) {
        self.inner.leave_interrupted_write(ty, name, data, how);
    }

    fn io_stats(&self) -> Option<IoStats> {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Some(IoStats {
            lists: load(&c.lists),
            gets: load(&c.gets),
            puts: load(&c.puts),
            deletes: load(&c.deletes),
            bytes_sent: load(&c.sent),
            bytes_received: load(&c.received),
            cache_hits: 0,
        })
    }
}
