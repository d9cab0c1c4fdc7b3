//! Agreement and certificate decoding never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use troth_core::agreement::{Agreement, Certificate};
use troth_core::encoding::Reader;

fuzz_target!(|data: &[u8]| {
    let mut r = Reader::new(data);
    if let Ok(a) = Agreement::decode(&mut r) {
        let used = r.position();
        assert_eq!(a.to_bytes(), &data[..used]);
    }
    if let Ok(cert) = Certificate::from_bytes(data) {
        assert_eq!(cert.to_bytes(), data);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Certificate::from_text(text);
    }
    let _ = troth_core::keys::DeviceCert::from_bytes(data);
});
