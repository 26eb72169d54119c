//! Reassembling a snapshot's image: the backup path backwards.
//!
//! Walks the chunk-list tree from the manifest's root, fetches each data
//! blob with one range read (authenticated, decompressed and checked against
//! its id), writes it out in order, and checks the whole image's keyed hash
//! and length against the manifest. Any mismatch is an error naming the
//! damaged or missing object; the caller discards what was written.

use std::io::Write;

use crate::error::{Error, Result};
use crate::id::{BlobId, SnapshotId};
use crate::index::Index;
use crate::repository::Repository;
use crate::snapshot::{walk_tree, Manifest, TreeNode};

impl Repository {
    /// Writes the image of `manifest` to `out`, verified; returns its length.
    pub fn write_image(
        &self,
        index: &Index,
        manifest: &Manifest,
        out: &mut impl Write,
    ) -> Result<u64> {
        let mut hasher = self.key().blob_hasher();
        let mut written = 0u64;
        walk_tree(
            &manifest.tree,
            &mut |id: &BlobId| {
                let bytes = self.read_blob(index, id)?;
                TreeNode::decode(&bytes, &format!("tree blob {}", id.short()))
            },
            &mut |entry| {
                let data = self.read_blob(index, &entry.id)?;
                if data.len() as u64 != entry.len {
                    return Err(Error::damaged(
                        format!("tree entry for blob {}", entry.id.short()),
                        format!("it says {} bytes, the blob has {}", entry.len, data.len()),
                    ));
                }
                hasher.update(&data);
                written += data.len() as u64;
                out.write_all(&data)
                    .map_err(|e| Error::io("writing the restored image", e))
            },
        )?;
        if written != manifest.image.bytes
            || BlobId::from_bytes(*hasher.finalize().as_bytes()) != manifest.image.hash
        {
            return Err(Error::damaged(
                "snapshot image",
                format!(
                    "the reassembled image ({written} bytes) does not match the manifest's hash and size ({} bytes)",
                    manifest.image.bytes
                ),
            ));
        }
        Ok(written)
    }

    /// Writes the image of snapshot `id` to `out`, verified.
    pub fn dump_image(&self, id: &SnapshotId, out: &mut impl Write) -> Result<u64> {
        let manifest = self.load_manifest(id)?;
        let index = self.load_index()?;
        self.write_image(&index, &manifest, out)
    }
}
