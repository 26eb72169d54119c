//! Whole sealed objects of every kind and version (format 4 adds index
//! files and locks under K_share, snapshots and change objects sealed to a
//! write-only session named in the clear): header checks, the session key
//! (low-order keys included), authentication, no panic.
#![no_main]
use litevault::format::{open_object, ObjectType};
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let key = litevault::MasterKey::from_secret(&[1u8; 32]);
    for ty in [
        ObjectType::Index,
        ObjectType::Lock,
        ObjectType::Snapshot,
        ObjectType::Change,
        ObjectType::Config,
    ] {
        let _ = open_object(&key, ty, data, "object");
    }
});
