//! Test support (cargo feature `test-support`): what the test suites need
//! to forge repositories a normal command would never write — packs with
//! chosen blobs, index files naming anything, manifests pointing anywhere,
//! raw objects of any type. Commands never use it; nothing here checks that
//! what it writes makes sense, which is its point.

use super::repository::Repository;
use crate::backend::FileType;
use crate::error::Result;
use crate::format::index::{IndexFile, IndexPack};
use crate::format::manifest::Manifest;
use crate::format::pack::PackWriter;
use crate::format::ObjectType;
use crate::id::{IndexId, SnapshotId};

/// Stores a finished pack; returns what an index needs to know of it.
pub fn save_pack(repo: &Repository, pack: PackWriter) -> Result<IndexPack> {
    let (id, bytes, blobs) = pack.finish(repo.key())?;
    repo.backend().write(FileType::Pack, &id.to_hex(), &bytes)?;
    Ok(IndexPack {
        id,
        sealed_by: repo.key().sealed_by(),
        blobs,
    })
}

/// Stores an index file as given.
pub fn save_index(repo: &Repository, file: &IndexFile) -> Result<IndexId> {
    repo.save_index(file.clone()).map(|(id, _)| id)
}

/// Stores a snapshot manifest as given.
pub fn save_manifest(repo: &Repository, manifest: &Manifest) -> Result<SnapshotId> {
    repo.save_manifest(manifest).map(|(id, _)| id)
}

/// Seals `payload` as an object of type `obj` and stores it under its hash
/// in the directory of `ty` (which need not match `obj`); returns its name.
pub fn save_object(
    repo: &Repository,
    ty: FileType,
    obj: ObjectType,
    payload: &[u8],
) -> Result<String> {
    repo.save_object(ty, obj, payload)
        .map(|(id, _)| hex::encode(id))
}
