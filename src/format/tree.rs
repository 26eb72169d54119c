//! The chunk-list tree (SPEC.md, "Snapshots").
//!
//! A snapshot's manifest does not hold the chunk list itself: a 10 GiB
//! database has hundreds of thousands of chunks. The list is stored as
//! **tree blobs** in packs, cut into content-defined pieces, and the
//! manifest names only the [`TreeRoot`]; an unchanged database therefore
//! re-uses every tree blob and adds only its manifest. [`TreeBuilder`]
//! builds the tree as chunk ids stream in; `repo::walker` walks it.
//!
//! Tree blob payload (all little-endian):
//!
//! ```text
//! u8       level: 0 = entries are data blobs (chunks), k > 0 = entries are
//!          tree blobs of level k-1
//! u32      n entries
//! n × 40   blob id (32) || u64 bytes of image covered by the entry
//! ```

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::Reader;
use crate::id::BlobId;

/// Length of one tree entry.
pub const TREE_ENTRY_LEN: usize = 40;
/// Deepest tree accepted from disk.
pub const MAX_TREE_LEVEL: u8 = 8;

/// One entry of a tree blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeEntry {
    /// A data blob (level 0) or a tree blob of the level below.
    pub id: BlobId,
    /// Bytes of the image this entry covers.
    pub len: u64,
}

/// A decoded tree blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeNode {
    /// 0 for leaves listing data blobs.
    pub level: u8,
    /// Entries in image order.
    pub entries: Vec<TreeEntry>,
}

impl TreeNode {
    /// The tree blob's plaintext.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + self.entries.len() * TREE_ENTRY_LEN);
        out.push(self.level);
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for e in &self.entries {
            out.extend_from_slice(e.id.as_bytes());
            out.extend_from_slice(&e.len.to_le_bytes());
        }
        out
    }

    /// Decodes a tree blob's plaintext; `object` names it in errors.
    pub fn decode(bytes: &[u8], object: &str) -> Result<Self> {
        let bad = |e: String| Error::damaged(object, format!("tree blob: {e}"));
        let mut r = Reader::new(bytes);
        let level = r.u8().map_err(bad)?;
        if level > MAX_TREE_LEVEL {
            return Err(bad(format!("level {level} exceeds {MAX_TREE_LEVEL}")));
        }
        let n = r.count(TREE_ENTRY_LEN).map_err(bad)?;
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            let id = BlobId::from_slice(r.take(32).map_err(bad)?);
            let len = r.u64().map_err(bad)?;
            entries.push(TreeEntry { id, len });
        }
        r.finish().map_err(bad)?;
        Ok(Self { level, entries })
    }
}

/// An entry ends a tree blob when the first two bytes of its id, as a
/// little-endian u16, are 0 modulo this (average fan-out 64)...
pub const TREE_CUT_MODULUS: u16 = 64;
/// ...or when the tree blob reaches this many entries.
pub const TREE_MAX_ENTRIES: usize = 1024;

/// Builds the chunk-list tree as chunk ids stream in, keeping only one open
/// node per level in memory. Cuts depend only on entry ids, so an unchanged
/// run of chunks yields the same tree blobs (and dedups) wherever it sits.
#[derive(Debug, Default)]
pub struct TreeBuilder {
    levels: Vec<Vec<TreeEntry>>,
}

impl TreeBuilder {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a data blob (a chunk); `emit` stores a finished tree blob and
    /// returns its id.
    pub fn push(
        &mut self,
        entry: TreeEntry,
        emit: &mut impl FnMut(TreeNode) -> Result<BlobId>,
    ) -> Result<()> {
        self.push_at(0, entry, emit)
    }

    fn push_at(
        &mut self,
        level: usize,
        entry: TreeEntry,
        emit: &mut impl FnMut(TreeNode) -> Result<BlobId>,
    ) -> Result<()> {
        if self.levels.len() <= level {
            self.levels.resize_with(level + 1, Vec::new);
        }
        self.levels[level].push(entry);
        let cut = u16::from_le_bytes([entry.id.as_bytes()[0], entry.id.as_bytes()[1]])
            % TREE_CUT_MODULUS
            == 0
            || self.levels[level].len() >= TREE_MAX_ENTRIES;
        if cut {
            self.close(level, emit)?;
        }
        Ok(())
    }

    fn close(
        &mut self,
        level: usize,
        emit: &mut impl FnMut(TreeNode) -> Result<BlobId>,
    ) -> Result<()> {
        let entries = std::mem::take(&mut self.levels[level]);
        let len = entries.iter().map(|e| e.len).sum();
        let lvl = u8::try_from(level)
            .ok()
            .filter(|l| *l <= MAX_TREE_LEVEL)
            .ok_or_else(|| {
                Error::Internal(format!(
                    "chunk list tree deeper than {MAX_TREE_LEVEL} levels"
                ))
            })?;
        let id = emit(TreeNode {
            level: lvl,
            entries,
        })?;
        self.push_at(level + 1, TreeEntry { id, len }, emit)
    }

    /// Flushes every level and returns the root.
    pub fn finish(mut self, emit: &mut impl FnMut(TreeNode) -> Result<BlobId>) -> Result<TreeRoot> {
        let mut level = 0;
        loop {
            if self.levels.len() <= level {
                self.levels.resize_with(level + 1, Vec::new);
            }
            let top = self.levels[level + 1..].iter().all(Vec::is_empty);
            let n = self.levels[level].len();
            if top && level > 0 && n == 1 {
                let root = self.levels[level][0];
                return Ok(TreeRoot {
                    id: root.id,
                    level: (level - 1) as u8,
                });
            }
            if n > 0 || (top && level == 0) {
                self.close(level, emit)?;
            }
            level += 1;
        }
    }
}

/// The root of a snapshot's chunk list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeRoot {
    /// Id of the root tree blob.
    pub id: BlobId,
    /// Its level.
    pub level: u8,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn build(n: usize) -> (TreeRoot, HashMap<BlobId, TreeNode>) {
        let mut store = HashMap::new();
        let mut emit = |node: TreeNode| -> Result<BlobId> {
            let id = BlobId::from_bytes(*blake3::hash(&node.encode()).as_bytes());
            store.insert(id, node);
            Ok(id)
        };
        let mut b = TreeBuilder::new();
        for i in 0..n {
            let id = BlobId::from_bytes(*blake3::hash(&(i as u64).to_le_bytes()).as_bytes());
            b.push(TreeEntry { id, len: i as u64 }, &mut emit).unwrap();
        }
        let root = b.finish(&mut emit).unwrap();
        (root, store)
    }

    fn leaves(root: &TreeRoot, store: &HashMap<BlobId, TreeNode>) -> Vec<u64> {
        fn visit(id: &BlobId, level: u8, store: &HashMap<BlobId, TreeNode>, out: &mut Vec<u64>) {
            let node = &store[id];
            assert_eq!(node.level, level);
            for e in &node.entries {
                if level == 0 {
                    out.push(e.len);
                } else {
                    visit(&e.id, level - 1, store, out);
                }
            }
        }
        let mut out = Vec::new();
        visit(&root.id, root.level, store, &mut out);
        out
    }

    #[test]
    fn tree_walk_returns_every_entry_in_order() {
        for n in [0, 1, 2, 63, 64, 65, 1000, 5000, 70_000] {
            let (root, store) = build(n);
            assert_eq!(
                leaves(&root, &store),
                (0..n as u64).collect::<Vec<_>>(),
                "n = {n}"
            );
            if n > 5000 {
                assert!(root.level >= 2, "n = {n}: level {}", root.level);
            }
        }
    }

    #[test]
    fn tree_of_a_prefix_shares_blobs() {
        let (_, a) = build(20_000);
        let (_, b) = build(20_100);
        let shared = b.keys().filter(|k| a.contains_key(k)).count();
        assert!(
            shared * 10 >= b.len() * 9,
            "{shared} of {} tree blobs shared",
            b.len()
        );
    }

    proptest! {
        #[test]
        fn tree_round_trip(level in 0u8..=MAX_TREE_LEVEL, lens in proptest::collection::vec(any::<u64>(), 0..50)) {
            let node = TreeNode {
                level,
                entries: lens.iter().enumerate().map(|(i, l)| TreeEntry { id: BlobId::from_bytes([i as u8; 32]), len: *l }).collect(),
            };
            prop_assert_eq!(TreeNode::decode(&node.encode(), "t").unwrap(), node);
        }

        #[test]
        fn tree_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = TreeNode::decode(&bytes, "t");
        }
    }
}
