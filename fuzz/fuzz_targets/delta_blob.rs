//! A delta blob's stored plaintext decoded against a base (format 2): the
//! first byte splits the input into base and frame, the next two give the
//! recorded size. Decoding never panics, and returns exactly the recorded
//! size or an error.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let raw_len = usize::from(u16::from_le_bytes([data[1], data[2]]));
    let rest = &data[3..];
    let split = usize::from(data[0]).min(rest.len());
    let (base, frame) = rest.split_at(split);
    let mut out = Vec::new();
    if litevault::format::compression::decompress_delta_into(frame, base, raw_len, &mut out).is_ok() {
        assert_eq!(out.len(), raw_len);
    }
    // A frame made from the input decodes back to it.
    if let Some(z) = litevault::format::compression::compress_delta(frame, base, 1) {
        litevault::format::compression::decompress_delta_into(&z, base, frame.len(), &mut out)
            .expect("a delta frame decodes against its base");
        assert_eq!(out, frame);
    }
});
