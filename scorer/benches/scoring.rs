//! Scoring throughput and latency of the committed model set (both models + ensemble), from
//! raw feature sequences to verdicts, as the service runs it.
//!
//! `cargo bench -p scorer --bench scoring` (needs `ORT_DYLIB_PATH`, set by scripts/lib.sh's
//! install; `SCORER_MODELS` overrides the model directory, `SCORER_BENCH_SECS` the time per
//! measurement). Reports windows/s per batch size on 1 thread and on N threads (one session
//! pair each, 1 intra-op thread), and the latency of scoring one window at a time.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use scorer::features::{RawFeatures, FEATURE_COUNT};
use scorer::models::{init_runtime, runtime_path, Batch, ModelSet};

fn sequences(n: usize, len: usize) -> Vec<Vec<RawFeatures>> {
    // Deterministic, plausible KPI values (a small LCG, no extra dependency).
    let mut state = 0x2545F4914F6CDD1Du64;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            (0..len)
                .map(|_| {
                    let tasks = (next() * 40.0).floor();
                    if tasks == 0.0 {
                        scorer::features::EMPTY
                    } else {
                        let f: RawFeatures = [
                            Some(0.8 + 0.2 * next()),
                            Some(0.15 * next()),
                            Some(6.0 + 3.0 * next()),
                            Some(8.0 + 2.0 * next()),
                            Some((tasks + 1.0).ln()),
                        ];
                        debug_assert_eq!(f.len(), FEATURE_COUNT);
                        f
                    }
                })
                .collect()
        })
        .collect()
}

fn throughput(models: &mut ModelSet, seqs: &[Vec<RawFeatures>], batch_size: usize, budget: Duration) -> f64 {
    let mut batch = Batch::default();
    let started = Instant::now();
    let mut scored = 0usize;
    let mut i = 0;
    while started.elapsed() < budget {
        batch.clear();
        for _ in 0..batch_size {
            models.push(&mut batch, seqs[i % seqs.len()].iter());
            i += 1;
        }
        scored += models.score(&batch).expect("score").len();
    }
    scored as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = std::env::var_os("SCORER_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models"));
    let secs: f64 = std::env::var("SCORER_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let budget = Duration::from_secs_f64(secs);
    init_runtime(&runtime_path("")).expect("ONNX Runtime (set ORT_DYLIB_PATH)");
    let mut models = ModelSet::load(&dir, 1).expect("model set");
    let len = models.manifest.sequence_length;
    let seqs = sequences(4096, len);
    println!(
        "model set {} ({} windows x {FEATURE_COUNT} features)",
        models.manifest.version, len
    );

    println!("\n1 thread, 1 intra-op thread:");
    for batch_size in [1, 16, 64, 256, 1024] {
        let rate = throughput(&mut models, &seqs, batch_size, budget);
        println!("  batch {batch_size:>5}: {rate:>10.0} windows/s");
    }

    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    for batch_size in [256, 1024] {
        let total: f64 = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let (dir, seqs) = (&dir, &seqs);
                    s.spawn(move || {
                        let mut m = ModelSet::load(dir, 1).expect("model set");
                        throughput(&mut m, seqs, batch_size, budget)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("thread")).sum()
        });
        println!("{threads} threads, batch {batch_size:>5}: {total:>10.0} windows/s");
    }

    let mut latencies = Vec::new();
    let mut batch = Batch::default();
    let started = Instant::now();
    let mut i = 0;
    while started.elapsed() < budget {
        let t = Instant::now();
        batch.clear();
        models.push(&mut batch, seqs[i % seqs.len()].iter());
        models.score(&batch).expect("score");
        latencies.push(t.elapsed());
        i += 1;
    }
    latencies.sort();
    let q = |p: f64| latencies[((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1];
    println!(
        "\none window at a time ({} calls): p50 {:?}, p99 {:?}, max {:?}",
        latencies.len(),
        q(0.50),
        q(0.99),
        latencies[latencies.len() - 1]
    );
}
