//! BIP324 v2 transport: the packet-contents decoder (short ids, long-form names, payloads)
//! and the responder side of a connection (v1/v2 detection, key, bounded garbage search,
//! decoys, version packet) fed arbitrary bytes. Decoded contents must re-encode to
//! something that decodes to the same message; the responder must end without panicking
//! within its deadline (time is paused, so deadlines cost nothing).
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use protocols::bitcoin::peer::v2::{decode_contents, detect_inbound, encode_contents};
use protocols::bitcoin::peer::{Transport, TransportReader};
use protocols::bitcoin::wire::{pver, Network};
use tokio::io::AsyncWriteExt;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let version = pver::PROTOCOL_VERSION;
    if mode & 1 == 0 {
        if let Ok(msg) = decode_contents(rest, version) {
            let again = encode_contents(&msg, version).expect("decoded message re-encodes");
            assert_eq!(decode_contents(&again, version).expect("re-decodes"), msg);
        }
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
        let input = rest.to_vec();
        let remote = tokio::spawn(async move {
            let _ = theirs.write_all(&input).await;
            let _ = theirs.shutdown().await;
            // Keep the pipe open (reading what the victim sends) until it hangs up.
            let mut sink = [0u8; 4096];
            while let Ok(n) = tokio::io::AsyncReadExt::read(&mut theirs, &mut sink).await {
                if n == 0 {
                    break;
                }
            }
        });
        let res = tokio::time::timeout(
            Duration::from_secs(60),
            detect_inbound(ours, Network::Regtest, None, Duration::from_secs(10)),
        )
        .await
        .expect("detection and handshake end within their deadline");
        if let Ok(t) = res {
            let (mut r, _w) = t.split();
            for _ in 0..16 {
                if r.recv(version).await.is_err() {
                    break;
                }
            }
        }
        drop(remote);
    });
});
