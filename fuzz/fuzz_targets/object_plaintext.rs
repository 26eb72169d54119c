//! The decrypted plaintext of a whole object: compression tag, recorded size
//! (bounded before allocating) and zstd.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(payload) = litevault::format::decode_plaintext(data, "fuzz") {
        assert!(payload.len() <= litevault::format::MAX_OBJECT_LEN);
    }
});
