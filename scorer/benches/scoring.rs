//! Scoring throughput and latency of the committed model set, from KPI windows to verdicts as
//! the service runs it: each series' detector (baselines, evidence, CUSUM), the model input,
//! both autoencoders and the ensemble.
//!
//! `cargo bench -p scorer --bench scoring` (needs `ORT_DYLIB_PATH`, set by scripts/lib.sh's
//! install; `SCORER_MODELS` overrides the model directory, `SCORER_BENCH_SECS` the time per
//! measurement). Reports windows/s per batch size on 1 thread and on N threads (one session
//! pair each, 1 intra-op thread), and the latency of scoring one window at a time.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use scorer::buffer::{Push, SeriesBuffer};
use scorer::detector::WindowStats;
use scorer::features::FEATURE_COUNT;
use scorer::models::{init_runtime, runtime_path, Batch, ModelSet, StatInput};

const PERIOD: i64 = 900_000;

/// Deterministic, plausible windows (a small LCG, no extra dependency): `series` series with
/// a diurnal volume, `days` days each.
struct Workload {
    state: u64,
}

impl Workload {
    fn next(&mut self) -> f64 {
        self.state = self
            .state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.state >> 11) as f64 / (1u64 << 53) as f64
    }

    fn window(&mut self, period: i64) -> WindowStats {
        let hour = (period / 4) % 24;
        let mean = 4.0 + 26.0 * (-(((hour as f64) - 14.0).powi(2)) / 32.0).exp();
        let tasks = (mean * (0.7 + 0.6 * self.next())).floor() as i64;
        let succeeded = (tasks as f64 * (0.85 + 0.1 * self.next())).round() as i64;
        WindowStats {
            start_ms: period * PERIOD,
            tasks,
            succeeded: succeeded.min(tasks),
            with_intervention: (tasks as f64 * 0.1 * self.next()).round() as i64,
            cost_micros: tasks * (3_000 + (2_000.0 * self.next()) as i64),
            p50_ms: (tasks > 0).then(|| 1_000.0 + 500.0 * self.next()),
            p95_ms: (tasks > 0).then(|| 4_000.0 + 3_000.0 * self.next()),
        }
    }
}

/// Series warmed up with two days of windows; the next windows to read continue them.
fn warmed_series(models: &ModelSet, n: usize, seed: u64) -> (Vec<SeriesBuffer>, Workload, i64) {
    let mut work = Workload { state: seed };
    let m = &models.manifest;
    let mut series: Vec<SeriesBuffer> = (0..n)
        .map(|_| SeriesBuffer::new(m.window_ms(), m.sequence_length))
        .collect();
    let warm = 2 * 96;
    for period in 0..warm {
        for s in series.iter_mut() {
            s.push(&work.window(period), 0, &m.detector);
        }
    }
    (series, work, warm)
}

/// Windows to verdicts (detector, model input, both models, ensemble), `batch_size` at a time.
fn throughput(models: &mut ModelSet, n_series: usize, batch_size: usize, budget: Duration, seed: u64) -> f64 {
    let (mut series, mut work, mut period) = warmed_series(models, n_series, seed);
    let params = models.manifest.detector;
    let mut batch = Batch::default();
    let started = Instant::now();
    let mut scored = 0usize;
    let mut i = 0;
    while started.elapsed() < budget {
        batch.clear();
        while batch.len < batch_size {
            let s = &mut series[i % n_series];
            if let Push::Ready(e) = s.push(&work.window(period), 0, &params) {
                models.push(&mut batch, s.rows(), StatInput::of(&e));
            }
            i += 1;
            if i % n_series == 0 {
                period += 1;
            }
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
    let n_series = 4096;
    println!(
        "model set {} ({} windows x {FEATURE_COUNT} features), {n_series} series",
        models.manifest.version, len
    );

    println!("\n1 thread, 1 intra-op thread:");
    for batch_size in [1, 16, 64, 256, 1024] {
        let rate = throughput(&mut models, n_series, batch_size, budget, 7);
        println!("  batch {batch_size:>5}: {rate:>10.0} windows/s");
    }

    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    for batch_size in [256, 1024] {
        let total: f64 = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let dir = &dir;
                    s.spawn(move || {
                        let mut m = ModelSet::load(dir, 1).expect("model set");
                        throughput(&mut m, n_series, batch_size, budget, 11 + t as u64)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("thread")).sum()
        });
        println!("{threads} threads, batch {batch_size:>5}: {total:>10.0} windows/s");
    }

    let mut latencies = Vec::new();
    let mut batch = Batch::default();
    let (mut series, mut work, mut period) = warmed_series(&models, 64, 13);
    let params = models.manifest.detector;
    let started = Instant::now();
    let mut i = 0;
    while started.elapsed() < budget {
        let window = work.window(period);
        let t = Instant::now();
        batch.clear();
        let s = &mut series[i % 64];
        if let Push::Ready(e) = s.push(&window, 0, &params) {
            models.push(&mut batch, s.rows(), StatInput::of(&e));
        }
        models.score(&batch).expect("score");
        latencies.push(t.elapsed());
        i += 1;
        if i % 64 == 0 {
            period += 1;
        }
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
