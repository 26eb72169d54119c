//! Page-aligned content-defined chunking (SPEC.md, "Blobs, ids and chunking").
//!
//! An SQLite file is an array of pages, so chunks are runs of whole pages.
//! After each page a keyed pseudo-random function of that page's bytes
//! decides whether the chunk ends there:
//!
//! ```text
//! cut after page  iff  n >= max  or  (n >= min and PRF(page) mod (avg - min + 1) == 0)
//! ```
//!
//! where `n` is the number of pages in the chunk so far and
//! `PRF = first 8 bytes (LE) of BLAKE3_keyed(K_chunk, page)`. The decision
//! depends only on the page and the running length, so unchanged pages keep
//! their boundaries wherever they move, and because the function is keyed,
//! chunk sizes reveal nothing about content. Concatenating the chunks gives
//! back the input exactly.

use crate::format::config::ChunkerParams;

/// Splits a stream of pages into chunks.
pub struct PageChunker {
    key: [u8; 32],
    min: u32,
    max: u32,
    modulus: u64,
    page_size: usize,
    buf: Vec<u8>,
    pages: u32,
    ready: bool,
}

impl PageChunker {
    /// A chunker with the repository's chunker key and parameters.
    pub fn new(key: &[u8; 32], params: ChunkerParams, page_size: usize) -> Self {
        Self {
            key: *key,
            min: params.min_pages,
            max: params.max_pages,
            modulus: u64::from(params.avg_pages - params.min_pages + 1),
            page_size,
            buf: Vec::with_capacity(page_size * params.max_pages as usize),
            pages: 0,
            ready: false,
        }
    }

    /// The page size this chunker cuts at.
    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// True if a chunk that has reached `n` pages with `page` ends after it.
    pub fn is_cut(&self, n: u32, page: &[u8]) -> bool {
        if n >= self.max {
            return true;
        }
        if n < self.min {
            return false;
        }
        let h = blake3::keyed_hash(&self.key, page);
        let v = u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"));
        v % self.modulus == 0
    }

    /// Adds one page (exactly `page_size` bytes); returns the chunk it
    /// ends, if it ends one. The chunk borrows the chunker's buffer, so
    /// chunks already stored need not be copied.
    pub fn push(&mut self, page: &[u8]) -> Option<&[u8]> {
        debug_assert_eq!(page.len(), self.page_size);
        self.reset_if_ready();
        self.buf.extend_from_slice(page);
        self.pages += 1;
        if self.is_cut(self.pages, page) {
            self.ready = true;
            Some(&self.buf)
        } else {
            None
        }
    }

    /// The last, possibly short, chunk.
    pub fn finish(&mut self) -> Option<&[u8]> {
        self.reset_if_ready();
        if self.pages == 0 {
            return None;
        }
        self.ready = true;
        Some(&self.buf)
    }

    fn reset_if_ready(&mut self) {
        if self.ready {
            self.buf.clear();
            self.pages = 0;
            self.ready = false;
        }
    }
}

/// Chunks a whole in-memory image (tests, benchmarks, measurements).
pub fn chunk_image(
    key: &[u8; 32],
    params: ChunkerParams,
    page_size: usize,
    image: &[u8],
) -> Vec<Vec<u8>> {
    let mut c = PageChunker::new(key, params, page_size);
    let mut out: Vec<Vec<u8>> = image
        .chunks(page_size)
        .filter_map(|p| c.push(p).map(<[u8]>::to_vec))
        .collect();
    out.extend(c.finish().map(<[u8]>::to_vec));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: [u8; 32] = [42; 32];

    fn pages(n: usize, ps: usize, seed: u8) -> Vec<u8> {
        (0..n * ps)
            .map(|i| ((i / ps) as u8).wrapping_mul(31) ^ seed ^ (i % 7) as u8)
            .collect()
    }

    proptest! {
        #[test]
        fn chunks_concatenate_to_input_on_page_boundaries(
            n in 0usize..300,
            min in 1u32..4,
            extra in 0u32..8,
            spread in 0u32..40,
            seed in any::<u8>(),
        ) {
            let params = ChunkerParams { min_pages: min, avg_pages: min + extra, max_pages: min + extra + spread };
            let ps = 512;
            let image = pages(n, ps, seed);
            let chunks = chunk_image(&KEY, params, ps, &image);
            prop_assert_eq!(chunks.concat(), image);
            for (i, c) in chunks.iter().enumerate() {
                prop_assert_eq!(c.len() % ps, 0);
                let np = (c.len() / ps) as u32;
                prop_assert!(np <= params.max_pages);
                if i + 1 < chunks.len() {
                    prop_assert!(np >= params.min_pages);
                }
            }
        }
    }

    #[test]
    fn average_is_close_to_the_parameter() {
        let params = ChunkerParams {
            min_pages: 1,
            avg_pages: 8,
            max_pages: 1000,
        };
        let ps = 64;
        let image: Vec<u8> = (0..20_000 * ps)
            .map(|i| (i * 7919 % 251) as u8 ^ (i / ps) as u8)
            .collect();
        let distinct: Vec<u8> = image
            .chunks(ps)
            .enumerate()
            .flat_map(|(i, p)| {
                let mut p = p.to_vec();
                p[..8].copy_from_slice(&(i as u64).to_le_bytes());
                p
            })
            .collect();
        let chunks = chunk_image(&KEY, params, ps, &distinct);
        let avg = 20_000.0 / chunks.len() as f64;
        assert!((6.5..9.5).contains(&avg), "average {avg} pages");
    }

    #[test]
    fn an_edit_moves_only_nearby_boundaries() {
        let params = ChunkerParams::DEFAULT;
        let ps = 256;
        let mut image: Vec<u8> = (0..2000 * ps)
            .map(|i| (i / ps) as u8 ^ (i / ps / 256) as u8 ^ (i % 13) as u8)
            .collect();
        let before = chunk_image(&KEY, params, ps, &image);
        image[1000 * ps + 5] ^= 0xff;
        let after = chunk_image(&KEY, params, ps, &image);
        let old: std::collections::HashSet<_> = before.iter().collect();
        let changed: usize = after
            .iter()
            .filter(|c| !old.contains(c))
            .map(|c| c.len() / ps)
            .sum();
        assert!(
            changed <= 2 * params.max_pages as usize,
            "{changed} pages re-stored for one edit"
        );
    }

    #[test]
    fn keyed_boundaries_differ_between_repositories() {
        let params = ChunkerParams::DEFAULT;
        let image = pages(500, 128, 3);
        let a: Vec<usize> = chunk_image(&KEY, params, 128, &image)
            .iter()
            .map(Vec::len)
            .collect();
        let b: Vec<usize> = chunk_image(&[7; 32], params, 128, &image)
            .iter()
            .map(Vec::len)
            .collect();
        assert_ne!(a, b);
    }
}
