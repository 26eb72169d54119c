//! Prune in a bucket with S3 Object Lock (SPEC.md 11.2): every object
//! version stays until its retention ends, whatever is deleted. A delete
//! only hides the object (a delete marker); its bytes go when the retention
//! ends and the bucket's lifecycle rule expires the hidden version. So a
//! prune there still deletes what no snapshot uses, but does not repack a
//! pack whose retention has not ended: the copies would only add to what
//! the bucket keeps. It says until when the bucket keeps what it deleted.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::backend::object_lock::Retention;
use crate::backend::FileType;
use crate::error::Result;
use crate::id::PackId;
use crate::repo::Repository;

/// What Object Lock holds of a prune's plan.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Held {
    /// The bucket's default retention.
    pub retention: Option<Retention>,
    /// Packs with unused space left as they are: their retention has not
    /// ended, so repacking them now would free nothing.
    pub packs: Vec<PackId>,
    /// When the retention of the last pack this prune deletes or leaves
    /// ends (RFC 3339): the bucket keeps their bytes until then.
    pub until: Option<String>,
    /// When each pack's retention ends (from the listing's times).
    #[serde(skip)]
    ends: HashMap<PackId, SystemTime>,
    #[serde(skip)]
    latest: Option<SystemTime>,
}

impl Held {
    /// The retention of `repo`'s bucket and when each pack's ends; empty
    /// if the storage has none. A bucket whose retention cannot be read
    /// is noted and planned as one without.
    pub fn of(repo: &Repository) -> Result<Self> {
        let retention = match repo.backend().object_lock() {
            Ok(r) => r,
            Err(e) => {
                repo.note(format!(
                    "the bucket's Object Lock retention could not be read ({e}); prune plans as if it had none"
                ));
                None
            }
        };
        let Some(r) = retention else {
            return Ok(Self::default());
        };
        let mut ends = HashMap::new();
        for f in repo.backend().list(FileType::Pack)? {
            let Ok(id) = f.name.parse::<PackId>() else {
                continue;
            };
            // A pack whose time the listing does not give is taken as
            // written now: its retention has not ended.
            let written = f.modified.unwrap_or_else(SystemTime::now);
            ends.insert(id, written + r.duration());
        }
        Ok(Self {
            retention: Some(r),
            ends,
            ..Self::default()
        })
    }

    /// True if pack `id` is still retained: repacking it frees nothing.
    pub fn holds(&self, id: &PackId) -> bool {
        self.ends
            .get(id)
            .is_some_and(|end| *end > SystemTime::now())
    }

    /// Notes that the prune deletes or leaves pack `id`: the bucket keeps
    /// it until its retention ends.
    pub fn keeps(&mut self, id: &PackId) {
        if let Some(end) = self.ends.get(id).filter(|e| **e > SystemTime::now()) {
            self.latest = Some(self.latest.map_or(*end, |l| l.max(*end)));
        }
    }

    /// Says until when the bucket keeps what [`Held::keeps`] noted.
    pub fn finish(&mut self) {
        self.until = self.latest.and_then(|end| {
            let secs = end
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or(Duration::ZERO)
                .as_secs();
            jiff::Timestamp::from_second(i64::try_from(secs).ok()?)
                .ok()
                .map(|t| t.to_string())
        });
    }
}
