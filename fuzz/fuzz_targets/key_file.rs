//! Key file parser: never panics, never accepts out-of-bounds KDF parameters.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(kf) = litevault::format::key::parse(data, "keys/fuzz") {
        assert!(kf.kdf.validate().is_ok());
    }
});
