//! The page chunker: concatenated chunks equal the input, cuts fall only on
//! page boundaries, chunk sizes stay within the parameters.
#![no_main]
use litevault::format::chunker::chunk_image;
use litevault::ChunkerParams;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let min = u32::from(data[0] % 8) + 1;
    let avg = min + u32::from(data[1] % 16);
    let max = avg + u32::from(data[2] % 64);
    let page_size = 1usize << (data[3] % 4 + 6);
    let body = &data[4..];
    let image = &body[..body.len() / page_size * page_size];
    let params = ChunkerParams {
        min_pages: min,
        avg_pages: avg,
        max_pages: max,
    };
    let chunks = chunk_image(&[7u8; 32], params, page_size, image);
    assert_eq!(chunks.concat(), image);
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(c.len() % page_size, 0);
        let pages = (c.len() / page_size) as u32;
        assert!(pages >= 1 && pages <= max);
        if i + 1 < chunks.len() {
            assert!(pages >= min);
        }
    }
});
