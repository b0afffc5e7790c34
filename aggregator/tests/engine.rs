//! The pure windowing core: counts, duplicates, lateness, emission, checkpoint/restore.

use aggregator::engine::{EngineConfig, Outcome, PartitionState};
use proptest::prelude::*;
use schemas::kpi::{rank_error_bounds, Counts};
use schemas::time::DAY_MS;
use schemas::{KpiWindow, TaskEvent, TaskStatus};

const CONFIG: EngineConfig = EngineConfig {
    window_ms: 60_000,
    allowed_lateness_ms: 300_000,
    max_future_skew_ms: 60_000,
};
const T0: i64 = 1_763_856_000_000; // 2025-11-23T00:00:00Z, a day boundary
/// The wall clock of the tests that do not look at it: long after the simulated events.
const NOW: i64 = 4_102_444_800_000; // 2100-01-01

fn event(id: u64, agent: &str, completed_at: i64, status: TaskStatus, latency: i64) -> TaskEvent {
    let mut e = TaskEvent::example();
    e.event_id = format!("e{id}");
    e.agent_id = agent.into();
    e.completed_at = completed_at;
    e.started_at = completed_at - latency;
    e.status = status;
    e.cost_micros = id as i64 % 1000;
    e.human_interventions = (id % 3 == 0) as i32;
    e
}

fn run(state: &mut PartitionState, events: &[TaskEvent]) -> (Vec<Outcome>, Vec<KpiWindow>) {
    run_at(state, events, NOW)
}

fn run_at(state: &mut PartitionState, events: &[TaskEvent], now: i64) -> (Vec<Outcome>, Vec<KpiWindow>) {
    let mut out = Vec::new();
    let outcomes = events
        .iter()
        .map(|e| state.process(&CONFIG, &e.view(), now, &mut out))
        .collect();
    (outcomes, out)
}

#[test]
fn duplicates_are_dropped_and_late_events_diverted() {
    let mut s = PartitionState::default();
    let events = [
        event(1, "a", T0 + 1_000, TaskStatus::Succeeded, 10),
        event(1, "a", T0 + 1_000, TaskStatus::Succeeded, 10),
        event(2, "a", T0 + 900_000, TaskStatus::Failed, 10),
        event(3, "a", T0 + 500_000, TaskStatus::Failed, 10), // 400 s behind: late (> 300 s)
        event(4, "a", T0 + 700_000, TaskStatus::Failed, 10), // 200 s behind: accepted
    ];
    let (outcomes, _) = run(&mut s, &events);
    assert_eq!(
        outcomes,
        vec![
            Outcome::Accepted,
            Outcome::Duplicate,
            Outcome::Accepted,
            Outcome::Late {
                watermark_ms: T0 + 900_000
            },
            Outcome::Accepted
        ]
    );
    let rows = s.take_dirty_days();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].aggregate.counts.tasks_total, 3);
    assert!(!rows[0].is_final);
    assert!(s.take_dirty_days().is_empty(), "nothing changed since");
    assert_eq!(
        (s.stats().accepted, s.stats().duplicates, s.stats().late),
        (3, 1, 1)
    );
}

#[test]
fn windows_are_emitted_when_the_watermark_passes_with_empty_windows_for_quiet_series() {
    let mut s = PartitionState::default();
    let (_, out) = run(
        &mut s,
        &[
            event(1, "a", T0 + 10_000, TaskStatus::Succeeded, 100),
            event(2, "b", T0 + 20_000, TaskStatus::Failed, 300),
            event(3, "a", T0 + 130_000, TaskStatus::Succeeded, 100), // closes periods 0 and 1
        ],
    );
    let got: Vec<_> = out
        .iter()
        .map(|w| {
            (
                w.window_start - T0,
                w.agent_id.as_str(),
                w.counts.tasks_total,
                w.revision,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (0, "a", 1, 0),
            (0, "b", 1, 0),
            (60_000, "a", 0, 0),
            (60_000, "b", 0, 0)
        ]
    );
    let empty = &out[2];
    assert_eq!(
        empty.latency.latency_p95_ms, None,
        "no tasks: no latency, not 0 ms"
    );
    assert_eq!(empty.window_id, KpiWindow::id_for("acme", "a", T0 + 60_000));
    assert_eq!(out[0].latency.latency_p50_ms, Some(100.0));
}

#[test]
fn late_accepted_events_re_emit_the_window_once_with_revision_1() {
    let mut s = PartitionState::default();
    let (_, first) = run(
        &mut s,
        &[
            event(1, "a", T0 + 10_000, TaskStatus::Succeeded, 100),
            event(2, "a", T0 + 70_000, TaskStatus::Succeeded, 100),
        ],
    );
    assert_eq!(first.len(), 1);
    // Late but within lateness: window 0 changes; re-emitted when watermark passes 60 s + 300 s.
    let (_, mid) = run(&mut s, &[event(3, "a", T0 + 20_000, TaskStatus::Failed, 100)]);
    assert!(mid.is_empty());
    let (_, last) = run(&mut s, &[event(4, "a", T0 + 400_000, TaskStatus::Succeeded, 100)]);
    let rev1: Vec<_> = last.iter().filter(|w| w.revision == 1).collect();
    assert_eq!(rev1.len(), 1);
    assert_eq!(
        (
            rev1[0].window_start,
            rev1[0].counts.tasks_total,
            rev1[0].counts.failed
        ),
        (T0, 2, 1)
    );
    assert_eq!(rev1[0].window_id, first[0].window_id, "same window, new revision");
}

#[test]
fn days_become_final_after_the_lateness_and_are_forgotten() {
    let mut s = PartitionState::default();
    run(
        &mut s,
        &[event(1, "a", T0 + DAY_MS - 1, TaskStatus::Succeeded, 10)],
    );
    assert!(!s.take_dirty_days()[0].is_final);
    run(
        &mut s,
        &[event(2, "a", T0 + DAY_MS + 300_000, TaskStatus::Succeeded, 10)],
    );
    let rows = s.take_dirty_days();
    let day0: Vec<_> = rows.iter().filter(|r| r.day_index == T0 / DAY_MS).collect();
    assert!(day0[0].is_final);
    assert_eq!(day0[0].aggregate.counts.tasks_total, 1);
    let (outcomes, _) = run(
        &mut s,
        &[event(3, "a", T0 + DAY_MS - 2, TaskStatus::Succeeded, 10)],
    );
    assert!(matches!(outcomes[0], Outcome::Late { .. }));
}

#[test]
fn the_clock_finalizes_the_ended_days_of_a_quiet_partition_and_nothing_else() {
    let mut s = PartitionState::default();
    // Two agents on day 0, the last event two minutes before midnight: by event time the day
    // stays open (watermark - lateness is still inside it).
    let (_, before) = run(
        &mut s,
        &[
            event(1, "a", T0 + 3_600_000, TaskStatus::Succeeded, 10),
            event(2, "b", T0 + DAY_MS - 120_000, TaskStatus::Failed, 10),
        ],
    );
    assert!(s.take_dirty_days().iter().all(|r| !r.is_final));
    let watermark = s.watermark_ms();
    let windows = s.sizes().1;

    // The clock inside the lateness after midnight: nothing yet.
    assert_eq!(s.finalize_days_by_clock(&CONFIG, T0 + DAY_MS + 299_999), 0);
    assert!(s.take_dirty_days().is_empty());
    // Past it: both rows become final, once.
    assert_eq!(s.finalize_days_by_clock(&CONFIG, T0 + DAY_MS + 300_000), 2);
    let rows = s.take_dirty_days();
    assert_eq!(rows.len(), 2);
    assert!(rows
        .iter()
        .all(|r| r.is_final && r.aggregate.counts.tasks_total == 1));
    assert_eq!(s.finalize_days_by_clock(&CONFIG, T0 + 2 * DAY_MS), 0);
    assert!(s.take_dirty_days().is_empty());
    // Nothing else moved: no window emitted, the watermark where the events left it.
    assert_eq!(s.watermark_ms(), watermark);
    assert_eq!(s.sizes().1, windows);
    assert!(!before.is_empty());

    // Later events of the final day are diverted, also after a restore; the next day counts.
    let mut s = PartitionState::from_bytes(&s.to_bytes()).unwrap();
    let (outcomes, _) = run(
        &mut s,
        &[
            event(3, "a", T0 + DAY_MS - 60_000, TaskStatus::Succeeded, 10),
            event(4, "a", T0 + DAY_MS + 60_000, TaskStatus::Succeeded, 10),
        ],
    );
    assert_eq!(
        outcomes,
        vec![Outcome::DayFinalized { day_start_ms: T0 }, Outcome::Accepted]
    );
    let rows = s.take_dirty_days();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].day_index, rows[0].is_final), (T0 / DAY_MS + 1, false));
    assert_eq!(s.stats().late, 1);
}

fn tenant_event(id: u64, tenant: &str, agent: &str, completed_at: i64) -> TaskEvent {
    let mut e = event(id, agent, completed_at, TaskStatus::Succeeded, 500);
    e.tenant_id = tenant.into();
    e
}

/// 2100-01-01T00:00:00Z.
const YEAR_2100: i64 = 4_102_444_800_000;

#[test]
fn a_far_future_event_moves_no_watermark_and_every_tenant_keeps_counting() {
    let now = T0 + 10 * 3_600_000;
    let mut s = PartitionState::default();
    let (outcomes, _) = run_at(
        &mut s,
        &[
            tenant_event(1, "acme", "a", YEAR_2100),
            tenant_event(2, "acme", "a", now + CONFIG.max_future_skew_ms + 1),
        ],
        now,
    );
    let limit = now + CONFIG.max_future_skew_ms;
    assert_eq!(outcomes, vec![Outcome::Future { limit_ms: limit }; 2]);
    assert_eq!(s.watermark_ms(), None, "nothing from the future moved it");
    assert_eq!(s.stats(), Default::default(), "nor counted anything");
    // Then normal traffic of two tenants on the same partition, one clock running ahead by
    // exactly the allowed skew: everything counts, nothing is late.
    let (outcomes, _) = run_at(
        &mut s,
        &[
            tenant_event(3, "acme", "a", now - 120_000),
            tenant_event(4, "globex", "b", now - 60_000),
            tenant_event(5, "acme", "a", limit),
            tenant_event(6, "globex", "b", now),
            tenant_event(7, "globex", "b", now - 100_000),
            tenant_event(8, "acme", "a", now - 1),
        ],
        now,
    );
    assert_eq!(outcomes, vec![Outcome::Accepted; 6]);
    assert_eq!(s.watermark_ms(), Some(limit));
    let rows = s.take_dirty_days();
    let counted: Vec<_> = rows
        .iter()
        .map(|r| (r.series.tenant_id(), r.aggregate.counts.tasks_total))
        .collect();
    assert_eq!(counted.len(), 2);
    assert!(counted.contains(&("acme", 3)) && counted.contains(&("globex", 3)));
    assert_eq!((s.stats().accepted, s.stats().late), (6, 0));
}

#[test]
fn a_restored_watermark_from_the_future_is_clamped_and_the_partition_counts_again() {
    let jump = T0 + 30 * DAY_MS;
    let now = T0 + 3_600_000;
    // A state written before future events were refused: the clock was not looked at (NOW is
    // after every event), one event a month ahead moved the watermark there.
    let mut s = PartitionState::default();
    run(
        &mut s,
        &[
            tenant_event(1, "acme", "a", now - 600_000),
            tenant_event(2, "globex", "b", now - 590_000),
            tenant_event(3, "acme", "a", jump),
        ],
    );
    let (outcomes, _) = run(&mut s, &[tenant_event(4, "globex", "b", now - 300_000)]);
    assert!(
        matches!(outcomes[0], Outcome::Late { .. }),
        "the partition is stalled"
    );
    s.take_dirty_days();
    let mut s = PartitionState::from_bytes(&s.to_bytes()).unwrap();

    // At load: clamped to the clock plus the skew, once.
    assert_eq!(s.clamp_watermark(&CONFIG, now), Some(jump));
    let limit = now + CONFIG.max_future_skew_ms;
    assert_eq!(s.watermark_ms(), Some(limit));
    let clamped = s.clone();
    assert_eq!(s.clamp_watermark(&CONFIG, now), None);
    assert_eq!(s, clamped, "a second clamp changes nothing");
    assert!(
        s.take_dirty_days().is_empty(),
        "the future day is forgotten, not rewritten"
    );

    // Both tenants count again, and their windows are emitted as the watermark passes them.
    let (outcomes, windows) = run_at(
        &mut s,
        &[
            tenant_event(5, "acme", "a", now - 30_000),
            tenant_event(6, "globex", "b", now - 20_000),
            tenant_event(7, "acme", "a", now + 50_000),
            tenant_event(8, "globex", "b", now + 2 * 60_000 + 10_000),
        ],
        now + 2 * 60_000 + 10_000,
    );
    assert_eq!(outcomes, vec![Outcome::Accepted; 4]);
    let emitted: Vec<_> = windows
        .iter()
        .filter(|w| w.counts.tasks_total > 0)
        .map(|w| (w.tenant_id.as_str(), w.window_start, w.revision))
        .collect();
    let period = (now - 30_000).div_euclid(60_000) * 60_000;
    assert!(emitted.contains(&("acme", period, 0)), "{emitted:?}");
    assert!(emitted.contains(&("globex", period, 0)), "{emitted:?}");
    let rows = s.take_dirty_days();
    assert!(rows
        .iter()
        .all(|r| r.day_index == now.div_euclid(DAY_MS) && !r.is_final));
    assert_eq!(
        rows.iter().map(|r| r.aggregate.counts.tasks_total).sum::<i64>(),
        4
    );

    // A watermark within the limit is left alone.
    let mut fine = PartitionState::default();
    run_at(&mut fine, &[tenant_event(9, "acme", "a", limit)], now);
    let before = fine.clone();
    assert_eq!(fine.clamp_watermark(&CONFIG, now), None);
    assert_eq!(fine, before);
}

fn arb_events() -> impl Strategy<Value = Vec<TaskEvent>> {
    // Roughly ordered events over two days with jitter below the allowed lateness, some
    // duplicates, three agents.
    prop::collection::vec(
        (
            0i64..2 * DAY_MS / 1000,
            0i64..250_000,
            0usize..3,
            0usize..3,
            1i64..50_000,
            0u8..10,
        ),
        1..300,
    )
    .prop_map(|raw| {
        let mut base: Vec<_> = raw.iter().map(|r| r.0 * 1000).collect();
        base.sort_unstable();
        raw.iter()
            .zip(base)
            .enumerate()
            .flat_map(|(i, (&(_, jitter, agent, status, latency, dup), t))| {
                let e = event(
                    i as u64,
                    ["a", "b", "c"][agent],
                    T0 + t + 250_000 - jitter,
                    TaskStatus::ALL[status],
                    latency,
                );
                let copies = if dup == 0 { 2 } else { 1 };
                std::iter::repeat_n(e, copies)
            })
            .collect()
    })
}

fn exact_days(events: &[TaskEvent]) -> std::collections::BTreeMap<(i64, String), (Counts, Vec<i64>)> {
    let mut seen = std::collections::HashSet::new();
    let mut days = std::collections::BTreeMap::new();
    for e in events {
        if !seen.insert(e.event_id.clone()) {
            continue;
        }
        let entry = days
            .entry((e.completed_at.div_euclid(DAY_MS), e.agent_id.clone()))
            .or_insert((Counts::default(), vec![]));
        entry.0.add(&e.view());
        entry.1.push(e.latency_ms());
    }
    days
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn daily_counts_equal_exact_counts_when_disorder_is_within_lateness(events in arb_events()) {
        let mut s = PartitionState::default();
        let (outcomes, _) = run(&mut s, &events);
        let late = outcomes.iter().filter(|o| matches!(o, Outcome::Late { .. })).count();
        prop_assert_eq!(late, 0);
        let mut got = std::collections::BTreeMap::new();
        for row in s.take_dirty_days() {
            got.insert((row.day_index, row.series.agent_id().to_string()), row);
        }
        let exact = exact_days(&events);
        prop_assert_eq!(got.len(), exact.len());
        for (key, (counts, mut latencies)) in exact {
            let row = &got[&key];
            prop_assert_eq!(row.aggregate.counts, counts);
            let p95 = row.aggregate.latency.quantile(0.95).unwrap();
            let (lo, hi) = rank_error_bounds(&mut latencies, 0.95, 0.02).unwrap();
            prop_assert!(lo <= p95 && p95 <= hi);
        }
    }

    #[test]
    fn checkpoint_and_restore_anywhere_changes_nothing(events in arb_events(), cut in 0.0f64..1.0) {
        let cut = (events.len() as f64 * cut) as usize;
        let mut straight = PartitionState::default();
        let (outcomes, windows) = run(&mut straight, &events);

        let mut before = PartitionState::default();
        let (mut outcomes2, mut windows2) = run(&mut before, &events[..cut]);
        let mut restored = PartitionState::from_bytes(&before.to_bytes()).unwrap();
        prop_assert_eq!(&restored, &before);
        let (o, w) = run(&mut restored, &events[cut..]);
        outcomes2.extend(o);
        windows2.extend(w);
        prop_assert_eq!(outcomes, outcomes2);
        prop_assert_eq!(windows, windows2);
        prop_assert_eq!(straight.take_dirty_days(), restored.take_dirty_days());
    }

    #[test]
    fn window_ids_are_unique_per_revision(events in arb_events()) {
        let mut s = PartitionState::default();
        let (_, windows) = run(&mut s, &events);
        let mut ids = std::collections::HashSet::new();
        for w in &windows {
            prop_assert!(ids.insert((w.window_id.clone(), w.revision)), "window emitted twice: {:?}", w);
        }
    }
}
