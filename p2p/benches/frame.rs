//! Frame codec throughput, against a same-run Keccak baseline.
//!
//! `cargo bench -p p2p --bench frame`. Criterion measures `seal` and `open` for 64 B..1 MiB and
//! the two baselines; afterwards a short median-of-N loop prints the ratios the codec is tuned for:
//! - seal 1 MiB throughput / raw Keccak-256 absorb throughput (goal >= 0.9): the MAC absorbs every
//!   body byte, so Keccak is the floor and AES-CTR plus copying should add little.
//! - seal 64 B time / (4 x Keccak-f[1600] time) (goal <= 1.5): the spec'd MAC takes four digests
//!   per frame, each one permutation, so fixed per-frame costs should stay near that.
//! - the Keccak backend in use (`p2p::keccak::BACKEND`) against the pure-Rust `sha3` crate,
//!   absorbing 1 MiB: how much the assembly backend buys.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput};
use p2p::frame::{FrameOpener, FrameSealer};
use p2p::keccak::{Digest, Keccak256, BACKEND};
use tokio_util::codec::Decoder;

const SIZES: [(usize, &str); 4] = [
    (64, "64B"),
    (1024, "1KiB"),
    (16 * 1024, "16KiB"),
    (1024 * 1024, "1MiB"),
];
const MIB: usize = 1024 * 1024;
const AES: [u8; 32] = [0x11; 32];
const MAC: [u8; 32] = [0x22; 32];

/// A sealer and an opener whose states match, as the two ends of one direction.
fn pair() -> (FrameSealer, FrameOpener) {
    let seed = Keccak256::new_with_prefix(b"bench");
    (
        FrameSealer::new(&AES, &MAC, seed.clone()),
        FrameOpener::new(&AES, &MAC, seed),
    )
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + 7) as u8).collect()
}

fn bench_seal(c: &mut Criterion) {
    let mut group = c.benchmark_group("seal");
    for (size, name) in SIZES {
        let data = payload(size);
        let (mut sealer, _) = pair();
        let mut dst = BytesMut::with_capacity(size + 64);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                dst.clear();
                sealer.seal(&[black_box(&data)], &mut dst).expect("seal");
                black_box(dst.len())
            })
        });
    }
    group.finish();
}

fn bench_open(c: &mut Criterion) {
    let mut group = c.benchmark_group("open");
    for (size, name) in SIZES {
        let data = payload(size);
        let (mut sealer, mut opener) = pair();
        group.throughput(Throughput::Bytes(size as u64));
        let batch = if size >= MIB {
            BatchSize::PerIteration
        } else {
            BatchSize::SmallInput
        };
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_batched(
                // Inputs are sealed in order and consumed in order, so the MACs stay in step.
                || {
                    let mut wire = BytesMut::with_capacity(size + 64);
                    sealer.seal(&[&data], &mut wire).expect("seal");
                    wire
                },
                |mut wire| opener.decode(&mut wire).expect("open").expect("frame"),
                batch,
            )
        });
    }
    group.finish();
}

fn bench_baseline(c: &mut Criterion) {
    let mut group = c.benchmark_group("baseline");
    let data = payload(MIB);
    let mut hasher = Keccak256::new();
    group.throughput(Throughput::Bytes(MIB as u64));
    group.bench_function("keccak256_absorb/1MiB", |b| {
        b.iter(|| hasher.update(black_box(&data)))
    });
    let mut state = [0u64; 25];
    group.throughput(Throughput::Elements(1));
    group.bench_function("keccak_f1600", |b| {
        b.iter(|| keccak::f1600(black_box(&mut state)))
    });
    group.finish();
}

/// Paired samples taken for each printed ratio.
const SAMPLES: usize = 31;

/// Wall time of one call of `f`, averaged over `reps` calls.
fn time_per_call(reps: usize, f: &mut impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..reps {
        f();
    }
    start.elapsed() / reps as u32
}

/// Medians of `a`'s time, `b`'s time, and the per-sample ratio a/b.
///
/// The two are timed back to back within each sample, so load from other processes on a shared
/// machine hits both alike and mostly cancels out of the ratio.
fn paired_medians(
    reps: usize,
    mut a: impl FnMut(),
    mut b: impl FnMut(),
) -> (Duration, Duration, f64) {
    time_per_call(reps, &mut a); // warm-up
    time_per_call(reps, &mut b);
    let mut ta = Vec::with_capacity(SAMPLES);
    let mut tb = Vec::with_capacity(SAMPLES);
    let mut ratios = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let x = time_per_call(reps, &mut a);
        let y = time_per_call(reps, &mut b);
        ta.push(x);
        tb.push(y);
        ratios.push(x.as_secs_f64() / y.as_secs_f64());
    }
    ta.sort();
    tb.sort();
    ratios.sort_by(f64::total_cmp);
    (ta[SAMPLES / 2], tb[SAMPLES / 2], ratios[SAMPLES / 2])
}

fn print_ratios() {
    let big = payload(MIB);
    let small = payload(64);
    let mut dst = BytesMut::with_capacity(MIB + 64);
    let mut hasher = Keccak256::new();
    let mut state = [0u64; 25];

    let (mut sealer, _) = pair();
    let (seal_mib, absorb_mib, seal_vs_absorb) = paired_medians(
        2,
        || {
            dst.clear();
            sealer.seal(&[black_box(&big)], &mut dst).expect("seal");
        },
        || hasher.update(black_box(&big)),
    );

    // Open needs a fresh frame per call: seal one per sample (plus the warm-up) beforehand,
    // in order, so the opener's MAC stays in step and no sealing is timed.
    let (mut tx, mut opener) = pair();
    let mut wires: Vec<BytesMut> = (0..=SAMPLES)
        .map(|_| {
            let mut w = BytesMut::with_capacity(MIB + 64);
            tx.seal(&[&big], &mut w).expect("seal");
            w
        })
        .collect();
    wires.reverse(); // `pop` must hand them out in sealing order
    let (open_mib, _, open_vs_absorb) = paired_medians(
        1,
        || {
            let mut w = wires.pop().expect("one pre-sealed frame per call");
            black_box(opener.decode(&mut w).expect("open").expect("frame"));
        },
        || hasher.update(black_box(&big)),
    );

    let (mut sealer, _) = pair();
    let (seal_64, f1600, seal_vs_f) = paired_medians(
        5_000,
        || {
            dst.clear();
            sealer.seal(&[black_box(&small)], &mut dst).expect("seal");
        },
        || {
            for _ in 0..4 {
                keccak::f1600(black_box(&mut state));
            }
        },
    );

    let mut pure = sha3::Keccak256::new();
    let (_, _, backend_vs_pure) = paired_medians(
        2,
        || hasher.update(black_box(&big)),
        || sha3::Digest::update(&mut pure, black_box(&big)),
    );

    let mibps = |d: Duration| 1.0 / d.as_secs_f64();
    println!("\n== frame ratios (medians of {SAMPLES} paired samples, this run) ==");
    println!(
        "keccak backend {BACKEND}: 1 MiB absorb speed / pure-Rust sha3 = {:.3}",
        1.0 / backend_vs_pure
    );
    println!(
        "keccak256 absorb 1 MiB:   {:>8.1} us ({:.0} MiB/s)",
        absorb_mib.as_secs_f64() * 1e6,
        mibps(absorb_mib)
    );
    println!(
        "seal 1 MiB:               {:>8.1} us ({:.0} MiB/s)",
        seal_mib.as_secs_f64() * 1e6,
        mibps(seal_mib)
    );
    println!(
        "open 1 MiB:               {:>8.1} us ({:.0} MiB/s)",
        open_mib.as_secs_f64() * 1e6,
        mibps(open_mib)
    );
    println!(
        "4 x keccak-f[1600]:       {:>8.1} ns",
        f1600.as_secs_f64() * 1e9
    );
    println!(
        "seal 64 B:                {:>8.1} ns",
        seal_64.as_secs_f64() * 1e9
    );
    println!(
        "seal 1 MiB throughput / raw keccak absorb throughput = {:.3} (goal >= 0.9)",
        1.0 / seal_vs_absorb
    );
    println!(
        "open 1 MiB throughput / raw keccak absorb throughput = {:.3} (informational)",
        1.0 / open_vs_absorb
    );
    println!(
        "seal 64 B time / (4 x keccak-f time)                 = {:.3} (goal <= 1.5)",
        seal_vs_f
    );
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    bench_seal(&mut c);
    bench_open(&mut c);
    bench_baseline(&mut c);
    c.final_summary();
    // Only in a real `cargo bench` run, not when `cargo test --benches` smoke-tests the harness.
    if std::env::args().any(|a| a == "--bench") {
        print_ratios();
    }
}
