//! The KPI formulas, defined once: [`Counts`] of a set of task events and the rates derived
//! from them, and [`LatencyDigest`], a t-digest of task latencies that merges, so that longer
//! periods and tenant roll-ups are merges of digests, never averages of percentiles.

use serde::{Deserialize, Serialize};
use tdigest::{Centroid, TDigest};

use crate::{TaskEventView, TaskStatus};

/// Additive counts of a set of task events. Merging is addition, so any partition of the
/// events gives the same total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Tasks.
    pub tasks_total: i64,
    /// Tasks that succeeded.
    pub succeeded: i64,
    /// Tasks that failed.
    pub failed: i64,
    /// Tasks that were cancelled.
    pub cancelled: i64,
    /// Tasks with at least one human intervention.
    pub tasks_with_intervention: i64,
    /// Sum of interventions.
    pub interventions: i64,
    /// Sum of cost, integer micro-USD.
    pub cost_micros: i64,
}

fn ratio(numerator: i64, denominator: i64) -> Option<f64> {
    (denominator > 0).then(|| numerator as f64 / denominator as f64)
}

impl Counts {
    /// The field names, in declaration (and wire) order: the order of [`Counts::to_array`].
    pub const FIELDS: [&'static str; 7] = [
        "tasks_total",
        "succeeded",
        "failed",
        "cancelled",
        "tasks_with_intervention",
        "interventions",
        "cost_micros",
    ];

    /// The counts in the order of [`Counts::FIELDS`] (for positional columns).
    pub fn to_array(&self) -> [i64; 7] {
        [
            self.tasks_total,
            self.succeeded,
            self.failed,
            self.cancelled,
            self.tasks_with_intervention,
            self.interventions,
            self.cost_micros,
        ]
    }

    /// The inverse of [`Counts::to_array`].
    pub fn from_array(values: [i64; 7]) -> Counts {
        let [tasks_total, succeeded, failed, cancelled, tasks_with_intervention, interventions, cost_micros] =
            values;
        Counts {
            tasks_total,
            succeeded,
            failed,
            cancelled,
            tasks_with_intervention,
            interventions,
            cost_micros,
        }
    }

    /// Adds one event.
    pub fn add(&mut self, event: &TaskEventView<'_>) {
        self.tasks_total += 1;
        match event.status {
            TaskStatus::Succeeded => self.succeeded += 1,
            TaskStatus::Failed => self.failed += 1,
            TaskStatus::Cancelled => self.cancelled += 1,
        }
        if event.human_interventions > 0 {
            self.tasks_with_intervention += 1;
        }
        self.interventions += i64::from(event.human_interventions.max(0));
        self.cost_micros += event.cost_micros;
    }

    /// Adds another set of counts.
    pub fn merge(&mut self, other: &Counts) {
        self.tasks_total += other.tasks_total;
        self.succeeded += other.succeeded;
        self.failed += other.failed;
        self.cancelled += other.cancelled;
        self.tasks_with_intervention += other.tasks_with_intervention;
        self.interventions += other.interventions;
        self.cost_micros += other.cost_micros;
    }

    /// Task Success Rate: succeeded / total, in [0, 1]; `None` without tasks (no data is not
    /// a rate of 0 or 1).
    pub fn success_rate(&self) -> Option<f64> {
        ratio(self.succeeded, self.tasks_total)
    }

    /// Human Intervention Rate: tasks with at least one intervention / total, in [0, 1].
    pub fn intervention_rate(&self) -> Option<f64> {
        ratio(self.tasks_with_intervention, self.tasks_total)
    }

    /// Cost per task in micro-USD.
    pub fn cost_per_task_micros(&self) -> Option<f64> {
        ratio(self.cost_micros, self.tasks_total)
    }

    /// Cost per succeeded task in micro-USD (what a success really costs).
    pub fn cost_per_succeeded_task_micros(&self) -> Option<f64> {
        ratio(self.cost_micros, self.succeeded)
    }

    /// The per-task rates the rows that readers see carry next to the counts.
    pub fn rates(&self) -> Rates {
        Rates {
            success_rate: self.success_rate(),
            intervention_rate: self.intervention_rate(),
            cost_per_task_micros: self.cost_per_task_micros(),
        }
    }
}

/// The per-task rates of a [`Counts`] ([`Counts::rates`]); each `None` without tasks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Rates {
    /// Task Success Rate ([`Counts::success_rate`]).
    pub success_rate: Option<f64>,
    /// Human Intervention Rate ([`Counts::intervention_rate`]).
    pub intervention_rate: Option<f64>,
    /// Cost per task, micro-USD ([`Counts::cost_per_task_micros`]).
    pub cost_per_task_micros: Option<f64>,
}

/// The latency quantiles a row carries (ms; `T` is `f64` for digest estimates, `i64` for exact
/// order statistics), each `None` without tasks.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Latencies<T = f64> {
    /// Median latency.
    pub latency_p50_ms: Option<T>,
    /// 95th-percentile latency.
    pub latency_p95_ms: Option<T>,
    /// 99th-percentile latency.
    pub latency_p99_ms: Option<T>,
}

impl<T> Default for Latencies<T> {
    fn default() -> Self {
        Latencies {
            latency_p50_ms: None,
            latency_p95_ms: None,
            latency_p99_ms: None,
        }
    }
}

/// The KPIs of a row that readers see: the counts, their rates and the latency quantiles
/// (`T` as in [`Latencies`]). Serialized as the fields of the three, in this order, so that
/// flattened into a row they are fields of the row.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Kpis<T = f64> {
    /// The counts.
    #[serde(flatten)]
    pub counts: Counts,
    /// Their rates ([`Counts::rates`]).
    #[serde(flatten)]
    pub rates: Rates,
    /// The latency quantiles.
    #[serde(flatten)]
    pub latency: Latencies<T>,
}

impl<T> Kpis<T> {
    /// The KPIs of `counts` (rates derived) and `latency`.
    pub fn new(counts: Counts, latency: Latencies<T>) -> Kpis<T> {
        Kpis {
            counts,
            rates: counts.rates(),
            latency,
        }
    }
}

/// Compression of every latency digest: more centroids, better tail accuracy.
pub const DIGEST_SIZE: usize = 1000;
const BLOB_VERSION: u8 = 1;

/// A t-digest of task latencies (ms), with a stable binary form for storage.
#[derive(Debug, Clone)]
pub struct LatencyDigest {
    digest: TDigest,
    /// Values recorded since the last flush. Kept here rather than in the `tdigest` buffer,
    /// which reserves 5 x size values on the first push and keeps them after each flush (40 KB
    /// pinned by every open daily digest); this one grows with what arrives and is released by
    /// each flush. Compressed every [`PENDING_FACTOR`] x size values, as `tdigest` would.
    pending: Vec<f64>,
}

/// Values buffered per centroid of capacity before a digest compresses them (`tdigest`'s own
/// factor, so the results equal its buffered ingestion).
const PENDING_FACTOR: usize = 5;

impl Default for LatencyDigest {
    fn default() -> Self {
        LatencyDigest {
            digest: TDigest::new_with_size(DIGEST_SIZE),
            pending: Vec::new(),
        }
    }
}

impl PartialEq for LatencyDigest {
    fn eq(&self, other: &Self) -> bool {
        self.to_bytes() == other.to_bytes()
    }
}

/// A digest blob that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("corrupt latency digest: {0}")]
pub struct DigestError(&'static str);

impl LatencyDigest {
    /// An empty digest of `size` centroids at most (the default is [`DIGEST_SIZE`]).
    pub fn with_size(size: usize) -> LatencyDigest {
        LatencyDigest {
            digest: TDigest::new_with_size(size),
            pending: Vec::new(),
        }
    }

    /// Records one latency (negative latencies are clamped to 0).
    pub fn record(&mut self, latency_ms: i64) {
        self.pending.push(latency_ms.max(0) as f64);
        if self.pending.len() >= PENDING_FACTOR * self.digest.max_size().max(1) {
            self.flush();
        }
    }

    /// Number of latencies recorded.
    pub fn count(&self) -> u64 {
        self.digest.count() as u64 + self.pending.len() as u64
    }

    /// The digest with buffered values compressed; every reading method goes through it, so
    /// no caller ever sees buffered values missing (call [`LatencyDigest::flush`] first to
    /// avoid the copy).
    fn flushed(&self) -> std::borrow::Cow<'_, TDigest> {
        if !self.pending.is_empty() {
            std::borrow::Cow::Owned(self.digest.merge_unsorted(self.pending.clone()))
        } else {
            std::borrow::Cow::Borrowed(&self.digest)
        }
    }

    /// Compresses buffered values in place.
    pub fn flush(&mut self) {
        if !self.pending.is_empty() {
            self.digest = self.digest.merge_unsorted(std::mem::take(&mut self.pending));
        }
    }

    /// The estimated `q`-quantile (0..=1), `None` when empty.
    ///
    /// Nearest-rank semantics where the digest still holds exact values: when the centroid that
    /// covers rank `ceil(q * n)` is a single value (t-digest keeps the tails and small digests
    /// that way), that value is returned exactly, as [`exact_quantile`] would; elsewhere the
    /// digest's interpolated estimate.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let d = self.flushed();
        let n = d.count();
        if n <= 0.0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * n).ceil().max(1.0);
        let mut seen = 0.0;
        for c in d.centroids() {
            if rank <= seen + c.weight() {
                if c.weight() == 1.0 {
                    return Some(c.mean());
                }
                break;
            }
            seen += c.weight();
        }
        d.estimate_quantile(q)
    }

    /// The median, 95th and 99th percentiles ([`LatencyDigest::quantile`]).
    pub fn latencies(&self) -> Latencies {
        Latencies {
            latency_p50_ms: self.quantile(0.50),
            latency_p95_ms: self.quantile(0.95),
            latency_p99_ms: self.quantile(0.99),
        }
    }

    /// Merges `other` into this digest.
    pub fn merge(&mut self, other: &LatencyDigest) {
        self.flush();
        self.digest = TDigest::merge_digests(vec![self.digest.clone(), other.flushed().into_owned()]);
    }

    /// The stable binary form: version, size, count, sum, min, max, then (mean, weight) pairs,
    /// little-endian.
    pub fn to_bytes(&self) -> Vec<u8> {
        let d = self.flushed();
        let mut out = Vec::with_capacity(45 + d.centroids().len() * 16);
        out.push(BLOB_VERSION);
        out.extend_from_slice(&(d.max_size() as u32).to_le_bytes());
        for v in [
            d.count(),
            d.sum(),
            d.min().unwrap_or(f64::NAN),
            d.max().unwrap_or(f64::NAN),
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&(d.centroids().len() as u32).to_le_bytes());
        for c in d.centroids() {
            out.extend_from_slice(&c.mean().to_le_bytes());
            out.extend_from_slice(&c.weight().to_le_bytes());
        }
        out
    }

    /// Parses [`LatencyDigest::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<LatencyDigest, DigestError> {
        let mut r = bytes;
        let mut take = |n: usize| -> Result<&[u8], DigestError> {
            if r.len() < n {
                return Err(DigestError("truncated"));
            }
            let (head, tail) = r.split_at(n);
            r = tail;
            Ok(head)
        };
        if take(1)?[0] != BLOB_VERSION {
            return Err(DigestError("unknown version"));
        }
        let u32_at = |b: &[u8]| u32::from_le_bytes(b.try_into().expect("4 bytes"));
        let f64_at = |b: &[u8]| f64::from_le_bytes(b.try_into().expect("8 bytes"));
        let max_size = u32_at(take(4)?) as usize;
        let (count, sum, min, max) = (
            f64_at(take(8)?),
            f64_at(take(8)?),
            f64_at(take(8)?),
            f64_at(take(8)?),
        );
        let n = u32_at(take(4)?) as usize;
        if max_size == 0 || n > max_size * 2 {
            return Err(DigestError("bad sizes"));
        }
        let mut centroids = Vec::with_capacity(n);
        for _ in 0..n {
            centroids.push(Centroid::new(f64_at(take(8)?), f64_at(take(8)?)));
        }
        if !r.is_empty() {
            return Err(DigestError("trailing bytes"));
        }
        let opt = |v: f64| (!v.is_nan()).then_some(v);
        if n > 0 && (opt(min).is_none() || opt(max).is_none()) {
            return Err(DigestError("missing extrema"));
        }
        let digest = TDigest::new(centroids, sum, count, opt(max), opt(min), max_size);
        Ok(LatencyDigest {
            digest,
            pending: Vec::new(),
        })
    }
}

impl Serialize for LatencyDigest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.to_bytes())
    }
}

impl<'de> Deserialize<'de> for LatencyDigest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes: Vec<u8> = serde_bytes_vec(d)?;
        LatencyDigest::from_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}

fn serde_bytes_vec<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("bytes")
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::new();
            while let Some(b) = seq.next_element::<u8>()? {
                out.push(b);
            }
            Ok(out)
        }
    }
    d.deserialize_byte_buf(V)
}

/// The exact nearest-rank `q`-quantile of `values` (sorted in place), the reference that
/// digests are measured against: the smallest value with at least `ceil(q * n)` values <= it.
pub fn exact_quantile(values: &mut [i64], q: f64) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    Some(values[rank - 1])
}

/// The exact median, 95th and 99th percentiles of `values` ([`exact_quantile`]; sorts them).
pub fn exact_latencies(values: &mut [i64]) -> Latencies<i64> {
    Latencies {
        latency_p50_ms: exact_quantile(values, 0.50),
        latency_p95_ms: exact_quantile(values, 0.95),
        latency_p99_ms: exact_quantile(values, 0.99),
    }
}

/// The range a `q`-quantile estimate with rank error `eps` may fall in: from the order
/// statistic just below rank `(q - eps) * n` to the one just above rank `(q + eps) * n`
/// (interpolating estimators land between neighbours). For tests and benchmarks of digests.
pub fn rank_error_bounds(values: &mut [i64], q: f64, eps: f64) -> Option<(f64, f64)> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let n = values.len() as f64;
    let lo = (((q - eps) * n).floor() as isize - 1).clamp(0, values.len() as isize - 1) as usize;
    let hi = (((q + eps) * n).ceil() as usize).min(values.len() - 1);
    Some((values[lo] as f64, values[hi] as f64))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    use crate::TaskEvent;

    fn event(status: TaskStatus, interventions: i32, cost: i64) -> TaskEvent {
        let mut e = TaskEvent::example();
        e.status = status;
        e.human_interventions = interventions;
        e.cost_micros = cost;
        e
    }

    #[test]
    fn formulas() {
        let mut c = Counts::default();
        assert_eq!(c.success_rate(), None, "no tasks is no data, not 0%");
        c.add(&event(TaskStatus::Succeeded, 0, 100).view());
        c.add(&event(TaskStatus::Succeeded, 2, 300).view());
        c.add(&event(TaskStatus::Failed, 1, 200).view());
        c.add(&event(TaskStatus::Cancelled, 0, 0).view());
        assert_eq!(c.tasks_total, 4);
        assert_eq!(c.success_rate(), Some(0.5));
        assert_eq!(c.intervention_rate(), Some(0.5));
        assert_eq!(c.interventions, 3);
        assert_eq!(c.cost_per_task_micros(), Some(150.0));
        assert_eq!(c.cost_per_succeeded_task_micros(), Some(300.0));
        assert_eq!(
            c.rates(),
            Rates {
                success_rate: Some(0.5),
                intervention_rate: Some(0.5),
                cost_per_task_micros: Some(150.0)
            }
        );
        assert_eq!(Counts::default().rates(), Rates::default(), "no tasks, no rates");
    }

    #[test]
    fn the_array_form_follows_the_field_names() {
        let c = Counts::from_array([1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(c.to_array(), [1, 2, 3, 4, 5, 6, 7]);
        let json = serde_json::to_value(c).unwrap();
        let mut fields: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        fields.sort_unstable();
        let mut names = Counts::FIELDS.to_vec();
        names.sort_unstable();
        assert_eq!(fields, names, "every field named, no other");
        for (name, value) in Counts::FIELDS.iter().zip(c.to_array()) {
            assert_eq!(json[name], value, "{name}");
        }
    }

    #[test]
    fn exact_quantile_is_nearest_rank() {
        let mut v = vec![5, 1, 4, 2, 3];
        assert_eq!(exact_quantile(&mut v, 0.5), Some(3));
        assert_eq!(exact_quantile(&mut v, 0.95), Some(5));
        assert_eq!(exact_quantile(&mut v, 0.0), Some(1));
        assert_eq!(exact_quantile(&mut [], 0.5), None);
        let mut v: Vec<i64> = (1..=100).rev().collect();
        assert_eq!(
            exact_latencies(&mut v),
            Latencies {
                latency_p50_ms: Some(50),
                latency_p95_ms: Some(95),
                latency_p99_ms: Some(99)
            }
        );
        assert_eq!(exact_latencies(&mut []), Latencies::default());
    }

    #[test]
    fn digest_blob_round_trips_and_rejects_garbage() {
        let mut d = LatencyDigest::default();
        for v in 0..10_000 {
            d.record(v % 977);
        }
        let back = LatencyDigest::from_bytes(&d.to_bytes()).unwrap();
        assert_eq!(back.quantile(0.95), d.quantile(0.95));
        assert_eq!(back.latencies(), d.latencies());
        assert_eq!(d.latencies().latency_p99_ms, d.quantile(0.99));
        assert_eq!(back.count(), 10_000);
        assert!(LatencyDigest::from_bytes(&[]).is_err());
        assert!(LatencyDigest::from_bytes(&[9, 0, 0]).is_err());
        let blob = d.to_bytes();
        assert!(LatencyDigest::from_bytes(&blob[..blob.len() - 3]).is_err());
        let empty = LatencyDigest::from_bytes(&LatencyDigest::default().to_bytes()).unwrap();
        assert_eq!(empty.quantile(0.5), None);
    }

    proptest! {
        #[test]
        fn rates_stay_in_unit_interval(events in prop::collection::vec((0usize..3, 0i32..5, 0i64..10_000), 0..200)) {
            let mut c = Counts::default();
            for (s, i, cost) in &events {
                c.add(&event(TaskStatus::ALL[*s], *i, *cost).view());
            }
            for rate in [c.success_rate(), c.intervention_rate()].into_iter().flatten() {
                prop_assert!((0.0..=1.0).contains(&rate));
            }
            prop_assert_eq!(c.succeeded + c.failed + c.cancelled, c.tasks_total);
        }

        #[test]
        fn counts_merge_equals_counts_of_union(
            a in prop::collection::vec((0usize..3, 0i32..5, 0i64..10_000), 0..50),
            b in prop::collection::vec((0usize..3, 0i32..5, 0i64..10_000), 0..50),
        ) {
            let count = |events: &[(usize, i32, i64)]| {
                let mut c = Counts::default();
                for (s, i, cost) in events { c.add(&event(TaskStatus::ALL[*s], *i, *cost).view()); }
                c
            };
            let mut merged = count(&a);
            merged.merge(&count(&b));
            let union: Vec<_> = a.iter().chain(&b).copied().collect();
            prop_assert_eq!(merged, count(&union));
        }

        #[test]
        fn merged_digest_matches_digest_of_union(
            a in prop::collection::vec(1i64..100_000, 1..3_000),
            b in prop::collection::vec(1i64..100_000, 1..3_000),
        ) {
            let digest = |values: &[i64]| {
                let mut d = LatencyDigest::default();
                for v in values { d.record(*v); }
                d
            };
            let mut merged = digest(&a);
            merged.merge(&digest(&b));
            let mut union: Vec<i64> = a.iter().chain(&b).copied().collect();
            prop_assert_eq!(merged.count(), union.len() as u64);
            // Within a rank error of 2%.
            let estimate = merged.quantile(0.95).unwrap();
            let (lo, hi) = rank_error_bounds(&mut union, 0.95, 0.02).unwrap();
            prop_assert!(lo <= estimate && estimate <= hi, "{lo} <= {estimate} <= {hi}");
        }
    }
}
