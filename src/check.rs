//! Check: is the repository consistent, and (with read-data) intact?
//!
//! * every index file opens; index files left superseded by an interrupted
//!   prune are warnings;
//! * every indexed pack exists and its header lists exactly the blobs the
//!   index says, at the same offsets; packs no index names are warnings
//!   (`prune` removes them);
//! * every snapshot opens and every blob its chunk-list tree reaches is
//!   indexed (tree blobs are read and decoded);
//! * `read_data`: every selected pack is read whole and every blob
//!   authenticated, decompressed and checked against its id.
//!
//! Findings are structured; `check` fails only if it cannot run at all.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::backend::FileType;
use crate::error::Result;
use crate::id::{BlobId, PackId};
use crate::index::Index;
use crate::lock::LockKind;
use crate::pack;
use crate::repository::Repository;

/// Severity of a finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Data is missing or damaged.
    Error,
    /// Harmless leftovers; a hint says how to tidy them.
    Warning,
}

/// One problem found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Error or warning.
    pub severity: Severity,
    /// The object concerned.
    pub object: String,
    /// What is wrong (and, for warnings, what to do).
    pub message: String,
}

/// Which packs `read_data` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
        self.findings.push(Finding {
            severity: Severity::Error,
            object: object.into(),
            message: message.into(),
        });
    }

    fn warn(&mut self, object: impl Into<String>, message: impl Into<String>) {
        self.findings.push(Finding {
            severity: Severity::Warning,
            object: object.into(),
            message: message.into(),
        });
    }
}

impl Repository {
    /// Checks the repository (see the module docs).
    pub fn check(&self, read_data: ReadData) -> Result<CheckReport> {
        let _lock = self.lock(LockKind::Shared, "check")?;
        let mut report = CheckReport::default();
        let (index, by_pack) = self.check_index_files(&mut report)?;
        let bad_packs = self.check_packs(&by_pack, &mut report)?;
        self.check_snapshots(&index, &mut report)?;
        let mut selected: Vec<&PackId> = by_pack
            .keys()
            .filter(|id| !bad_packs.contains(id))
            .collect();
        selected.sort();
        for id in selected {
            let take = match read_data {
                ReadData::None => false,
                ReadData::All => true,
                ReadData::Subset(n, m) => u32::from(id.as_bytes()[0]) % m == n - 1,
            };
            if take {
                report.packs_read += 1;
                if let Err(e) = self.read_pack(id) {
                    report.error(FileType::Pack.describe(&id.to_hex()), e.to_string());
                }
            }
        }
        report
            .findings
            .sort_by(|a, b| (a.severity as u8, &a.object).cmp(&(b.severity as u8, &b.object)));
        Ok(report)
    }

    /// Loads the index files; superseded ones are warnings.
    fn check_index_files(
        &self,
        report: &mut CheckReport,
    ) -> Result<(Index, HashMap<PackId, Vec<pack::PackedBlob>>)> {
        let mut files = Vec::new();
        for f in self.backend().list(FileType::Index)? {
            let id = f.name.parse()?;
            match self.load_index_file(&id) {
                Ok(file) => files.push((id, file)),
                Err(e) => report.error(FileType::Index.describe(&f.name), e.to_string()),
            }
        }
        let superseded: HashSet<_> = files
            .iter()
            .flat_map(|(_, f)| f.supersedes.iter().copied())
            .collect();
        let mut index = Index::default();
        let mut by_pack: HashMap<PackId, Vec<pack::PackedBlob>> = HashMap::new();
        for (id, f) in &files {
            if superseded.contains(id) {
                report.warn(
                    FileType::Index.describe(&id.to_hex()),
                    "superseded by a newer index (an interrupted prune); `litevault prune` removes it",
                );
                continue;
            }
            index.add_file(*id, f);
            for p in &f.packs {
                by_pack
                    .entry(p.id)
                    .or_default()
                    .extend(p.blobs.iter().copied());
            }
        }
        report.packs = by_pack.len();
        report.blobs = index.len();
        Ok((index, by_pack))
    }

    /// Compares indexed packs with their headers; returns the bad ones.
    fn check_packs(
        &self,
        by_pack: &HashMap<PackId, Vec<pack::PackedBlob>>,
        report: &mut CheckReport,
    ) -> Result<HashSet<PackId>> {
        let stored = self.pack_sizes()?;
        let mut bad = HashSet::new();
        for (id, blobs) in by_pack {
            let name = id.to_hex();
            let object = FileType::Pack.describe(&name);
            if !stored.contains_key(&name) {
                report.error(&object, "an index lists it but it is missing");
                bad.insert(*id);
                continue;
            }
            match pack::read_header(self.backend().as_ref(), self.key(), id) {
                Ok(mut header) => {
                    header.sort_by_key(|b| b.offset);
                    let mut listed = blobs.clone();
                    listed.sort_by_key(|b| b.offset);
                    listed.dedup();
                    if header != listed {
                        report.error(
                            &object,
                            format!(
                                "its header lists {} blobs that differ from the {} the index lists",
                                header.len(),
                                listed.len()
                            ),
                        );
                        bad.insert(*id);
                    }
                }
                Err(e) => {
                    report.error(&object, e.to_string());
                    bad.insert(*id);
                }
            }
        }
        for name in stored.keys() {
            let id: PackId = name.parse()?;
            if !by_pack.contains_key(&id) {
                report.warn(
                    FileType::Pack.describe(name),
                    "no index lists it (left by an interrupted backup or prune); `litevault prune` removes it",
                );
            }
        }
        Ok(bad)
    }

    /// Every snapshot opens and reaches only indexed blobs.
    fn check_snapshots(&self, index: &Index, report: &mut CheckReport) -> Result<()> {
        let mut walked: HashSet<BlobId> = HashSet::new();
        for f in self.backend().list(FileType::Snapshot)? {
            let object = FileType::Snapshot.describe(&f.name);
            let m = match self.load_manifest(&f.name.parse()?) {
                Ok(m) => m,
                Err(e) => {
                    report.error(&object, e.to_string());
                    continue;
                }
            };
            report.snapshots += 1;
            let mut missing = 0u64;
            let mut problem = None;
            self.check_tree(
                index,
                &m.tree.id,
                m.tree.level,
                &mut walked,
                &mut missing,
                &mut problem,
            );
            if missing > 0 {
                report.error(
                    &object,
                    format!("{missing} of its blobs are not in any index: its data is missing"),
                );
            }
            if let Some(p) = problem {
                report.error(&object, p);
            }
        }
        Ok(())
    }

    fn check_tree(
        &self,
        index: &Index,
        id: &BlobId,
        level: u8,
        walked: &mut HashSet<BlobId>,
        missing: &mut u64,
        problem: &mut Option<String>,
    ) {
        if !walked.insert(*id) {
            return;
        }
        if index.get(id).is_none() {
            *missing += 1;
            return;
        }
        let node = match self.read_tree(index, id) {
            Ok(n) if n.level == level => n,
            Ok(n) => {
                problem.get_or_insert(format!(
                    "tree blob {} has level {} where {level} was expected",
                    id.short(),
                    n.level
                ));
                return;
            }
            Err(e) => {
                problem.get_or_insert(e.to_string());
                return;
            }
        };
        for e in &node.entries {
            if level == 0 {
                if index.get(&e.id).is_none() {
                    *missing += 1;
                }
            } else {
                self.check_tree(index, &e.id, level - 1, walked, missing, problem);
            }
        }
    }
}
