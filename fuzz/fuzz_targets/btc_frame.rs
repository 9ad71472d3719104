//! Native bitcoin v1 framing: `decode_frame` over a buffer and `read_frame` over a stream
//! must agree on what the first frame is.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocols::bitcoin::wire::{decode_frame, pver, read_frame, Network};

fuzz_target!(|data: &[u8]| {
    let network = Network::Mainnet;
    let version = pver::PROTOCOL_VERSION;
    let from_buf = decode_frame(data, network, version);
    let mut reader = data;
    let from_stream = futures::executor::block_on(read_frame(&mut reader, network, version));
    if let (Ok((a, na)), Ok((b, nb))) = (&from_buf, &from_stream) {
        assert_eq!(a, b);
        assert_eq!(na, nb);
    }
    // A frame that decodes from the buffer must decode from the stream too.
    if from_buf.is_ok() {
        assert!(from_stream.is_ok());
    }
});
