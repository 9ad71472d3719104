//! CPU cost of the bulk shape: the process's CPU time per byte moved (both ends run in this
//! process), and the floor every RLPx byte must pay whatever the runtime: seal, open and a
//! snappy round trip of the same bytes on one thread.

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use p2p::frame::{FrameOpener, FrameSealer};
use p2p::keccak::{Digest, Keccak256};
use p2p::message::{Snappy, MAX_DECOMPRESSED_SIZE};

use crate::{random_bytes, BoxError, BULK_SIZE};

/// Bulk figures of one stack.
#[derive(Clone, Copy)]
pub struct Bulk {
    /// Throughput, MiB per wall-clock second.
    pub mib_s: f64,
    /// CPU time of the whole process (both ends) per byte moved, in nanoseconds.
    pub cpu_ns_per_byte: f64,
}

/// CPU time (user + system) of this process so far, every thread included, from
/// `/proc/self/stat` (clock ticks of 10 ms; a bulk shape runs for a second or more).
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|t| t.parse::<u64>().ok()))
        .sum();
    Duration::from_millis(ticks * 10)
}

/// Run a bulk shape that moves `messages` messages of `BULK_SIZE` bytes (and returns them
/// per second), and add its CPU time per byte. The CPU time includes setting up and
/// closing the link, a few milliseconds against seconds of transfer.
pub async fn measure(
    messages: usize,
    shape: impl Future<Output = Result<f64, BoxError>>,
) -> Result<Bulk, BoxError> {
    let cpu = process_cpu();
    let mib_s = shape.await?;
    let cpu = process_cpu() - cpu;
    let bytes = (messages * BULK_SIZE) as f64;
    Ok(Bulk {
        mib_s,
        cpu_ns_per_byte: cpu.as_nanos() as f64 / bytes,
    })
}

/// Nanoseconds of one thread's CPU per byte for seal + open + snappy compress + decompress
/// of `size`-byte incompressible messages (the median of 15 rounds).
pub fn floor_ns_per_byte(size: usize) -> f64 {
    const AES: [u8; 32] = [0x11; 32];
    const MAC: [u8; 32] = [0x22; 32];
    let seed = Keccak256::new_with_prefix(b"floor");
    let mut sealer = FrameSealer::new(&AES, &MAC, seed.clone());
    let mut opener = FrameOpener::new(&AES, &MAC, seed);
    let (mut tx, mut rx) = (Snappy::new(), Snappy::new());
    let data = random_bytes(size);
    let mut wire = BytesMut::with_capacity(size + 1024);
    let mut rounds: Vec<f64> = (0..15)
        .map(|_| {
            let t = Instant::now();
            let compressed = tx.compress(&data).expect("compress");
            wire.clear();
            sealer.seal(&[compressed], &mut wire).expect("seal");
            let header: [u8; 32] = wire[..32].try_into().expect("header");
            let len = opener.open_header(&header).expect("open header");
            let body = &mut wire[32..32 + FrameOpener::body_len(len)];
            opener.open_body(body).expect("open body");
            let out = rx
                .decompress(&body[..len], MAX_DECOMPRESSED_SIZE)
                .expect("decompress");
            assert_eq!(out.len(), size);
            t.elapsed().as_nanos() as f64 / size as f64
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[rounds.len() / 2]
}
