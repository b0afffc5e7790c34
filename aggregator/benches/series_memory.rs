//! Bench binary: memory of the aggregator's state with many active series. One partition's
//! state takes events of 10,000 series (100 tenants x 100 agents, one event per series every
//! 2 minutes of event time, heavy-tailed latencies, 4 hours of event time) with the default
//! windowing (15-minute windows, 5 minutes of allowed lateness); events are made and dropped one
//! by one, so the process's growth is the state. Reports peak RSS (VmHWM) before and after, the
//! checkpointed state size and the bytes per series. Run:
//! `cargo bench -p aggregator --bench series_memory` (`SERIES=N` for another series count).

use aggregator::engine::{EngineConfig, PartitionState};
use schemas::{TaskEvent, TaskStatus};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `VmHWM` (peak resident set) and `VmRSS` of this process, in KiB.
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn main() {
    let series: u64 = std::env::var("SERIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let tenants = 100.min(series).max(1);
    let agents = series.div_ceil(tenants);
    let step_ms = 120_000;
    let hours = 4;
    let config = EngineConfig {
        window_ms: 900_000,
        allowed_lateness_ms: 300_000,
        max_future_skew_ms: 60_000,
    };
    let start_ms = 1_759_276_800_000;
    let tenant_names: Vec<String> = (0..tenants).map(|t| format!("tenant-{t:03}")).collect();
    let agent_names: Vec<String> = (0..agents).map(|a| format!("agent-{a:03}")).collect();
    let (peak_before, rss_before) = memory_kib();

    let mut state = PartitionState::default();
    let mut out = Vec::new();
    let mut template = TaskEvent::example();
    let mut events = 0u64;
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        // xorshift64*: a cheap, reproducible stream.
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let started = std::time::Instant::now();
    for tick in 0..(hours * 3_600_000 / step_ms) {
        for s in 0..series {
            let r = next();
            let completed = start_ms + tick * step_ms + (s * 7) as i64 % step_ms;
            // Heavy tail: mostly 1-10 s, sometimes minutes.
            let latency = 1_000 + (r % 9_000) as i64 + if r % 50 == 0 { (r % 300_000) as i64 } else { 0 };
            template.event_id = format!("ev-{events}");
            template
                .tenant_id
                .clone_from(&tenant_names[(s % tenants) as usize]);
            template.agent_id.clone_from(&agent_names[(s / tenants) as usize]);
            template.status = TaskStatus::ALL[(r % 3) as usize];
            template.completed_at = completed;
            template.started_at = completed - latency;
            template.cost_micros = (r % 20_000) as i64;
            template.human_interventions = (r % 17 == 0) as i32;
            state.process(&config, &template.view(), i64::MAX, &mut out);
            events += 1;
        }
        out.clear();
        // What the driver does at each checkpoint.
        std::hint::black_box(state.take_dirty_days());
        std::hint::black_box(state.to_bytes());
    }
    let secs = started.elapsed().as_secs_f64();
    let (peak_after, rss_after) = memory_kib();
    let (active, windows, days, ids) = state.sizes();
    let bytes = state.to_bytes().len();
    println!(
        "{events} events of {active} active series over {hours} h of event time in {secs:.2} s ({:.0} events/s incl. a checkpoint serialization per 2 min of event time)",
        events as f64 / secs
    );
    println!(
        "state: {windows} open windows, {days} open days, {ids} ids in the dedup horizon; checkpoint {bytes} bytes = {} bytes per series",
        bytes / active.max(1)
    );
    println!(
        "peak RSS {:.1} MiB (before the state: {:.1} MiB); RSS now {:.1} MiB (before: {:.1} MiB) = about {} bytes per series in memory",
        peak_after as f64 / 1024.0,
        peak_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        rss_before as f64 / 1024.0,
        (rss_after.saturating_sub(rss_before) * 1024) / active.max(1) as u64
    );
}
