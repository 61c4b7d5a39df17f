//! Any text as a client frame or a server frame: decoding never panics, a decoded frame of
//! either kind survives a round trip, and a store fed any sequence of server frames never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tally_shared::ChatStore;
use tally_shared::protocol::{ServerFrame, decode_client_frame, encode};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(frame) = decode_client_frame(text) {
        let again = decode_client_frame(&encode(&frame)).expect("an encoded frame decodes");
        assert_eq!(frame, again);
    }
    let mut store = ChatStore::new();
    for line in text.split('\n') {
        if let Ok(frame) = serde_json::from_str::<ServerFrame>(line) {
            // The tag-first decoder reads back whatever the encoder writes.
            let again: ServerFrame = serde_json::from_str(&encode(&frame)).expect("an encoded frame decodes");
            assert_eq!(frame, again);
            store.apply(frame);
            let total = store.total();
            let _ = store.conversation_list();
            let _ = total;
        }
    }
});
