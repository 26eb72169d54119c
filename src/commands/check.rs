//! Check: is the repository consistent, and (with read-data) intact?
//!
//! * every index file opens; index files left superseded by an interrupted
//!   prune are warnings;
//! * every indexed pack exists and its header lists exactly the blobs the
//!   index says, at the same offsets; packs no index names are warnings
//!   (`prune` removes them);
//! * every delta blob's chain is whole: its base indexed, of its type and
//!   one level shallower, down to a full blob;
//! * every snapshot opens and every blob its chunk-list tree reaches is
//!   indexed (tree blobs are read and decoded);
//! * every stream's change objects after each of its snapshots open and
//!   continue its digest (`changes`);
//! * `read_data`: every selected pack is read whole and every blob
//!   authenticated, decompressed and checked against its id.
//!
//! Findings are structured; `check` fails only if it cannot run at all. It
//! reads the index itself, tolerating damaged index files, rather than
//! through the repository's cached index.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::backend::{FileType, IoStats};
use crate::error::{Error, Result};
use crate::format::manifest::Manifest;
use crate::id::{BlobId, PackId};
use crate::progress::Cancel;
use crate::repo::walker::walk;
use crate::repo::{Index, Repository};

mod changes;

/// Severity of a finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Data is missing or damaged.
    Error,
    /// Harmless leftovers; a hint says how to tidy them.
    Warning,
}

/// What tidies up or repairs a finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Remedy {
    /// A prune removes it.
    Prune,
    /// Rebuilding the index from the packs (`repair index`) replaces it.
    RepairIndex,
    /// Setting damaged manifests aside (`repair snapshots`) removes it.
    RepairSnapshots,
    /// Forgetting the snapshot removes it (its data is gone).
    Forget,
}

/// One problem found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Error or warning.
    pub severity: Severity,
    /// The object concerned.
    pub object: String,
    /// What is wrong.
    pub message: String,
    /// What tidies it up, for harmless leftovers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remedy: Option<Remedy>,
}

/// Which packs `read_data` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadData {
    /// None: structure only.
    None,
    /// All packs.
    All,
    /// Subset `n` of `m` (1-based): packs whose first id byte mod m is n-1.
    Subset(u32, u32),
}

/// The outcome of a check.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CheckReport {
    /// Problems found.
    pub findings: Vec<Finding>,
    /// Snapshots checked.
    pub snapshots: usize,
    /// Packs indexed.
    pub packs: usize,
    /// Blobs indexed.
    pub blobs: usize,
    /// Packs read whole.
    pub packs_read: usize,
    /// Change objects (and bundles) of continuous capture read.
    pub changes: usize,
    /// Requests made to the storage and bytes moved, from opening the
    /// repository to the end of this command (lock released).
    #[serde(default)]
    pub io: IoStats,
}

impl CheckReport {
    /// Findings of severity error.
    pub fn errors(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count()
    }

    fn error(&mut self, object: impl Into<String>, message: impl Into<String>) {
        self.repairable(object, message, None);
    }

    fn repairable(
        &mut self,
        object: impl Into<String>,
        message: impl Into<String>,
        remedy: Option<Remedy>,
    ) {
        self.findings.push(Finding {
            severity: Severity::Error,
            object: object.into(),
            message: message.into(),
            remedy,
        });
    }

    fn leftover(&mut self, object: impl Into<String>, message: impl Into<String>) {
        self.leftover_with(object, message, Remedy::Prune);
    }

    fn leftover_with(
        &mut self,
        object: impl Into<String>,
        message: impl Into<String>,
        remedy: Remedy,
    ) {
        self.findings.push(Finding {
            severity: Severity::Warning,
            object: object.into(),
            message: message.into(),
            remedy: Some(remedy),
        });
    }
}

/// What a stopped check says: it only reads.
const STOPPED: &str = "check stopped; nothing was changed";

/// Checks the repository (see the module docs).
pub fn check(repo: &Repository, read_data: ReadData) -> Result<CheckReport> {
    check_with(repo, read_data, &Cancel::default())
}

/// [`check`], stopping with [`Error::Interrupted`] when `cancel` is
/// cancelled (looked at between packs and between stages).
pub fn check_with(repo: &Repository, read_data: ReadData, cancel: &Cancel) -> Result<CheckReport> {
    repo.require_full_key("check")?;
    let lock = repo.lock_reading("check")?;
    let mut report = CheckReport::default();
    let index = check_index_files(repo, &mut report)?;
    cancel.check(STOPPED)?;
    let bad_packs = check_packs(repo, &index, &mut report, cancel)?;
    check_delta_chains(&index, &mut report);
    for l in repo.backend().list_leftovers()? {
        // Writers run beside a check: their files in flight are not left over.
        let age = if l.is_lock() {
            crate::format::lock::STALE_AFTER
        } else {
            std::time::Duration::from_secs(3600)
        };
        if !l.older_than(age) {
            continue;
        }
        report.leftover(
            l.path,
            format!(
                "a temporary file of an interrupted write ({} bytes)",
                l.size
            ),
        );
    }
    cancel.check(STOPPED)?;
    let manifests = check_snapshots(repo, &index, &mut report)?;
    cancel.check(STOPPED)?;
    changes::check_streams(repo, &manifests, &mut report);
    let bases = crate::repo::BaseCache::default();
    let mut selected: Vec<&PackId> = index
        .packs()
        .iter()
        .map(|p| &p.id)
        .filter(|id| !bad_packs.contains(id))
        .collect();
    selected.sort();
    for id in selected {
        cancel.check(STOPPED)?;
        let take = match read_data {
            ReadData::None => false,
            ReadData::All => true,
            ReadData::Subset(n, m) => u32::from(id.as_bytes()[0]) % m == n - 1,
        };
        if take {
            report.packs_read += 1;
            if let Err(e) = repo.read_pack_with(id, &index, &bases) {
                report.error(FileType::Pack.describe(&id.to_hex()), e.to_string());
            }
        }
    }
    report
        .findings
        .sort_by(|a, b| (a.severity as u8, &a.object).cmp(&(b.severity as u8, &b.object)));
    drop(lock);
    report.io = repo.io_stats();
    Ok(report)
}

/// Loads the index files, reporting the unreadable ones; superseded ones
/// are warnings.
fn check_index_files(repo: &Repository, report: &mut CheckReport) -> Result<Index> {
    let index = repo.load_index_files(Some(&mut |id, e| {
        report.repairable(
            FileType::Index.describe(&id.to_hex()),
            e.to_string(),
            Some(Remedy::RepairIndex),
        );
    }))?;
    for id in index.superseded() {
        report.leftover(
            FileType::Index.describe(&id.to_hex()),
            "superseded by a newer index (an interrupted prune)",
        );
    }
    report.packs = index.packs().len();
    report.blobs = index.len();
    Ok(index)
}

/// Compares indexed packs with their headers; returns the bad ones.
fn check_packs(
    repo: &Repository,
    index: &Index,
    report: &mut CheckReport,
    cancel: &Cancel,
) -> Result<HashSet<PackId>> {
    let stored = repo.pack_sizes()?;
    let mut bad = HashSet::new();
    for p in index.packs() {
        cancel.check(STOPPED)?;
        let name = p.id.to_hex();
        let object = FileType::Pack.describe(&name);
        if !stored.contains_key(&name) {
            report.repairable(
                &object,
                "an index lists it but it is missing",
                Some(Remedy::RepairIndex),
            );
            bad.insert(p.id);
            continue;
        }
        match repo.read_pack_header(&p.id) {
            Ok((mut header, by)) => {
                header.sort_by_key(|b| b.offset);
                let mut listed = p.blobs.clone();
                listed.sort_by_key(|b| b.offset);
                listed.dedup();
                if by != p.sealed_by {
                    report.error(&object, "its tail and the index disagree on who sealed it");
                    bad.insert(p.id);
                } else if header != listed {
                    report.error(
                        &object,
                        format!(
                            "its header lists {} blobs that differ from the {} the index lists",
                            header.len(),
                            listed.len()
                        ),
                    );
                    bad.insert(p.id);
                }
            }
            Err(e) => {
                report.error(&object, e.to_string());
                bad.insert(p.id);
            }
        }
    }
    // With an index file damaged, an unindexed pack may be one it listed:
    // prune refuses then, and repair index takes it back.
    let damaged_index = damaged_index(report);
    for name in stored.keys() {
        let id: PackId = name.parse()?;
        if index.pack(&id).is_none() {
            report.leftover_with(
                FileType::Pack.describe(name),
                "no index lists it (left by an interrupted backup or prune, or listed by a damaged index file)",
                if damaged_index {
                    Remedy::RepairIndex
                } else {
                    Remedy::Prune
                },
            );
        }
    }
    Ok(bad)
}

/// Every snapshot opens and reaches only indexed blobs; a missing or
/// damaged tree blob is reported and its subtree skipped.
/// Every delta blob's base is indexed, of the same type, one level
/// shallower; a blob whose chain breaks is reported once, with the break.
fn check_delta_chains(index: &Index, report: &mut CheckReport) {
    for p in index.packs() {
        for b in &p.blobs {
            if !index.is_primary(&p.id, &b.entry.id) {
                continue;
            }
            if let Some(Err(broken)) = index.delta_base(&b.entry) {
                report.error(format!("blob {}", b.entry.id.short()), broken);
            }
        }
    }
}

/// True once `report` holds a damaged index file.
fn damaged_index(report: &CheckReport) -> bool {
    report
        .findings
        .iter()
        .any(|f| f.remedy == Some(Remedy::RepairIndex) && f.object.starts_with("index/"))
}

/// Returns the manifests that opened.
fn check_snapshots(
    repo: &Repository,
    index: &Index,
    report: &mut CheckReport,
) -> Result<Vec<Manifest>> {
    // While an index file is damaged, blobs only it listed look missing:
    // `repair index` finds them again, and forgetting would lose them.
    let damaged_index = damaged_index(report);
    let mut walked: HashSet<BlobId> = HashSet::new();
    let mut manifests = Vec::new();
    for f in repo.backend().list(FileType::Snapshot)? {
        let object = FileType::Snapshot.describe(&f.name);
        let m = match repo.load_manifest(&f.name.parse()?) {
            Ok(m) => m,
            Err(e @ Error::Damaged { .. }) => {
                report.repairable(&object, e.to_string(), Some(Remedy::RepairSnapshots));
                continue;
            }
            Err(e) => {
                report.error(&object, e.to_string());
                continue;
            }
        };
        report.snapshots += 1;
        let missing = std::cell::Cell::new(0u64);
        let mut problem: Option<String> = None;
        walk(
            &m.tree,
            Some(&mut walked),
            &mut |id, level| {
                if !index.contains(id) {
                    missing.set(missing.get() + 1);
                    return Ok(None);
                }
                match repo.read_tree_with(index, id) {
                    Ok(n) if n.level == level => Ok(Some(n)),
                    Ok(n) => {
                        problem.get_or_insert(format!(
                            "tree blob {} has level {} where {level} was expected",
                            id.short(),
                            n.level
                        ));
                        Ok(None)
                    }
                    Err(e) => {
                        problem.get_or_insert(e.to_string());
                        Ok(None)
                    }
                }
            },
            &mut |e| {
                if !index.contains(&e.id) {
                    missing.set(missing.get() + 1);
                }
                Ok(())
            },
        )?;
        let missing = missing.get();
        if missing > 0 && damaged_index {
            report.repairable(
                &object,
                format!("{missing} of its blobs are in no readable index: a damaged index file may list them"),
                Some(Remedy::RepairIndex),
            );
        } else if missing > 0 {
            report.repairable(
                &object,
                format!("{missing} of its blobs are not in any index: its data is missing"),
                Some(Remedy::Forget),
            );
        }
        if let Some(p) = problem {
            report.error(&object, p);
        }
        manifests.push(m);
    }
    Ok(manifests)
}
