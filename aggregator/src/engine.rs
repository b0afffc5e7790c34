//! The pure core of the aggregator: the state of one input partition and what each event does
//! to it. No Kafka, store or clock: event time comes in with the events, outputs go out as
//! values, and the whole state serializes for checkpoints. The same input in the same order
//! always gives the same outputs, which is what makes replays after a crash idempotent.
//!
//! Time model (per partition):
//! - an event whose `completed_at` is more than `max_future_skew_ms` ahead of the wall clock
//!   (`now_ms`, passed in with each event) is from the **future**: it changes nothing and is
//!   dead-lettered. So no series can drag the watermark, and with it the lateness horizon of
//!   every other series on the partition, further than that skew past the clock;
//! - the **watermark** is the largest `completed_at` accepted;
//! - an event is **late** when `completed_at < watermark - allowed_lateness`; it changes nothing
//!   and goes to the late-events topic;
//! - a short window `[start, start + window)` is **emitted** (revision 0) once the watermark
//!   reaches its end, for every active series: one whose first event is at or before the
//!   window and whose last event is less than [`ACTIVE_SERIES_WINDOWS`] windows old (a series
//!   with no tasks in the window gets an explicit empty window, so an outage is visible);
//! - accepted late events update their window, which is **re-emitted** once, with revision 1,
//!   when the watermark passes `end + allowed_lateness`;
//! - a UTC day is **final** once the watermark passes `day end + allowed_lateness`, or, for a
//!   partition with nothing left to read, once the clock does
//!   ([`PartitionState::finalize_days_by_clock`]; later events of a final day are late);
//! - duplicates (same `event_id`) are dropped within the lateness horizon (ids are kept as
//!   64-bit XXH3 hashes).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use schemas::kpi::{Counts, LatencyDigest};
use schemas::time::{day_of_ms, DAY_MS};
use schemas::{KpiWindow, TaskEventView};
use serde::{Deserialize, Serialize};

/// How many windows a series stays active (gets empty windows emitted) after its last event.
pub const ACTIVE_SERIES_WINDOWS: i64 = 60;
/// Centroids of the short windows' digests: they hold minutes of one series, and a smaller
/// digest is much cheaper to create and fill (the daily digests keep the full size).
pub const WINDOW_DIGEST_SIZE: usize = 100;

/// Windowing parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    /// Length of the short window (ms); divides a day.
    pub window_ms: i64,
    /// How far behind the watermark an event may be and still count (ms).
    pub allowed_lateness_ms: i64,
    /// How far ahead of the wall clock an event may be and still count (ms).
    pub max_future_skew_ms: i64,
}

/// A series: tenant and agent.
///
/// Shared strings: the same series keys several maps, and cloning it per event must not
/// allocate. Ordered by a stable 64-bit hash of its ids first (XXH3: the same on every machine
/// and after every restart), then by the ids: the engine's map lookups compare one integer
/// instead of two strings. The order is arbitrary but deterministic, which is all the engine
/// needs (the windows of one period are emitted in series order). Serialized as the two plain
/// strings; the hash is recomputed on restore.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(from = "SeriesIds", into = "SeriesIds")]
pub struct Series {
    hash: u64,
    tenant_id: Arc<str>,
    agent_id: Arc<str>,
}

/// The serialized form of a [`Series`].
#[derive(Serialize, Deserialize)]
struct SeriesIds {
    tenant_id: Arc<str>,
    agent_id: Arc<str>,
}

impl From<SeriesIds> for Series {
    fn from(ids: SeriesIds) -> Series {
        Series {
            hash: series_hash(&ids.tenant_id, &ids.agent_id),
            tenant_id: ids.tenant_id,
            agent_id: ids.agent_id,
        }
    }
}

impl From<Series> for SeriesIds {
    fn from(series: Series) -> SeriesIds {
        SeriesIds {
            tenant_id: series.tenant_id,
            agent_id: series.agent_id,
        }
    }
}

fn series_hash(tenant_id: &str, agent_id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(
        agent_id.as_bytes(),
        xxhash_rust::xxh3::xxh3_64(tenant_id.as_bytes()),
    )
}

impl Series {
    /// A series from its ids.
    pub fn new(tenant_id: &str, agent_id: &str) -> Series {
        Series {
            hash: series_hash(tenant_id, agent_id),
            tenant_id: tenant_id.into(),
            agent_id: agent_id.into(),
        }
    }

    /// The tenant.
    pub fn tenant_id(&self) -> &str {
        &self.tenant_id
    }

    /// The agent.
    pub fn agent_id(&self) -> &str {
        &self.agent_id
    }

    fn same_strings(&self, other: &Series) -> bool {
        Arc::ptr_eq(&self.tenant_id, &other.tenant_id) && Arc::ptr_eq(&self.agent_id, &other.agent_id)
    }
}

impl PartialEq for Series {
    fn eq(&self, other: &Series) -> bool {
        self.hash == other.hash
            && (self.same_strings(other)
                || (self.tenant_id == other.tenant_id && self.agent_id == other.agent_id))
    }
}

impl Eq for Series {}

impl Ord for Series {
    fn cmp(&self, other: &Series) -> std::cmp::Ordering {
        self.hash.cmp(&other.hash).then_with(|| {
            if self.same_strings(other) {
                std::cmp::Ordering::Equal
            } else {
                (&self.tenant_id, &self.agent_id).cmp(&(&other.tenant_id, &other.agent_id))
            }
        })
    }
}

impl PartialOrd for Series {
    fn partial_cmp(&self, other: &Series) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl std::hash::Hash for Series {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// A map keyed by a 64-bit hash already computed (XXH3): no second hashing.
type PrehashedMap<V> = HashMap<u64, V, nohash_hasher::BuildNoHashHasher<u64>>;

/// Series seen recently, by a hash of their ids, so that an event of a known series finds its
/// shared key without allocating. Not checkpointed (rebuilt on demand); equal to any other.
#[derive(Debug, Clone, Default)]
struct Interner(PrehashedMap<Series>);

impl PartialEq for Interner {
    fn eq(&self, _: &Interner) -> bool {
        true
    }
}

impl Interner {
    /// Entries kept beyond the active series before the table is dropped and rebuilt.
    const SLACK: usize = 4096;

    fn get(&mut self, tenant_id: &str, agent_id: &str) -> Series {
        let hash = series_hash(tenant_id, agent_id);
        if let Some(s) = self.0.get(&hash) {
            if &*s.tenant_id == tenant_id && &*s.agent_id == agent_id {
                return s.clone();
            }
        }
        let series = Series {
            hash,
            tenant_id: tenant_id.into(),
            agent_id: agent_id.into(),
        };
        self.0.insert(hash, series.clone());
        series
    }

    /// Bounds the table: dropped when it holds far more series than are active.
    fn trim(&mut self, active: usize) {
        if self.0.len() > active * 2 + Self::SLACK {
            self.0.clear();
        }
    }
}

/// Counts and latency digest of a set of events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Aggregate {
    /// Additive counts.
    pub counts: Counts,
    /// Latency digest.
    pub latency: LatencyDigest,
}

impl Aggregate {
    /// Adds one event.
    pub fn add(&mut self, event: &TaskEventView<'_>) {
        self.counts.add(event);
        self.latency.record(event.latency_ms());
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct WindowState {
    aggregate: Aggregate,
    /// Whether the window's period was already emitted.
    emitted: bool,
    /// Whether late events changed it after emission.
    changed_after_emit: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct DayState {
    aggregate: Aggregate,
    dirty: bool,
    is_final: bool,
}

impl Default for WindowState {
    fn default() -> Self {
        WindowState {
            aggregate: Aggregate {
                counts: Counts::default(),
                latency: LatencyDigest::with_size(WINDOW_DIGEST_SIZE),
            },
            emitted: false,
            changed_after_emit: false,
        }
    }
}

/// What happened to one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Counted.
    Accepted,
    /// `completed_at` beyond `now + max_future_skew_ms`: not counted, the watermark unmoved.
    Future {
        /// The latest event time accepted when it arrived (`now + max_future_skew_ms`).
        limit_ms: i64,
    },
    /// Same `event_id` already counted: dropped.
    Duplicate,
    /// Behind the watermark by more than the allowed lateness: not counted.
    Late {
        /// The partition watermark when it arrived.
        watermark_ms: i64,
    },
    /// Its UTC day was already finalized by the clock ([`PartitionState::finalize_days_by_clock`]):
    /// not counted.
    DayFinalized {
        /// Start of that day (epoch ms).
        day_start_ms: i64,
    },
}

/// A daily row of one series, complete values, ready to upsert.
#[derive(Debug, Clone, PartialEq)]
pub struct DayRow {
    /// The series.
    pub series: Series,
    /// Days since the Unix epoch (UTC).
    pub day_index: i64,
    /// Counts and digest of the day so far.
    pub aggregate: Aggregate,
    /// No more changes expected (the watermark passed the day's end plus lateness).
    pub is_final: bool,
}

/// Counters of one partition (kept in the checkpoint, so they survive restarts exactly).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Events counted.
    pub accepted: u64,
    /// Duplicates dropped.
    pub duplicates: u64,
    /// Late events diverted.
    pub late: u64,
    /// KPI windows emitted (all revisions).
    pub windows_emitted: u64,
}

/// The whole state of one input partition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PartitionState {
    watermark_ms: Option<i64>,
    /// Start of the earliest period not emitted yet.
    next_period_ms: Option<i64>,
    windows: BTreeMap<(i64, Series), WindowState>,
    days: BTreeMap<(i64, Series), DayState>,
    /// Series -> starts of its first and last periods with an event.
    active: BTreeMap<Series, (i64, i64)>,
    /// Hash of event id -> its completed_at.
    seen: PrehashedMap<i64>,
    stats: Stats,
    /// Days before this one are final (by the watermark, or by the clock).
    #[serde(default)]
    final_before_day: Option<i64>,
    /// Window index up to which `seen` was last pruned.
    #[serde(default)]
    pruned_before_window: Option<i64>,
    #[serde(skip)]
    interner: Interner,
}

fn event_hash(event_id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(event_id.as_bytes())
}

impl PartitionState {
    /// The watermark (largest event time seen), if any event was seen.
    pub fn watermark_ms(&self) -> Option<i64> {
        self.watermark_ms
    }

    /// The partition's counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Series and windows held in memory (for the memory gauges).
    pub fn sizes(&self) -> (usize, usize, usize, usize) {
        (
            self.active.len(),
            self.windows.len(),
            self.days.len(),
            self.seen.len(),
        )
    }

    /// Applies one event that arrived when the wall clock said `now_ms`; emitted windows are
    /// appended to `out`.
    pub fn process(
        &mut self,
        config: &EngineConfig,
        event: &TaskEventView<'_>,
        now_ms: i64,
        out: &mut Vec<KpiWindow>,
    ) -> Outcome {
        let t = event.completed_at;
        let limit_ms = now_ms.saturating_add(config.max_future_skew_ms);
        if t > limit_ms {
            return Outcome::Future { limit_ms };
        }
        if let Some(watermark) = self.watermark_ms {
            if t < watermark - config.allowed_lateness_ms {
                self.stats.late += 1;
                return Outcome::Late {
                    watermark_ms: watermark,
                };
            }
        }
        if self.final_before_day.is_some_and(|d| day_of_ms(t) < d) {
            // Only days finalized by the clock get here: any event of a day the watermark
            // finalized is behind `watermark - lateness`, caught above.
            self.stats.late += 1;
            return Outcome::DayFinalized {
                day_start_ms: day_of_ms(t) * DAY_MS,
            };
        }
        if self.seen.insert(event_hash(event.event_id), t).is_some() {
            self.stats.duplicates += 1;
            return Outcome::Duplicate;
        }
        self.stats.accepted += 1;
        let series = self.interner.get(event.tenant_id, event.agent_id);
        let start = t.div_euclid(config.window_ms) * config.window_ms;
        let next_period = *self.next_period_ms.get_or_insert(start);
        let window = self.windows.entry((start, series.clone())).or_default();
        window.aggregate.add(event);
        if start < next_period {
            // Its period was already emitted (with this series' data or as an empty window).
            window.emitted = true;
            window.changed_after_emit = true;
        }
        let day = self.days.entry((day_of_ms(t), series.clone())).or_default();
        day.aggregate.add(event);
        day.dirty = true;
        let (first, last) = self.active.entry(series).or_insert((start, start));
        *first = (*first).min(start);
        *last = (*last).max(start);
        if self.watermark_ms.is_none_or(|w| t > w) {
            self.watermark_ms = Some(t);
            self.advance(config, out);
        }
        Outcome::Accepted
    }

    fn advance(&mut self, config: &EngineConfig, out: &mut Vec<KpiWindow>) {
        let watermark = self.watermark_ms.expect("advance after an event");
        let lateness = config.allowed_lateness_ms;
        // Emit every period whose end the watermark reached.
        while let Some(period) = self.next_period_ms.filter(|p| p + config.window_ms <= watermark) {
            let oldest_active = period - (ACTIVE_SERIES_WINDOWS - 1) * config.window_ms;
            self.active.retain(|_, (_, last)| *last >= oldest_active);
            self.interner.trim(self.active.len());
            for (series, (first, _)) in &self.active {
                if *first > period {
                    continue; // the series had not started yet
                }
                let key = (period, series.clone());
                let window = self.windows.entry(key).or_default();
                window.emitted = true;
                window.aggregate.latency.flush();
                out.push(kpi_window(series, period, config.window_ms, 0, &window.aggregate));
                self.stats.windows_emitted += 1;
            }
            self.next_period_ms = Some(period + config.window_ms);
        }
        // Re-emit changed windows and forget windows past their lateness.
        let closed_before = watermark - lateness;
        while let Some(entry) = self.windows.first_entry() {
            let (start, _) = entry.key();
            if start + config.window_ms > closed_before {
                break;
            }
            let ((start, series), mut window) = entry.remove_entry();
            if window.changed_after_emit {
                window.aggregate.latency.flush();
                out.push(kpi_window(&series, start, config.window_ms, 1, &window.aggregate));
                self.stats.windows_emitted += 1;
            }
        }
        // Days and ids only change state when `closed_before` crosses a day or a window
        // boundary: skip the scans otherwise (outcomes do not depend on when ids are pruned,
        // since an event behind `closed_before` is late before it is looked up).
        let closed_day = day_of_ms(closed_before);
        if self.final_before_day.is_none_or(|d| closed_day > d) {
            self.final_before_day = Some(closed_day);
            for ((day, _), state) in self.days.iter_mut() {
                if (day + 1) * DAY_MS > closed_before {
                    break;
                }
                if !state.is_final {
                    state.is_final = true;
                    state.dirty = true;
                }
            }
        }
        let closed_window = closed_before.div_euclid(config.window_ms);
        if self.pruned_before_window.is_none_or(|w| closed_window > w) {
            self.pruned_before_window = Some(closed_window);
            self.seen.retain(|_, t| *t >= closed_before);
        }
    }

    /// Finalizes by the clock the days that ended more than the allowed lateness before
    /// `now_ms`. For a partition with nothing left to read: its watermark only moves with its
    /// events, so while its series are quiet the watermark never passes the end of their last
    /// day. Those days become final (their rows are returned by the next
    /// [`PartitionState::take_dirty_days`]) and an event of them that arrives later is
    /// [`Outcome::DayFinalized`], as one behind the watermark would be late. Nothing else moves:
    /// no window is emitted (an empty window would read as an outage) and the watermark stays.
    /// Returns how many days were finalized.
    pub fn finalize_days_by_clock(&mut self, config: &EngineConfig, now_ms: i64) -> usize {
        let closed_day = day_of_ms(now_ms - config.allowed_lateness_ms);
        if self.final_before_day.is_some_and(|d| d >= closed_day) {
            return 0;
        }
        self.final_before_day = Some(closed_day);
        let mut finalized = 0;
        for ((day, _), state) in self.days.iter_mut() {
            if *day >= closed_day {
                break;
            }
            if !state.is_final {
                state.is_final = true;
                state.dirty = true;
                finalized += 1;
            }
        }
        finalized
    }

    /// Repairs a state whose watermark lies beyond `now_ms + max_future_skew_ms`: one that an
    /// event from the future moved there before such events were refused (or a host clock that
    /// went back). Such a watermark makes every event of every series on the partition late
    /// until the clock catches up, possibly for decades. The watermark is set to the limit; the
    /// windows, days, series and event ids beyond it are forgotten (their rows stay in the
    /// store); the next period to emit and the day finality move back to the limit minus the
    /// lateness, so the events that arrive now count again and their windows are emitted.
    /// Days that ended before that stay final. Returns the former watermark when it was beyond
    /// the limit.
    ///
    /// What the stalled partition diverted meanwhile is on the late-events topic (and still in
    /// the task-events topic): `aggregator recompute` of the affected days, once they ended,
    /// counts it.
    pub fn clamp_watermark(&mut self, config: &EngineConfig, now_ms: i64) -> Option<i64> {
        let limit = now_ms.saturating_add(config.max_future_skew_ms);
        let former = self.watermark_ms.filter(|w| *w > limit)?;
        self.watermark_ms = Some(limit);
        // The oldest event time that still counts: its period is the first not emitted (the
        // stalled partition emitted none of them), so windows from there on come out as
        // revision 0 once the watermark passes them.
        let closed_before = limit - config.allowed_lateness_ms;
        let period = closed_before.div_euclid(config.window_ms) * config.window_ms;
        self.next_period_ms = self.next_period_ms.map(|p| p.min(period));
        self.windows.retain(|(start, _), _| *start <= limit);
        let limit_day = day_of_ms(limit);
        self.days.retain(|(day, _), _| *day <= limit_day);
        self.active.retain(|_, (_, last)| *last <= limit);
        self.seen.retain(|_, t| *t <= limit);
        let closed_day = day_of_ms(closed_before);
        self.final_before_day = self.final_before_day.map(|d| d.min(closed_day));
        let closed_window = closed_before.div_euclid(config.window_ms);
        self.pruned_before_window = self.pruned_before_window.map(|w| w.min(closed_window));
        Some(former)
    }

    /// Daily rows changed since the last call (complete values). Final days are forgotten once
    /// taken: their rows are written and late events for them are diverted.
    pub fn take_dirty_days(&mut self) -> Vec<DayRow> {
        let mut rows = Vec::new();
        for ((day_index, series), state) in self.days.iter_mut().filter(|(_, s)| s.dirty) {
            state.dirty = false;
            state.aggregate.latency.flush();
            rows.push(DayRow {
                series: series.clone(),
                day_index: *day_index,
                aggregate: state.aggregate.clone(),
                is_final: state.is_final,
            });
        }
        self.days.retain(|_, s| !s.is_final);
        rows
    }

    /// The state as bytes, for the checkpoint.
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("partition state serializes")
    }

    /// Restores [`PartitionState::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<PartitionState, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

/// The KPI window record of a series' aggregate.
pub fn kpi_window(series: &Series, start: i64, window_ms: i64, revision: i32, a: &Aggregate) -> KpiWindow {
    KpiWindow {
        window_id: KpiWindow::id_for(&series.tenant_id, &series.agent_id, start),
        tenant_id: series.tenant_id.to_string(),
        agent_id: series.agent_id.to_string(),
        window_start: start,
        window_end: start + window_ms,
        revision,
        counts: a.counts,
        latency: a.latency.latencies(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_serialize_as_the_strings_earlier_checkpoints_hold() {
        #[derive(Serialize)]
        struct Before {
            tenant_id: String,
            agent_id: String,
        }
        let bytes = postcard::to_stdvec(&Before {
            tenant_id: "acme".into(),
            agent_id: "triage".into(),
        })
        .unwrap();
        let series: Series = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(series, Series::new("acme", "triage"));
        assert_eq!(postcard::to_stdvec(&series).unwrap(), bytes);
    }

    #[test]
    fn series_compare_by_their_ids_not_by_their_allocations() {
        let a = Series::new("acme", "triage");
        let b = Series::new("acme", "triage");
        assert!(!Arc::ptr_eq(&a.tenant_id, &b.tenant_id));
        assert_eq!(a, b);
        assert_eq!(a.cmp(&b), std::cmp::Ordering::Equal);
        assert_ne!(a, Series::new("acme", "triage2"));
        // Equal hashes (forced here) fall back to the ids.
        let x = Series {
            hash: 7,
            ..Series::new("acme", "a")
        };
        let y = Series {
            hash: 7,
            ..Series::new("acme", "b")
        };
        assert_ne!(x, y);
        assert_eq!(x.cmp(&y), std::cmp::Ordering::Less);
        assert_eq!(y.cmp(&x), std::cmp::Ordering::Greater);
        // A restored series orders like the original.
        let restored: Series = postcard::from_bytes(&postcard::to_stdvec(&a).unwrap()).unwrap();
        assert_eq!(restored.hash, a.hash);
        assert_eq!(restored, a);
    }

    #[test]
    fn the_interner_shares_keys_and_stays_bounded() {
        let mut interner = Interner::default();
        let a = interner.get("acme", "triage");
        let b = interner.get("acme", "triage");
        assert!(
            Arc::ptr_eq(&a.agent_id, &b.agent_id),
            "no new allocation for a known series"
        );
        assert_ne!(interner.get("acme", "triage2"), a);
        assert_ne!(interner.get("acmet", "riage"), a, "ids are not concatenated");
        for i in 0..Interner::SLACK + 10 {
            interner.get("acme", &format!("agent-{i}"));
        }
        interner.trim(1);
        assert!(interner.0.is_empty());
        assert_eq!(
            interner.get("acme", "triage"),
            a,
            "rebuilt on demand, equal by content"
        );
    }
}
