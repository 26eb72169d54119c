//! Change objects, bundles and WAL frames: any bytes decode to an error or
//! to a value that encodes back to the same bytes; nothing panics.
#![no_main]
use litevault::format::change::{decode_bundle, ChangeObject};
use litevault::format::wal::{Checksum, WalHeader};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(o) = ChangeObject::decode(data, "fuzz") {
        assert_eq!(o.encode(), data);
        let _ = o.digest_after();
        for c in &o.commits {
            for p in &c.pages {
                let _ = p.apply(Some(&vec![0u8; p.data.len()]));
                let _ = p.apply(None);
            }
        }
    }
    if let Ok(members) = decode_bundle(data, data.first().copied().unwrap_or(1), 1, "fuzz") {
        assert_eq!(members.len(), 16);
    }
    if let Some(h) = WalHeader::parse(data) {
        let len = h.frame_len() as usize;
        let body = &data[32.min(data.len())..];
        let mut prev = h.checksum;
        for f in body.chunks_exact(len) {
            match h.check_frame(f, prev) {
                Some(fr) => prev = fr.checksum,
                None => break,
            }
        }
        let _ = Checksum::default().over(&data[..data.len() / 8 * 8], h.big_endian);
    }
});
