//! Change objects and their bundles in the repository (`changes/`, SPEC.md
//! 20): named from their stream, level and first sequence number, written
//! once, read by name (never listed while capturing or restoring).

use super::repository::Repository;
use crate::backend::FileType;
use crate::error::{Error, Result};
use crate::format::change::{self, ChangeObject, StreamId};
use crate::format::{self, ObjectType};

/// The zstd level of change objects: they are written every second, so
/// speed counts more than the last percent.
const CHANGE_ZSTD_LEVEL: i32 = 3;

/// One object of a stream as stored: its level, first sequence number,
/// and bytes.
#[derive(Clone, Debug)]
pub struct StoredChange {
    /// 0 for a change object, 1 or 2 for a bundle.
    pub level: u8,
    /// The first sequence number it covers.
    pub first: u64,
    /// Its bytes as stored.
    pub bytes: Vec<u8>,
}

impl Repository {
    /// The name of a stream's object.
    pub fn change_name(&self, stream: &StreamId, level: u8, first: u64) -> String {
        change::object_name(self.key(), stream, level, first)
    }

    /// Seals a change object (not written): its bytes as they are stored.
    pub fn seal_change(&self, obj: &ChangeObject) -> Result<Vec<u8>> {
        format::seal_stored(
            self.key(),
            ObjectType::Change,
            self.config().version,
            &obj.encode(),
            Some(CHANGE_ZSTD_LEVEL),
        )
    }

    /// Writes an object of a stream made by [`Repository::seal_change`] or
    /// [`change::bundle_bytes`].
    pub fn put_change(&self, stream: &StreamId, level: u8, first: u64, bytes: &[u8]) -> Result<()> {
        self.backend().write(
            FileType::Change,
            &self.change_name(stream, level, first),
            bytes,
        )
    }

    /// Reads an object of a stream; `None` if there is none.
    pub fn get_change(&self, stream: &StreamId, level: u8, first: u64) -> Result<Option<Vec<u8>>> {
        match self
            .backend()
            .read(FileType::Change, &self.change_name(stream, level, first))
        {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// True if an object of a stream is stored (one size request).
    pub fn has_change(&self, stream: &StreamId, level: u8, first: u64) -> Result<bool> {
        match self
            .backend()
            .size(FileType::Change, &self.change_name(stream, level, first))
        {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes objects of a stream (superseded by a bundle); missing ones
    /// are fine.
    pub fn remove_changes(&self, stream: &StreamId, objects: &[(u8, u64)]) -> Result<()> {
        for (level, first) in objects {
            self.backend()
                .remove(FileType::Change, &self.change_name(stream, *level, *first))?;
        }
        Ok(())
    }

    /// Opens the change object `bytes`, which must be object `seq` of
    /// `stream`: a sealed object of another stream or sequence number put
    /// in its place (moved, duplicated, replayed) is refused.
    pub fn open_change(&self, bytes: &[u8], stream: &StreamId, seq: u64) -> Result<ChangeObject> {
        let object = FileType::Change.describe(&self.change_name(stream, 0, seq));
        let payload = format::open_object(self.key(), ObjectType::Change, bytes, &object)?;
        let o = ChangeObject::decode(&payload, &object)?;
        if &o.stream != stream || o.seq != seq {
            return Err(Error::damaged(
                object,
                format!(
                    "it holds change {} of stream {}, where change {seq} of stream {} belongs",
                    o.seq,
                    &hex::encode(o.stream)[..8],
                    &hex::encode(stream)[..8]
                ),
            ));
        }
        Ok(o)
    }

    /// The change objects an object of a stream holds (itself, or a
    /// bundle's members, recursively), in order, each opened and checked
    /// to be the sequence number its place says.
    pub fn open_stored(
        &self,
        stream: &StreamId,
        stored: &StoredChange,
    ) -> Result<Vec<ChangeObject>> {
        if stored.level == 0 {
            return Ok(vec![self.open_change(
                &stored.bytes,
                stream,
                stored.first,
            )?]);
        }
        let object =
            FileType::Change.describe(&self.change_name(stream, stored.level, stored.first));
        let body = unframe_bundle(&stored.bytes, &object)?;
        let members = change::decode_bundle(body, stored.level, stored.first, &object)?;
        let below = stored.level - 1;
        let mut out = Vec::new();
        for (i, m) in members.iter().enumerate() {
            let first = stored.first + i as u64 * change::span(below);
            out.extend(self.open_stored(
                stream,
                &StoredChange {
                    level: below,
                    first,
                    bytes: m.to_vec(),
                },
            )?);
        }
        Ok(out)
    }
}

/// The body of a bundle's bytes.
fn unframe_bundle<'a>(bytes: &'a [u8], object: &str) -> Result<&'a [u8]> {
    format::check_header(bytes, ObjectType::ChangeBundle, object)?;
    Ok(&bytes[format::HEADER_LEN..])
}
