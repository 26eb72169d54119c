//! The commands: each a function over a [`crate::Repository`] taking its
//! options and returning its summary, both library types that serialize,
//! so the command line, a config file and an HTTP API share one struct per
//! command. (rustic_core's `commands/` is the model.)
//!
//! * [`backup`]: a database's page image into a new snapshot;
//!   [`backup_each`]: one read of it into several repositories;
//! * [`restore`]: a snapshot into a database file, verified, swapped in;
//! * [`dump`]: a snapshot as a database file or SQL text;
//! * [`copy`]: snapshots into another repository, sending what it lacks;
//! * [`diff`]: what changed between two snapshots, or a snapshot and a live database;
//! * [`import`]: existing backup files (SQLite, gzip, zstd, SQL dumps) as snapshots;
//! * [`snapshots`]: listing; [`show`]: one snapshot in full; [`tag`]: retagging;
//! * [`forget`]: retention as a pure plan, then forgetting;
//! * [`prune`]: plan, then remove unused data;
//! * [`check`]: consistency and data integrity; [`repair`]: the way back
//!   from a damaged index file or manifest;
//! * [`stats`]: sizes and ratios;
//! * [`key`]: key management;
//! * [`replicate`]: continuous capture of WAL-mode databases; [`pitr`]:
//!   their restore to a moment.

pub mod backup;
pub mod backup_each;
pub mod check;
pub mod copy;
pub mod diff;
pub mod dump;
pub mod forget;
pub mod import;
pub mod key;
pub mod pitr;
pub mod prune;
pub mod prune_changes;
pub mod prune_retention;
pub mod ranges;
pub mod repair;
pub mod replicate;
pub mod restore;
pub mod show;
pub mod snapshots;
pub mod stats;
pub mod tag;
