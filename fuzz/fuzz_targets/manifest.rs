//! Snapshot manifest JSON: never panics; what decodes re-decodes the same.
#![no_main]
use litevault::format::manifest::Manifest;
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Manifest::decode(data, "snapshots/fuzz") {
        assert_eq!(Manifest::decode(&m.encode(), "again").unwrap(), m);
    }
});
