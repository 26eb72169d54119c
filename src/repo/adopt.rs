//! What a full key takes of packs only write-only keys' index files list
//! (SPEC.md 21.4): such a pack's header is sealed by the session that
//! wrote it, which a compromised host could have sealed to list blobs it
//! never stored. So the full key reads the whole pack and keeps only the
//! blobs that open and hash to their ids; a pack sealed with the master
//! key (which no write-only key holds) is taken on its header's word.

use std::sync::Arc;

use super::repository::Repository;
use crate::error::{Error, Result};
use crate::format::crypto::SealedBy;
use crate::format::pack::PackedBlob;
use crate::id::PackId;

/// A pack as a full key found it.
pub struct VerifiedPack {
    /// The blobs it really holds.
    pub blobs: Vec<PackedBlob>,
    /// Who sealed it.
    pub sealed_by: SealedBy,
    /// Entries of its header left out, each with why.
    pub rejected: Vec<String>,
}

impl Repository {
    /// Reads pack `id` and says which of its blobs a full key can rely
    /// on: every blob of a master-sealed pack as its header lists them
    /// (only a full key seals one), and of a session's pack only those
    /// that open and hash to their ids; an entry naming a delta base is
    /// refused there (write-only keys never store deltas, SPEC.md 21.5).
    pub fn read_pack_verified(&self, id: &PackId) -> Result<VerifiedPack> {
        let (blobs, sealed_by) = self.read_pack_header(id)?;
        if sealed_by == SealedBy::Master {
            return Ok(VerifiedPack {
                blobs,
                sealed_by,
                rejected: Vec::new(),
            });
        }
        let pack = self.read_pack_bytes(id)?;
        let mut out = VerifiedPack {
            blobs: Vec::with_capacity(pack.blobs.len()),
            sealed_by: pack.sealed_by,
            rejected: Vec::new(),
        };
        for b in &pack.blobs {
            if b.entry.base.is_some() {
                out.rejected.push(format!(
                    "blob {} is listed as a delta, which a write-only key never stores",
                    b.entry.id.short()
                ));
                continue;
            }
            match pack.open(self.key(), b, None) {
                Ok(_) => out.blobs.push(*b),
                Err(Error::Damaged { reason, .. }) => out
                    .rejected
                    .push(format!("blob {}: {reason}", b.entry.id.short())),
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Replaces what write-only keys' index files say of the packs only
    /// they list by what this full key finds in each pack
    /// ([`Repository::read_pack_verified`]); a pack the storage lacks, or
    /// one too damaged to read, holds nothing: what a prune plans with
    /// must be a full key's word, never a write-only host's. Returns how
    /// many packs were read.
    pub(crate) fn adopt_untrusted_packs(&self) -> Result<usize> {
        if self.key().is_write_only() {
            return Ok(0);
        }
        let index = self.index()?;
        let untrusted = index.untrusted_packs();
        if untrusted.is_empty() {
            return Ok(0);
        }
        let stored = self.pack_sizes()?;
        let mut found = Vec::with_capacity(untrusted.len());
        for id in &untrusted {
            let object = crate::backend::FileType::Pack.describe(&id.to_hex());
            if !stored.contains_key(&id.to_hex()) {
                found.push((*id, None));
                continue;
            }
            match self.read_pack_verified(id) {
                Ok(v) => {
                    for why in &v.rejected {
                        self.note(format!(
                            "{object}, written with a write-only key: {why}; it is left out of the index"
                        ));
                    }
                    found.push((*id, Some((v.blobs, v.sealed_by))));
                }
                Err(Error::Damaged { reason, .. }) => {
                    self.note(format!(
                        "{object}, written with a write-only key, is damaged: {reason}; none of its blobs is counted"
                    ));
                    found.push((*id, Some((Vec::new(), SealedBy::Master))));
                }
                Err(e) => return Err(e),
            }
        }
        let mut adopted = (*index).clone();
        adopted.adopt(found);
        self.cache().index = Some(Arc::new(adopted));
        Ok(untrusted.len())
    }
}
