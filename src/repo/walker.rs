//! The one walker of chunk-list trees (restore, dump, prune, check,
//! stats, copy).
//!
//! [`walk`] visits a snapshot's tree depth-first and calls `leaf` for every
//! chunk entry in image order. `load` fetches one tree blob given the level
//! it must have; it may return `None` to skip a subtree (check records a
//! missing or damaged tree blob and carries on), and the walker itself
//! refuses a node of the wrong level, so a forged tree cannot loop or
//! recurse deeper than [`crate::format::tree::MAX_TREE_LEVEL`]. With `seen`, a tree blob already
//! visited (shared by another snapshot) is not loaded again.

use std::collections::HashSet;

use super::repository::Repository;
use crate::error::{Error, Result};
use crate::format::manifest::Manifest;
use crate::format::tree::{TreeEntry, TreeNode, TreeRoot};
use crate::id::BlobId;

/// Walks the tree under `root` (see the module docs).
#[allow(clippy::implicit_hasher)]
pub fn walk(
    root: &TreeRoot,
    mut seen: Option<&mut HashSet<BlobId>>,
    load: &mut dyn FnMut(&BlobId, u8) -> Result<Option<TreeNode>>,
    leaf: &mut dyn FnMut(&TreeEntry) -> Result<()>,
) -> Result<()> {
    visit(&root.id, root.level, &mut seen, load, leaf)
}

fn visit(
    id: &BlobId,
    level: u8,
    seen: &mut Option<&mut HashSet<BlobId>>,
    load: &mut dyn FnMut(&BlobId, u8) -> Result<Option<TreeNode>>,
    leaf: &mut dyn FnMut(&TreeEntry) -> Result<()>,
) -> Result<()> {
    if let Some(seen) = seen.as_deref_mut() {
        if !seen.insert(*id) {
            return Ok(());
        }
    }
    let Some(node) = load(id, level)? else {
        return Ok(());
    };
    if node.level != level {
        return Err(Error::damaged(
            format!("tree blob {}", id.short()),
            format!("level {} where {level} was expected", node.level),
        ));
    }
    for e in &node.entries {
        if level == 0 {
            leaf(e)?;
        } else {
            visit(&e.id, level - 1, seen, load, leaf)?;
        }
    }
    Ok(())
}

impl Repository {
    /// Calls `leaf` for every chunk of the snapshot in image order, reading
    /// its tree blobs strictly (any problem is an error). With `seen`, tree
    /// blobs already walked are skipped.
    #[allow(clippy::implicit_hasher)]
    pub fn walk_chunks(
        &self,
        manifest: &Manifest,
        seen: Option<&mut HashSet<BlobId>>,
        leaf: &mut dyn FnMut(&TreeEntry) -> Result<()>,
    ) -> Result<()> {
        let index = self.index()?;
        walk(
            &manifest.tree,
            seen,
            &mut |id, _| self.read_tree_with(&index, id).map(Some),
            leaf,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn store(nodes: &[(u8, TreeNode)]) -> HashMap<BlobId, TreeNode> {
        nodes
            .iter()
            .map(|(i, n)| (BlobId::from_bytes([*i; 32]), n.clone()))
            .collect()
    }

    fn entry(i: u8, len: u64) -> TreeEntry {
        TreeEntry {
            id: BlobId::from_bytes([i; 32]),
            len,
        }
    }

    #[test]
    fn leaves_in_order_and_wrong_levels_refused() {
        let s = store(&[
            (
                1,
                TreeNode {
                    level: 1,
                    entries: vec![entry(2, 3), entry(3, 4)],
                },
            ),
            (
                2,
                TreeNode {
                    level: 0,
                    entries: vec![entry(10, 1), entry(11, 2)],
                },
            ),
            (
                3,
                TreeNode {
                    level: 0,
                    entries: vec![entry(12, 4)],
                },
            ),
        ]);
        let root = TreeRoot {
            id: BlobId::from_bytes([1; 32]),
            level: 1,
        };
        let mut lens = Vec::new();
        walk(
            &root,
            None,
            &mut |id, _| Ok(Some(s[id].clone())),
            &mut |e| {
                lens.push(e.len);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(lens, [1, 2, 4]);
        let looping = store(&[(
            1,
            TreeNode {
                level: 1,
                entries: vec![entry(1, 3)],
            },
        )]);
        let e = walk(
            &root,
            None,
            &mut |id, _| Ok(Some(looping[id].clone())),
            &mut |_| Ok(()),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("level 1 where 0 was expected"),
            "{e}"
        );
    }

    #[test]
    fn shared_subtrees_are_walked_once_and_skips_are_honoured() {
        let s = store(&[
            (
                1,
                TreeNode {
                    level: 1,
                    entries: vec![entry(2, 3), entry(2, 3)],
                },
            ),
            (
                2,
                TreeNode {
                    level: 0,
                    entries: vec![entry(10, 1)],
                },
            ),
        ]);
        let root = TreeRoot {
            id: BlobId::from_bytes([1; 32]),
            level: 1,
        };
        let mut seen = HashSet::new();
        let mut n = 0;
        walk(
            &root,
            Some(&mut seen),
            &mut |id, _| Ok(Some(s[id].clone())),
            &mut |_| {
                n += 1;
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(n, 1);
        let mut n = 0;
        walk(
            &root,
            None,
            &mut |id, level| Ok((level == 1).then(|| s[id].clone())),
            &mut |_| {
                n += 1;
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(n, 0, "skipped subtrees have no leaves");
    }
}
