//! [`run`]: the one consumer loop of the services that checkpoint (the aggregator, the scorer,
//! the alerter). The worker owns the consumer: the subscription or fixed assignment, the
//! positioning of assigned partitions at their resume points, the check of the first record
//! fetched after it ([`resume_verdict`]), the rebalance callbacks, the fatal-error slot, the poll
//! loop, the checkpoint cadence and the graceful stop. A service plugs in a [`Handler`] that owns
//! all of its state: the worker calls it with one record at a time and runs the
//! [`checkpoint`](crate::checkpoint::checkpoint) protocol over it.
//!
//! The handler lives behind one mutex, taken by the poll loop between polls and by the
//! rebalance callbacks (which librdkafka runs inside a poll, on the same thread); the client's
//! statistics go to a second map that is never locked while the handler is, so there is no
//! lock order to get wrong.
//!
//! Where the checkpoints are kept ([`Checkpoints`]):
//! - [`Checkpoints::InStore`]: the handler saves each partition's state with its next offset and
//!   restores it on assignment; Kafka commits only show the lag. Records before the resume point
//!   (read again because fetching starts `resume_rewind` records earlier) are skipped.
//! - [`Checkpoints::InKafka`]: the committed offsets are the checkpoint (committed synchronously,
//!   a failure is fatal); the handler's state is rebuilt from the `resume_rewind` records before
//!   them, which it is given as `replayed`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;

use crate::checkpoint::{self, OffsetCommitter, OutputSink, Position, StateStore};
use crate::{resume_verdict, Error, ResumeVerdict};

/// Where a worker's checkpoints are kept (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpoints {
    /// In the handler's store, with its state; Kafka commits are informational.
    InStore,
    /// In Kafka's committed offsets; the state is rebuilt by replay.
    InKafka,
}

/// What a worker consumes, and when it checkpoints.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The client's role (client id suffix, log lines).
    pub role: String,
    /// The input topic.
    pub topic: String,
    /// The consumer group.
    pub group: String,
    /// Group membership or a fixed set of partitions.
    pub assignment: settings::Assignment,
    /// Where the checkpoints are kept.
    pub checkpoints: Checkpoints,
    /// How many records before its resume point a partition is fetched from.
    pub resume_rewind: i64,
    /// Longest wait of one poll.
    pub poll_timeout: Duration,
    /// Longest time between two checkpoints.
    pub checkpoint_interval: Duration,
    /// Least time between two checkpoints taken because the input ran dry with records handled
    /// since the last one.
    pub idle_checkpoint_spacing: Duration,
}

/// A service's side of the worker: its state and what it does with each record. The
/// checkpoint steps are its [`OutputSink`] and [`StateStore`] implementations.
pub trait Handler: Send + 'static {
    /// The service's error; the worker's own failures convert into it.
    type Error: From<Error> + std::fmt::Display + Send + 'static;

    /// A partition was assigned: restore its state and answer its resume point (every record
    /// before it is reflected in the state). `committed` is Kafka's committed offset (0 when
    /// none) with [`Checkpoints::InKafka`], `None` with [`Checkpoints::InStore`].
    fn assign(&mut self, partition: i32, committed: Option<i64>) -> Result<i64, Self::Error>;

    /// A partition was revoked (after its last checkpoint) or another owner is ahead on it:
    /// forget its state.
    fn revoke(&mut self, partition: i32);

    /// One record of an assigned partition; `replayed`: it lies before the resume point and its
    /// outputs were delivered before (only with [`Checkpoints::InKafka`]).
    fn handle(&mut self, message: &BorrowedMessage<'_>, replayed: bool) -> Result<(), Self::Error>;

    /// Whether a checkpoint should be taken now (e.g. a full batch).
    fn due(&self) -> bool {
        false
    }

    /// Housekeeping before each poll.
    fn tick(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }

    /// Called after each checkpoint with the partitions kept (gauges, deferred work).
    fn checkpointed(&mut self, positions: &[Position]) -> Result<(), Self::Error> {
        let _ = positions;
        Ok(())
    }
}

/// The worker's bookkeeping of one assigned partition.
#[derive(Debug)]
struct Tracked {
    /// Every record before it is reflected in the handler's state (fixed at assignment).
    resume_at: i64,
    /// The next offset to consume.
    next_offset: i64,
    /// Every record before it has been handled (or, for checkpoints in the store, is reflected
    /// in the restored state): a record below it is skipped, one above it is a gap.
    handled_to: i64,
    /// Last offset committed to Kafka.
    committed: Option<i64>,
    /// The current fetch, until its first record was checked: where it started and the offset
    /// that record must not be beyond.
    unverified: Option<Unverified>,
    /// The last gap refetched (expected offset, offset fetched instead): met again after the
    /// refetch, the records are not in the log and the gap is accepted.
    refetched_gap: Option<(i64, i64)>,
    /// When a record last arrived (or the partition was last positioned).
    last_progress: Instant,
    /// The high watermark at which waiting for a stalled fetch was given up (nothing further
    /// back to fetch from).
    stall_given_up: Option<i64>,
}

/// How long a partition may get nothing while the log holds records for it before its fetch
/// counts as stalled ([`Tracked::stalled`]); well above a fetch's wait.
const STALL_PATIENCE: Duration = Duration::from_secs(3);

/// A fetch whose first record has not been checked yet.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Unverified {
    fetch_from: i64,
    must_cover: i64,
    /// The least a further seek goes back ([`resume_verdict`]): the configured rewind after
    /// an assignment, nothing after a gap (the distance then doubles from 2 records).
    min_rewind: i64,
}

/// What to do with a fetched record.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Admit {
    /// Hand it to the handler (`replayed`: only to rebuild state).
    Handle { replayed: bool },
    /// Already handled or reflected in the state.
    Skip,
    /// The broker skipped records before it: fetch again from this offset.
    SeekBack(i64),
}

impl Tracked {
    fn new(
        resume_at: i64,
        fetch_from: i64,
        checkpoints: Checkpoints,
        committed: Option<i64>,
        rewind: i64,
        now: Instant,
    ) -> Tracked {
        Tracked {
            resume_at,
            next_offset: resume_at,
            handled_to: match checkpoints {
                Checkpoints::InStore => resume_at,
                Checkpoints::InKafka => fetch_from,
            },
            committed,
            unverified: (resume_at > 0).then_some(Unverified {
                fetch_from,
                must_cover: resume_at,
                min_rewind: rewind,
            }),
            refetched_gap: None,
            last_progress: now,
            stall_given_up: None,
        }
    }

    /// Judges the record at `offset`. The first record of a fetch must not lie beyond the
    /// point it has to cover ([`resume_verdict`]); later ones must follow the last handled one
    /// without a gap: offsets in a topic written without transactions are contiguous, and a
    /// broker that answers a fetch from the middle of a record batch with the next batch (Tansu
    /// 0.6; librdkafka fetches from mid-batch after a size-limited response) would otherwise
    /// lose the rest of that batch without a trace. A gap is repaired like a resume: seek
    /// further back, skip what was handled, check the first record again.
    fn admit(&mut self, partition: i32, offset: i64, checkpoints: Checkpoints, now: Instant) -> Admit {
        self.last_progress = now;
        if let Some(u) = self.unverified.take() {
            match resume_verdict(u.fetch_from, u.must_cover, offset, u.min_rewind) {
                ResumeVerdict::Covered => {}
                ResumeVerdict::SeekBack(to) => {
                    tracing::warn!(
                        partition,
                        fetch_from = u.fetch_from,
                        first_fetched = offset,
                        must_cover = u.must_cover,
                        seek_to = to,
                        "broker skipped records: seeking further back"
                    );
                    self.unverified = Some(Unverified { fetch_from: to, ..u });
                    return Admit::SeekBack(to);
                }
                ResumeVerdict::Lost => {
                    tracing::error!(
                        partition,
                        first_fetched = offset,
                        must_cover = u.must_cover,
                        "records are no longer in the log: consuming from the first one there"
                    );
                    self.handled_to = self.handled_to.max(offset);
                }
            }
            // A resume may start anywhere up to the point it must cover (the replay of state
            // rebuilt from Kafka is then shorter, as before).
            if offset > self.handled_to && offset <= u.must_cover {
                self.handled_to = offset;
            }
        } else if offset > self.handled_to {
            let gap = (self.handled_to, offset);
            if self.refetched_gap == Some(gap) {
                tracing::error!(
                    partition,
                    expected = gap.0,
                    fetched = offset,
                    "records missing from the log (fetched again, same gap): consuming on"
                );
                self.handled_to = offset;
            } else {
                tracing::warn!(
                    partition,
                    expected = gap.0,
                    fetched = offset,
                    "broker skipped records mid-stream: seeking back"
                );
                self.refetched_gap = Some(gap);
                let to = (self.handled_to - 2).max(0);
                self.unverified = Some(Unverified {
                    fetch_from: to,
                    must_cover: self.handled_to,
                    min_rewind: 0,
                });
                return Admit::SeekBack(to);
            }
        }
        if offset < self.handled_to {
            return Admit::Skip;
        }
        Admit::Handle {
            replayed: checkpoints == Checkpoints::InKafka && offset < self.resume_at,
        }
    }

    /// Where to fetch from again when nothing arrived for `patience` although the log holds
    /// records from where this partition fetches (`high_watermark` above it): a broker that
    /// answers a fetch from the middle of the *last* batch with the next batch returns nothing
    /// at all, and the rest of the log would never be read. The refetch is checked like a gap's;
    /// `None` while fetching works, or once there is nothing further back to fetch from.
    fn stalled(
        &mut self,
        partition: i32,
        high_watermark: i64,
        now: Instant,
        patience: Duration,
    ) -> Option<i64> {
        let u = self.unverified.unwrap_or(Unverified {
            fetch_from: self.handled_to,
            must_cover: self.handled_to,
            min_rewind: 0,
        });
        if high_watermark <= u.fetch_from
            || now.duration_since(self.last_progress) < patience
            || self.stall_given_up == Some(high_watermark)
        {
            return None;
        }
        match resume_verdict(u.fetch_from, u.must_cover, high_watermark, u.min_rewind) {
            ResumeVerdict::SeekBack(to) => {
                tracing::warn!(
                    partition,
                    fetch_from = u.fetch_from,
                    high_watermark,
                    seek_to = to,
                    "no records from the broker although the log holds some: seeking back"
                );
                self.unverified = Some(Unverified { fetch_from: to, ..u });
                self.last_progress = now;
                Some(to)
            }
            // Every record it would still get is reflected already.
            ResumeVerdict::Covered => None,
            ResumeVerdict::Lost => {
                tracing::error!(
                    partition,
                    fetch_from = u.fetch_from,
                    high_watermark,
                    "no records from the broker although the log holds some, from the start on"
                );
                self.stall_given_up = Some(high_watermark);
                None
            }
        }
    }

    /// The handler took the record at `offset`.
    fn handled(&mut self, offset: i64) {
        self.handled_to = self.handled_to.max(offset + 1);
        self.next_offset = self.next_offset.max(offset + 1);
    }
}

/// Fetches `partition` again from `offset` (what was queued for it is dropped).
fn seek<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<(), Error> {
    consumer
        .seek(topic, partition, Offset::Offset(offset), Duration::from_secs(10))
        .map_err(Error::from)
}

/// Everything the poll loop and the rebalance callbacks change, behind one lock.
struct Core<H: Handler> {
    handler: H,
    partitions: BTreeMap<i32, Tracked>,
    /// A fatal error raised inside a rebalance callback, returned by the loop.
    fatal: Option<H::Error>,
    topic: String,
    checkpoints: Checkpoints,
    rewind: i64,
}

struct Ctx<H: Handler> {
    core: Mutex<Core<H>>,
    /// High watermark per partition, from the client's statistics; a leaf: never locked while
    /// `core` is.
    stats: Mutex<HashMap<i32, i64>>,
    topic: String,
}

impl<H: Handler> Ctx<H> {
    fn core(&self) -> MutexGuard<'_, Core<H>> {
        self.core.lock().expect("worker lock")
    }

    fn stats(&self) -> HashMap<i32, i64> {
        self.stats.lock().expect("stats lock").clone()
    }
}

impl<H: Handler> ClientContext for Ctx<H> {
    fn stats(&self, stats: rdkafka::Statistics) {
        let Some(topic) = stats.topics.get(&self.topic) else {
            return;
        };
        let mut map = self.stats.lock().expect("stats lock");
        for p in topic
            .partitions
            .values()
            .filter(|p| p.partition >= 0 && p.hi_offset >= 0)
        {
            map.insert(p.partition, p.hi_offset);
        }
    }
}

impl<H> ConsumerContext for Ctx<H>
where
    H: Handler + OutputSink<H::Error> + StateStore<H::Error>,
{
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: rdkafka::types::RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        use rdkafka::types::RDKafkaRespErr::*;
        match err {
            RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let mut core = self.core();
                if let Err(e) = core.assign(consumer, tpl) {
                    core.fail(e);
                }
                if let Err(e) = consumer.assign(tpl) {
                    core.fail(Error::from(e).into());
                }
            }
            RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let stats = self.stats();
                let mut core = self.core();
                if let Err(e) = core.checkpoint(consumer, &stats) {
                    core.fail(e);
                }
                let revoked = core.clear();
                tracing::info!(?revoked, "partitions revoked");
                let _ = consumer.unassign();
            }
            other => tracing::error!(?other, "rebalance error"),
        }
    }

    fn pre_rebalance(&self, _: &BaseConsumer<Self>, _: &Rebalance<'_>) {}
}

/// Commits offsets to Kafka: synchronously (failures fatal) when they are the checkpoint,
/// else asynchronously (failures logged: the store is the checkpoint).
struct KafkaCommitter<'a, C: ConsumerContext> {
    consumer: &'a BaseConsumer<C>,
    topic: &'a str,
    checkpoints: Checkpoints,
}

impl<C: ConsumerContext, E: From<Error>> OffsetCommitter<E> for KafkaCommitter<'_, C> {
    fn commit(&mut self, offsets: &[(i32, i64)]) -> Result<(), E> {
        let mut tpl = TopicPartitionList::new();
        for &(partition, offset) in offsets {
            tpl.add_partition_offset(self.topic, partition, Offset::Offset(offset))
                .map_err(Error::from)?;
        }
        match self.checkpoints {
            Checkpoints::InKafka => self
                .consumer
                .commit(&tpl, CommitMode::Sync)
                .map_err(Error::from)?,
            Checkpoints::InStore => {
                if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
                    tracing::debug!(%e, "offset commit failed");
                }
            }
        }
        Ok(())
    }
}

impl<H> Core<H>
where
    H: Handler + OutputSink<H::Error> + StateStore<H::Error>,
{
    fn fail(&mut self, error: H::Error) {
        tracing::error!(%error, "fatal");
        self.fatal.get_or_insert(error);
    }

    /// Restores newly assigned partitions and positions `tpl` a little before their resume
    /// points.
    fn assign<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        tpl: &mut TopicPartitionList,
    ) -> Result<(), H::Error> {
        let committed: HashMap<i32, i64> = match self.checkpoints {
            Checkpoints::InStore => HashMap::new(),
            Checkpoints::InKafka => consumer
                .committed_offsets(tpl.clone(), Duration::from_secs(30))
                .map_err(Error::from)?
                .elements()
                .iter()
                .map(|e| match e.offset() {
                    Offset::Offset(o) if o >= 0 => (e.partition(), o),
                    _ => (e.partition(), 0),
                })
                .collect(),
        };
        let assigned: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        for (topic, partition) in assigned {
            let from_kafka = match self.checkpoints {
                Checkpoints::InStore => None,
                Checkpoints::InKafka => Some(committed.get(&partition).copied().unwrap_or(0)),
            };
            let resume_at = self.handler.assign(partition, from_kafka)?;
            let fetch_from = (resume_at - self.rewind).max(0);
            let offset = if fetch_from > 0 {
                Offset::Offset(fetch_from)
            } else {
                Offset::Beginning
            };
            tpl.set_partition_offset(&topic, partition, offset)
                .map_err(Error::from)?;
            tracing::info!(
                partition,
                next_offset = resume_at,
                fetch_from,
                "partition assigned"
            );
            self.partitions.insert(
                partition,
                Tracked::new(
                    resume_at,
                    fetch_from,
                    self.checkpoints,
                    from_kafka,
                    self.rewind,
                    Instant::now(),
                ),
            );
        }
        Ok(())
    }

    /// Admits the record ([`Tracked::admit`]: the first one after positioning checked, gaps
    /// repaired, handled ones skipped), then hands it to the handler.
    fn handle<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        message: &BorrowedMessage<'_>,
    ) -> Result<(), H::Error> {
        let partition = message.partition();
        let offset = message.offset();
        let Some(tracked) = self.partitions.get_mut(&partition) else {
            return Ok(());
        };
        match tracked.admit(partition, offset, self.checkpoints, Instant::now()) {
            Admit::Skip => Ok(()),
            Admit::SeekBack(to) => Ok(seek(consumer, &self.topic, partition, to)?),
            Admit::Handle { replayed } => {
                self.handler.handle(message, replayed)?;
                tracked.handled(offset);
                Ok(())
            }
        }
    }

    /// Seeks back every partition whose fetch has stalled ([`Tracked::stalled`]).
    fn unstall<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        high_watermarks: &HashMap<i32, i64>,
    ) -> Result<(), H::Error> {
        let now = Instant::now();
        for (&partition, tracked) in self.partitions.iter_mut() {
            let Some(&high_watermark) = high_watermarks.get(&partition) else {
                continue;
            };
            if let Some(to) = tracked.stalled(partition, high_watermark, now, STALL_PATIENCE) {
                seek(consumer, &self.topic, partition, to)?;
            }
        }
        Ok(())
    }

    /// Runs the checkpoint protocol over every assigned partition; drops the partitions another
    /// owner is ahead on.
    fn checkpoint<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        stats: &HashMap<i32, i64>,
    ) -> Result<(), H::Error> {
        let positions: Vec<Position> = self
            .partitions
            .iter()
            .map(|(&partition, t)| Position {
                partition,
                next_offset: t.next_offset,
                committed: t.committed,
                high_watermark: stats.get(&partition).copied(),
            })
            .collect();
        let mut committer = KafkaCommitter {
            consumer,
            topic: &self.topic,
            checkpoints: self.checkpoints,
        };
        let done = checkpoint::checkpoint(&mut self.handler, &mut committer, &positions)?;
        for (partition, offset) in &done.committed {
            if let Some(t) = self.partitions.get_mut(partition) {
                t.committed = Some(*offset);
            }
        }
        for partition in &done.superseded {
            tracing::warn!(partition, "another owner is ahead: dropping partition");
            self.partitions.remove(partition);
            self.handler.revoke(*partition);
        }
        let kept: Vec<Position> = positions
            .into_iter()
            .filter(|p| !done.superseded.contains(&p.partition))
            .collect();
        self.handler.checkpointed(&kept)
    }

    /// Forgets every partition; answers their ids.
    fn clear(&mut self) -> Vec<i32> {
        let ids: Vec<i32> = self.partitions.keys().copied().collect();
        for &id in &ids {
            self.handler.revoke(id);
        }
        self.partitions.clear();
        ids
    }
}

/// Consumes `config.topic` with `handler` on the calling thread until `stop` is set (then
/// checkpoints and returns) or a fatal error occurs.
pub fn run<H>(
    kafka: &settings::Kafka,
    config: &WorkerConfig,
    handler: H,
    stop: &AtomicBool,
) -> Result<(), H::Error>
where
    H: Handler + OutputSink<H::Error> + StateStore<H::Error>,
{
    let mut client = crate::consumer_config(kafka, &config.role, &config.group);
    client
        .set("partition.assignment.strategy", "range")
        .set("statistics.interval.ms", "1000");
    let ctx = Ctx {
        core: Mutex::new(Core {
            handler,
            partitions: BTreeMap::new(),
            fatal: None,
            topic: config.topic.clone(),
            checkpoints: config.checkpoints,
            rewind: config.resume_rewind,
        }),
        stats: Mutex::new(HashMap::new()),
        topic: config.topic.clone(),
    };
    let consumer: BaseConsumer<Ctx<H>> = client.create_with_context(ctx).map_err(Error::from)?;
    let ctx = consumer.context().clone();
    match &config.assignment {
        settings::Assignment::Group => consumer
            .subscribe(&[config.topic.as_str()])
            .map_err(Error::from)?,
        fixed => {
            let mut tpl = crate::fixed_assignment(&consumer, &config.topic, fixed)?;
            ctx.core().assign(&consumer, &mut tpl)?;
            consumer.assign(&tpl).map_err(Error::from)?;
        }
    }
    tracing::info!(
        role = %config.role,
        topic = %config.topic,
        group = %config.group,
        "consumer running"
    );
    let mut last_checkpoint = Instant::now();
    let mut last_stall_check = Instant::now();
    // When a poll last found nothing queued: a partition is only judged stalled then, never
    // while records of other partitions wait in the queue (a seek would drop its own queued
    // ones and send them to the back).
    let mut last_dry = Instant::now();
    // Records handled since the last checkpoint: when the input runs dry they are checkpointed
    // soon instead of at the next interval.
    let mut unsaved = 0u64;
    loop {
        let mut core = ctx.core();
        if let Some(error) = core.fatal.take() {
            return Err(error);
        }
        if stop.load(Ordering::Relaxed) {
            drop(core);
            let stats = ctx.stats();
            ctx.core().checkpoint(&consumer, &stats)?;
            tracing::info!("checkpointed on shutdown");
            return Ok(());
        }
        core.handler.tick()?;
        drop(core);
        let polled = consumer.poll(config.poll_timeout);
        let mut core = ctx.core();
        let ran_dry = match polled {
            Some(Ok(message)) => {
                core.handle(&consumer, &message)?;
                unsaved += 1;
                false
            }
            Some(Err(e)) => {
                tracing::warn!(%e, "consumer error");
                false
            }
            None => true,
        };
        let since = last_checkpoint.elapsed();
        let due = since >= config.checkpoint_interval
            || core.handler.due()
            || (ran_dry && unsaved > 0 && since >= config.idle_checkpoint_spacing);
        drop(core);
        if due {
            let stats = ctx.stats();
            ctx.core().checkpoint(&consumer, &stats)?;
            last_checkpoint = Instant::now();
            unsaved = 0;
        }
        if ran_dry {
            last_dry = Instant::now();
        }
        if last_stall_check.elapsed() >= Duration::from_secs(1) && last_dry.elapsed() < Duration::from_secs(1)
        {
            let stats = ctx.stats();
            ctx.core().unstall(&consumer, &stats)?;
            last_stall_check = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds offsets to `t`, handling each admitted one; returns what each got.
    fn feed(t: &mut Tracked, checkpoints: Checkpoints, offsets: &[i64]) -> Vec<Admit> {
        offsets
            .iter()
            .map(|&o| {
                let a = t.admit(0, o, checkpoints, Instant::now());
                if let Admit::Handle { .. } = a {
                    t.handled(o);
                }
                a
            })
            .collect()
    }

    const HANDLE: Admit = Admit::Handle { replayed: false };
    const REPLAY: Admit = Admit::Handle { replayed: true };

    #[test]
    fn a_gap_mid_stream_is_refetched_and_nothing_is_handled_twice() {
        let mut t = Tracked::new(100, 100, Checkpoints::InStore, None, 0, Instant::now());
        // 103 and 104 never came: the broker answered the fetch from 103 with a later batch.
        let got = feed(&mut t, Checkpoints::InStore, &[100, 101, 102, 105]);
        assert_eq!(got, [HANDLE, HANDLE, HANDLE, Admit::SeekBack(101)]);
        // The refetch starts before the gap: what was handled is skipped, the gap is filled.
        let got = feed(&mut t, Checkpoints::InStore, &[101, 102, 103, 104, 105]);
        assert_eq!(got, [Admit::Skip, Admit::Skip, HANDLE, HANDLE, HANDLE]);
        assert_eq!((t.handled_to, t.next_offset), (106, 106));
    }

    #[test]
    fn a_refetch_that_skips_again_goes_further_back() {
        let mut t = Tracked::new(100, 100, Checkpoints::InStore, None, 0, Instant::now());
        assert_eq!(feed(&mut t, Checkpoints::InStore, &[120]), [Admit::SeekBack(98)]);
        assert_eq!(feed(&mut t, Checkpoints::InStore, &[120]), [Admit::SeekBack(96)]);
        let got = feed(&mut t, Checkpoints::InStore, &[90, 99, 100, 101]);
        assert_eq!(got, [Admit::Skip, Admit::Skip, HANDLE, HANDLE]);
    }

    #[test]
    fn state_rebuilt_from_kafka_is_replayed_then_consumed() {
        let mut t = Tracked::new(100, 96, Checkpoints::InKafka, Some(100), 4, Instant::now());
        let got = feed(&mut t, Checkpoints::InKafka, &[96, 97, 98, 99, 100, 101]);
        assert_eq!(got, [REPLAY, REPLAY, REPLAY, REPLAY, HANDLE, HANDLE]);
        // A gap in the replay is repaired too; the refetch skips what was replayed.
        let mut t = Tracked::new(100, 96, Checkpoints::InKafka, Some(100), 4, Instant::now());
        let got = feed(&mut t, Checkpoints::InKafka, &[96, 97, 99]);
        assert_eq!(got, [REPLAY, REPLAY, Admit::SeekBack(96)]);
        let got = feed(&mut t, Checkpoints::InKafka, &[96, 97, 98, 99, 100]);
        assert_eq!(got, [Admit::Skip, Admit::Skip, REPLAY, REPLAY, HANDLE]);
        // A resume that starts late but still covers the checkpoint replays less, as before.
        let mut t = Tracked::new(100, 96, Checkpoints::InKafka, Some(100), 4, Instant::now());
        assert_eq!(
            feed(&mut t, Checkpoints::InKafka, &[98, 99, 100]),
            [REPLAY, REPLAY, HANDLE]
        );
    }

    #[test]
    fn a_gap_that_is_really_in_the_log_is_accepted_after_one_refetch() {
        let mut t = Tracked::new(100, 100, Checkpoints::InStore, None, 0, Instant::now());
        let got = feed(&mut t, Checkpoints::InStore, &[100, 101, 105]);
        assert_eq!(got, [HANDLE, HANDLE, Admit::SeekBack(100)]);
        // The refetch shows the same gap: no endless loop, consumption goes on.
        let got = feed(&mut t, Checkpoints::InStore, &[100, 101, 105, 106]);
        assert_eq!(got, [Admit::Skip, Admit::Skip, HANDLE, HANDLE]);
        // A later, different gap is refetched again.
        assert_eq!(feed(&mut t, Checkpoints::InStore, &[109]), [Admit::SeekBack(105)]);
    }

    #[test]
    fn a_fetch_that_gets_nothing_while_the_log_holds_records_goes_further_back() {
        let start = Instant::now();
        let later = |s: u64| start + Duration::from_secs(s);
        let patience = Duration::from_secs(3);
        // Resumed at 100 inside the last batch (95..110): the broker answers with nothing.
        let mut t = Tracked::new(100, 100, Checkpoints::InStore, None, 0, start);
        assert_eq!(t.stalled(0, 110, later(2), patience), None, "not yet");
        assert_eq!(
            t.stalled(0, 100, later(9), patience),
            None,
            "nothing beyond 100 in the log"
        );
        assert_eq!(t.stalled(0, 110, later(3), patience), Some(98));
        assert_eq!(
            t.stalled(0, 110, later(5), patience),
            None,
            "patience again after a seek"
        );
        assert_eq!(
            t.stalled(0, 110, later(6), patience),
            Some(96),
            "further back each time"
        );
        // The batch arrives: what the state holds is skipped, the rest handled.
        let got = feed(&mut t, Checkpoints::InStore, &[95, 99, 100, 109]);
        assert_eq!(got, [Admit::Skip, Admit::Skip, HANDLE, Admit::SeekBack(99)]);
        // Consuming normally: a quiet partition at the end of the log never counts as stalled.
        let mut t = Tracked::new(0, 0, Checkpoints::InStore, None, 0, start);
        assert_eq!(feed(&mut t, Checkpoints::InStore, &[0, 1, 2]), [HANDLE; 3]);
        assert_eq!(t.stalled(0, 3, later(60), patience), None);
        // Mid-stream (the consumer fetching from inside the last batch): back by 2, then 4.
        assert_eq!(t.stalled(0, 8, later(60), patience), Some(1));
        assert_eq!(t.stalled(0, 8, later(63), patience), Some(0));
        // Nothing further back: given up at this high watermark, tried again at a new one.
        assert_eq!(t.stalled(0, 8, later(66), patience), None);
        assert_eq!(t.stalled(0, 8, later(99), patience), None);
        assert_eq!(t.stalled(0, 9, later(99), patience), None);
    }

    #[test]
    fn records_gone_from_the_log_are_consumed_from_the_first_one_there() {
        // No checkpoint; retention removed offsets below 50.
        let mut t = Tracked::new(0, 0, Checkpoints::InStore, None, 0, Instant::now());
        assert_eq!(feed(&mut t, Checkpoints::InStore, &[50]), [Admit::SeekBack(0)]);
        assert_eq!(feed(&mut t, Checkpoints::InStore, &[50, 51]), [HANDLE, HANDLE]);
    }
}
