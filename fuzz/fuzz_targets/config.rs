//! Config: the sealed envelope (header checks, authentication) and the JSON.
#![no_main]
use litevault::format::{open_object, ObjectType};
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let key = litevault::MasterKey::from_secret(&[1u8; 32]);
    let _ = open_object(&key, ObjectType::Config, data, "config");
    for version in [1, 2] {
        if let Ok(c) = litevault::Config::from_json(data, version) {
            assert!(c.validate().is_ok() && c.version == version);
        }
    }
});
