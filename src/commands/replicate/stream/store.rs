//! Storing a stream's sealed objects (SPEC.md 20.5): in order from the
//! spool, with backoff on failure; bundles once a block is stored; the
//! spool's bound; what a killed run left.

use std::time::{Duration, Instant};

use super::{random32, Worker};
use crate::format::change::{block_start, bundle_bytes, span, FANOUT, MAX_LEVEL};

impl Worker {
    /// Stores the spooled objects in order; on a failure, backs off.
    pub(super) fn store_unstored(&mut self) {
        while let Some(&(level, first)) = self.unstored.front() {
            let Some(bytes) = self.s.paths.spooled_bytes(level, first) else {
                // Lost from the spool: what it held is a gap.
                self.unstored.clear();
                self.gap(format!(
                    "the spooled change object {first} could not be read back"
                ));
                return;
            };
            let started = Instant::now();
            match self.s.repo.put_change(&self.stream, level, first, &bytes) {
                Ok(()) => {
                    self.store_ms = started.elapsed().as_millis() as u64;
                    self.unstored.pop_front();
                    self.retry_at = None;
                    self.backoff = Duration::from_secs(1);
                    let mut st = self.s.status.lock().unwrap();
                    st.objects += 1;
                    st.bytes += bytes.len() as u64;
                    st.puts += 1;
                    st.last_error = None;
                    drop(st);
                    if level == 0 {
                        self.stored_up_to(first);
                        self.bundle_after(first);
                    }
                }
                Err(e) => {
                    self.fail(&e);
                    self.retry_at = Some(Instant::now() + self.backoff);
                    self.backoff = (self.backoff * 2).min(Duration::from_secs(30));
                    return;
                }
            }
        }
    }

    /// The repository now holds change object `seq`.
    pub(super) fn stored_up_to(&mut self, seq: u64) {
        self.state.stored = seq;
        self.stored.seq = seq;
        let mut st = self.s.status.lock().unwrap();
        if self.unstored.iter().all(|(l, _)| *l != 0) {
            st.oldest_unstored_ns = None;
            st.stored_ns = self.state.sealed.time_ns;
        }
        drop(st);
        if seq == self.state.sealed.seq {
            self.stored = self.state.sealed.clone();
        }
        self.save();
    }

    /// After object `seq` is stored: the bundles it completes.
    pub(super) fn bundle_after(&mut self, seq: u64) {
        for level in 1..=MAX_LEVEL {
            let n = span(level);
            if seq % n != 0 {
                break;
            }
            let first = block_start(seq, level);
            let below = level - 1;
            let step = span(below);
            let members: Option<Vec<Vec<u8>>> = (0..FANOUT)
                .map(|i| self.s.paths.spooled_bytes(below, first + i * step))
                .collect();
            let Some(members) = members else {
                // A member is not in the spool (made before a restart that
                // lost it): the objects stay unbundled.
                break;
            };
            let refs: Vec<&[u8]> = members.iter().map(Vec::as_slice).collect();
            let bytes = bundle_bytes(level, first, &refs);
            if bytes.len() > crate::format::MAX_OBJECT_LEN {
                break;
            }
            if level < MAX_LEVEL {
                if let Err(e) = self.s.paths.spool(level, first, &bytes) {
                    self.fail(&e);
                    break;
                }
            }
            if let Err(e) = self.s.repo.put_change(&self.stream, level, first, &bytes) {
                self.fail(&e);
                break;
            }
            let mut st = self.s.status.lock().unwrap();
            st.puts += 1;
            st.bytes += bytes.len() as u64;
            drop(st);
            // Its members are superseded.
            let gone: Vec<(u8, u64)> = (0..FANOUT).map(|i| (below, first + i * step)).collect();
            if self.can_delete {
                if let Err(e) = self.s.repo.remove_changes(&self.stream, &gone) {
                    // A key that may not delete (write-only): prune does it.
                    self.can_delete = false;
                    self.s.status.lock().unwrap().last_error =
                        Some(format!("superseded change objects are left for prune: {e}"));
                } else {
                    self.s.status.lock().unwrap().deletes += gone.len() as u64;
                }
            }
            for (l, f) in gone {
                self.s.paths.unspool(l, f);
            }
        }
    }

    /// Past the spool's bound (the storage unreachable for long): the
    /// unstored objects are dropped, and a bridge follows.
    pub(super) fn check_spool_bound(&mut self) {
        if self.unstored.is_empty() {
            return;
        }
        if self.s.paths.spool_bytes() <= self.s.opts.spool_limit {
            return;
        }
        for (l, f) in self.unstored.drain(..) {
            self.s.paths.unspool(l, f);
        }
        // Back to what the repository holds.
        self.state.sealed = self.stored.clone();
        self.digest = self.stored.digest_bytes().unwrap_or_else(random32);
        self.save();
        self.gap(format!(
            "the storage was unreachable for longer than the spool ({} MiB) holds",
            self.s.opts.spool_limit >> 20
        ));
    }

    /// Stores the spooled objects a killed run left, in order: the ones
    /// after what the state says is stored.
    pub(super) fn recover_spool(&mut self) {
        for (level, first) in self.s.paths.spooled_objects() {
            if level == 0 && first > self.state.stored && first <= self.state.sealed.seq {
                self.unstored.push_back((0, first));
            } else if level == 0 && first > self.state.sealed.seq {
                // Sealed but not recorded: its commits are captured again.
                self.s.paths.unspool(0, first);
            }
        }
        self.store_unstored();
    }
}
