//! Frame header + body decoding with the MAC path: B's ingress FrameOpener on the public
//! (Auth₂, Ack₂) session, fed in chunks (so partial headers and bodies are exercised)
//! under a frame-size limit chosen by the input. The A.6 "A→B" frames are valid seeds.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use p2p::frame::FrameOpener;
use std::sync::OnceLock;
use tokio_util::codec::Decoder;

struct Fixed {
    aes: [u8; 32],
    mac: [u8; 32],
    ingress: p2p::ecies::Secrets,
}

fn fixed() -> &'static Fixed {
    static F: OnceLock<Fixed> = OnceLock::new();
    F.get_or_init(|| {
        let s = braid_fuzz::session_b();
        Fixed {
            aes: *s.aes_secret,
            mac: *s.mac_secret,
            ingress: s,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let f = fixed();
    let mut opener = FrameOpener::new(&f.aes, &f.mac, f.ingress.ingress_mac.clone());
    // Low bits pick the chunk size, high bits a frame-size limit (Hello's or the default).
    let chunk = usize::from(ctl & 0x3f) + 1;
    if ctl & 0x80 != 0 {
        opener.set_max_frame_size(2048 + 9);
    }
    let mut buf = BytesMut::new();
    for piece in rest.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match opener.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= p2p::frame::MAX_FRAME_SIZE);
                    // Whatever a frame holds goes through message splitting next.
                    let _ = p2p::message::split_id(&frame);
                }
                Ok(None) => break,
                Err(_) => {
                    // The opener is poisoned after an error and must say so.
                    assert!(opener.decode(&mut buf).is_err());
                    return;
                }
            }
        }
    }
});
