//! Bench binary: decode + validate + aggregate on one core from in-memory Avro single-object
//! bytes (the aggregator's hot path without Kafka), on generated heavy-tailed data; then the
//! P95 relative error of the daily digests against exact nearest-rank values, and the
//! checkpointed state size per series. Run: `cargo bench -p aggregator --bench decode_aggregate`
//! (`HOT_ROUNDS=15` repeats the timed loop, for a profiler).

use std::collections::BTreeMap;
use std::time::Instant;

use aggregator::engine::{EngineConfig, PartitionState};
use ingest::generator::{GenConfig, Generator, Record};
use schemas::codec::{Decoder, Encoder};
use schemas::kpi::{exact_quantile, LatencyDigest};
use schemas::time::DAY_MS;
use schemas::{TaskEvent, TaskEventView};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let config = GenConfig {
        days: 7,
        tenants: 4,
        agents_per_tenant: 8,
        tasks_per_series_per_day: 4_000.0,
        malformed_rate: 0.0,
        ..GenConfig::default()
    };
    let events: Vec<TaskEvent> = Generator::new(config)
        .unwrap()
        .hours()
        .flatten()
        .filter_map(|e| match e.record {
            Record::Event(ev) => Some(*ev),
            _ => None,
        })
        .collect();
    let encoder = Encoder::<TaskEvent>::single_object();
    let encoded: Vec<Vec<u8>> = events.iter().map(|e| encoder.encode(e).unwrap()).collect();
    let decoder = Decoder::<TaskEvent>::new();
    let engine = EngineConfig {
        window_ms: 60_000,
        allowed_lateness_ms: 300_000,
        max_future_skew_ms: 60_000,
    };

    let mut best = f64::MAX;
    let mut state = PartitionState::default();
    for _ in 0..std::env::var("HOT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
    {
        state = PartitionState::default();
        let mut out = Vec::new();
        let started = Instant::now();
        for bytes in &encoded {
            let event = decoder.decode_sync_as::<TaskEventView>(bytes).unwrap();
            schemas::validation::validate_view(&event).unwrap();
            // The driver reads the clock for every record (the future-event check).
            let now = schemas::time::now_ms();
            state.process(&engine, &event, now, &mut out);
            if out.len() > 4_096 {
                out.clear();
                // What the driver does at each checkpoint: take the changed days.
                std::hint::black_box(state.take_dirty_days());
            }
        }
        best = best.min(started.elapsed().as_secs_f64());
    }
    println!(
        "decode + validate + aggregate: {} events in {best:.3} s = {:.0} events/s on one core",
        encoded.len(),
        encoded.len() as f64 / best
    );

    let mut decode_only = f64::MAX;
    let mut decode_owned = f64::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        for bytes in &encoded {
            std::hint::black_box(decoder.decode_sync_as::<TaskEventView>(bytes).unwrap());
        }
        decode_only = decode_only.min(started.elapsed().as_secs_f64());
        let started = Instant::now();
        for bytes in &encoded {
            std::hint::black_box(decoder.decode_sync(bytes).unwrap());
        }
        decode_owned = decode_owned.min(started.elapsed().as_secs_f64());
    }
    println!(
        "  of which Avro decode into the borrowed view: {:.0} events/s (into an owned TaskEvent: {:.0} events/s)",
        encoded.len() as f64 / decode_only,
        encoded.len() as f64 / decode_owned
    );

    // P95 error of daily digests (per series and day) on this heavy-tailed data.
    let mut by_day: BTreeMap<(String, String, i64), Vec<i64>> = BTreeMap::new();
    for e in &events {
        by_day
            .entry((
                e.tenant_id.clone(),
                e.agent_id.clone(),
                e.completed_at.div_euclid(DAY_MS),
            ))
            .or_default()
            .push(e.latency_ms());
    }
    let mut errors: Vec<f64> = by_day
        .values_mut()
        .map(|values| {
            let mut digest = LatencyDigest::default();
            values.iter().for_each(|v| digest.record(*v));
            let estimate = digest.quantile(0.95).unwrap();
            let exact = exact_quantile(values, 0.95).unwrap() as f64;
            (estimate - exact).abs() / exact
        })
        .collect();
    errors.sort_by(f64::total_cmp);
    let mean = errors.iter().sum::<f64>() / errors.len() as f64;
    println!(
        "P95 relative error over {} series-days of about {} events: mean {:.4}%, max {:.4}%",
        errors.len(),
        events.len() / errors.len(),
        mean * 100.0,
        errors.last().unwrap() * 100.0
    );
    let (series, windows, days, ids) = state.sizes();
    let bytes = state.to_bytes().len();
    println!(
        "checkpointed state: {bytes} bytes for {series} active series ({windows} open windows, {days} open days, {ids} ids in the dedup horizon) = {} bytes per series",
        bytes / series.max(1)
    );
}
