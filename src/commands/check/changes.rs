//! Check of the continuous-capture history (SPEC.md 20): from each
//! snapshot of a stream, the change objects that go on from it are read by
//! name, as a restore to a moment reads them, up to the stream's next
//! snapshot or its end. Each must open (authenticated, the stream and
//! sequence number its place says), continue the digest before it and
//! have the snapshot's page size; a removed object with later ones stored
//! is a hole. Objects before a later snapshot that are gone were removed by
//! retention, which is no damage. Page contents are checked when a
//! restore applies them (their hashes need the image before them).

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::format::manifest::{Continuous, Manifest};
use crate::repo::Repository;

use super::CheckReport;
use crate::commands::pitr;

/// Reads every stream's change objects after each of its snapshots,
/// reporting what a restore to a moment would stop at.
pub(super) fn check_streams(repo: &Repository, manifests: &[Manifest], report: &mut CheckReport) {
    let mut streams: BTreeMap<&str, Vec<(&Continuous, u32)>> = BTreeMap::new();
    for m in manifests {
        if let Some(c) = &m.continuous {
            streams
                .entry(c.stream.as_str())
                .or_default()
                .push((c, m.image.page_size));
        }
    }
    for (name, mut snaps) in streams {
        snaps.sort_by_key(|(c, _)| c.seq);
        let mut i = 0;
        while i < snaps.len() {
            // Snapshots at the same point (a fold, then a bridge with no
            // commit between): the objects after go on from one of them.
            let same = snaps[i..]
                .iter()
                .take_while(|(c, _)| c.seq == snaps[i].0.seq)
                .count();
            let at = &snaps[i..i + same];
            let stop = snaps.get(i + same).map(|(n, _)| n.seq);
            i += same;
            if let Err(e) = check_segment(repo, at, stop, report) {
                let (object, message) = match e {
                    Error::Damaged { object, reason } => (object, reason),
                    e => (
                        format!("stream {}", &name[..name.len().min(8)]),
                        e.to_string(),
                    ),
                };
                report.error(object, message);
            }
        }
    }
}

/// The objects after the snapshots `at` (all at one sequence number), up
/// to sequence number `stop` (the stream's next snapshot) or the end.
fn check_segment(
    repo: &Repository,
    at: &[(&Continuous, u32)],
    stop: Option<u64>,
    report: &mut CheckReport,
) -> Result<()> {
    let (c, page_size) = at[0];
    let mut starts = Vec::new();
    for (s, _) in at {
        let (Some(_), Some(d)) = (s.stream_id(), s.digest_bytes()) else {
            return Err(Error::damaged(
                format!("a snapshot of stream {}", s.stream),
                "its stream or digest is not 64 hex digits",
            ));
        };
        starts.push(d);
    }
    let stream = c.stream_id().expect("checked above");
    let walk = pitr::Walk {
        stream,
        after: c.seq,
        starts,
        page_size,
        stop,
        covered: stop.unwrap_or(0),
    };
    let mut read = 0;
    let walked = walk.run(repo, None, &mut read, |_, _| Ok(true));
    report.changes += usize::try_from(read).unwrap_or(usize::MAX);
    let walked = walked?;
    if let pitr::WalkEnd::DigestBreak(seq) = walked.end {
        return Err(Error::damaged(
            pitr::change_name(repo, &stream, seq),
            "it does not continue the stream's digest before it: a change object was replaced, reordered or forged",
        ));
    }
    Ok(())
}
