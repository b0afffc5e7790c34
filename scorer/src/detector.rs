//! Per-series baselines and count-aware evidence: how unusual a window is for *its* series,
//! given how many tasks it holds (pure).
//!
//! A [`SeriesDetector`] sees the windows of one series in order (gaps as empty windows) and
//! keeps what is normal for that series:
//! - success and intervention rates: exponentially weighted counts (`baseline_half_life`
//!   windows), so the expected rate is `p = (succeeded + ½) / (tasks + 1)` of the trailing
//!   history;
//! - ln P50, ln P95 latency and ln cost per task: a task-weighted mean and the variance of one
//!   task's worth of evidence (`n · (x − mean)²`), so a window of `n` tasks has variance `v / n`;
//! - volume: a mean count per 15-minute slot of the UTC day × a day-of-week factor.
//!
//! Each window gets one **evidence** value per KPI, a z-score oriented so that positive means
//! worse (success down, interventions up, latency up, cost up, volume down): for counts the
//! normal quantile of an exact mid-p tail probability (binomial for the rates, negative
//! binomial for the volume: 4 interventions where 1 is expected is unusual, not impossible),
//! for latency and cost the window's sampling variance `v / n`; each widened by the
//! uncertainty of the baseline itself (a young series is not sure of anything) and a learned
//! over-dispersion (real traffic is noisier than the textbook). A window without tasks has no
//! rate, latency or cost evidence; its volume evidence is defined.
//!
//! Evidence accumulates per KPI in a one-sided CUSUM `S ← clamp(S + z − k, 0, cap)`: a sustained
//! small shift (a slow drift) adds up, one noisy window does not, and the cap bounds how long an
//! alarm outlives its cause. The statistical score of a window is the largest `S` times its
//! KPI's `kpi_scale` (fitted on normal traffic so that every KPI reaches a level equally
//! rarely). A KPI whose `S` is above `freeze_at` does not update its baseline (an incident is
//! not learned as normal), and every update is clipped at `huber` standard deviations. Until a series has seen
//! `warmup_windows` windows it is **cold**: evidence is computed, but nothing may alarm.

use serde::{Deserialize, Serialize};
use statrs::distribution::{
    Binomial, ContinuousCDF, Discrete, DiscreteCDF, NegativeBinomial, Normal, Poisson,
};

/// Number of KPIs the detector judges.
pub const KPI_COUNT: usize = 6;

/// The KPIs, in evidence order.
pub const KPIS: [&str; KPI_COUNT] = [
    "success_rate",
    "intervention_rate",
    "latency_p50_ms",
    "latency_p95_ms",
    "cost_per_task_micros",
    "tasks",
];

/// Index of each KPI in [`KPIS`].
pub mod kpi {
    /// Task success rate.
    pub const SUCCESS: usize = 0;
    /// Human intervention rate.
    pub const INTERVENTION: usize = 1;
    /// Median latency.
    pub const P50: usize = 2;
    /// P95 latency.
    pub const P95: usize = 3;
    /// Cost per task.
    pub const COST: usize = 4;
    /// Tasks per window.
    pub const VOLUME: usize = 5;
}

const DAY_MS: i64 = schemas::time::DAY_MS;
/// Slots of the day the volume profile keeps (one per 15-minute window).
const SLOTS: usize = 96;

/// Tuning of the detector; part of the model set's manifest (`detector`), so the models and
/// the evidence they were trained on travel together.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorParams {
    /// Half-life of the rate, latency and cost baselines, in windows.
    pub baseline_half_life: f64,
    /// Half-life of the hour-of-day and day-of-week volume profiles, in days.
    pub profile_half_life_days: f64,
    /// Windows a series must have seen before it may alarm.
    pub warmup_windows: u32,
    /// CUSUM allowance: evidence below this per window does not accumulate.
    pub cusum_k: f64,
    /// CUSUM ceiling.
    pub cusum_cap: f64,
    /// Tasks' worth of evidence that one window's allowance `cusum_k` is set for. With it, the
    /// success and intervention CUSUMs accumulate per task rather than per window (a
    /// likelihood ratio for a fixed per-task shift): a window holding `r²` reference windows'
    /// worth of evidence adds `r·(z − k·r)`, and evidence for normal keeps `½^(r²)` of the sum.
    /// A quiet night's small windows then add up instead of each being charged a whole window's
    /// allowance. Latency, cost and volume keep one window as the unit. Without it (older model sets), every window counts as one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cusum_reference_tasks: Option<f64>,
    /// Per KPI (in [`KPIS`] order), what one unit of its CUSUM counts for in the statistical
    /// score: a KPI whose CUSUM wanders high on normal traffic (cost and latency, whose
    /// per-window evidence is heavier-tailed than a normal's) counts less, so that every KPI
    /// reaches a given score about equally rarely on normal traffic and the quiet ones (the
    /// rates, the volume) can alarm sooner. Fitted by `scorer tune` on the normal sets
    /// ([`fit_kpi_scale`]). Without it (older model sets), every KPI counts 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kpi_scale: Option<[f64; KPI_COUNT]>,
    /// A window's length in reference windows of 15 minutes (⅓ for 5-minute windows). The
    /// latency, cost and volume CUSUMs count one window as this many reference windows'
    /// worth of evidence (`cusum_k` keeps its meaning at any window length, and a shorter
    /// window lets evidence cross the threshold sooner), and the detector's own horizons
    /// (priors, day-of-week and time-of-day profiles) stay the same in time. The horizons
    /// given in windows (`baseline_half_life`, `warmup_windows`, `max_freeze_windows`) are
    /// the manifest's to scale. Absent: 1 (15-minute windows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_units: Option<f64>,
    /// A KPI whose CUSUM is above this does not update its baseline.
    pub freeze_at: f64,
    /// A KPI stops learning for at most this many windows in a row: a change that lasts
    /// longer becomes the new normal (the alarm ends as the baseline catches up).
    pub max_freeze_windows: u32,
    /// Prior over-dispersion of the volume (`var = λ + φ·λ²`) before the series has shown its own.
    pub volume_dispersion_prior: f64,
    /// Evidence is clipped to ±this.
    pub z_clip: f64,
    /// Baseline updates are clipped at this many standard deviations.
    pub huber: f64,
}

impl Default for DetectorParams {
    /// The built-in tuning for 15-minute windows.
    fn default() -> Self {
        DetectorParams::for_window(REFERENCE_WINDOW_SECS)
    }
}

/// The window length the evidence is counted in (`window_units` = 1).
pub const REFERENCE_WINDOW_SECS: u32 = 900;

impl DetectorParams {
    /// The built-in tuning for windows of `window_secs`: the horizons counted in windows are
    /// the same in time (a two-day baseline half-life, a day of warm-up, at most a day of
    /// frozen learning), and a window counts as its share of a 15-minute reference window.
    pub fn for_window(window_secs: u32) -> DetectorParams {
        let units = f64::from(window_secs.max(1)) / f64::from(REFERENCE_WINDOW_SECS);
        let day = (96.0 / units).round() as u32;
        DetectorParams {
            baseline_half_life: 192.0 / units,
            profile_half_life_days: 7.0,
            warmup_windows: day,
            cusum_k: 1.5,
            cusum_cap: 12.0,
            cusum_reference_tasks: Some(12.0),
            kpi_scale: None,
            window_units: (window_secs != REFERENCE_WINDOW_SECS).then_some(units),
            freeze_at: 4.0,
            max_freeze_windows: day,
            volume_dispersion_prior: 0.25,
            z_clip: 8.0,
            huber: 3.0,
        }
    }
}

impl DetectorParams {
    /// A window's length in 15-minute reference windows.
    pub fn units(&self) -> f64 {
        self.window_units.unwrap_or(1.0)
    }

    /// Windows per day.
    pub fn windows_per_day(&self) -> f64 {
        SLOTS as f64 / self.units()
    }

    /// Why these parameters cannot be used, naming the key.
    pub fn check(&self) -> Result<(), String> {
        let positive = [
            ("baseline_half_life", self.baseline_half_life),
            ("profile_half_life_days", self.profile_half_life_days),
            ("cusum_cap", self.cusum_cap),
            ("freeze_at", self.freeze_at),
            ("z_clip", self.z_clip),
            ("huber", self.huber),
            ("cusum_reference_tasks", self.cusum_reference_tasks.unwrap_or(1.0)),
            ("window_units", self.units()),
        ];
        for (key, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("detector.{key} must be positive"));
            }
        }
        if let Some(scale) = self.kpi_scale {
            if let Some(k) = (0..KPI_COUNT).find(|k| !(scale[*k].is_finite() && scale[*k] > 0.0)) {
                return Err(format!("detector.kpi_scale[{k}] ({}) must be positive", KPIS[k]));
            }
        }
        for (key, v) in [
            ("cusum_k", self.cusum_k),
            ("volume_dispersion_prior", self.volume_dispersion_prior),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("detector.{key} must be non-negative"));
            }
        }
        Ok(())
    }
}

/// What one window holds, as the detector reads it.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct WindowStats {
    /// Window start (epoch ms).
    pub start_ms: i64,
    /// Tasks.
    pub tasks: i64,
    /// Tasks that succeeded.
    pub succeeded: i64,
    /// Tasks with at least one intervention.
    pub with_intervention: i64,
    /// Cost, micro-USD.
    pub cost_micros: i64,
    /// Median latency (ms).
    pub p50_ms: Option<f64>,
    /// P95 latency (ms).
    pub p95_ms: Option<f64>,
}

impl WindowStats {
    /// An empty window starting at `start_ms`.
    pub fn empty(start_ms: i64) -> WindowStats {
        WindowStats {
            start_ms,
            ..WindowStats::default()
        }
    }

    /// The observed value of each KPI in its natural unit (`None`: undefined).
    pub fn observed(&self) -> [Option<f64>; KPI_COUNT] {
        if self.tasks <= 0 {
            return [None, None, None, None, None, Some(0.0)];
        }
        let n = self.tasks as f64;
        [
            Some(self.succeeded as f64 / n),
            Some(self.with_intervention as f64 / n),
            self.p50_ms.filter(|v| v.is_finite() && *v >= 0.0),
            self.p95_ms.filter(|v| v.is_finite() && *v >= 0.0),
            Some(self.cost_micros.max(0) as f64 / n),
            Some(n),
        ]
    }
}

/// What is normal for one KPI of one window, in the KPI's natural unit: the expected value and
/// the range a normal window of this size falls in (± 2 standard deviations).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Expected {
    /// Observed value.
    pub observed: f64,
    /// Expected value.
    pub expected: f64,
    /// Lower end of the normal range.
    pub low: f64,
    /// Upper end of the normal range.
    pub high: f64,
}

/// The detector's reading of one window.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    /// Per-KPI evidence (z-score, positive = worse, clipped); 0 where undefined.
    pub z: [f64; KPI_COUNT],
    /// Whether each KPI was defined in this window.
    pub defined: [bool; KPI_COUNT],
    /// Per-KPI CUSUM after this window, times the KPI's `kpi_scale`: what the statistical
    /// score and the explanations read.
    pub cusum: [f64; KPI_COUNT],
    /// Expected value and range per KPI, where defined.
    pub expected: [Option<Expected>; KPI_COUNT],
    /// Whether the series was warm (allowed to alarm) at this window.
    pub warm: bool,
}

impl Evidence {
    /// No evidence at all (a window that was not read).
    pub fn none() -> Evidence {
        Evidence {
            z: [0.0; KPI_COUNT],
            defined: [false; KPI_COUNT],
            cusum: [0.0; KPI_COUNT],
            expected: [None; KPI_COUNT],
            warm: false,
        }
    }

    /// The statistical score: the largest CUSUM.
    pub fn score(&self) -> f64 {
        self.cusum.iter().copied().fold(0.0, f64::max)
    }

    /// KPIs by CUSUM, largest first, those above zero only (ties keep KPI order).
    pub fn ranked(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..KPI_COUNT).filter(|k| self.cusum[*k] > 0.0).collect();
        order.sort_by(|a, b| self.cusum[*b].total_cmp(&self.cusum[*a]).then(a.cmp(b)));
        order
    }
}

/// An exponentially weighted mean with bias correction: the first value is the mean, later
/// ones weigh `w` against the decayed weight of the past.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
struct Ew {
    mean: f64,
    weight: f64,
}

impl Ew {
    fn update(&mut self, x: f64, decay: f64, w: f64) {
        self.weight = self.weight * decay + w;
        if self.weight > 0.0 {
            self.mean += (w / self.weight) * (x - self.mean);
        }
    }

    fn known(&self) -> bool {
        self.weight > 0.0
    }

    /// Starts an unknown mean at a prior worth `weight` values.
    fn seed(&mut self, prior: f64, weight: f64) {
        if !self.known() {
            *self = Ew { mean: prior, weight };
        }
    }

    /// The mean, or `default` before the first value.
    fn or(&self, default: f64) -> f64 {
        if self.known() {
            self.mean
        } else {
            default
        }
    }
}

/// Baseline of a rate: decayed counts and an over-dispersion factor (≥ 1 in use).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
struct RateBaseline {
    hits: f64,
    tasks: f64,
    dispersion: Ew,
}

impl RateBaseline {
    fn rate(&self) -> f64 {
        (self.hits + 0.5) / (self.tasks + 1.0)
    }
}

/// Baseline of a per-task mean on a log scale: task-weighted mean, unit variance.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
struct MeanBaseline {
    mean: Ew,
    unit_var: Ew,
}

/// Baseline of the volume: a mean count per window slot of the UTC day × a day-of-week
/// factor, and the over-dispersion `φ` of a negative binomial (`var = λ + φ·λ²`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
struct VolumeBaseline {
    /// Mean count of any window (before a slot has its own).
    any: Ew,
    /// Per slot of the day (15-minute windows: 96; other lengths share slots by time of day);
    /// empty until the first window.
    slot: Vec<Ew>,
    /// Per day of the week: decayed sums of counts and of their slot means; the factor is
    /// their ratio (a ratio of sums, not a mean of noisy ratios, which would be biased up).
    weekday_counts: [f64; 7],
    weekday_means: [f64; 7],
    /// Windows seen per weekday (up to a day's worth, [`WEEKDAY_YOUTH`] reference windows).
    weekday_seen: [u32; 7],
    /// Decayed sums of `(n − λ)² − λ` and `λ²`: their ratio estimates `φ`.
    dispersion_num: f64,
    dispersion_den: f64,
}

impl VolumeBaseline {
    fn dispersion(&self, prior: f64) -> f64 {
        if self.dispersion_den > 0.0 {
            (self.dispersion_num / self.dispersion_den).max(0.0)
        } else {
            prior
        }
    }

    /// Whether a weekday has been seen for a whole day (its factor is trusted).
    fn weekday_known(&self, weekday: usize, p: &DetectorParams) -> bool {
        f64::from(self.weekday_seen[weekday]) >= WEEKDAY_YOUTH / p.units()
    }

    /// The day-of-week factor: the ratio of the weekday's counts to its slot means, shrunk
    /// towards 1 by [`WEEKDAY_PRIOR`] reference windows of an average window, so that the
    /// first hours of a weekday's first day (a few small counts) cannot swing it, nor, through
    /// it, the slot means it normalizes.
    fn weekday_factor(&self, weekday: usize, p: &DetectorParams) -> f64 {
        let prior = WEEKDAY_PRIOR / p.units() * self.any.or(0.0).max(0.0);
        let (counts, means) = (self.weekday_counts[weekday], self.weekday_means[weekday]);
        if means + prior > 0.0 {
            ((counts + prior) / (means + prior)).max(0.01)
        } else {
            1.0
        }
    }

    /// The expected count of a window and how many windows' worth of data it rests on, once
    /// anything is known.
    fn expected(&self, slot: usize, weekday: usize, p: &DetectorParams) -> Option<(f64, f64)> {
        let known = self.slot.get(slot).filter(|e| e.known());
        let (mean, weight) = if let Some(e) = known {
            (e.mean, e.weight)
        } else if self.any.known() {
            (self.any.mean, 1.0)
        } else {
            return None;
        };
        Some(((mean * self.weekday_factor(weekday, p)).max(0.05), weight))
    }
}

/// The z-score of a discrete observation from its distribution's mid-p tail probability
/// `P(X < k) + ½·P(X = k)`: exact for small counts, where a normal approximation makes
/// one unlikely window look impossible (4 interventions where 1 is expected).
fn mid_p_z(below: f64, at: f64) -> f64 {
    let p = (below + 0.5 * at).clamp(1e-12, 1.0 - 1e-12);
    Normal::standard().inverse_cdf(p)
}

/// z of `k` hits among `n` tasks at rate `p`.
fn binomial_z(k: u64, n: u64, p: f64) -> f64 {
    match Binomial::new(p.clamp(1e-9, 1.0 - 1e-9), n) {
        Ok(b) => {
            let below = if k == 0 { 0.0 } else { b.cdf(k - 1) };
            mid_p_z(below, b.pmf(k))
        }
        Err(_) => 0.0,
    }
}

/// z of a count `k` against a negative binomial of mean `lambda` and over-dispersion `phi`
/// (Poisson when `phi` is 0).
fn count_z(k: u64, lambda: f64, phi: f64) -> f64 {
    let below_at = if phi < 1e-6 {
        Poisson::new(lambda)
            .ok()
            .map(|d| (if k == 0 { 0.0 } else { d.cdf(k - 1) }, d.pmf(k)))
    } else {
        let r = 1.0 / phi;
        NegativeBinomial::new(r, r / (r + lambda))
            .ok()
            .map(|d| (if k == 0 { 0.0 } else { d.cdf(k - 1) }, d.pmf(k)))
    };
    below_at.map_or(0.0, |(below, at)| mid_p_z(below, at))
}

/// The state of one series: baselines, CUSUMs and how much it has seen. Serializable, so it
/// can be checkpointed; cloning it is how a revision of the newest window is re-applied.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SeriesDetector {
    rates: [RateBaseline; 2],
    means: [MeanBaseline; 3],
    volume: VolumeBaseline,
    cusum: [f64; KPI_COUNT],
    frozen_for: [u32; KPI_COUNT],
    seen: u32,
}

/// Prior unit variances of ln P50, ln P95 and ln cost per task (before the series has taught
/// its own): wide, so that a young series is not sure of anything.
const PRIOR_UNIT_VAR: [f64; 3] = [1.0, 2.0, 1.0];
/// Weight of the prior unit variances, in reference windows.
const PRIOR_UNIT_VAR_WEIGHT: f64 = 8.0;
/// Weight of the prior over-dispersions, in reference windows.
const PRIOR_DISPERSION_WEIGHT: f64 = 96.0;
/// Floor of a variance, so that a perfectly constant history cannot divide by zero.
const MIN_VAR: f64 = 1e-6;
/// Largest squared z-score a dispersion estimate takes in from one window.
const MAX_DISPERSION_SAMPLE: f64 = 25.0;
/// What a window with evidence for normal keeps of a KPI's CUSUM.
const RELIEF: f64 = 0.5;
/// Windows of a weekday before its factor is trusted: until then it always learns (even while
/// the volume is in alarm: a first Sunday is new, not an incident) and its uncertainty widens
/// the volume's dispersion by [`YOUNG_WEEKDAY_DISPERSION`].
const WEEKDAY_YOUTH: f64 = 96.0;
/// Extra over-dispersion of a weekday not yet trusted (±50 % around the weekly mean).
const YOUNG_WEEKDAY_DISPERSION: f64 = 0.25;
/// Weight of a day-of-week factor's prior of 1, in reference windows of the average count.
const WEEKDAY_PRIOR: f64 = 24.0;
/// Half-life of the day-of-week profile, in reference windows (two weeks of that weekday).
const WEEKDAY_HALF_LIFE: f64 = 2.0 * 96.0;

fn decay(half_life: f64) -> f64 {
    0.5f64.powf(1.0 / half_life)
}

impl SeriesDetector {
    /// A new series: nothing seen.
    pub fn new() -> SeriesDetector {
        SeriesDetector::default()
    }

    /// Windows seen so far.
    pub fn seen(&self) -> u32 {
        self.seen
    }

    /// Whether KPI `k` may update its baseline now: always while the series is cold, never
    /// while the KPI is in alarm, unless the alarm has lasted `max_freeze_windows` (then the
    /// change becomes the new normal until the alarm ends).
    fn learns(&mut self, k: usize, p: &DetectorParams, warm: bool) -> bool {
        if !warm || self.cusum[k] <= p.freeze_at {
            self.frozen_for[k] = 0;
            return true;
        }
        if self.frozen_for[k] >= p.max_freeze_windows {
            return true;
        }
        self.frozen_for[k] += 1;
        false
    }

    /// Reads one window (the next period of the series; gaps as [`WindowStats::empty`]) and
    /// updates the baselines.
    pub fn observe(&mut self, w: &WindowStats, p: &DetectorParams) -> Evidence {
        let observed = w.observed();
        let mut z = [0.0; KPI_COUNT];
        let mut defined = [false; KPI_COUNT];
        let mut expected = [None; KPI_COUNT];
        // Tasks' worth of evidence each rate's z-score rests on (its inverse variance in units
        // of one task's).
        let mut information = [0.0; 2];
        let n = w.tasks.max(0) as f64;
        let busy = n > 0.0;

        // Rates: an exact binomial test of the window against the baseline rate, widened by
        // the baseline's own uncertainty and the learned over-dispersion.
        let hits = [
            (w.succeeded.max(0) as f64).min(n),
            (w.with_intervention.max(0) as f64).min(n),
        ];
        const HARM: [f64; 2] = [-1.0, 1.0];
        let mut rate_z = [0.0; 2];
        for r in 0..2 {
            if !busy {
                continue;
            }
            let b = &self.rates[r];
            let rate = b.rate();
            let widen = (1.0 + n / (b.tasks + 1.0)).sqrt();
            rate_z[r] = binomial_z(hits[r] as u64, n as u64, rate) / widen;
            let dispersion = b.dispersion.or(1.0).max(1.0);
            z[r] = (HARM[r] * rate_z[r] / dispersion.sqrt()).clamp(-p.z_clip, p.z_clip);
            defined[r] = true;
            information[r] = n / (widen * widen * dispersion);
            let sd = (rate * (1.0 - rate) / n).sqrt() * widen * dispersion.sqrt();
            expected[r] = Some(Expected {
                observed: hits[r] / n,
                expected: rate,
                low: (rate - 2.0 * sd).max(0.0),
                high: (rate + 2.0 * sd).min(1.0),
            });
        }

        // Per-task means on a log scale: variance v / n, plus the baseline's uncertainty.
        let logs = [
            observed[kpi::P50].map(f64::ln_1p),
            observed[kpi::P95].map(f64::ln_1p),
            observed[kpi::COST].map(f64::ln_1p),
        ];
        for m in 0..3 {
            let (Some(x), true) = (logs[m], busy) else {
                continue;
            };
            let k = kpi::P50 + m;
            let b = &self.means[m];
            defined[k] = true;
            if !b.mean.known() {
                continue;
            }
            let v = b.unit_var.or(PRIOR_UNIT_VAR[m]).max(MIN_VAR);
            let var = v / n + v / b.mean.weight;
            z[k] = ((x - b.mean.mean) / var.sqrt()).clamp(-p.z_clip, p.z_clip);
            let sd = var.sqrt();
            expected[k] = Some(Expected {
                observed: observed[k].unwrap_or_default(),
                expected: b.mean.mean.exp_m1(),
                low: (b.mean.mean - 2.0 * sd).exp_m1().max(0.0),
                high: (b.mean.mean + 2.0 * sd).exp_m1(),
            });
        }

        // Volume: an exact negative-binomial test against the slot × weekday expectation, its
        // over-dispersion widened by the slot mean's own uncertainty (λ / weight).
        let slot = (w.start_ms.rem_euclid(DAY_MS) * SLOTS as i64 / DAY_MS) as usize;
        let weekday = (w.start_ms.div_euclid(DAY_MS) + 3).rem_euclid(7) as usize; // 0 = Monday
        let vb = &self.volume;
        let phi = vb.dispersion(p.volume_dispersion_prior);
        let expectation = vb.expected(slot, weekday, p);
        let lambda = expectation.map(|e| e.0);
        if let Some((lambda, weight)) = expectation {
            let young = if !vb.weekday_known(weekday, p) {
                YOUNG_WEEKDAY_DISPERSION
            } else {
                0.0
            };
            let phi_total = phi + young + 1.0 / (weight.max(1.0) * lambda);
            z[kpi::VOLUME] = (-count_z(n as u64, lambda, phi_total)).clamp(-p.z_clip, p.z_clip);
            let sd = (lambda + phi_total * lambda * lambda).sqrt();
            expected[kpi::VOLUME] = Some(Expected {
                observed: n,
                expected: lambda,
                low: (lambda - 2.0 * sd).max(0.0),
                high: lambda + 2.0 * sd,
            });
        }
        defined[kpi::VOLUME] = true;

        // CUSUMs: an undefined KPI adds no evidence, so its sum drains by k.
        for k in 0..KPI_COUNT {
            // One window's P95 is its one or two slowest tasks, too heavy-tailed to accumulate:
            // latency evidence accumulates through P50 (P95 is explained and seen by the models).
            if k == kpi::P95 {
                continue;
            }
            // Evidence for normal (z < 0) halves what was accumulated, so an alarm ends soon
            // after its cause does and a dip below the threshold does not start a new one.
            // How many reference windows' worth of evidence this window holds: for a defined
            // rate with a reference, its tasks' worth over the reference; otherwise one (an
            // undefined KPI drains by k).
            let r2 = match p.cusum_reference_tasks {
                Some(reference) if defined[k] && k <= kpi::INTERVENTION => information[k] / reference,
                _ => p.units(),
            };
            let r = r2.sqrt();
            let kept = if defined[k] && z[k] < 0.0 {
                self.cusum[k] * RELIEF.powf(r2)
            } else {
                self.cusum[k]
            };
            self.cusum[k] = (kept + r * (z[k] - p.cusum_k * r)).clamp(0.0, p.cusum_cap);
        }
        let warm = self.seen >= p.warmup_windows;
        let scale = p.kpi_scale.unwrap_or([1.0; KPI_COUNT]);
        let cusum: [f64; KPI_COUNT] = std::array::from_fn(|k| self.cusum[k] * scale[k]);

        // Baseline updates: clipped, and paused for a KPI in alarm.
        let d = decay(p.baseline_half_life);
        for r in 0..2 {
            if !busy || !self.learns(r, p, warm) {
                continue;
            }
            let b = &mut self.rates[r];
            let rate = b.rate();
            b.dispersion.seed(1.0, PRIOR_DISPERSION_WEIGHT / p.units());
            b.dispersion
                .update((rate_z[r] * rate_z[r]).min(MAX_DISPERSION_SAMPLE), d, 1.0);
            let limit = p.huber * (n * rate * (1.0 - rate)).max(MIN_VAR).sqrt();
            b.hits = b.hits * d + n * rate + (hits[r] - n * rate).clamp(-limit, limit);
            b.tasks = b.tasks * d + n;
        }
        for m in 0..3 {
            let k = kpi::P50 + m;
            let Some(x) = logs[m].filter(|_| busy) else {
                continue;
            };
            if !self.learns(k, p, warm) {
                continue;
            }
            let b = &mut self.means[m];
            if !b.mean.known() {
                b.mean.update(x, d, n);
                continue;
            }
            let v = b.unit_var.or(PRIOR_UNIT_VAR[m]).max(MIN_VAR);
            let resid = x - b.mean.mean;
            let limit = p.huber * (v / n).sqrt();
            b.unit_var
                .seed(PRIOR_UNIT_VAR[m], PRIOR_UNIT_VAR_WEIGHT / p.units());
            b.unit_var
                .update((n * resid * resid).min(p.huber * p.huber * v), d, 1.0);
            b.mean.update(b.mean.mean + resid.clamp(-limit, limit), d, n);
        }
        let new_structure =
            !self.volume.slot.get(slot).is_some_and(|e| e.known()) || !self.volume.weekday_known(weekday, p);
        // A slot's mean is a reference for the weekday factor only once it rests on earlier
        // days: within the first day a shorter window's slot was learned today, from the very
        // weekday it would be compared with (a first Sunday would set Sunday's factor to 1).
        let slots_from_earlier_days = f64::from(self.seen) >= p.windows_per_day();
        if self.learns(kpi::VOLUME, p, warm) || new_structure {
            let vb = &mut self.volume;
            // The count the baseline learns from: clipped to λ ± huber·sd once there is a λ.
            let count = match lambda {
                Some(lambda) => {
                    let sd = (lambda + phi * lambda * lambda).sqrt();
                    if vb.dispersion_den == 0.0 {
                        vb.dispersion_den = PRIOR_DISPERSION_WEIGHT / p.units() * lambda * lambda;
                        vb.dispersion_num = p.volume_dispersion_prior * vb.dispersion_den;
                    }
                    let resid = (n - lambda).clamp(-p.huber * sd, p.huber * sd);
                    vb.dispersion_num = vb.dispersion_num * d + resid * resid - lambda;
                    vb.dispersion_den = vb.dispersion_den * d + lambda * lambda;
                    n.clamp(lambda - p.huber * sd, lambda + p.huber * sd).max(0.0)
                }
                None => n,
            };
            let weekday_factor = vb.weekday_factor(weekday, p);
            let youth = (WEEKDAY_YOUTH / p.units()).ceil() as u32;
            vb.weekday_seen[weekday] = (vb.weekday_seen[weekday] + 1).min(youth);
            vb.slot.resize(SLOTS, Ew::default());
            let reference = vb.slot.get(slot).filter(|e| e.known() && slots_from_earlier_days);
            if let Some(before) = reference.map(|e| e.mean) {
                let dw = decay(WEEKDAY_HALF_LIFE / p.units());
                vb.weekday_counts[weekday] = vb.weekday_counts[weekday] * dw + count;
                vb.weekday_means[weekday] = vb.weekday_means[weekday] * dw + before;
            }
            vb.any.update(
                count / weekday_factor,
                decay(p.profile_half_life_days * p.windows_per_day()),
                1.0,
            );
            // A slot is updated once a day per window it holds (three 5-minute windows, one
            // 15-minute window): its half-life in updates keeps `profile_half_life_days`.
            vb.slot[slot].update(
                count / weekday_factor,
                decay(p.profile_half_life_days / p.units().min(1.0)),
                1.0,
            );
        }
        self.seen = self.seen.saturating_add(1);
        Evidence {
            z,
            defined,
            cusum,
            expected,
            warm,
        }
    }
}

/// Upward crossings per series-day of a KPI's scale fit: the level each KPI's CUSUM is held to
/// ([`fit_kpi_scale`]). Frequent enough to be counted on a month of normal traffic (about 10
/// crossings over 32 series); the tails of the CUSUMs are exponential, so levels that are
/// equally rare here stay about equally rare at the rarer levels a threshold sits at.
pub const KPI_SCALE_CROSSINGS_PER_SERIES_DAY: f64 = 0.01;

/// Per-KPI scales from the raw CUSUMs of normal traffic (`[series][windows]`, warm windows
/// only): for each KPI the level `h_k` its CUSUM crosses upwards
/// [`KPI_SCALE_CROSSINGS_PER_SERIES_DAY`] times per series-day (interpolated between levels
/// 0.05 apart), and `scale_k = max_j h_j / h_k`: the noisiest KPI counts 1, a quieter one
/// more. A KPI that never reaches the rate (P95, which does not accumulate) keeps 1, and so
/// does every KPI when none does (too little history to tell). `None` when there is less than
/// a day of warm windows.
pub fn fit_kpi_scale(series: &[Vec<[f64; KPI_COUNT]>], windows_per_day: f64) -> Option<[f64; KPI_COUNT]> {
    let windows: usize = series.iter().map(Vec::len).sum();
    if (windows as f64) < windows_per_day {
        return None;
    }
    let series_days = windows as f64 / windows_per_day;
    let crossings = |k: usize, h: f64| -> f64 {
        let mut n = 0usize;
        for s in series {
            let mut above = false;
            for c in s {
                let now = c[k] >= h;
                if now && !above {
                    n += 1;
                }
                above = now;
            }
        }
        n as f64 / series_days
    };
    let target = KPI_SCALE_CROSSINGS_PER_SERIES_DAY;
    let level = |k: usize| -> Option<f64> {
        let (mut lo, mut rate_lo) = (0.05, crossings(k, 0.05));
        if rate_lo <= target {
            return None;
        }
        while lo < 64.0 {
            let hi = lo + 0.05;
            let rate_hi = crossings(k, hi);
            if rate_hi <= target {
                // Linear in ln(rate) between the two levels (the tail is exponential).
                let (a, b) = (rate_lo.ln(), rate_hi.max(1e-12).ln());
                let t = if a > b { (a - target.ln()) / (a - b) } else { 0.0 };
                return Some(lo + t.clamp(0.0, 1.0) * (hi - lo));
            }
            (lo, rate_lo) = (hi, rate_hi);
        }
        None
    };
    let levels: Vec<Option<f64>> = (0..KPI_COUNT).map(level).collect();
    let top = levels.iter().flatten().copied().fold(f64::NAN, f64::max);
    Some(std::array::from_fn(|k| match levels[k] {
        Some(h) if top.is_finite() => top / h,
        _ => 1.0,
    }))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const P: i64 = 900_000;

    /// A deterministic pseudo-random stream (a small LCG).
    struct Lcg(u64);

    impl Lcg {
        fn unit(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }

        fn binomial(&mut self, n: i64, p: f64) -> i64 {
            (0..n).filter(|_| self.unit() < p).count() as i64
        }

        fn poisson(&mut self, lambda: f64) -> i64 {
            let (limit, mut k, mut prod) = ((-lambda).exp(), 0, self.unit());
            while prod > limit {
                k += 1;
                prod *= self.unit();
            }
            k
        }
    }

    /// A series with `per_window` tasks per window on average (diurnal), success 0.9,
    /// interventions 0.08, median latency 1 s.
    fn normal(rng: &mut Lcg, period: i64, per_window: f64, success: f64, latency_x: f64) -> WindowStats {
        let hour = (period / 4) % 24;
        let shape = 0.3 + 1.4 * (-(((hour as f64) - 14.0).powi(2)) / 32.0).exp();
        let n = rng.poisson(per_window * shape);
        let median = 1_000.0 * latency_x * (1.0 + 0.1 * (rng.unit() - 0.5) * 4.0 / (n.max(1) as f64).sqrt());
        WindowStats {
            start_ms: period * P,
            tasks: n,
            succeeded: rng.binomial(n, success),
            with_intervention: rng.binomial(n, 0.08),
            cost_micros: n * 5_000,
            p50_ms: (n > 0).then_some(median),
            p95_ms: (n > 0).then_some(median * 3.0),
        }
    }

    fn run(d: &mut SeriesDetector, windows: impl Iterator<Item = WindowStats>) -> Vec<Evidence> {
        let p = DetectorParams::default();
        windows.map(|w| d.observe(&w, &p)).collect()
    }

    #[test]
    fn a_new_series_is_cold_for_its_warm_up() {
        let mut rng = Lcg(1);
        let mut d = SeriesDetector::new();
        let e = run(&mut d, (0..200).map(|i| normal(&mut rng, i, 15.0, 0.9, 1.0)));
        let warm_up = DetectorParams::default().warmup_windows as usize;
        assert!(e[..warm_up].iter().all(|e| !e.warm));
        assert!(e[warm_up..].iter().all(|e| e.warm));
    }

    #[test]
    fn a_success_drop_accumulates_on_its_kpi_and_says_what_is_normal() {
        let mut rng = Lcg(2);
        let mut d = SeriesDetector::new();
        let days = 3 * 96;
        run(&mut d, (0..days).map(|i| normal(&mut rng, i, 15.0, 0.9, 1.0)));
        // At 14:00 (busy hours), success falls to 0.55.
        let start = days + 14 * 4;
        run(&mut d, (days..start).map(|i| normal(&mut rng, i, 15.0, 0.9, 1.0)));
        let e = run(
            &mut d,
            (start..start + 3).map(|i| normal(&mut rng, i, 15.0, 0.55, 1.0)),
        );
        let last = e.last().unwrap();
        assert_eq!(last.ranked()[0], kpi::SUCCESS, "{:?}", last.cusum);
        assert!(
            last.score() >= 8.0,
            "three windows of a 0.35 drop: {:?}",
            last.cusum
        );
        let x = last.expected[kpi::SUCCESS].unwrap();
        assert!((x.expected - 0.9).abs() < 0.03, "{x:?}");
        assert!(
            x.low < x.expected && x.expected < x.high && x.observed < x.low,
            "{x:?}"
        );
    }

    #[test]
    fn small_windows_add_up_per_task_on_the_rates() {
        // A quiet series (3 to 5 tasks per window in the late morning) whose success rate falls
        // from 0.9 to 0.5 for 4 hours: a small window is charged only its share of the
        // allowance, so per task the evidence adds up faster than per window.
        let peak = |p: &DetectorParams| {
            let mut rng = Lcg(9);
            let mut d = SeriesDetector::new();
            let days = 3 * 96;
            let mut go = |range: std::ops::Range<i64>, success: f64| -> Vec<Evidence> {
                range
                    .map(|i| d.observe(&normal(&mut rng, i, 3.0, success, 1.0), p))
                    .collect()
            };
            go(0..days + 10 * 4, 0.9);
            go(days + 10 * 4..days + 14 * 4, 0.5)
                .iter()
                .map(|e| e.cusum[kpi::SUCCESS])
                .fold(0.0, f64::max)
        };
        let per_task = peak(&DetectorParams::default());
        let per_window = peak(&DetectorParams {
            cusum_reference_tasks: None,
            ..DetectorParams::default()
        });
        assert!(per_task >= 5.0, "per task: {per_task}");
        assert!(
            per_window < per_task - 1.5,
            "per window {per_window} vs per task {per_task}"
        );
    }

    #[test]
    fn an_incident_is_not_learned_as_normal() {
        let mut rng = Lcg(3);
        let mut d = SeriesDetector::new();
        run(&mut d, (0..288).map(|i| normal(&mut rng, i, 15.0, 0.9, 1.0)));
        // Latency x3 for 6 hours: the evidence stays high to the end.
        let e = run(&mut d, (288..312).map(|i| normal(&mut rng, i, 15.0, 0.9, 3.0)));
        assert!(
            e[4..].iter().all(|e| e.cusum[kpi::P50] >= 8.0),
            "{:?}",
            e.iter().map(|e| e.cusum[kpi::P50]).collect::<Vec<_>>()
        );
        let x = e.last().unwrap().expected[kpi::P50].unwrap();
        assert!(x.expected < 1_300.0, "the baseline stayed near 1 s: {x:?}");
        // After it ends, the evidence drains within a few windows.
        let after = run(&mut d, (312..324).map(|i| normal(&mut rng, i, 15.0, 0.9, 1.0)));
        assert!(after[8..].iter().all(|e| e.cusum[kpi::P50] < 4.0));
    }

    #[test]
    fn an_outage_shows_through_volume_only() {
        let mut rng = Lcg(4);
        let mut d = SeriesDetector::new();
        run(&mut d, (0..4 * 96).map(|i| normal(&mut rng, i, 20.0, 0.9, 1.0)));
        let start = 4 * 96 + 12 * 4;
        run(
            &mut d,
            (4 * 96..start).map(|i| normal(&mut rng, i, 20.0, 0.9, 1.0)),
        );
        let e = run(&mut d, (start..start + 4).map(|i| WindowStats::empty(i * P)));
        let last = e.last().unwrap();
        assert_eq!(last.ranked(), vec![kpi::VOLUME], "{:?}", last.cusum);
        assert!(
            last.score() >= 6.0,
            "an hour without tasks in busy hours: {:?}",
            last.cusum
        );
        assert!(last.defined[kpi::VOLUME] && !last.defined[kpi::SUCCESS]);
    }

    #[test]
    fn clean_traffic_stays_quiet_at_any_volume() {
        for (per_window, seed) in [(3.0, 5), (15.0, 6), (60.0, 7)] {
            let mut rng = Lcg(seed);
            let mut d = SeriesDetector::new();
            let e = run(
                &mut d,
                (0..14 * 96).map(|i| normal(&mut rng, i, per_window, 0.9, 1.0)),
            );
            let loud = e.iter().filter(|e| e.warm && e.score() >= 8.0).count();
            assert!(
                loud <= 2,
                "{per_window} tasks per window: {loud} windows at 8 or more"
            );
        }
    }

    #[test]
    fn five_minute_windows_with_a_light_first_day_stay_quiet() {
        // Day 0 and day 7 (the same weekday) carry 40 % of the other days' traffic. A
        // weekday's factor starts from a few small counts at the start of its day; unshrunk,
        // it swings, the slot means it normalizes follow, and the series alarms for hundreds
        // of windows on normal traffic (474 here without the shrinkage).
        const W5: i64 = 300_000;
        let p = DetectorParams::for_window(300);
        let mut rng = Lcg(11);
        let mut d = SeriesDetector::new();
        let mut loud = 0;
        for i in 0..14 * 288 {
            let day = i / 288;
            let hour = (i / 12) % 24;
            let shape = 0.3 + 1.4 * (-(((hour as f64) - 14.0).powi(2)) / 32.0).exp();
            let weekly = if day % 7 == 0 { 0.4 } else { 1.0 };
            let n = rng.poisson(5.0 * shape * weekly);
            let w = WindowStats {
                start_ms: i * W5,
                tasks: n,
                succeeded: rng.binomial(n, 0.9),
                with_intervention: rng.binomial(n, 0.08),
                cost_micros: n * 5_000,
                p50_ms: (n > 0).then_some(1_000.0),
                p95_ms: (n > 0).then_some(3_000.0),
            };
            let e = d.observe(&w, &p);
            if e.warm && e.cusum[kpi::VOLUME] >= 4.0 {
                loud += 1;
            }
        }
        assert!(loud <= 3, "{loud} windows with volume evidence of 4 or more");
    }

    #[test]
    fn horizons_keep_their_time_at_other_window_lengths() {
        assert_eq!(DetectorParams::for_window(900), DetectorParams::default());
        assert_eq!(DetectorParams::default().window_units, None);
        let p = DetectorParams::for_window(300);
        assert_eq!(p.window_units, Some(1.0 / 3.0));
        assert_eq!((p.warmup_windows, p.max_freeze_windows), (288, 288));
        assert_eq!(p.baseline_half_life, 576.0);
        assert_eq!(p.windows_per_day(), 288.0);
        p.check().unwrap();
    }

    #[test]
    fn kpi_scales_even_out_how_often_each_kpi_reaches_a_level() {
        // KPI 0 wanders to 1, 2, 3, ... and back; KPI 4 to twice as high; KPI 1 never moves.
        let day: Vec<[f64; KPI_COUNT]> = (0..96)
            .map(|i| {
                let x = f64::from(i % 12);
                let mut c = [0.0; KPI_COUNT];
                c[0] = x;
                c[4] = 2.0 * x;
                c
            })
            .collect();
        let series = vec![day.clone(); 20];
        let scale = fit_kpi_scale(&series, 96.0).unwrap();
        assert_eq!(scale[4], 1.0, "the noisiest KPI counts 1: {scale:?}");
        assert!((scale[0] - 2.0).abs() < 0.05, "{scale:?}");
        assert_eq!(scale[1], 1.0, "a KPI that never reaches the rate keeps 1");
        assert_eq!(
            fit_kpi_scale(&[day[..95].to_vec()], 96.0),
            None,
            "less than a day"
        );
        let quiet = vec![vec![[0.0; KPI_COUNT]; 96]];
        assert_eq!(
            fit_kpi_scale(&quiet, 96.0),
            Some([1.0; KPI_COUNT]),
            "nothing to tell apart"
        );
    }

    #[test]
    fn the_state_round_trips_through_serde() {
        let mut rng = Lcg(8);
        let mut d = SeriesDetector::new();
        run(&mut d, (0..50).map(|i| normal(&mut rng, i, 10.0, 0.9, 1.0)));
        let json = serde_json::to_string(&d).unwrap();
        let back: SeriesDetector = serde_json::from_str(&json).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn bad_parameters_name_their_key() {
        let p = DetectorParams {
            profile_half_life_days: 0.0,
            ..DetectorParams::default()
        };
        assert_eq!(
            p.check().unwrap_err(),
            "detector.profile_half_life_days must be positive"
        );
        let p = DetectorParams {
            cusum_k: f64::NAN,
            ..DetectorParams::default()
        };
        assert_eq!(p.check().unwrap_err(), "detector.cusum_k must be non-negative");
        let p = DetectorParams {
            kpi_scale: Some([1.0, 1.0, 1.0, 1.0, 0.0, 1.0]),
            ..DetectorParams::default()
        };
        assert_eq!(
            p.check().unwrap_err(),
            "detector.kpi_scale[4] (cost_per_task_micros) must be positive"
        );
        let p = DetectorParams {
            window_units: Some(-1.0),
            ..DetectorParams::default()
        };
        assert_eq!(p.check().unwrap_err(), "detector.window_units must be positive");
    }

    proptest! {
        #[test]
        fn any_window_gets_finite_bounded_evidence(
            windows in proptest::collection::vec(
                (0i64..200, 0i64..200, 0i64..200, -5i64..10_000_000, proptest::option::of(0.0f64..1e7), any::<bool>()),
                1..300,
            )
        ) {
            let p = DetectorParams::default();
            let mut d = SeriesDetector::new();
            for (i, (n, s, h, cost, lat, clock_jump)) in windows.into_iter().enumerate() {
                let start = if clock_jump { (i as i64 + 1_000_000) * P } else { i as i64 * P };
                let w = WindowStats {
                    start_ms: start,
                    tasks: n,
                    succeeded: s,
                    with_intervention: h,
                    cost_micros: cost,
                    p50_ms: lat,
                    p95_ms: lat.map(|l| l * 2.0),
                };
                let e = d.observe(&w, &p);
                for k in 0..KPI_COUNT {
                    prop_assert!(e.z[k].is_finite() && e.z[k].abs() <= p.z_clip);
                    prop_assert!((0.0..=p.cusum_cap).contains(&e.cusum[k]));
                    if let Some(x) = e.expected[k] {
                        prop_assert!(x.expected.is_finite() && x.low <= x.high + 1e-9, "{x:?}");
                    }
                }
            }
        }
    }
}
