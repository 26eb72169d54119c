//! Change objects (format 3, SPEC.md 20): the commits continuous capture
//! read from a database's WAL, shipped as one sealed object per interval,
//! and the bundles that gather them so a restore reads few objects.
//!
//! A change object belongs to a **stream** (one database captured by one
//! chain of objects, 32 random bytes) and has a **sequence number**; its
//! name is derived from both with the repository's id key, so a reader
//! computes the names it needs and never lists. Each object carries the
//! stream's **digest** before its commits; every commit extends it with its
//! time, size and the hash of every page it wrote, so a missing, reordered,
//! replayed or foreign object breaks the chain where it is.
//!
//! Each page is stored whole or as its XOR with the page's previous
//! version (mostly zeros, which the object's zstd compression removes),
//! with the hash of its new content: a reader applies the XOR to the page
//! it holds and checks the hash, so a page is never made from a wrong base.
//!
//! A **bundle** of level `k` (1 or 2) holds the [`FANOUT`] objects of the
//! level below that cover an aligned run of sequence numbers, as they were
//! stored (each still sealed and checked on its own): it is made from bytes
//! the writer already has, with no decoding, and lets a restore read 16 or
//! 256 intervals in one request.

use super::crypto::MasterKey;
use super::Reader;
use crate::error::{Error, Result};

/// Bytes of a page's content hash.
pub const PAGE_HASH_LEN: usize = 16;
/// Members of a bundle.
pub const FANOUT: u64 = 16;
/// The highest bundle level.
pub const MAX_LEVEL: u8 = 2;
/// The most pages one commit record holds (a larger commit is bridged by a
/// snapshot instead).
pub const MAX_COMMIT_PAGES: usize = 1 << 16;
/// The most commits one object holds.
pub const MAX_COMMITS: usize = 1 << 20;
/// Magic of a bundle's body.
const BUNDLE_MAGIC: &[u8; 4] = b"LVBD";

/// A page's content hash.
pub type PageHash = [u8; PAGE_HASH_LEN];
/// A stream's running digest.
pub type Digest = [u8; 32];
/// A stream's id.
pub type StreamId = [u8; 32];

/// The hash of a page's content (inside sealed objects only, so unkeyed).
pub fn page_hash(page: &[u8]) -> PageHash {
    let mut h = blake3::Hasher::new();
    h.update(b"litevault page\0");
    h.update(page);
    h.finalize().as_bytes()[..PAGE_HASH_LEN]
        .try_into()
        .expect("16 bytes")
}

/// Where capture stood in the WAL after an object's last commit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalMark {
    /// The generation's salts.
    pub salts: (u32, u32),
    /// Its checkpoint sequence number.
    pub checkpoint_seq: u32,
    /// Frames of that generation read (the next frame's index).
    pub frames: u64,
    /// The cumulative checksum after the last frame read (the header's
    /// when none was).
    pub checksum: (u32, u32),
}

/// How one page of a commit is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enc {
    /// The page itself.
    Raw = 0,
    /// Its XOR with the page's previous version.
    Xor = 1,
}

/// One page a commit wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageEntry {
    /// The page number (1-based).
    pub pgno: u32,
    /// How `data` holds it.
    pub enc: Enc,
    /// The hash of the page's new content.
    pub hash: PageHash,
    /// A page's worth of bytes.
    pub data: Vec<u8>,
}

impl PageEntry {
    /// The page's new content, given its previous version (`None` when the
    /// database did not have the page yet: zeros); `None` if the result is
    /// not the content the entry names.
    pub fn apply(&self, previous: Option<&[u8]>) -> Option<Vec<u8>> {
        let out = match self.enc {
            Enc::Raw => self.data.clone(),
            Enc::Xor => {
                let mut out = self.data.clone();
                if let Some(p) = previous {
                    if p.len() != out.len() {
                        return None;
                    }
                    for (o, b) in out.iter_mut().zip(p) {
                        *o ^= b;
                    }
                }
                out
            }
        };
        (page_hash(&out) == self.hash).then_some(out)
    }
}

/// One committed transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitRecord {
    /// When capture read its commit frame, in nanoseconds since the Unix
    /// epoch (UTC); never earlier than the commit before it.
    pub time_ns: i64,
    /// The database's size in pages after it.
    pub db_pages: u32,
    /// The pages it wrote, each once (its last version), by page number.
    pub pages: Vec<PageEntry>,
}

/// A change object's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeObject {
    /// The stream.
    pub stream: StreamId,
    /// Its sequence number in the stream (the first is 1).
    pub seq: u64,
    /// The database's page size.
    pub page_size: u32,
    /// The stream's digest before the first commit.
    pub digest_before: Digest,
    /// Where capture stood after the last commit.
    pub mark: WalMark,
    /// The commits, in order (at least one).
    pub commits: Vec<CommitRecord>,
}

/// The digest after `commit`, from `before`.
pub fn extend_digest(before: &Digest, commit: &CommitRecord) -> Digest {
    let mut h = blake3::Hasher::new();
    h.update(b"litevault commit\0");
    h.update(before);
    h.update(&commit.time_ns.to_le_bytes());
    h.update(&commit.db_pages.to_le_bytes());
    h.update(&(commit.pages.len() as u32).to_le_bytes());
    for p in &commit.pages {
        h.update(&p.pgno.to_le_bytes());
        h.update(&p.hash);
    }
    *h.finalize().as_bytes()
}

/// The name of the object of `stream` at `level` (0: a change object; 1
/// and 2: bundles) whose first sequence number is `first`: 64 hex digits,
/// keyed with the repository's id key.
pub fn object_name(key: &MasterKey, stream: &StreamId, level: u8, first: u64) -> String {
    let mut h = key.blob_hasher();
    h.update(b"litevault change name\0");
    h.update(stream);
    h.update(&[level]);
    h.update(&first.to_le_bytes());
    h.finalize().to_hex().to_string()
}

/// How many sequence numbers an object of `level` covers.
pub fn span(level: u8) -> u64 {
    FANOUT.pow(u32::from(level))
}

/// The first sequence number of the `level` object that holds `seq`.
pub fn block_start(seq: u64, level: u8) -> u64 {
    let n = span(level);
    (seq - 1) / n * n + 1
}

impl ChangeObject {
    /// The stream's digest after the last commit.
    pub fn digest_after(&self) -> Digest {
        self.commits
            .iter()
            .fold(self.digest_before, |d, c| extend_digest(&d, c))
    }

    /// The payload bytes (sealed by the caller as a whole object, type
    /// [`super::ObjectType::Change`], compressed).
    pub fn encode(&self) -> Vec<u8> {
        let pages: usize = self.commits.iter().map(|c| c.pages.len()).sum();
        let mut out = Vec::with_capacity(
            160 + self.commits.len() * 16 + pages * (self.page_size as usize + 21),
        );
        out.extend_from_slice(&self.stream);
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.page_size.to_le_bytes());
        out.extend_from_slice(&self.digest_before);
        out.extend_from_slice(&self.mark.salts.0.to_le_bytes());
        out.extend_from_slice(&self.mark.salts.1.to_le_bytes());
        out.extend_from_slice(&self.mark.checkpoint_seq.to_le_bytes());
        out.extend_from_slice(&self.mark.frames.to_le_bytes());
        out.extend_from_slice(&self.mark.checksum.0.to_le_bytes());
        out.extend_from_slice(&self.mark.checksum.1.to_le_bytes());
        out.extend_from_slice(&(self.commits.len() as u32).to_le_bytes());
        for c in &self.commits {
            out.extend_from_slice(&c.time_ns.to_le_bytes());
            out.extend_from_slice(&c.db_pages.to_le_bytes());
            out.extend_from_slice(&(c.pages.len() as u32).to_le_bytes());
            for p in &c.pages {
                out.extend_from_slice(&p.pgno.to_le_bytes());
                out.push(p.enc as u8);
                out.extend_from_slice(&p.hash);
                out.extend_from_slice(&p.data);
            }
        }
        out
    }

    /// Decodes a payload; `object` names it in errors. Checks what a
    /// reader relies on: a valid page size, bounded counts, page numbers
    /// ascending within a commit and within its size, times that do not
    /// go back.
    pub fn decode(payload: &[u8], object: &str) -> Result<ChangeObject> {
        Self::decode_inner(payload).map_err(|e| Error::damaged(object, e))
    }

    fn decode_inner(payload: &[u8]) -> std::result::Result<ChangeObject, String> {
        let mut r = Reader::new(payload);
        let stream: StreamId = r.take(32)?.try_into().expect("32 bytes");
        let seq = r.u64()?;
        if seq == 0 {
            return Err("sequence number 0 (the first is 1)".into());
        }
        let page_size = r.u32()?;
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(format!(
                "page size {page_size} is not a power of two from 512 to 65536"
            ));
        }
        let digest_before: Digest = r.take(32)?.try_into().expect("32 bytes");
        let mark = WalMark {
            salts: (r.u32()?, r.u32()?),
            checkpoint_seq: r.u32()?,
            frames: r.u64()?,
            checksum: (r.u32()?, r.u32()?),
        };
        // A commit record is at least 16 bytes.
        let n = r.count(16)?;
        if n == 0 || n > MAX_COMMITS {
            return Err(format!("{n} commits: an object holds 1 to {MAX_COMMITS}"));
        }
        let entry_len = 4 + 1 + PAGE_HASH_LEN + page_size as usize;
        let mut commits = Vec::with_capacity(n);
        let mut last_time = i64::MIN;
        for _ in 0..n {
            let time_ns = i64::from_le_bytes(r.u64()?.to_le_bytes());
            if time_ns < last_time {
                return Err("a commit's time is before the one before it".into());
            }
            last_time = time_ns;
            let db_pages = r.u32()?;
            let k = r.count(entry_len)?;
            if k > MAX_COMMIT_PAGES {
                return Err(format!("a commit of {k} pages: at most {MAX_COMMIT_PAGES}"));
            }
            let mut pages = Vec::with_capacity(k);
            let mut last = 0u32;
            for _ in 0..k {
                let pgno = r.u32()?;
                if pgno <= last {
                    return Err(format!(
                        "page {pgno} after page {last}: page numbers ascend"
                    ));
                }
                if pgno > db_pages {
                    return Err(format!(
                        "page {pgno} in a commit that leaves {db_pages} pages"
                    ));
                }
                last = pgno;
                let enc = match r.u8()? {
                    0 => Enc::Raw,
                    1 => Enc::Xor,
                    e => return Err(format!("unknown page encoding {e}")),
                };
                let hash: PageHash = r.take(PAGE_HASH_LEN)?.try_into().expect("16 bytes");
                let data = r.take(page_size as usize)?.to_vec();
                pages.push(PageEntry {
                    pgno,
                    enc,
                    hash,
                    data,
                });
            }
            commits.push(CommitRecord {
                time_ns,
                db_pages,
                pages,
            });
        }
        r.finish()?;
        Ok(ChangeObject {
            stream,
            seq,
            page_size,
            digest_before,
            mark,
            commits,
        })
    }
}

/// A bundle's body (after the object header): its level, first sequence
/// number and members, each the stored bytes of an object of the level
/// below.
pub fn encode_bundle(level: u8, first: u64, members: &[&[u8]]) -> Vec<u8> {
    let total: usize = members.iter().map(|m| m.len()).sum();
    let mut out = Vec::with_capacity(20 + members.len() * 4 + total);
    out.extend_from_slice(BUNDLE_MAGIC);
    out.push(level);
    out.extend_from_slice(&first.to_le_bytes());
    out.extend_from_slice(&(members.len() as u32).to_le_bytes());
    for m in members {
        out.extend_from_slice(&(m.len() as u32).to_le_bytes());
    }
    for m in members {
        out.extend_from_slice(m);
    }
    out
}

/// A bundle's bytes as stored: the object header of a bundle, then its
/// body ([`encode_bundle`]), not sealed (its members are).
pub fn bundle_bytes(level: u8, first: u64, members: &[&[u8]]) -> Vec<u8> {
    let mut out =
        super::header_version(super::ObjectType::ChangeBundle, super::FORMAT_VERSION).to_vec();
    out.extend_from_slice(&encode_bundle(level, first, members));
    out
}

/// Splits a bundle's body into its members; checks its level and first
/// sequence number are the ones its name was made from, and that it holds
/// [`FANOUT`] members. What each member holds is checked when it is opened.
pub fn decode_bundle<'a>(
    body: &'a [u8],
    level: u8,
    first: u64,
    object: &str,
) -> Result<Vec<&'a [u8]>> {
    let bad = |m: String| Error::damaged(object, m);
    let mut r = Reader::new(body);
    if r.take(4).map_err(&bad)? != BUNDLE_MAGIC {
        return Err(bad("it is not a bundle of change objects".into()));
    }
    let (l, f) = (r.u8().map_err(&bad)?, r.u64().map_err(&bad)?);
    if (l, f) != (level, first) {
        return Err(bad(format!(
            "it holds level {l} from sequence number {f}, where level {level} from {first} was asked for"
        )));
    }
    let n = r.count(4).map_err(&bad)?;
    if n as u64 != FANOUT {
        return Err(bad(format!("{n} members, not {FANOUT}")));
    }
    let lens: Vec<usize> = (0..n)
        .map(|_| r.u32().map(|l| l as usize))
        .collect::<std::result::Result<_, _>>()
        .map_err(&bad)?;
    let mut out = Vec::with_capacity(n);
    for len in lens {
        out.push(r.take(len).map_err(&bad)?);
    }
    r.finish().map_err(bad)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ChangeObject {
        let page = |b: u8| vec![b; 512];
        let one = PageEntry {
            pgno: 1,
            enc: Enc::Raw,
            hash: page_hash(&page(1)),
            data: page(1),
        };
        let mut xor = page(0);
        xor[7] = 3 ^ 9;
        let mut new = page(3);
        new[7] = 9;
        let two = PageEntry {
            pgno: 4,
            enc: Enc::Xor,
            hash: page_hash(&new),
            data: xor,
        };
        ChangeObject {
            stream: [5; 32],
            seq: 17,
            page_size: 512,
            digest_before: [6; 32],
            mark: WalMark {
                salts: (1, 2),
                checkpoint_seq: 3,
                frames: 4,
                checksum: (5, 6),
            },
            commits: vec![
                CommitRecord {
                    time_ns: 10,
                    db_pages: 4,
                    pages: vec![one, two],
                },
                CommitRecord {
                    time_ns: 11,
                    db_pages: 3,
                    pages: vec![],
                },
            ],
        }
    }

    #[test]
    fn objects_round_trip_and_pages_apply_only_to_their_base() {
        let o = sample();
        let back = ChangeObject::decode(&o.encode(), "x").unwrap();
        assert_eq!(back, o);
        let xor = &o.commits[0].pages[1];
        let mut new = vec![3u8; 512];
        new[7] = 9;
        assert_eq!(xor.apply(Some(&[3u8; 512])).unwrap(), new);
        assert!(xor.apply(Some(&[4u8; 512])).is_none(), "a wrong base");
        assert!(xor.apply(None).is_none());
        assert_eq!(o.commits[0].pages[0].apply(None).unwrap(), vec![1u8; 512]);
        // The digest covers every commit, in order.
        let d = o.digest_after();
        let mut swapped = o.clone();
        swapped.commits.swap(0, 1);
        assert_ne!(swapped.digest_after(), d);
    }

    #[test]
    fn malformed_objects_are_refused() {
        let good = sample().encode();
        for cut in [0, 40, good.len() - 1] {
            assert!(ChangeObject::decode(&good[..cut], "x").is_err(), "{cut}");
        }
        let mut o = sample();
        o.commits[0].pages.swap(0, 1);
        assert!(ChangeObject::decode(&o.encode(), "x").is_err(), "order");
        let mut o = sample();
        o.commits[1].time_ns = 9;
        assert!(ChangeObject::decode(&o.encode(), "x").is_err(), "time");
        let mut o = sample();
        o.commits[0].db_pages = 3;
        assert!(ChangeObject::decode(&o.encode(), "x").is_err(), "size");
        let mut o = sample();
        o.seq = 0;
        assert!(ChangeObject::decode(&o.encode(), "x").is_err(), "seq");
        let mut o = sample();
        o.commits.clear();
        assert!(ChangeObject::decode(&o.encode(), "x").is_err(), "empty");
    }

    #[test]
    fn bundles_hold_their_members_and_say_where_they_start() {
        let members: Vec<Vec<u8>> = (0..FANOUT as u8).map(|i| vec![i; usize::from(i)]).collect();
        let refs: Vec<&[u8]> = members.iter().map(Vec::as_slice).collect();
        let b = encode_bundle(1, 17, &refs);
        assert_eq!(decode_bundle(&b, 1, 17, "x").unwrap(), refs);
        assert!(decode_bundle(&b, 1, 33, "x").is_err());
        assert!(decode_bundle(&b, 2, 17, "x").is_err());
        assert!(decode_bundle(&b[..b.len() - 1], 1, 17, "x").is_err());
        assert!(decode_bundle(&encode_bundle(1, 17, &refs[..3]), 1, 17, "x").is_err());
    }

    #[test]
    fn blocks_align_on_sequence_numbers() {
        assert_eq!(
            (block_start(1, 1), block_start(16, 1), block_start(17, 1)),
            (1, 1, 17)
        );
        assert_eq!((block_start(256, 2), block_start(257, 2)), (1, 257));
        assert_eq!(block_start(5, 0), 5);
        let key = MasterKey::from_secret(&[1; 32]);
        let s = [2; 32];
        let names = [
            object_name(&key, &s, 0, 1),
            object_name(&key, &s, 1, 1),
            object_name(&key, &s, 0, 2),
            object_name(&key, &[3; 32], 0, 1),
            object_name(&MasterKey::from_secret(&[9; 32]), &s, 0, 1),
        ];
        for (i, a) in names.iter().enumerate() {
            assert_eq!(a.len(), 64);
            for b in &names[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
