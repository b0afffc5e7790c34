//! How a detector is judged: event level, no point adjustment, false alarms counted on every
//! series (pure; the one implementation, used by `scorer offline` and `scorer evaluate`, which
//! the Python training package calls).
//!
//! - An **alarm** is a run of consecutive flagged windows of one series.
//! - An alarm is **true** when it starts inside an incident of its series, or at most `lead`
//!   before it (a detector may fire a little early), or within `grace` after its end; it
//!   credits every such incident. Every other alarm is **false**, on any series, control or
//!   not. An alarm already running long before an incident is not credited with it, so
//!   flagging every window catches nothing.
//! - **Delay** of a caught incident = end of the first flagged window of the first alarm that
//!   caught it (when that verdict exists) − incident start, at least 0.
//! - **Flagged share inside** = flagged windows that overlap an incident or its grace / all
//!   flagged windows.
//! - False alarms per series-day = false alarms / (judged windows × window length / 1 day), over
//!   all series and over control series.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

const DAY_MS: f64 = schemas::time::DAY_MS as f64;

/// The rules of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Protocol {
    /// Window length (ms).
    pub window_ms: i64,
    /// How long before an incident an alarm may start and still be credited (ms).
    pub lead_ms: i64,
    /// How long after an incident an alarm may start and still be credited (ms).
    pub grace_ms: i64,
}

impl Default for Protocol {
    fn default() -> Self {
        Protocol {
            window_ms: 900_000,
            lead_ms: 3_600_000,
            grace_ms: 3_600_000,
        }
    }
}

/// A labelled incident of one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// Kind (latency regression, ...).
    pub kind: String,
    /// Start (epoch ms, inclusive).
    pub start_ms: i64,
    /// End (epoch ms, exclusive).
    pub end_ms: i64,
}

/// The judged windows of one series: window starts (ascending, consecutive) and flags.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SeriesFlags {
    /// Window starts.
    pub starts: Vec<i64>,
    /// Whether each window was flagged.
    pub flagged: Vec<bool>,
    /// Whether the series is a clean control series.
    pub control: bool,
    /// Its incidents.
    pub incidents: Vec<Incident>,
}

/// The result of judging a set of series.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Report {
    /// Alarms raised.
    pub alarms: usize,
    /// Alarms credited with an incident.
    pub true_alarms: usize,
    /// All other alarms.
    pub false_alarms: usize,
    /// False alarms on control series.
    pub false_alarms_control: usize,
    /// Incidents.
    pub incidents: usize,
    /// Incidents caught.
    pub caught: usize,
    /// Flagged windows.
    pub flagged_windows: usize,
    /// Flagged windows overlapping an incident or its grace.
    pub flagged_inside: usize,
    /// Series-days judged.
    pub series_days: f64,
    /// Control series-days judged.
    pub control_series_days: f64,
    /// Delays of the caught incidents (ms).
    pub delays_ms: Vec<i64>,
    /// Per incident kind: (caught, total).
    pub per_kind: BTreeMap<String, (usize, usize)>,
    /// Per incident kind: delays (ms).
    pub delays_by_kind: BTreeMap<String, Vec<i64>>,
}

impl Report {
    /// Adds another report (e.g. another seed).
    pub fn merge(&mut self, o: &Report) {
        self.alarms += o.alarms;
        self.true_alarms += o.true_alarms;
        self.false_alarms += o.false_alarms;
        self.false_alarms_control += o.false_alarms_control;
        self.incidents += o.incidents;
        self.caught += o.caught;
        self.flagged_windows += o.flagged_windows;
        self.flagged_inside += o.flagged_inside;
        self.series_days += o.series_days;
        self.control_series_days += o.control_series_days;
        self.delays_ms.extend(&o.delays_ms);
        for (k, (c, t)) in &o.per_kind {
            let e = self.per_kind.entry(k.clone()).or_default();
            e.0 += c;
            e.1 += t;
        }
        for (k, d) in &o.delays_by_kind {
            self.delays_by_kind.entry(k.clone()).or_default().extend(d);
        }
    }

    /// True alarms / alarms (1 when there is no alarm and no incident, 0 when only incidents).
    pub fn precision(&self) -> f64 {
        if self.alarms == 0 {
            return if self.incidents == 0 { 1.0 } else { 0.0 };
        }
        self.true_alarms as f64 / self.alarms as f64
    }

    /// Caught incidents / incidents.
    pub fn recall(&self) -> f64 {
        if self.incidents == 0 {
            return 1.0;
        }
        self.caught as f64 / self.incidents as f64
    }

    /// Harmonic mean of precision and recall.
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }

    /// False alarms per series-day over all series.
    pub fn false_alarms_per_series_day(&self) -> f64 {
        ratio(self.false_alarms as f64, self.series_days)
    }

    /// False alarms per series-day over control series.
    pub fn false_alarms_per_control_series_day(&self) -> f64 {
        ratio(self.false_alarms_control as f64, self.control_series_days)
    }

    /// Flagged windows inside incidents + grace / flagged windows (1 when nothing is flagged).
    pub fn inside_share(&self) -> f64 {
        if self.flagged_windows == 0 {
            return 1.0;
        }
        self.flagged_inside as f64 / self.flagged_windows as f64
    }

    /// The delays of the step incidents caught (all kinds but [`NOT_A_STEP`]), and with
    /// `misses` one `i64::MAX` ("never") for each step incident missed.
    fn step_delays_ms(&self, misses: bool) -> Vec<i64> {
        let mut d: Vec<i64> = Vec::new();
        for (kind, &(caught, total)) in &self.per_kind {
            if kind.as_str() == NOT_A_STEP {
                continue;
            }
            d.extend(self.delays_by_kind.get(kind).into_iter().flatten().copied());
            if misses {
                d.extend(std::iter::repeat_n(i64::MAX, total.saturating_sub(caught)));
            }
        }
        d
    }

    /// The `q` quantile of the delays of the step incidents caught; `None` without any.
    pub fn step_delay_quantile_ms(&self, q: f64) -> Option<i64> {
        quantile(&self.step_delays_ms(false), q)
    }

    /// The `q` quantile of the delays of the step incidents, a missed one counting as
    /// `i64::MAX`; `None` without step incidents.
    pub fn step_delay_with_misses_ms(&self, q: f64) -> Option<i64> {
        quantile(&self.step_delays_ms(true), q)
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

fn quantile(values: &[i64], q: f64) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_unstable();
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

impl Protocol {
    /// Whether an alarm starting at `alarm_start` is credited with `incident`.
    pub fn credits(&self, alarm_start: i64, incident: &Incident) -> bool {
        alarm_start >= incident.start_ms - self.lead_ms && alarm_start < incident.end_ms + self.grace_ms
    }
}

/// Judges one series.
pub fn judge(series: &SeriesFlags, protocol: &Protocol) -> Report {
    let w = protocol.window_ms;
    let mut report = Report {
        incidents: series.incidents.len(),
        series_days: series.starts.len() as f64 * w as f64 / DAY_MS,
        ..Report::default()
    };
    if series.control {
        report.control_series_days = report.series_days;
    }
    for inc in &series.incidents {
        report.per_kind.entry(inc.kind.clone()).or_default().1 += 1;
    }
    let mut caught: Vec<Option<i64>> = vec![None; series.incidents.len()];
    let inside = |start: i64| {
        series
            .incidents
            .iter()
            .any(|i| start < i.end_ms + protocol.grace_ms && start + w > i.start_ms)
    };
    let mut i = 0;
    let n = series.starts.len().min(series.flagged.len());
    while i < n {
        if !series.flagged[i] {
            i += 1;
            continue;
        }
        let first = i;
        while i < n && series.flagged[i] {
            report.flagged_windows += 1;
            report.flagged_inside += usize::from(inside(series.starts[i]));
            i += 1;
        }
        let start = series.starts[first];
        report.alarms += 1;
        let mut credited = false;
        for (k, inc) in series.incidents.iter().enumerate() {
            if protocol.credits(start, inc) {
                credited = true;
                if caught[k].is_none() {
                    caught[k] = Some((start + w - inc.start_ms).max(0));
                }
            }
        }
        if credited {
            report.true_alarms += 1;
        } else {
            report.false_alarms += 1;
            if series.control {
                report.false_alarms_control += 1;
            }
        }
    }
    for (inc, delay) in series.incidents.iter().zip(&caught) {
        if let Some(d) = delay {
            report.caught += 1;
            report.delays_ms.push(*d);
            report.per_kind.entry(inc.kind.clone()).or_default().0 += 1;
            report
                .delays_by_kind
                .entry(inc.kind.clone())
                .or_default()
                .push(*d);
        }
    }
    report
}

/// Judges many series.
pub fn judge_all(series: &[SeriesFlags], protocol: &Protocol) -> Report {
    let mut total = Report::default();
    for s in series {
        total.merge(&judge(s, protocol));
    }
    total
}

/// Windows of one series with a score each, to be thresholded.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SeriesScores {
    /// Window starts (ascending, consecutive).
    pub starts: Vec<i64>,
    /// Score per window; `None` = may not alarm (e.g. a cold series).
    pub scores: Vec<Option<f64>>,
    /// Whether the series is a clean control series.
    pub control: bool,
    /// Its incidents.
    pub incidents: Vec<Incident>,
}

impl SeriesScores {
    /// The flags at `threshold`.
    pub fn flags(&self, threshold: f64) -> SeriesFlags {
        SeriesFlags {
            starts: self.starts.clone(),
            flagged: self
                .scores
                .iter()
                .map(|s| s.is_some_and(|s| s >= threshold))
                .collect(),
            control: self.control,
            incidents: self.incidents.clone(),
        }
    }
}

/// Judges scored series at `threshold`.
pub fn judge_at(series: &[SeriesScores], threshold: f64, protocol: &Protocol) -> Report {
    let mut total = Report::default();
    for s in series {
        total.merge(&judge(&s.flags(threshold), protocol));
    }
    total
}

/// What a detector tuned on a tuning set may cost there.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Budget {
    /// Most false alarms per series-day (all series).
    pub false_alarms_per_series_day: f64,
    /// Longest median delay of the step incidents (every kind but `slow_drift`), a missed one
    /// counting as never caught (so catching fewer cannot shorten it); `None`: unbounded.
    pub median_step_delay_ms: Option<i64>,
}

impl Budget {
    /// Only a false-alarm budget.
    pub fn false_alarms(per_series_day: f64) -> Budget {
        Budget {
            false_alarms_per_series_day: per_series_day,
            median_step_delay_ms: None,
        }
    }

    /// Whether `r` keeps to the false-alarm budget.
    pub fn false_alarms_fit(&self, r: &Report) -> bool {
        r.false_alarms_per_series_day() <= self.false_alarms_per_series_day
    }

    /// Whether `r` keeps to the whole budget (with a delay bound, a set without step
    /// incidents does not: there is no delay to bound).
    pub fn fits(&self, r: &Report) -> bool {
        self.false_alarms_fit(r)
            && self
                .median_step_delay_ms
                .is_none_or(|max| r.step_delay_with_misses_ms(0.5).is_some_and(|d| d <= max))
    }

    /// How well `r` keeps to the budget: 2 within all of it, 1 within the false alarms only, 0
    /// over.
    pub fn rank(&self, r: &Report) -> u8 {
        if self.fits(r) {
            2
        } else if self.false_alarms_fit(r) {
            1
        } else {
            0
        }
    }
}

/// The incident kind that is not a step change: its delay is not a step incident's (the
/// table's delay column and the budget's delay bound leave it out).
pub const NOT_A_STEP: &str = "slow_drift";

/// The threshold picked on a tuning set: the best F1 among the thresholds within the whole
/// `budget` (ties: the higher threshold); if none is, the best F1 within its false alarms; if
/// none is, the threshold with the fewest false alarms. Candidates: the distinct scores, all
/// of them up to `max_candidates`, else [`candidate_thresholds`].
pub fn pick_threshold(
    series: &[SeriesScores],
    protocol: &Protocol,
    budget: &Budget,
    max_candidates: usize,
) -> (f64, Report) {
    let mut all: Vec<f64> = series
        .iter()
        .flat_map(|s| s.scores.iter().flatten().copied())
        .filter(|v| v.is_finite())
        .collect();
    all.sort_by(f64::total_cmp);
    all.dedup();
    if all.is_empty() {
        return (f64::INFINITY, judge_at(series, f64::INFINITY, protocol));
    }
    let mut candidates = candidate_thresholds(&all, max_candidates);
    // Just above the highest score: flags nothing.
    candidates.push(all.last().expect("not empty") + 1e-9);
    let mut best: Option<(u8, f64, Report)> = None;
    let mut fewest: Option<(f64, Report)> = None;
    for &t in &candidates {
        let r = judge_at(series, t, protocol);
        let fa = r.false_alarms_per_series_day();
        let fewer = fewest.as_ref().is_none_or(|(_, b)| {
            let b_fa = b.false_alarms_per_series_day();
            fa < b_fa || (fa == b_fa && r.f1() > b.f1())
        });
        if fewer {
            fewest = Some((t, r.clone()));
        }
        let rank = budget.rank(&r);
        if rank > 0
            && best
                .as_ref()
                .is_none_or(|(b_rank, _, b)| rank > *b_rank || (rank == *b_rank && r.f1() >= b.f1()))
        {
            best = Some((rank, t, r));
        }
    }
    best.map(|(_, t, r)| (t, r))
        .or(fewest)
        .expect("at least one candidate")
}

/// At most `max` (at least 2) of the distinct ascending scores `sorted`, evenly spaced in the
/// logarithm of the rank from the top: every one of the highest scores, then ever sparser
/// ones, the lowest always included. A threshold only matters where few windows lie above it,
/// so the candidates are dense there: evenly by rank, 400 candidates over 276,000 scores left
/// four between the 99th percentile and the top, where every useful threshold lies.
pub fn candidate_thresholds(sorted: &[f64], max: usize) -> Vec<f64> {
    let n = sorted.len();
    let max = max.max(2);
    if n <= max {
        return sorted.to_vec();
    }
    // Ranks from the top (1 = the highest) at 1, r, r^2, ... up to n.
    let ratio = (n as f64).powf(1.0 / (max - 1) as f64);
    let mut ranks: Vec<usize> = (0..max)
        .map(|i| (ratio.powi(i as i32).round() as usize).clamp(1, n))
        .collect();
    ranks.push(n);
    ranks.dedup();
    ranks.iter().rev().map(|r| sorted[n - r]).collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const W: i64 = 900_000;

    fn series(flags: &str, control: bool, incidents: Vec<Incident>) -> SeriesFlags {
        SeriesFlags {
            starts: (0..flags.len() as i64).map(|i| i * W).collect(),
            flagged: flags.chars().map(|c| c == '#').collect(),
            control,
            incidents,
        }
    }

    fn inc(start_window: i64, end_window: i64) -> Incident {
        Incident {
            kind: "cost_spike".into(),
            start_ms: start_window * W,
            end_ms: end_window * W,
        }
    }

    #[test]
    fn threshold_candidates_are_dense_among_the_highest_scores() {
        let scores: Vec<f64> = (0..276_000).map(f64::from).collect();
        let c = candidate_thresholds(&scores, 400);
        assert!(c.len() <= 400 && c.len() > 300, "{}", c.len());
        assert!(c.windows(2).all(|w| w[0] < w[1]), "ascending, distinct");
        assert_eq!((c[0], *c.last().unwrap()), (0.0, 275_999.0));
        // Every one of the 30 highest scores, and most candidates in the top 1 %.
        assert!((275_970..276_000).all(|v| c.contains(&f64::from(v))));
        assert!(c.iter().filter(|&&v| v >= 273_240.0).count() > 150);
        // Few scores: all of them.
        assert_eq!(candidate_thresholds(&[1.0, 2.0, 3.0], 400), vec![1.0, 2.0, 3.0]);
    }

    #[test]
    fn an_alarm_inside_an_incident_catches_it_once_with_its_delay() {
        // Windows 0..40, incident windows 10..20, alarm windows 12..15 and 16..17.
        let mut f = ['.'; 40];
        for i in [12, 13, 14, 16] {
            f[i] = '#';
        }
        let s = series(&f.iter().collect::<String>(), false, vec![inc(10, 20)]);
        let r = judge(&s, &Protocol::default());
        assert_eq!((r.alarms, r.true_alarms, r.false_alarms), (2, 2, 0));
        assert_eq!((r.caught, r.incidents), (1, 1));
        assert_eq!(r.delays_ms, vec![3 * W], "end of window 12 - start of window 10");
        assert_eq!(r.inside_share(), 1.0);
        assert_eq!(r.f1(), 1.0);
    }

    #[test]
    fn an_alarm_within_the_grace_is_true_and_one_after_it_is_false() {
        let p = Protocol::default();
        let mut f = vec!['.'; 60];
        f[23] = '#'; // starts 3 windows after the end (grace is 4 windows)
        f[40] = '#'; // long after
        let r = judge(
            &series(&f.iter().collect::<String>(), false, vec![inc(10, 20)]),
            &p,
        );
        assert_eq!((r.true_alarms, r.false_alarms, r.caught), (1, 1, 1));
        assert_eq!(r.flagged_inside, 1);
        let mut f = vec!['.'; 60];
        f[24] = '#'; // exactly at end + grace: outside
        let r = judge(
            &series(&f.iter().collect::<String>(), false, vec![inc(10, 20)]),
            &p,
        );
        assert_eq!((r.true_alarms, r.false_alarms, r.caught), (0, 1, 0));
    }

    #[test]
    fn an_alarm_running_long_before_an_incident_is_not_credited() {
        let p = Protocol::default();
        // Flag everything: one alarm from window 0, incident at window 10 (2.5 h later).
        let r = judge(&series(&"#".repeat(40), false, vec![inc(10, 20)]), &p);
        assert_eq!((r.true_alarms, r.false_alarms, r.caught), (0, 1, 0));
        assert_eq!(r.f1(), 0.0);
        // Starting exactly `lead` (4 windows) before: credited, delay 0.
        let mut f = ['.'; 40];
        for x in f.iter_mut().take(14).skip(6) {
            *x = '#';
        }
        let r = judge(
            &series(&f.iter().collect::<String>(), false, vec![inc(10, 20)]),
            &p,
        );
        assert_eq!((r.true_alarms, r.caught, r.delays_ms.clone()), (1, 1, vec![0]));
        assert_eq!(r.flagged_inside, 4, "windows 6..9 lie before the incident");
    }

    #[test]
    fn false_alarms_count_on_every_series_and_per_series_day() {
        let p = Protocol::default();
        let day = (DAY_MS as i64 / W) as usize;
        let mut f = vec!['.'; 2 * day];
        f[5] = '#';
        f[100] = '#';
        let control = series(&f.iter().collect::<String>(), true, vec![]);
        let mut g = vec!['.'; 2 * day];
        g[150] = '#';
        let incident_series = series(&g.iter().collect::<String>(), false, vec![inc(10, 20)]);
        let r = judge_all(&[control, incident_series], &p);
        assert_eq!((r.false_alarms, r.false_alarms_control), (3, 2));
        assert_eq!(r.series_days, 4.0);
        assert_eq!(r.control_series_days, 2.0);
        assert_eq!(r.false_alarms_per_series_day(), 0.75);
        assert_eq!(r.false_alarms_per_control_series_day(), 1.0);
        assert_eq!((r.caught, r.recall()), (0, 0.0));
    }

    #[test]
    fn the_threshold_respects_the_budget() {
        let p = Protocol::default();
        let day = (DAY_MS as i64 / W) as usize;
        // A noisy control series (score 5 at one window) and an incident scored 3..4.
        let mut control = vec![Some(0.0); day];
        control[50] = Some(5.0);
        let mut hit = vec![Some(0.0); day];
        for (i, s) in hit.iter_mut().enumerate().take(20).skip(10) {
            *s = Some(3.0 + i as f64 / 20.0);
        }
        let scored = vec![
            SeriesScores {
                starts: (0..day as i64).map(|i| i * W).collect(),
                scores: control,
                control: true,
                incidents: vec![],
            },
            SeriesScores {
                starts: (0..day as i64).map(|i| i * W).collect(),
                scores: hit,
                control: false,
                incidents: vec![inc(10, 20)],
            },
        ];
        let (t, r) = pick_threshold(&scored, &p, &Budget::false_alarms(0.0), 1000);
        assert!(t > 5.0 - 1e-12 || r.false_alarms == 0, "{t}");
        assert_eq!(r.false_alarms, 0);
        let (t, r) = pick_threshold(&scored, &p, &Budget::false_alarms(0.6), 1000);
        assert!(
            t <= 3.95,
            "with budget for one false alarm the incident is caught: {t}"
        );
        assert_eq!(r.caught, 1);
    }

    #[test]
    fn a_delay_bound_picks_the_threshold_that_catches_in_time() {
        let p = Protocol::default();
        let day = (DAY_MS as i64 / W) as usize;
        // An incident whose score rises by 1 per window from its start, and a control series
        // that peaks at 5 once.
        let mut slow = vec![Some(0.0); day];
        for (i, s) in slow.iter_mut().enumerate().take(30).skip(10) {
            *s = Some((i - 10) as f64);
        }
        let mut control = vec![Some(0.0); day];
        control[50] = Some(5.0);
        let series = |scores, incidents: Vec<Incident>| SeriesScores {
            starts: (0..day as i64).map(|i| i * W).collect(),
            scores,
            control: incidents.is_empty(),
            incidents,
        };
        let scored = vec![series(slow, vec![inc(10, 30)]), series(control, vec![])];
        // No false alarm allowed: above 5, caught after 7 windows (105 min) or later (ties go
        // to the higher threshold).
        let strict = Budget::false_alarms(0.0);
        let (t, r) = pick_threshold(&scored, &p, &strict, 1000);
        assert!(t > 5.0, "{t}");
        assert_eq!((r.caught, r.false_alarms), (1, 0));
        assert!(r.delays_ms[0] >= 7 * W, "{:?}", r.delays_ms);
        // Bounded at 40 min as well: nothing fits both, the best within the false alarms stays.
        let bounded = Budget {
            median_step_delay_ms: Some(40 * 60_000),
            ..strict
        };
        assert!(!bounded.fits(&r) && bounded.false_alarms_fit(&r));
        assert_eq!(pick_threshold(&scored, &p, &bounded, 1000).0, t);
        // With room for the control's false alarm, only a threshold of at most 1 catches within
        // 40 min (window 11 ends 30 min after the start; window 12, 45 min).
        let roomy = Budget {
            false_alarms_per_series_day: 1.0,
            ..bounded
        };
        let (t, r) = pick_threshold(&scored, &p, &roomy, 1000);
        assert!(t > 0.0 && t <= 1.0, "{t}");
        assert!(roomy.fits(&r));
        assert_eq!(
            (r.caught, r.false_alarms, r.delays_ms.clone()),
            (1, 1, vec![2 * W])
        );
    }

    proptest! {
        #[test]
        fn counts_are_consistent(flags in proptest::collection::vec(any::<bool>(), 1..300),
                                 a in 0i64..300, len in 1i64..40) {
            let s = SeriesFlags {
                starts: (0..flags.len() as i64).map(|i| i * W).collect(),
                flagged: flags.clone(),
                control: false,
                incidents: vec![inc(a, a + len)],
            };
            let r = judge(&s, &Protocol::default());
            prop_assert_eq!(r.true_alarms + r.false_alarms, r.alarms);
            prop_assert_eq!(r.flagged_windows, flags.iter().filter(|f| **f).count());
            prop_assert!(r.flagged_inside <= r.flagged_windows);
            prop_assert!(r.caught <= r.incidents);
            prop_assert!(r.caught == 0 || r.true_alarms > 0);
            // Flagging more windows never loses a caught incident... unless it merges an
            // alarm into one that started too early, which is the point of `lead`.
            prop_assert!((0.0..=1.0).contains(&r.f1()));
        }
    }
}
