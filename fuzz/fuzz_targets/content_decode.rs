//! Content decoding never panics and is canonical: decode then encode gives
//! back the input.
#![no_main]
use libfuzzer_sys::fuzz_target;
use troth_core::content::Content;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = Content::decode(data) {
        assert_eq!(c.encode(), data);
    }
});
