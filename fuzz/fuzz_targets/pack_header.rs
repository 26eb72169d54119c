//! Pack tail and header: bounds on lengths and counts, tiling of blobs.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let key = litevault::MasterKey::from_secret(&[1u8; 32]);
    let _ = litevault::format::pack::parse_header(&key, data, "pack");
});
