//! Event decoding never panics; whatever decodes re-encodes to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use troth_core::event::{Body, Control, Event};

fuzz_target!(|data: &[u8]| {
    if let Ok(ev) = Event::decode(data) {
        assert_eq!(ev.as_bytes(), data);
        if let Body::Control(c) = ev.body() {
            assert_eq!(Control::decode(&c.encode()).as_ref(), Ok(c));
        }
        let _ = ev.hash();
    }
    let _ = Control::decode(data);
    let _ = troth_core::members::Members::decode(data);
});
