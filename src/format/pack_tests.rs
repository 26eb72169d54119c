//! Tests of the pack codec (`pack.rs`).

use super::*;

/// Reads the header as a reader does: the tail, then the rest if needed.
fn header_of(key: &MasterKey, bytes: &[u8]) -> Vec<PackedBlob> {
    let size = bytes.len() as u64;
    let (off, len) = tail_range(size, "pack").unwrap();
    let tail = &bytes[off as usize..(off + len) as usize];
    match header_from_tail(key, size, tail, "pack").unwrap() {
        TailHeader::Decoded(b, _) => b,
        TailHeader::At { start, len, by } => open_header_at(
            key,
            by,
            &bytes[start as usize..(start + len) as usize],
            start,
            "pack",
        )
        .unwrap(),
    }
}

#[test]
fn pack_round_trip_via_tail() {
    let key = MasterKey::generate().unwrap();
    let mut w = PackWriter::new();
    let blobs: Vec<Vec<u8>> = (0..50u8)
        .map(|i| vec![i; 1000 + usize::from(i) * 37])
        .collect();
    for b in &blobs {
        w.add(&key, BlobType::Data, key.blob_id(b), b, Some(3))
            .unwrap();
    }
    let (_, bytes, written) = w.finish(&key).unwrap();
    let read = header_of(&key, &bytes);
    assert_eq!(read, written);
    assert_eq!(
        parse_header(&key, &bytes, "pack").unwrap(),
        (written.clone(), SealedBy::Master)
    );
    for (b, pb) in blobs.iter().zip(&read) {
        let start = pb.offset as usize;
        let sealed = &bytes[start..start + pb.entry.stored_len as usize];
        assert_eq!(
            &open_blob(&key, SealedBy::Master, &pb.entry, sealed, None, "blob").unwrap(),
            b
        );
    }
    let blob_bytes: u64 = written.iter().map(|b| u64::from(b.entry.stored_len)).sum();
    assert_eq!(
        framing_len(&written, SealedBy::Master) + blob_bytes,
        bytes.len() as u64
    );
}

#[test]
fn large_header_needs_second_read() {
    let key = MasterKey::generate().unwrap();
    let mut w = PackWriter::new();
    for i in 0..1000u32 {
        let b = i.to_le_bytes();
        w.add(&key, BlobType::Tree, key.blob_id(&b), &b, None)
            .unwrap();
    }
    let (_, bytes, written) = w.finish(&key).unwrap();
    let size = bytes.len() as u64;
    let (off, _) = tail_range(size, "pack").unwrap();
    assert!(matches!(
        header_from_tail(&key, size, &bytes[off as usize..], "pack").unwrap(),
        TailHeader::At { .. }
    ));
    assert_eq!(header_of(&key, &bytes), written);
}

#[test]
fn a_write_only_sessions_pack_opens_only_with_the_full_key() {
    use crate::format::recipient::Capability;
    let full = MasterKey::generate().unwrap();
    let cap = full.capability(&[0; 32], b"{}").unwrap();
    let (wo, parts) = MasterKey::from_capability(&cap).unwrap().unwrap();
    assert_eq!(parts.config_json, b"{}");
    let _: &Capability = &parts;
    let mut w = PackWriter::new();
    let blobs: Vec<Vec<u8>> = (0..300u32).map(|i| i.to_le_bytes().repeat(50)).collect();
    for b in &blobs {
        w.add(&wo, BlobType::Data, wo.blob_id(b), b, Some(3))
            .unwrap();
    }
    let (_, bytes, written) = w.finish(&wo).unwrap();
    assert_eq!(&bytes[..6], b"LVLT\x02\x06");
    let (read, by) = parse_header(&full, &bytes, "pack").unwrap();
    assert_eq!(by, wo.sealed_by());
    assert_eq!(read, written);
    assert_eq!(header_of(&full, &bytes), written, "from the tail alone");
    let blob_bytes: u64 = written.iter().map(|b| u64::from(b.entry.stored_len)).sum();
    assert_eq!(framing_len(&written, by) + blob_bytes, bytes.len() as u64);
    for (b, pb) in blobs.iter().zip(&read) {
        let sealed = &bytes[pb.offset as usize..(pb.offset + pb.entry.stored_len) as usize];
        assert_eq!(
            &open_blob(&full, by, &pb.entry, sealed, None, "b").unwrap(),
            b
        );
        assert!(matches!(
            open_blob(&wo, by, &pb.entry, sealed, None, "b"),
            Err(Error::WriteOnly { .. })
        ));
        // Sealed again by the master key (prune), it opens as any blob.
        let again = reseal(&full, by, &pb.entry, sealed, "b").unwrap();
        assert_eq!(
            &open_blob(&full, SealedBy::Master, &pb.entry, &again, None, "b").unwrap(),
            b
        );
    }
    assert!(matches!(
        parse_header(&wo, &bytes, "pack"),
        Err(Error::WriteOnly { .. })
    ));
    // Another session's key, a cleared flag, or a version byte that
    // disagrees with the tail: damage, never a panic.
    let n = bytes.len();
    let mut other = bytes.clone();
    other[n - 36] ^= 1;
    assert!(matches!(
        parse_header(&full, &other, "pack"),
        Err(Error::Damaged { .. })
    ));
    let mut unflagged = bytes.clone();
    unflagged[n - 1] &= 0x7f;
    assert!(parse_header(&full, &unflagged, "pack").is_err());
    let mut v1 = bytes.clone();
    v1[4] = 1;
    let e = parse_header(&full, &v1, "pack").unwrap_err().to_string();
    assert!(e.contains("disagree"), "{e}");
    // A low-order session key makes no key at all.
    let mut low = bytes;
    low[n - 36..n - 4].copy_from_slice(&[0; 32]);
    assert!(matches!(
        parse_header(&full, &low, "pack"),
        Err(Error::Damaged { .. })
    ));
}
