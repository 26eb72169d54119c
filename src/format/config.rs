//! The repository config: format version, repository id, chunker and
//! compression parameters, pack size (SPEC.md, "Config").
//!
//! It is written once by `init`, as a whole object of type `config` sealed
//! with the master key, and never changes; the chunker parameters in it are
//! what keeps chunk boundaries, and so deduplication, stable for the life of
//! the repository.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::REPOSITORY_VERSION;
use crate::id::RepositoryId;

/// Parameters of the page-aligned content-defined chunker, in pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    /// A chunk has at least this many pages (except the last of an image).
    pub min_pages: u32,
    /// Average chunk length in pages: a page ends a chunk with probability
    /// 1 / (avg - min + 1) once the minimum is reached.
    pub avg_pages: u32,
    /// A chunk never has more pages than this.
    pub max_pages: u32,
}

impl ChunkerParams {
    /// Defaults of a format-2 repository, chosen from measurements on the
    /// benchmark workload (SPEC.md, "Choosing the chunker parameters"):
    /// with delta blobs a changed page costs about its change whatever the
    /// chunk's size, so chunks twice format 1's compress better and halve
    /// the index and the tree.
    pub const DEFAULT: ChunkerParams = ChunkerParams {
        min_pages: 4,
        avg_pages: 8,
        max_pages: 64,
    };

    /// Defaults of a format-1 repository: without deltas a changed page
    /// costs its whole chunk, so chunks are small.
    pub const FORMAT_1: ChunkerParams = ChunkerParams {
        min_pages: 2,
        avg_pages: 4,
        max_pages: 64,
    };

    /// Checks `1 <= min <= avg <= max <= 4096`.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let ChunkerParams {
            min_pages,
            avg_pages,
            max_pages,
        } = *self;
        if min_pages == 0 || min_pages > avg_pages || avg_pages > max_pages || max_pages > 4096 {
            return Err(format!(
                "chunker parameters min {min_pages}, avg {avg_pages}, max {max_pages} pages must satisfy 1 <= min <= avg <= max <= 4096"
            ));
        }
        Ok(())
    }
}

/// How blobs are compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompressionParams {
    /// zstd level (1..=22); 0 stores blobs uncompressed.
    pub zstd_level: i32,
}

impl CompressionParams {
    /// zstd level 3.
    pub const DEFAULT: CompressionParams = CompressionParams { zstd_level: 3 };

    /// The level to pass to [`crate::format::compression::compress`].
    pub fn level(&self) -> Option<i32> {
        (self.zstd_level != 0).then_some(self.zstd_level)
    }
}

/// How a format-2 repository stores changed chunks as deltas.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaParams {
    /// Longest chain a backup writes: a changed chunk is a delta against
    /// the nearest ancestor of its previous version whose depth is below
    /// this, so no blob needs more than this many others decoded first.
    /// 0 writes no deltas.
    pub max_depth: u16,
}

impl DeltaParams {
    /// Chains of at most 4 (SPEC.md, "Delta blobs", for the measurements).
    pub const DEFAULT: DeltaParams = DeltaParams { max_depth: 4 };
}

/// The repository config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Repository format (1 to 4), equal to the version byte of the
    /// config's header.
    pub version: u8,
    /// Random id of this repository.
    pub id: RepositoryId,
    /// Chunker parameters.
    pub chunker: ChunkerParams,
    /// Compression of blobs.
    pub compression: CompressionParams,
    /// Target size of a pack file in bytes.
    pub pack_size: u32,
    /// Delta blobs: present in format 2, absent in format 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<DeltaParams>,
}

impl Config {
    /// Smallest and largest pack size accepted.
    pub const PACK_SIZE_RANGE: std::ops::RangeInclusive<u32> = (256 << 10)..=(1 << 30);
    /// Default target pack size (16 MiB).
    pub const DEFAULT_PACK_SIZE: u32 = 16 << 20;

    /// A config for a new repository of the newest format with the given id.
    pub fn new(id: RepositoryId) -> Self {
        Self {
            version: REPOSITORY_VERSION,
            id,
            chunker: ChunkerParams::DEFAULT,
            compression: CompressionParams::DEFAULT,
            pack_size: Self::DEFAULT_PACK_SIZE,
            delta: Some(DeltaParams::DEFAULT),
        }
    }

    /// A config for a new format-1 repository (read by litevault releases
    /// older than format 2): no delta blobs.
    pub fn new_v1(id: RepositoryId) -> Self {
        Self {
            version: 1,
            delta: None,
            chunker: ChunkerParams::FORMAT_1,
            ..Self::new(id)
        }
    }

    /// The longest delta chain a backup writes (0: none).
    pub fn max_delta_depth(&self) -> u16 {
        self.delta.map_or(0, |d| d.max_depth)
    }

    /// Checks every field is within range.
    pub fn validate(&self) -> std::result::Result<(), String> {
        match (self.version, self.delta) {
            (1, Some(_)) => return Err("a format-1 config has no delta parameters".into()),
            (v @ (2..=4), None) => {
                return Err(format!("a format-{v} config needs its delta parameters"))
            }
            (1..=4, _) => {}
            (v, _) => return Err(format!("unknown repository format {v}")),
        }
        let max = crate::format::pack::MAX_DELTA_DEPTH;
        if self.max_delta_depth() > max {
            return Err(format!(
                "delta depth {} exceeds the {max} a chain may have",
                self.max_delta_depth()
            ));
        }
        self.chunker.validate()?;
        if !(0..=22).contains(&self.compression.zstd_level) {
            return Err(format!(
                "zstd level {} is outside 0..=22",
                self.compression.zstd_level
            ));
        }
        if !Self::PACK_SIZE_RANGE.contains(&self.pack_size) {
            return Err(format!(
                "pack size {} is outside {}..={} bytes",
                self.pack_size,
                Self::PACK_SIZE_RANGE.start(),
                Self::PACK_SIZE_RANGE.end()
            ));
        }
        Ok(())
    }

    pub(crate) fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("config serialises")
    }

    /// The config object: sealed, its header's version byte the format.
    pub fn seal(&self, key: &crate::format::crypto::MasterKey) -> Result<Vec<u8>> {
        crate::format::seal_object_version(
            key,
            crate::format::ObjectType::Config,
            self.version,
            &self.to_json(),
            None,
        )
    }

    /// Decodes and validates a config payload whose header says format
    /// `header_version`.
    pub fn from_json(json: &[u8], header_version: u8) -> Result<Self> {
        let c: Config =
            serde_json::from_slice(json).map_err(|e| Error::damaged("config", e.to_string()))?;
        if c.version != header_version {
            return Err(Error::damaged(
                "config",
                format!(
                    "its body says format {} but its header says {header_version}",
                    c.version
                ),
            ));
        }
        c.validate().map_err(|e| Error::damaged("config", e))?;
        Ok(c)
    }
}
