//! Index payload: decode, and re-encode what decodes to the same bytes.
#![no_main]
use litevault::format::index::IndexFile;
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(f) = IndexFile::decode(data, "index/fuzz") {
        assert_eq!(f.encode(), data);
    }
});
