//! Index payload, of object versions 1 and 2 (format 4: who sealed each
//! pack): decode, and re-encode what decodes to the same bytes.
#![no_main]
use litevault::format::index::IndexFile;
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    for version in [1, 2] {
        if let Ok(f) = IndexFile::decode_version(data, "index/fuzz", version) {
            assert_eq!(f.encode_version(version), data);
        }
    }
});
