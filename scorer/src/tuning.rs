//! Choosing thresholds and ensemble weights on tuning sets (pooled), and the evaluation table over
//! unseen sets (pure, over [`SeriesScores`]).
//!
//! Every detector row gets its threshold on the tuning sets under the budget (false alarms, and
//! optionally the median delay of step incidents)
//! ([`pick_threshold`]), then is judged on each unseen set at that threshold; the table
//! reports the mean and the standard deviation over the unseen sets, the pooled delays and
//! the pooled catches per incident kind. The "flag every window" row needs no threshold.

use serde::Serialize;

use crate::evaluation::{judge_at, pick_threshold, Budget, Protocol, Report, SeriesScores};

/// How many candidate thresholds a sweep tries.
pub const CANDIDATES: usize = 400;

/// Mean and sample standard deviation.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Spread {
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation (0 for one value).
    pub sd: f64,
}

impl Spread {
    /// Of `values`.
    pub fn of(values: &[f64]) -> Spread {
        if values.is_empty() {
            return Spread::default();
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let sd = if values.len() > 1 {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        Spread { mean, sd }
    }
}

/// One row of the evaluation table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Detector name.
    pub name: String,
    /// Threshold (picked on the tuning set).
    pub threshold: f64,
    /// Its result on the tuning set.
    pub tuning: Summary,
    /// Per unseen set.
    pub per_set: Vec<Summary>,
    /// Over the unseen sets: precision.
    pub precision: Spread,
    /// Recall.
    pub recall: Spread,
    /// F1.
    pub f1: Spread,
    /// False alarms per series-day, all series.
    pub false_alarms_per_series_day: Spread,
    /// False alarms per series-day, control series.
    pub false_alarms_per_control_series_day: Spread,
    /// Share of flagged windows inside incidents + grace.
    pub inside_share: Spread,
    /// The unseen sets pooled.
    pub pooled: Report,
}

/// The headline numbers of one report.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// Precision.
    pub precision: f64,
    /// Recall.
    pub recall: f64,
    /// F1.
    pub f1: f64,
    /// False alarms per series-day (all series).
    pub false_alarms_per_series_day: f64,
    /// False alarms per series-day (control series).
    pub false_alarms_per_control_series_day: f64,
    /// Flagged windows inside incidents + grace.
    pub inside_share: f64,
    /// Alarms.
    pub alarms: usize,
    /// Incidents caught / incidents.
    pub caught: (usize, usize),
}

impl From<&Report> for Summary {
    fn from(r: &Report) -> Summary {
        Summary {
            precision: r.precision(),
            recall: r.recall(),
            f1: r.f1(),
            false_alarms_per_series_day: r.false_alarms_per_series_day(),
            false_alarms_per_control_series_day: r.false_alarms_per_control_series_day(),
            inside_share: r.inside_share(),
            alarms: r.alarms,
            caught: (r.caught, r.incidents),
        }
    }
}

/// Judges a detector on the unseen sets at `threshold`.
pub fn row(
    name: &str,
    threshold: f64,
    tuning: &Report,
    unseen: &[Vec<SeriesScores>],
    protocol: &Protocol,
) -> Row {
    let reports: Vec<Report> = unseen
        .iter()
        .map(|set| judge_at(set, threshold, protocol))
        .collect();
    let spread = |f: fn(&Report) -> f64| Spread::of(&reports.iter().map(f).collect::<Vec<_>>());
    let mut pooled = Report::default();
    for r in &reports {
        pooled.merge(r);
    }
    Row {
        name: name.to_string(),
        threshold,
        tuning: Summary::from(tuning),
        per_set: reports.iter().map(Summary::from).collect(),
        precision: spread(Report::precision),
        recall: spread(Report::recall),
        f1: spread(Report::f1),
        false_alarms_per_series_day: spread(Report::false_alarms_per_series_day),
        false_alarms_per_control_series_day: spread(Report::false_alarms_per_control_series_day),
        inside_share: spread(Report::inside_share),
        pooled,
    }
}

/// The best weights (on a grid of `steps` per member, summing to 1) and threshold on the
/// tuning set: within the whole budget before within its false alarms only, then highest F1,
/// then fewest false alarms. `scores(w)` gives the
/// tuning set's scores for weights `w = (lstm, transformer, statistical)`; `allowed` masks
/// members that must keep weight 0; every allowed member gets at least one step (a member of
/// the ensemble is in it).
pub fn tune_weights(
    scores: impl Fn((f64, f64, f64)) -> Vec<SeriesScores>,
    allowed: (bool, bool, bool),
    steps: usize,
    protocol: &Protocol,
    budget: &Budget,
) -> ((f64, f64, f64), f64, Report) {
    let steps = steps.max(1);
    let mut best: Option<((f64, f64, f64), f64, Report)> = None;
    for a in 0..=steps {
        for b in 0..=steps - a {
            let c = steps - a - b;
            let w = (
                a as f64 / steps as f64,
                b as f64 / steps as f64,
                c as f64 / steps as f64,
            );
            if (allowed.0 != (a > 0)) || (allowed.1 != (b > 0)) || (allowed.2 != (c > 0)) {
                continue;
            }
            let (t, r) = pick_threshold(&scores(w), protocol, budget, CANDIDATES);
            let better = best.as_ref().is_none_or(|(_, _, b)| {
                let (fits, b_fits) = (budget.rank(&r), budget.rank(b));
                fits > b_fits
                    || (fits == b_fits
                        && (r.f1() > b.f1()
                            || (r.f1() == b.f1()
                                && r.false_alarms_per_series_day() < b.false_alarms_per_series_day())))
            });
            if better {
                best = Some((w, t, r));
            }
        }
    }
    best.expect("at least one weight vector is allowed")
}

/// What the picked weights and threshold do on the tuning sets against the `budget`, in words:
/// whether the delay bound was met, or could not be within the false alarms (the best F1 within
/// them was taken), or not even the false alarms were (the fewest was taken).
pub fn budget_outcome(r: &Report, budget: &Budget) -> String {
    let mut out = format!(
        "F1 {:.3}, {:.4} false alarms per series-day (budget {}), median step delay {} (misses counted)",
        r.f1(),
        r.false_alarms_per_series_day(),
        budget.false_alarms_per_series_day,
        match r.step_delay_with_misses_ms(0.5) {
            Some(i64::MAX) => "never (most step incidents missed)".to_string(),
            d => minutes(d),
        },
    );
    let bound = budget.median_step_delay_ms.map(|b| minutes(Some(b)));
    out.push_str(&match (budget.rank(r), bound) {
        (0, _) => "; OVER the false-alarm budget: no threshold keeps to it, the one with the fewest \
                   was taken"
            .to_string(),
        (1, Some(b)) => format!(
            "; the delay bound of {b} is NOT reached within the false-alarm budget: the best F1 \
             within it was taken"
        ),
        (_, Some(b)) => format!("; delay bound {b}: met"),
        (_, None) => String::new(),
    });
    out
}

/// Minutes, for the table.
fn minutes(ms: Option<i64>) -> String {
    ms.map(|m| format!("{:.0} min", m as f64 / 60_000.0))
        .unwrap_or_else(|| "-".into())
}

/// Incident kinds in table order.
pub const KINDS: [&str; 6] = [
    "latency_regression",
    "success_rate_drop",
    "intervention_surge",
    "cost_spike",
    "slow_drift",
    "traffic_outage",
];

/// The evaluation table in Markdown.
pub fn markdown(rows: &[Row], sets: usize) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "| detector | threshold | precision | recall | F1 | false alarms / series-day (all) | (control) | flagged inside | median / p90 delay (step incidents) | caught over {sets} sets: latency / success drop / interventions / cost / slow drift / outage |\n"
    ));
    out.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
    let pm = |s: &Spread, d: usize| format!("{:.*} ± {:.*}", d, s.mean, d, s.sd);
    for r in rows {
        let kinds: Vec<String> = KINDS
            .iter()
            .map(|k| {
                let (c, t) = r.pooled.per_kind.get(*k).copied().unwrap_or_default();
                format!("{c}/{t}")
            })
            .collect();
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} |\n",
            r.name,
            if r.threshold.is_finite() {
                format!("{:.3}", r.threshold)
            } else {
                "-".into()
            },
            pm(&r.precision, 3),
            pm(&r.recall, 3),
            pm(&r.f1, 3),
            pm(&r.false_alarms_per_series_day, 4),
            pm(&r.false_alarms_per_control_series_day, 4),
            pm(&r.inside_share, 3),
            minutes(r.pooled.step_delay_quantile_ms(0.5)),
            minutes(r.pooled.step_delay_quantile_ms(0.9)),
            kinds.join(" / "),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_outcome_says_which_part_of_the_budget_held() {
        // One caught incident 30 min in, one false alarm, over one series-day.
        let r = Report {
            series_days: 1.0,
            incidents: 1,
            caught: 1,
            true_alarms: 1,
            alarms: 2,
            false_alarms: 1,
            delays_ms: vec![1_800_000],
            delays_by_kind: [("cost_spike".to_string(), vec![1_800_000])].into(),
            per_kind: [("cost_spike".to_string(), (1, 1))].into(),
            ..Report::default()
        };
        let budget = |fa: f64, min: Option<i64>| Budget {
            false_alarms_per_series_day: fa,
            median_step_delay_ms: min.map(|m| m * 60_000),
        };
        let says = |b| budget_outcome(&r, &b);
        assert!(
            says(budget(1.0, Some(30))).ends_with("delay bound 30 min: met"),
            "{}",
            says(budget(1.0, Some(30)))
        );
        assert!(says(budget(1.0, Some(29))).contains("bound of 29 min is NOT reached"));
        assert!(says(budget(0.5, Some(30))).contains("OVER the false-alarm budget"));
        assert!(says(budget(1.0, None)).ends_with("(misses counted)"));
        assert!(says(budget(1.0, None)).contains("median step delay 30 min"));
    }

    #[test]
    fn spread_is_mean_and_sample_sd() {
        let s = Spread::of(&[1.0, 2.0, 3.0]);
        assert_eq!(s.mean, 2.0);
        assert!((s.sd - 1.0).abs() < 1e-12);
        assert_eq!(Spread::of(&[4.0]).sd, 0.0);
    }
}
