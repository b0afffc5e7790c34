//! The KPI feature vector of one window and its robust normalization.
//!
//! Features, in this order (the manifest must list the same):
//! 1. `success_rate` = succeeded / tasks
//! 2. `intervention_rate` = tasks with an intervention / tasks
//! 3. `log_p95_latency_ms` = ln(1 + P95 latency in ms)
//! 4. `log_cost_per_task_micros` = ln(1 + cost / tasks)
//! 5. `log_tasks` = ln(1 + tasks)
//!
//! A window without tasks has no rates, latency or cost per task: those four are *undefined*
//! (not zero, which would look like an outage of success, nor the mean, which would look
//! healthy). Undefined features enter the models at the neutral value 0 (the training median
//! after normalization) with mask 0, so they count in no error; `log_tasks` = 0 stays defined,
//! which is how an outage shows.

use schemas::KpiWindow;

/// Number of features.
pub const FEATURE_COUNT: usize = 5;

/// Feature names, in model input order.
pub const FEATURES: [&str; FEATURE_COUNT] = [
    "success_rate",
    "intervention_rate",
    "log_p95_latency_ms",
    "log_cost_per_task_micros",
    "log_tasks",
];

/// Un-normalized feature values of one window; `None` = undefined.
pub type RawFeatures = [Option<f64>; FEATURE_COUNT];

/// The features of a window with no tasks.
pub const EMPTY: RawFeatures = [None, None, None, None, Some(0.0)];

/// The features of `window`.
pub fn from_window(window: &KpiWindow) -> RawFeatures {
    from_counts(
        window.tasks_total,
        window.succeeded,
        window.tasks_with_intervention,
        window.cost_micros,
        window.latency_p95_ms,
    )
}

/// The features of a window from its counts.
pub fn from_counts(
    tasks: i64,
    succeeded: i64,
    with_intervention: i64,
    cost_micros: i64,
    p95_ms: Option<f64>,
) -> RawFeatures {
    if tasks <= 0 {
        return EMPTY;
    }
    let n = tasks as f64;
    [
        Some(succeeded as f64 / n),
        Some(with_intervention as f64 / n),
        p95_ms.filter(|p| p.is_finite() && *p >= 0.0).map(f64::ln_1p),
        Some((cost_micros.max(0) as f64 / n).ln_1p()),
        Some(n.ln_1p()),
    ]
}

/// Robust per-feature scaling fitted on training data: `clip((x - median) / scale)`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct Normalization {
    /// Per-feature median.
    pub median: Vec<f64>,
    /// Per-feature scale (IQR / 1.349), positive.
    pub scale: Vec<f64>,
    /// Normalized values are clipped to `[-clip, clip]`.
    pub clip: f64,
}

impl Normalization {
    /// Writes the model input of `raw` into `x` and its mask (1 defined, 0 undefined) into
    /// `mask`; both have [`FEATURE_COUNT`] elements.
    pub fn apply(&self, raw: &RawFeatures, x: &mut [f32], mask: &mut [f32]) {
        for (f, value) in raw.iter().enumerate() {
            match value {
                Some(v) => {
                    let z = ((v - self.median[f]) / self.scale[f]).clamp(-self.clip, self.clip);
                    x[f] = z as f32;
                    mask[f] = 1.0;
                }
                None => {
                    x[f] = 0.0;
                    mask[f] = 0.0;
                }
            }
        }
    }

    /// Why this normalization cannot be used, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        if self.median.len() != FEATURE_COUNT || self.scale.len() != FEATURE_COUNT {
            return Err(format!(
                "normalization.median and .scale must have {FEATURE_COUNT} values"
            ));
        }
        if let Some(f) = self.scale.iter().position(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(format!("normalization.scale[{f}] must be positive"));
        }
        if let Some(f) = self.median.iter().position(|m| !m.is_finite()) {
            return Err(format!("normalization.median[{f}] must be finite"));
        }
        if !(self.clip.is_finite() && self.clip > 0.0) {
            return Err("normalization.clip must be positive".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm() -> Normalization {
        Normalization {
            median: vec![0.9, 0.1, 7.0, 9.0, 2.0],
            scale: vec![0.05, 0.05, 0.5, 0.5, 1.0],
            clip: 10.0,
        }
    }

    #[test]
    fn rates_and_logs_of_a_busy_window() {
        let f = from_counts(20, 15, 4, 200_000, Some(999.0));
        assert_eq!(f[0], Some(0.75));
        assert_eq!(f[1], Some(0.2));
        assert!((f[2].unwrap() - 1000f64.ln()).abs() < 1e-12);
        assert!((f[3].unwrap() - 10_001f64.ln()).abs() < 1e-12);
        assert!((f[4].unwrap() - 21f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn an_empty_window_has_undefined_rates_and_zero_volume() {
        assert_eq!(from_counts(0, 0, 0, 0, None), EMPTY);
        let (mut x, mut mask) = ([9f32; 5], [9f32; 5]);
        norm().apply(&EMPTY, &mut x, &mut mask);
        assert_eq!(mask, [0.0, 0.0, 0.0, 0.0, 1.0]);
        assert_eq!(x[..4], [0.0; 4]);
        assert_eq!(x[4], -2.0, "zero tasks is a real, low volume");
    }

    #[test]
    fn normalization_is_robust_scaling_with_clipping() {
        let (mut x, mut mask) = ([0f32; 5], [0f32; 5]);
        norm().apply(
            &[Some(0.8), Some(0.1), Some(100.0), None, Some(3.0)],
            &mut x,
            &mut mask,
        );
        assert!((x[0] + 2.0).abs() < 1e-6);
        assert_eq!(x[1], 0.0);
        assert_eq!(x[2], 10.0, "clipped");
        assert_eq!((x[3], mask[3]), (0.0, 0.0));
        assert_eq!(x[4], 1.0);
    }

    #[test]
    fn a_bad_normalization_names_the_key() {
        let mut n = norm();
        n.scale[3] = 0.0;
        assert_eq!(n.check().unwrap_err(), "normalization.scale[3] must be positive");
        n.scale.pop();
        assert!(n.check().unwrap_err().contains("5 values"));
    }
}
