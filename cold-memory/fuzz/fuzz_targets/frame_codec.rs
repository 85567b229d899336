//! Arbitrary bytes as a guest ↔ host stream, fed to the frame decoder in pieces (the first
//! byte picks the piece size): every frame decodes to a message or an error, never a panic;
//! a decoded message encodes back to a frame within the size cap that decodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tide_coldmem::proto::{Decoder, MAX_BODY, Message, encode};

fuzz_target!(|data: &[u8]| {
    let Some((&piece, stream)) = data.split_first() else {
        return;
    };
    let piece = usize::from(piece).max(1);
    let mut d = Decoder::default();
    let mut seen = Vec::new();
    'stream: for chunk in stream.chunks(piece) {
        d.push(chunk);
        loop {
            match d.next_message() {
                Ok(Some(m)) => seen.push(m),
                Ok(None) => break,
                // The stream is out of step: the link drops it.
                Err(_) => break 'stream,
            }
        }
    }
    for m in seen {
        let frame = encode(&m).expect("a decoded message encodes");
        assert!(frame.len() <= 8 + MAX_BODY);
        let mut again = Decoder::default();
        again.push(&frame);
        let back: Message = again.next_message().expect("decodes").expect("whole frame");
        assert_eq!(back, m);
    }
});
