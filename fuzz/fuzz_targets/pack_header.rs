//! Pack tail and header: bounds on lengths and counts, tiling of blobs,
//! the session key of a write-only pack (format 4), from the whole pack
//! and from its tail alone.
#![no_main]
use litevault::format::pack;
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let key = litevault::MasterKey::from_secret(&[1u8; 32]);
    let _ = pack::parse_header(&key, data, "pack");
    let size = data.len() as u64;
    if let Ok((at, len)) = pack::tail_range(size, "pack") {
        let tail = &data[at as usize..(at + len) as usize];
        if let Ok(pack::TailHeader::At { start, len, by }) =
            pack::header_from_tail(&key, size, tail, "pack")
        {
            assert!(start + len <= size);
            let _ = pack::open_header_at(&key, by, &data[start as usize..(start + len) as usize], start, "pack");
        }
    }
});
