//! From reconstructions to a verdict: per-feature reconstruction errors, each model's
//! calibration onto a common scale, the weighted ensemble, the decision and which features
//! drove it. Plain arithmetic, shared by the service, the offline mode and the benchmark; the
//! Python training package implements the same formulas (`scorer/training`), and the
//! reference test holds both to 1e-4.
//!
//! - Per feature `f`, over the last `score_positions` positions `p` of the sequence:
//!   `e_f = Σ mask·(x − x̂)² / Σ mask`; undefined when `Σ mask = 0` (no scored window had tasks:
//!   rates, latency and cost do not exist then).
//! - Raw score = mean of `e_f` over the defined features (0 when none is), so a window whose
//!   rates are undefined (an outage, a quiet night) is judged on what it shows, not diluted
//!   towards "normal" by what it cannot show.
//! - Calibration: `n = (ln(raw + eps) − loc) / scale`, with `loc` the median and `scale`
//!   1.4826·MAD of `ln(raw + eps)` on normal validation windows: a robust z-score, the common
//!   scale of both models (0 = a typical normal window, 3 = three robust deviations above it).
//! - The statistical member's score is the detector's evidence (the largest per-KPI CUSUM, in
//!   standard deviations, see [`crate::detector`]); it is on its own scale already.
//! - Ensemble = `(w_lstm·n_lstm + w_tr·n_tr + w_stat·s) / (w_lstm + w_tr + w_stat)`; anomaly
//!   when ≥ threshold and the series is warm (has seen enough windows to know its normal).
//! - Contribution of `f` = the weighted mean over the members of `f`'s share of the member's
//!   error (the autoencoders) or evidence (the statistical member).

use serde::{Deserialize, Serialize};

use crate::detector::{Evidence, KPI_COUNT};
use crate::features::FEATURE_COUNT;

const _: () = assert!(FEATURE_COUNT == KPI_COUNT, "feature f is KPI f's evidence");

/// Maps a model's raw error onto the common scale.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Median of `ln(raw + eps)` on normal validation windows.
    pub loc: f64,
    /// 1.4826 × MAD of `ln(raw + eps)` on the same windows; positive.
    pub scale: f64,
    /// Keeps the logarithm finite at zero error.
    pub eps: f64,
}

impl Calibration {
    /// The calibrated score of a raw error.
    pub fn normalize(&self, raw: f64) -> f64 {
        ((raw + self.eps).ln() - self.loc) / self.scale
    }
}

/// Weights and threshold of the ensemble.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ensemble {
    /// Weight of the LSTM autoencoder (≥ 0).
    pub w_lstm: f64,
    /// Weight of the Transformer autoencoder (≥ 0).
    pub w_transformer: f64,
    /// Weight of the statistical member (≥ 0).
    pub w_statistical: f64,
    /// A window is an anomaly when its ensemble score is at least this.
    pub threshold: f64,
}

impl Ensemble {
    /// The weighted mean of the members' scores.
    pub fn combine(&self, lstm: f64, transformer: f64, statistical: f64) -> f64 {
        let mut sum = 0.0;
        for (w, s) in [
            (self.w_lstm, lstm),
            (self.w_transformer, transformer),
            (self.w_statistical, statistical),
        ] {
            if w > 0.0 {
                sum += w * s;
            }
        }
        sum / (self.w_lstm + self.w_transformer + self.w_statistical)
    }
}

/// Per-feature errors of one sequence: `x`, `reconstruction` and `mask` are `[len][features]`
/// row-major; the last `positions` rows are scored. `None` for a feature no scored row defines.
pub fn feature_errors(
    x: &[f32],
    reconstruction: &[f32],
    mask: &[f32],
    features: usize,
    positions: usize,
) -> Vec<Option<f64>> {
    let len = x.len() / features;
    let first = len.saturating_sub(positions) * features;
    let mut sum = vec![0f64; features];
    let mut weight = vec![0f64; features];
    for i in first..x.len() {
        let f = i % features;
        let d = f64::from(x[i]) - f64::from(reconstruction[i]);
        sum[f] += f64::from(mask[i]) * d * d;
        weight[f] += f64::from(mask[i]);
    }
    sum.iter()
        .zip(&weight)
        .map(|(s, w)| (*w > 0.0).then(|| s / w))
        .collect()
}

/// The raw score of per-feature errors: their mean over the defined features (0 when none is).
pub fn raw_score(errors: &[Option<f64>]) -> f64 {
    let (sum, defined) = errors
        .iter()
        .flatten()
        .fold((0.0, 0usize), |(s, n), e| (s + e, n + 1));
    if defined == 0 {
        0.0
    } else {
        sum / defined as f64
    }
}

/// Both models' scores of one window and the ensemble's decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Raw LSTM error.
    pub lstm_raw: f64,
    /// Raw Transformer error.
    pub transformer_raw: f64,
    /// Calibrated LSTM score.
    pub lstm_normalized: f64,
    /// Calibrated Transformer score.
    pub transformer_normalized: f64,
    /// The statistical member's score.
    pub statistical: f64,
    /// Weighted combination of the members' scores.
    pub ensemble: f64,
    /// `ensemble >= threshold` and the series is warm.
    pub is_anomaly: bool,
    /// Per-feature share of the error (sums to 1, or 0 when there is no error).
    pub contributions: Vec<f64>,
}

/// What the statistical member says about a window: its score, the per-feature evidence it
/// accumulated, and whether the series may alarm yet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Statistical<'a> {
    /// The score (largest CUSUM).
    pub score: f64,
    /// Per-feature CUSUM.
    pub evidence: &'a [f64],
    /// Whether the series is warm.
    pub warm: bool,
}

/// The verdict on one window from both autoencoders' per-feature errors and the statistical
/// member.
pub fn verdict(
    lstm_errors: &[Option<f64>],
    transformer_errors: &[Option<f64>],
    statistical: Statistical<'_>,
    lstm: &Calibration,
    transformer: &Calibration,
    ensemble: &Ensemble,
) -> Verdict {
    let lstm_raw = raw_score(lstm_errors);
    let transformer_raw = raw_score(transformer_errors);
    let lstm_normalized = lstm.normalize(lstm_raw);
    let transformer_normalized = transformer.normalize(transformer_raw);
    let score = ensemble.combine(lstm_normalized, transformer_normalized, statistical.score);
    let shares = |errors: &mut dyn Iterator<Item = f64>| -> Vec<f64> {
        let errors: Vec<f64> = errors.collect();
        let total: f64 = errors.iter().sum();
        errors
            .iter()
            .map(|e| if total > 0.0 { e / total } else { 0.0 })
            .collect()
    };
    let (l, t, s) = (
        shares(&mut lstm_errors.iter().map(|e| e.unwrap_or(0.0))),
        shares(&mut transformer_errors.iter().map(|e| e.unwrap_or(0.0))),
        shares(&mut statistical.evidence.iter().copied()),
    );
    let w = ensemble.w_lstm + ensemble.w_transformer + ensemble.w_statistical;
    let contributions = (0..l.len())
        .map(|f| {
            (ensemble.w_lstm * l[f]
                + ensemble.w_transformer * t[f]
                + ensemble.w_statistical * s.get(f).copied().unwrap_or(0.0))
                / w
        })
        .collect();
    Verdict {
        lstm_raw,
        transformer_raw,
        lstm_normalized,
        transformer_normalized,
        statistical: statistical.score,
        ensemble: score,
        is_anomaly: statistical.warm && score >= ensemble.threshold,
        contributions,
    }
}

/// The `k` largest contributions with their feature names, largest first (ties keep the
/// feature order); zero shares are left out.
pub fn top_features<'a>(contributions: &[f64], names: &[&'a str], k: usize) -> Vec<(&'a str, f64)> {
    let mut order: Vec<usize> = (0..contributions.len()).collect();
    order.sort_by(|a, b| contributions[*b].total_cmp(&contributions[*a]).then(a.cmp(b)));
    order
        .into_iter()
        .filter(|f| contributions[*f] > 0.0)
        .take(k)
        .map(|f| (names[f], contributions[f]))
        .collect()
}

/// The KPIs that explain a window, most first: those with accumulated evidence (the detector's
/// CUSUMs, [`Evidence::ranked`]); a flagged window without any (the autoencoders alone raised
/// it, e.g. once an incident's CUSUM has been relieved) by its feature contributions, feature
/// `f` being KPI `f`'s evidence. So every flagged window names its KPIs, and the same KPI keeps
/// its name from the first flagged window of an incident to the last.
pub fn explained_kpis(evidence: &Evidence, verdict: &Verdict) -> Vec<usize> {
    let ranked = evidence.ranked();
    if !ranked.is_empty() || !verdict.is_anomaly {
        return ranked;
    }
    let c = &verdict.contributions;
    let mut order: Vec<usize> = (0..KPI_COUNT.min(c.len())).filter(|k| c[*k] > 0.0).collect();
    order.sort_by(|a, b| c[*b].total_cmp(&c[*a]).then(a.cmp(b)));
    order
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const CAL: Calibration = Calibration {
        loc: -3.0,
        scale: 0.5,
        eps: 1e-6,
    };

    #[test]
    fn errors_count_only_defined_values_of_the_scored_positions() {
        // 3 positions x 2 features, last 2 positions scored.
        let x = [9.0, 9.0, 1.0, 1.0, 2.0, 0.0];
        let r = [0.0, 0.0, 0.0, 0.0, 0.0, 5.0];
        let m = [1.0, 1.0, 1.0, 1.0, 1.0, 0.0];
        let e = feature_errors(&x, &r, &m, 2, 2);
        assert_eq!(e, vec![Some((1.0 + 4.0) / 2.0), Some(1.0)]);
        assert_eq!(raw_score(&e), 1.75);
        // A feature undefined in every scored position is undefined, and the raw score is the
        // mean over what is defined: not diluted towards "normal".
        let e = feature_errors(&x, &r, &[1.0, 1.0, 1.0, 0.0, 1.0, 0.0], 2, 2);
        assert_eq!(e, vec![Some(2.5), None]);
        assert_eq!(raw_score(&e), 2.5);
        assert_eq!(raw_score(&[None, None]), 0.0);
    }

    #[test]
    fn calibration_puts_the_typical_error_at_zero() {
        let typical = (-3f64).exp() - 1e-6;
        assert!(CAL.normalize(typical).abs() < 1e-12);
        assert!((CAL.normalize((-2.5f64).exp() - 1e-6) - 1.0).abs() < 1e-12);
        assert!(CAL.normalize(0.0).is_finite());
    }

    #[test]
    fn weights_are_respected() {
        let only_lstm = Ensemble {
            w_lstm: 1.0,
            w_transformer: 0.0,
            w_statistical: 0.0,
            threshold: 3.0,
        };
        assert_eq!(only_lstm.combine(5.0, -100.0, f64::NAN), 5.0);
        let skewed = Ensemble {
            w_lstm: 3.0,
            w_transformer: 1.0,
            w_statistical: 0.0,
            threshold: 3.0,
        };
        assert_eq!(skewed.combine(4.0, 0.0, 7.0), 3.0);
        let with_stat = Ensemble {
            w_lstm: 1.0,
            w_transformer: 1.0,
            w_statistical: 2.0,
            threshold: 3.0,
        };
        assert_eq!(with_stat.combine(4.0, 0.0, 6.0), 4.0);
    }

    #[test]
    fn the_verdict_flags_at_the_threshold_and_names_the_driving_feature() {
        let ens = Ensemble {
            w_lstm: 0.5,
            w_transformer: 0.5,
            w_statistical: 0.0,
            threshold: 1.0,
        };
        let quiet = Statistical {
            score: 0.0,
            evidence: &[0.0; 6],
            warm: true,
        };
        let lstm = [0.0, 0.0, 0.3, 0.0, 0.0, 0.1].map(Some);
        let tr = [0.0, 0.0, 0.1, 0.0, 0.0, 0.1].map(Some);
        let v = verdict(&lstm, &tr, quiet, &CAL, &CAL, &ens);
        assert_eq!(v.lstm_raw, 0.4 / 6.0);
        assert!((v.contributions.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!((v.contributions[2] - (0.75 + 0.5) / 2.0).abs() < 1e-12);
        let top = top_features(&v.contributions, &crate::features::FEATURES, 3);
        assert_eq!(
            top.iter().map(|t| t.0).collect::<Vec<_>>(),
            ["latency_p50_z", "volume_z"]
        );
        assert_eq!(v.is_anomaly, v.ensemble >= 1.0);
        let zero = verdict(&[Some(0.0); 6], &[None; 6], quiet, &CAL, &CAL, &ens);
        assert_eq!(zero.contributions, vec![0.0; 6]);
        assert!(!zero.is_anomaly);
        let cold = Statistical { warm: false, ..quiet };
        assert!(
            !verdict(&lstm, &tr, cold, &CAL, &CAL, &ens).is_anomaly,
            "a cold series never alarms"
        );
    }

    #[test]
    fn the_statistical_member_names_its_kpi() {
        let ens = Ensemble {
            w_lstm: 0.0,
            w_transformer: 0.0,
            w_statistical: 1.0,
            threshold: 5.0,
        };
        let stat = Statistical {
            score: 8.0,
            evidence: &[8.0, 0.0, 0.0, 0.0, 0.0, 2.0],
            warm: true,
        };
        let v = verdict(&[Some(1.0); 6], &[Some(1.0); 6], stat, &CAL, &CAL, &ens);
        assert_eq!(v.ensemble, 8.0);
        assert!(v.is_anomaly);
        assert!((v.contributions[0] - 0.8).abs() < 1e-12);
    }

    proptest! {
        #[test]
        fn the_ensemble_lies_between_and_grows_with_each_score(
            a in -20.0f64..20.0, b in -20.0f64..20.0, d in 0.001f64..5.0,
            wl in 0.0f64..1.0, wt in 0.01f64..1.0,
        ) {
            let e = Ensemble { w_lstm: wl, w_transformer: wt, w_statistical: 0.0, threshold: 0.0 };
            let s = e.combine(a, b, 0.0);
            prop_assert!(s >= a.min(b) - 1e-9 && s <= a.max(b) + 1e-9);
            prop_assert!(e.combine(a + d, b, 0.0) >= s);
            prop_assert!(e.combine(a, b + d, 0.0) > s);
        }

        #[test]
        fn calibration_is_monotone(r in 0.0f64..100.0, d in 1e-6f64..10.0) {
            prop_assert!(CAL.normalize(r + d) > CAL.normalize(r));
        }

        #[test]
        fn contributions_are_shares(
            l in proptest::collection::vec(0.0f64..10.0, 6),
            t in proptest::collection::vec(0.0f64..10.0, 6),
            c in proptest::collection::vec(0.0f64..10.0, 6),
        ) {
            let ens = Ensemble { w_lstm: 0.3, w_transformer: 0.7, w_statistical: 0.5, threshold: 2.0 };
            let stat = Statistical { score: 1.0, evidence: &c, warm: true };
            let (l, t): (Vec<_>, Vec<_>) = (l.into_iter().map(Some).collect(), t.into_iter().map(Some).collect());
            let v = verdict(&l, &t, stat, &CAL, &CAL, &ens);
            let sum: f64 = v.contributions.iter().sum();
            prop_assert!(v.contributions.iter().all(|c| (0.0..=1.0 + 1e-12).contains(c)));
            prop_assert!(sum <= 1.0 + 1e-9);
        }
    }
}
