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
//! [`Repository::walk_chunks`] reads a snapshot's tree blobs level by level
//! before walking them, each level's blobs with joined range reads: on a
//! network store each read is a round trip.

use std::collections::{HashMap, HashSet};

use super::index::Index;
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

/// Where each blob of a snapshot's tree sits in its image: what a backup
/// chooses delta bases from.
#[derive(Debug, Default)]
pub struct TreeLayout {
    /// Every chunk: (start, end, id), in image order.
    pub chunks: Vec<(u64, u64, BlobId)>,
    /// Every tree blob by level: (start, end, id) of the image bytes it
    /// covers, in image order.
    pub nodes: Vec<Vec<(u64, u64, BlobId)>>,
}

impl Repository {
    /// The layout of `manifest`'s tree (see [`TreeLayout`]), read strictly.
    pub fn tree_layout(&self, manifest: &Manifest) -> Result<TreeLayout> {
        let index = self.index()?;
        let nodes = self.prefetch_trees(&index, &manifest.tree, None)?;
        let offset = std::cell::Cell::new(0u64);
        let layout = std::cell::RefCell::new(TreeLayout::default());
        walk(
            &manifest.tree,
            None,
            &mut |id, level| {
                let node = match nodes.get(id) {
                    Some(node) => node.clone(),
                    None => self.read_tree_with(&index, id)?,
                };
                let start = offset.get();
                let len: u64 = node.entries.iter().map(|e| e.len).sum();
                let mut l = layout.borrow_mut();
                let level = usize::from(level);
                if l.nodes.len() <= level {
                    l.nodes.resize_with(level + 1, Vec::new);
                }
                l.nodes[level].push((start, start.saturating_add(len), *id));
                Ok(Some(node))
            },
            &mut |e| {
                let start = offset.get();
                let end = start.saturating_add(e.len);
                layout.borrow_mut().chunks.push((start, end, e.id));
                offset.set(end);
                Ok(())
            },
        )?;
        Ok(layout.into_inner())
    }

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
        let nodes = self.prefetch_trees(&index, &manifest.tree, seen.as_deref())?;
        walk(
            &manifest.tree,
            seen,
            &mut |id, _| match nodes.get(id) {
                Some(node) => Ok(Some(node.clone())),
                None => self.read_tree_with(&index, id).map(Some),
            },
            leaf,
        )
    }

    /// Reads the tree blobs under `root` level by level, each level's in
    /// parallel (a tree read is one small range read: on a network store
    /// its latency, not its bytes, is the cost), skipping those in `seen`.
    /// The walk then checks levels and order as it always does.
    fn prefetch_trees(
        &self,
        index: &Index,
        root: &TreeRoot,
        seen: Option<&HashSet<BlobId>>,
    ) -> Result<HashMap<BlobId, TreeNode>> {
        let mut nodes: HashMap<BlobId, TreeNode> = HashMap::new();
        let mut wanted = vec![root.id];
        for _ in 0..=root.level {
            let todo: Vec<BlobId> = wanted
                .iter()
                .copied()
                .filter(|id| !nodes.contains_key(id) && !seen.is_some_and(|s| s.contains(id)))
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            if todo.is_empty() {
                break;
            }
            let fetched = self.read_trees(index, &todo)?;
            wanted = fetched
                .iter()
                .filter(|n| n.level > 0)
                .flat_map(|n| n.entries.iter().map(|e| e.id))
                .collect();
            nodes.extend(todo.into_iter().zip(fetched));
        }
        Ok(nodes)
    }

    /// Tree blobs `ids`: those the local cache holds from it, the others
    /// with range reads joined as a reassembly joins them (a level of a
    /// tree is hundreds of small blobs side by side in a few packs).
    fn read_trees(&self, index: &Index, ids: &[BlobId]) -> Result<Vec<TreeNode>> {
        let object = |id: &BlobId| format!("tree blob {}", id.short());
        for id in ids {
            if index
                .get(id)
                .is_some_and(|l| l.blob.entry.ty != crate::format::pack::BlobType::Tree)
            {
                return Err(Error::damaged(
                    object(id),
                    "the index lists it as a data blob",
                ));
            }
        }
        let cache = self.blob_cache();
        let cached = |id: &BlobId| {
            cache
                .as_ref()
                .zip(index.get(id))
                .is_some_and(|(c, l)| c.get(&l.blob.entry).is_some())
        };
        let (from_cache, to_read): (Vec<BlobId>, Vec<BlobId>) =
            ids.iter().partition(|id| cached(id));
        let mut nodes: HashMap<BlobId, TreeNode> = HashMap::new();
        for id in &from_cache {
            nodes.insert(*id, self.read_tree_with(index, id)?);
        }
        if !to_read.is_empty() {
            let all = self.index()?;
            let plain = self
                .read_blobs(all, &to_read)
                .map_err(|e| self.blame_damaged_index(e))?;
            for (id, p) in to_read.iter().zip(plain) {
                nodes.insert(*id, TreeNode::decode(&p, &object(id))?);
            }
        }
        Ok(ids
            .iter()
            .map(|id| nodes.get(id).cloned().expect("every id read"))
            .collect())
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
