//! What the demo (`scripts/run.sh`) shows, guarded without its services: the demo's week (the
//! same generator settings: seed 42, 2 tenants x 4 agents, one control agent each, 2,000 tasks
//! per series-day, incidents in working hours) goes through the aggregator's windowing engine
//! in arrival order and is scored by the committed model set exactly as `scorer offline`
//! scores a windows CSV. Every one of the 6 injected incidents is caught, with at most one
//! false alarm (what the README promises of the demo). Needs `ORT_DYLIB_PATH` (set by scripts/test.sh).

use std::collections::BTreeMap;

use aggregator::engine::{EngineConfig, PartitionState};
use ingest::generator::{GenConfig, Generator, Record};
use scorer::evaluation::Incident;
use scorer::models::{init_runtime, runtime_path, ModelSet};
use scorer::offline::{judge_ensemble, read_windows, score, write_windows, Label, WindowRecord};

#[test]
fn the_demo_week_catches_all_six_incidents_with_at_most_one_false_alarm() {
    let generator = Generator::new(GenConfig {
        seed: 42,
        tenants: 2,
        agents_per_tenant: 4,
        control_agents_per_tenant: 1,
        days: 7,
        tasks_per_series_per_day: 2_000.0,
        incidents_in_working_hours: true,
        ..GenConfig::default()
    })
    .unwrap();

    // The aggregator's windows of the models' length, in arrival order; a revision replaces
    // the window it revises.
    init_runtime(&runtime_path("")).expect("ONNX Runtime: set ORT_DYLIB_PATH (scripts/test.sh does)");
    let mut set = ModelSet::load(&integration_tests::models_dir(), 1).unwrap();
    let window_ms = set.manifest.window_ms();
    let config = EngineConfig {
        window_ms,
        allowed_lateness_ms: 300_000,
        max_future_skew_ms: 300_000,
    };
    let mut state = PartitionState::default();
    let mut emitted = Vec::new();
    for mut batch in generator.hours() {
        batch.sort_by_key(|e| e.arrival_ms);
        for e in &batch {
            if let Record::Event(event) = &e.record {
                state.process(&config, &event.view(), e.arrival_ms, &mut emitted);
            }
        }
    }
    let mut windows = BTreeMap::new();
    for w in emitted {
        windows.insert((w.tenant_id.clone(), w.agent_id.clone(), w.window_start), w);
    }
    let per_series_day = schemas::time::DAY_MS / window_ms;
    assert!(
        windows.len() as i64 > 8 * 6 * per_series_day,
        "a week of 8 series: {} windows",
        windows.len()
    );

    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("windows.csv");
    write_windows(
        &csv,
        windows
            .into_values()
            .map(|w| WindowRecord::of(w.tenant_id, w.agent_id, w.window_start, &w.counts, &w.latency)),
    )
    .unwrap();

    let series = read_windows(&csv, window_ms).unwrap();
    let scored = score(&mut set, &series, 256).unwrap();
    let labels: Vec<Label> = generator
        .incidents()
        .into_iter()
        .map(|i| Label {
            tenant_id: i.tenant_id,
            agent_id: i.agent_id,
            incident: Incident {
                kind: serde_json::to_value(i.kind)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string(),
                start_ms: i.start_ms,
                end_ms: i.end_ms,
            },
        })
        .collect();
    let report = judge_ensemble(&set.manifest, &scored, &labels);
    println!("{report:?}");
    assert_eq!(
        (report.caught, report.incidents),
        (6, 6),
        "per kind: {:?}",
        report.per_kind
    );
    assert!(report.false_alarms <= 1, "{} false alarms", report.false_alarms);
}
