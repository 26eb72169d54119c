//! Chunk-list tree blobs: decode, and re-encode to the same bytes.
#![no_main]
use litevault::format::tree::TreeNode;
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(t) = TreeNode::decode(data, "tree") {
        assert_eq!(t.encode(), data);
    }
});
