//! Storing and loading whole sealed objects (config, index files, snapshot
//! manifests): sealed with the master key, named by the hash of their
//! bytes, and verified against that name before they are opened, so a
//! changed byte is reported as damage to that named object before anything
//! else looks at it.

use super::repository::Repository;
use crate::backend::FileType;
use crate::error::Result;
use crate::format::{self, ObjectType};
use crate::id::storage_hash;

/// zstd level of whole objects (index files, manifests).
const OBJECT_ZSTD_LEVEL: i32 = 3;

impl Repository {
    /// Seals and stores a whole object; returns its id (= its name) and
    /// stored size.
    pub(crate) fn save_object(
        &self,
        ty: FileType,
        obj: ObjectType,
        payload: &[u8],
    ) -> Result<([u8; 32], u64)> {
        let bytes = format::seal_stored(
            self.key(),
            obj,
            self.config().version,
            payload,
            Some(OBJECT_ZSTD_LEVEL),
        )?;
        let id = storage_hash(&bytes);
        self.backend().write(ty, &hex::encode(id), &bytes)?;
        Ok((id, bytes.len() as u64))
    }

    /// Reads, verifies and opens a whole object; also returns its version
    /// byte (SPEC.md 21.3: a format-4 snapshot or change object is sealed
    /// by a write-only key's session). A missing object is the backend's
    /// not-found error (see [`crate::Error::is_not_found`]).
    pub(crate) fn load_object_version(
        &self,
        ty: FileType,
        obj: ObjectType,
        name: &str,
    ) -> Result<(u8, Vec<u8>)> {
        let object = ty.describe(name);
        let bytes = self.backend().read(ty, name)?;
        format::verify_name(&bytes, name, &object)?;
        let payload = format::open_object(self.key(), obj, &bytes, &object)?;
        Ok((bytes[format::HEADER_LEN - 2], payload))
    }
}
