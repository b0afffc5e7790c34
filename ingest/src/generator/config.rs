//! [`GenConfig`]: what the generator generates, and its range checks.

use schemas::time::{day_of_ms, DAY_MS};
use serde::{Deserialize, Serialize};

/// What to generate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenConfig {
    /// The seed: same seed and config, same output.
    pub seed: u64,
    /// Number of tenants.
    pub tenants: u32,
    /// Agents per tenant.
    pub agents_per_tenant: u32,
    /// Agents per tenant without incidents (the last ones): the clean control series.
    pub control_agents_per_tenant: u32,
    /// Start of simulated time (epoch ms, rounded down to a UTC day).
    pub start_ms: i64,
    /// Simulated days.
    pub days: u32,
    /// Mean tasks per series and day (each series scales it by its own factor).
    pub tasks_per_series_per_day: f64,
    /// Share of events published twice (same `event_id`).
    pub duplicate_rate: f64,
    /// Share of events arriving late but within `late_delay_ms`.
    pub late_rate: f64,
    /// Delay range of late arrivals (ms).
    pub late_delay_ms: (i64, i64),
    /// Share of events arriving very late (`very_late_delay_ms`, beyond the allowed lateness).
    pub very_late_rate: f64,
    /// Delay range of very late arrivals (ms).
    pub very_late_delay_ms: (i64, i64),
    /// Share of malformed records added next to the valid ones.
    pub malformed_rate: f64,
    /// Whether to inject incidents.
    pub incidents: bool,
    /// Whether incidents start in the tenant's working hours (a weekday, 09:00-17:00 local
    /// time) instead of at any time: for a demo whose every incident should carry enough
    /// tasks to be seen. The evaluation keeps any time (night-time incidents on quiet series
    /// are real, and some are too small for any detector).
    #[serde(default)]
    pub incidents_in_working_hours: bool,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            seed: 42,
            tenants: 4,
            agents_per_tenant: 8,
            control_agents_per_tenant: 2,
            start_ms: 1_759_276_800_000, // 2025-10-01T00:00:00Z
            days: 30,
            tasks_per_series_per_day: 1_500.0,
            duplicate_rate: 0.01,
            late_rate: 0.01,
            late_delay_ms: (10_000, 240_000),
            very_late_rate: 0.0,
            very_late_delay_ms: (3_600_000, 6 * 3_600_000),
            malformed_rate: 0.0005,
            incidents: true,
            incidents_in_working_hours: false,
        }
    }
}

/// A config value that makes no sense, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("generator setting `{field}`: {problem}")]
pub struct ConfigError {
    /// The field.
    pub field: &'static str,
    /// What is wrong.
    pub problem: String,
}

impl GenConfig {
    /// Checks ranges; the error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field, problem: &str| {
            Err(ConfigError {
                field,
                problem: problem.to_string(),
            })
        };
        if self.tenants == 0 || self.agents_per_tenant == 0 {
            return err("tenants", "tenants and agents_per_tenant must be at least 1");
        }
        if self.control_agents_per_tenant > self.agents_per_tenant {
            return err("control_agents_per_tenant", "must not exceed agents_per_tenant");
        }
        if self.days == 0 {
            return err("days", "must be at least 1");
        }
        if !(self.tasks_per_series_per_day > 0.0 && self.tasks_per_series_per_day.is_finite()) {
            return err("tasks_per_series_per_day", "must be a positive number");
        }
        for (field, rate) in [
            ("duplicate_rate", self.duplicate_rate),
            ("late_rate", self.late_rate),
            ("very_late_rate", self.very_late_rate),
            ("malformed_rate", self.malformed_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return err(field, "must be within [0, 1]");
            }
        }
        if self.late_rate + self.very_late_rate > 1.0 {
            return err("very_late_rate", "late_rate + very_late_rate must not exceed 1");
        }
        for (field, (lo, hi)) in [
            ("late_delay_ms", self.late_delay_ms),
            ("very_late_delay_ms", self.very_late_delay_ms),
        ] {
            if lo < 0 || hi < lo {
                return err(field, "must be a range [lo, hi] with 0 <= lo <= hi");
            }
        }
        Ok(())
    }

    pub(super) fn start_day_ms(&self) -> i64 {
        day_of_ms(self.start_ms) * DAY_MS
    }

    /// End of simulated time (exclusive, epoch ms).
    pub fn end_ms(&self) -> i64 {
        self.start_day_ms() + i64::from(self.days) * DAY_MS
    }
}
