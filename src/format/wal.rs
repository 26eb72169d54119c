//! SQLite's write-ahead log, byte by byte (sqlite.org/fileformat2.html,
//! section 4; SPEC.md 20): the 32-byte header, the 24-byte frame headers,
//! and the cumulative checksum that chains every frame to the one before.
//! Bytes only: no file is opened here (`sqlite::wal_tail` reads the file).
//!
//! A frame is valid when its salts equal the header's and its checksum
//! continues the chain; a transaction is committed once its commit frame
//! (a frame whose second field, the database size in pages after the
//! commit, is not zero) is valid. Frames after the last valid commit frame
//! are an unfinished transaction or leftovers of an older generation.

use crate::error::{Error, Result};

/// Bytes of the WAL header.
pub const HEADER_LEN: usize = 32;
/// Bytes of a frame header.
pub const FRAME_HEADER_LEN: usize = 24;
/// The only WAL format version there is.
pub const FORMAT_VERSION: u32 = 3_007_000;
/// Magic with checksums of little-endian words.
pub const MAGIC_LE: u32 = 0x377f_0682;
/// Magic with checksums of big-endian words.
pub const MAGIC_BE: u32 = 0x377f_0683;

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// A running checksum (the two 32-bit sums of section 4.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Checksum(pub u32, pub u32);

impl Checksum {
    /// Continues the checksum over `data` (a multiple of 8 bytes), reading
    /// words big-endian or not.
    #[must_use]
    pub fn over(self, data: &[u8], big_endian: bool) -> Checksum {
        debug_assert_eq!(data.len() % 8, 0);
        let (mut s0, mut s1) = (self.0, self.1);
        let word = |c: &[u8]| -> u32 {
            let a: [u8; 4] = c.try_into().expect("4 bytes");
            if big_endian {
                u32::from_be_bytes(a)
            } else {
                u32::from_le_bytes(a)
            }
        };
        for pair in data.chunks_exact(8) {
            s0 = s0.wrapping_add(word(&pair[..4])).wrapping_add(s1);
            s1 = s1.wrapping_add(word(&pair[4..])).wrapping_add(s0);
        }
        Checksum(s0, s1)
    }
}

/// A WAL header: what makes one generation of the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalHeader {
    /// Checksums read words big-endian.
    pub big_endian: bool,
    /// Database page size in bytes.
    pub page_size: u32,
    /// Checkpoint sequence number (one more at each restart).
    pub checkpoint_seq: u32,
    /// Salt-1 (one more at each restart) and salt-2 (random).
    pub salts: (u32, u32),
    /// The header's own checksum, which seeds the first frame's.
    pub checksum: Checksum,
}

impl WalHeader {
    /// Parses the first 32 bytes of a WAL file; `None` if they are not a
    /// valid header (bad magic, version, page size or checksum): then the
    /// file holds no valid frame.
    pub fn parse(b: &[u8]) -> Option<WalHeader> {
        if b.len() < HEADER_LEN {
            return None;
        }
        let big_endian = match be32(b, 0) {
            MAGIC_LE => false,
            MAGIC_BE => true,
            _ => return None,
        };
        if be32(b, 4) != FORMAT_VERSION {
            return None;
        }
        let page_size = be32(b, 8);
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return None;
        }
        let checksum = Checksum(be32(b, 24), be32(b, 28));
        if Checksum::default().over(&b[..24], big_endian) != checksum {
            return None;
        }
        Some(WalHeader {
            big_endian,
            page_size,
            checkpoint_seq: be32(b, 12),
            salts: (be32(b, 16), be32(b, 20)),
            checksum,
        })
    }

    /// Bytes of one frame (its header and page).
    pub fn frame_len(&self) -> u64 {
        FRAME_HEADER_LEN as u64 + u64::from(self.page_size)
    }

    /// Where frame `index` (0-based) starts in the file.
    pub fn frame_offset(&self, index: u64) -> u64 {
        HEADER_LEN as u64 + index * self.frame_len()
    }

    /// Checks `frame` (header and page, [`WalHeader::frame_len`] bytes)
    /// against this generation's salts and the checksum `prev` of the frame
    /// before it (the header's for the first); returns the frame if it is
    /// valid, with its checksum.
    pub fn check_frame<'a>(&self, frame: &'a [u8], prev: Checksum) -> Option<Frame<'a>> {
        if frame.len() as u64 != self.frame_len() {
            return None;
        }
        if (be32(frame, 8), be32(frame, 12)) != self.salts {
            return None;
        }
        let sum = prev
            .over(&frame[..8], self.big_endian)
            .over(&frame[FRAME_HEADER_LEN..], self.big_endian);
        if sum != Checksum(be32(frame, 16), be32(frame, 20)) {
            return None;
        }
        let pgno = be32(frame, 0);
        if pgno == 0 {
            return None;
        }
        Some(Frame {
            pgno,
            commit_pages: be32(frame, 4),
            checksum: sum,
            page: &frame[FRAME_HEADER_LEN..],
        })
    }
}

/// One valid frame.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    /// The page it holds.
    pub pgno: u32,
    /// For a commit frame, the database's size in pages after the commit;
    /// 0 for the other frames of a transaction.
    pub commit_pages: u32,
    /// The cumulative checksum after this frame.
    pub checksum: Checksum,
    /// The page's content.
    pub page: &'a [u8],
}

impl Frame<'_> {
    /// True if this frame ends a transaction.
    pub fn is_commit(&self) -> bool {
        self.commit_pages != 0
    }
}

/// Writes a WAL header (for tests and golden vectors: litevault never
/// writes a WAL into an application's database).
pub fn encode_header(h: &WalHeader) -> [u8; HEADER_LEN] {
    let mut b = [0u8; HEADER_LEN];
    b[0..4].copy_from_slice(&(if h.big_endian { MAGIC_BE } else { MAGIC_LE }).to_be_bytes());
    b[4..8].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
    b[8..12].copy_from_slice(&h.page_size.to_be_bytes());
    b[12..16].copy_from_slice(&h.checkpoint_seq.to_be_bytes());
    b[16..20].copy_from_slice(&h.salts.0.to_be_bytes());
    b[20..24].copy_from_slice(&h.salts.1.to_be_bytes());
    let sum = Checksum::default().over(&b[..24], h.big_endian);
    b[24..28].copy_from_slice(&sum.0.to_be_bytes());
    b[28..32].copy_from_slice(&sum.1.to_be_bytes());
    b
}

/// Writes a frame of `page` for page `pgno` after the frame (or header)
/// whose checksum is `prev`; returns its bytes and checksum (tests).
pub fn encode_frame(
    h: &WalHeader,
    pgno: u32,
    commit_pages: u32,
    page: &[u8],
    prev: Checksum,
) -> Result<(Vec<u8>, Checksum)> {
    if page.len() as u32 != h.page_size {
        return Err(Error::InvalidInput(format!(
            "a frame's page has {} bytes where the WAL's pages have {}",
            page.len(),
            h.page_size
        )));
    }
    let mut f = vec![0u8; FRAME_HEADER_LEN];
    f[0..4].copy_from_slice(&pgno.to_be_bytes());
    f[4..8].copy_from_slice(&commit_pages.to_be_bytes());
    f[8..12].copy_from_slice(&h.salts.0.to_be_bytes());
    f[12..16].copy_from_slice(&h.salts.1.to_be_bytes());
    let sum = prev.over(&f[..8], h.big_endian).over(page, h.big_endian);
    f[16..20].copy_from_slice(&sum.0.to_be_bytes());
    f[20..24].copy_from_slice(&sum.1.to_be_bytes());
    f.extend_from_slice(page);
    Ok((f, sum))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_real_wal_parses_and_chains() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("a.db");
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
             CREATE TABLE t(x); INSERT INTO t VALUES (randomblob(3000));
             INSERT INTO t VALUES (1);",
        )
        .unwrap();
        let wal = std::fs::read(dir.path().join("a.db-wal")).unwrap();
        let h = WalHeader::parse(&wal).expect("a valid header");
        assert_eq!(h.page_size, 4096);
        let mut prev = h.checksum;
        let mut commits = 0;
        let mut i = 0;
        while h.frame_offset(i + 1) <= wal.len() as u64 {
            let at = h.frame_offset(i) as usize;
            let f = h
                .check_frame(&wal[at..at + h.frame_len() as usize], prev)
                .expect("every frame of a fresh WAL is valid");
            prev = f.checksum;
            commits += usize::from(f.is_commit());
            i += 1;
        }
        assert_eq!(commits, 3, "CREATE and two INSERTs");
        // One flipped bit breaks the frame, and with it the chain.
        let mut bad = wal.clone();
        bad[HEADER_LEN + FRAME_HEADER_LEN + 100] ^= 1;
        assert!(h
            .check_frame(
                &bad[HEADER_LEN..HEADER_LEN + h.frame_len() as usize],
                h.checksum
            )
            .is_none());
        let mut bad_header = wal[..HEADER_LEN].to_vec();
        bad_header[9] ^= 1;
        assert!(WalHeader::parse(&bad_header).is_none());
    }

    #[test]
    fn written_frames_read_back_in_both_byte_orders() {
        for big_endian in [false, true] {
            let h0 = WalHeader {
                big_endian,
                page_size: 512,
                checkpoint_seq: 3,
                salts: (7, 0xdead_beef),
                checksum: Checksum::default(),
            };
            let header = encode_header(&h0);
            let h = WalHeader::parse(&header).unwrap();
            assert_eq!(
                (h.salts, h.page_size, h.big_endian),
                (h0.salts, 512, big_endian)
            );
            let page = vec![0x5a; 512];
            let (f, sum) = encode_frame(&h, 2, 9, &page, h.checksum).unwrap();
            let got = h.check_frame(&f, h.checksum).unwrap();
            assert_eq!((got.pgno, got.commit_pages, got.checksum), (2, 9, sum));
            // A frame of another generation (other salts) is not valid.
            let other = WalHeader { salts: (8, 1), ..h };
            assert!(other.check_frame(&f, h.checksum).is_none());
        }
    }
}
