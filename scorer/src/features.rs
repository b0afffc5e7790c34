//! The model input of one window: the detector's evidence per KPI (see [`crate::detector`]).
//!
//! Features, in this order (the manifest must list the same):
//! 1. `success_rate_z`: how much lower the success rate is than this series' baseline, in
//!    standard deviations of a window of this many tasks;
//! 2. `intervention_rate_z`: how much higher the intervention rate is;
//! 3. `latency_p50_z`, 4. `latency_p95_z`: how much higher ln P50 / ln P95 latency are;
//! 5. `cost_per_task_z`: how much higher ln cost per task is;
//! 6. `volume_z`: how many tasks fewer than expected for this hour and weekday.
//!
//! The values are already on a common scale (0 = as usual, positive = worse), clipped to
//! ±`detector.z_clip`. A window without tasks has no rate, latency or cost evidence: those
//! enter the models at 0 with mask 0, so they count in no error; its volume evidence stays
//! defined, which is how an outage shows.

use schemas::KpiWindow;

use crate::detector::{Evidence, WindowStats, KPI_COUNT};

/// Number of features.
pub const FEATURE_COUNT: usize = KPI_COUNT;

/// Feature names, in model input order.
pub const FEATURES: [&str; FEATURE_COUNT] = [
    "success_rate_z",
    "intervention_rate_z",
    "latency_p50_z",
    "latency_p95_z",
    "cost_per_task_z",
    "volume_z",
];

/// The model input of one window; `None` = undefined.
pub type Row = [Option<f64>; FEATURE_COUNT];

/// The row of a window whose evidence is unknown (a neutral, fully masked row).
pub const EMPTY: Row = [None; FEATURE_COUNT];

/// What the detector reads of a KPI window.
pub fn stats_of(window: &KpiWindow) -> WindowStats {
    WindowStats {
        start_ms: window.window_start,
        tasks: window.counts.tasks_total,
        succeeded: window.counts.succeeded,
        with_intervention: window.counts.tasks_with_intervention,
        cost_micros: window.counts.cost_micros,
        p50_ms: window.latency.latency_p50_ms,
        p95_ms: window.latency.latency_p95_ms,
    }
}

/// The model input of a window's evidence.
pub fn row(evidence: &Evidence) -> Row {
    let mut row = EMPTY;
    for (f, value) in row.iter_mut().enumerate() {
        if evidence.defined[f] {
            *value = Some(evidence.z[f]);
        }
    }
    row
}

/// Writes the model input of `row` into `x` and its mask (1 defined, 0 undefined) into `mask`;
/// both have [`FEATURE_COUNT`] elements.
pub fn apply(row: &Row, x: &mut [f32], mask: &mut [f32]) {
    for (f, value) in row.iter().enumerate() {
        match value {
            Some(v) if v.is_finite() => {
                x[f] = *v as f32;
                mask[f] = 1.0;
            }
            _ => {
                x[f] = 0.0;
                mask[f] = 0.0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detector::{DetectorParams, SeriesDetector, WindowStats};

    #[test]
    fn an_empty_window_has_only_volume_evidence() {
        let p = DetectorParams::default();
        let mut d = SeriesDetector::new();
        for i in 0..10 {
            d.observe(
                &WindowStats {
                    start_ms: i * 900_000,
                    tasks: 20,
                    succeeded: 18,
                    with_intervention: 2,
                    cost_micros: 20_000,
                    p50_ms: Some(1000.0),
                    p95_ms: Some(3000.0),
                },
                &p,
            );
        }
        let e = d.observe(&WindowStats::empty(10 * 900_000), &p);
        let r = row(&e);
        assert_eq!(r[..5], [None; 5]);
        assert!(r[5].unwrap() > 1.5, "20 tasks expected, none came: {:?}", r[5]);
        let (mut x, mut mask) = ([9f32; 6], [9f32; 6]);
        apply(&r, &mut x, &mut mask);
        assert_eq!(mask, [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
        assert_eq!(x[..5], [0.0; 5]);
    }
}
