//! `recompute --from DAY --to DAY`: rebuilds the daily rows of a day range as a batch job over
//! the whole task-events topic (every partition, from its first retained record to its end at
//! start time): valid events whose `completed_at` falls in the range are de-duplicated by
//! `event_id` and folded with the same [`Aggregate`] the streaming path uses; late events the
//! streaming path diverted are folded in too; events from the future (beyond the clock plus
//! `events.max_future_skew_secs`, which the streaming path dead-letters) are not. Rows are
//! written final, with tenant roll-ups.
//!
//! On the same input without too-late events, the counts and cost equal the streaming rows
//! exactly; latency quantiles agree within the digest's error (a digest depends on the order in
//! which it saw values).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use schemas::time::{day_index, day_of_ms, now_ms};
use schemas::{TaskEvent, TaskEventView};
use store::Store;
use time::Date;

use crate::daily::to_metric;
use crate::engine::{Aggregate, DayRow, Series};
use crate::Result;

/// What a recompute read and wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecomputeReport {
    /// Records read from the topic.
    pub records: u64,
    /// Distinct valid events in the day range.
    pub events_in_range: u64,
    /// Duplicates skipped (same `event_id`).
    pub duplicates: u64,
    /// Records that do not decode or validate.
    pub invalid: u64,
    /// Events beyond the clock plus `events.max_future_skew_secs` (not counted).
    pub future: u64,
    /// Daily rows written (series and roll-ups).
    pub rows_written: u64,
}

/// Rebuilds the rows of `[from, to]` (UTC days, inclusive).
pub fn recompute(
    settings: &settings::Settings,
    store: &dyn Store,
    runtime: &tokio::runtime::Handle,
    from: Date,
    to: Date,
) -> Result<RecomputeReport> {
    let topic = settings.kafka.topics.task_events.as_str();
    let mut config = kafka_io::consumer_config(
        &settings.kafka,
        "aggregator-recompute",
        &format!("{}-recompute", settings.aggregator.consumer_group),
    );
    config.set("enable.partition.eof", "true");
    let consumer: BaseConsumer = config.create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(30))?;
    let mut tpl = TopicPartitionList::new();
    for p in metadata.topics().iter().flat_map(|t| t.partitions()) {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
    }
    // Done when every partition reported its end and nothing arrived for a while: the
    // broker's high watermark (ListOffsets) is not trusted, Tansu 0.6 can report it short.
    let mut not_at_end: HashSet<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions())
        .map(|p| p.id())
        .collect();
    consumer.assign(&tpl)?;
    let decoder = kafka_io::codec::Codecs::from_settings(&settings.schema_registry).decoder::<TaskEvent>();
    let max_future_skew_ms = settings.events.max_future_skew_ms();
    let (first, last) = (day_index(from), day_index(to));
    let mut seen = HashSet::new();
    let mut days: BTreeMap<(i64, Series), Aggregate> = BTreeMap::new();
    let mut report = RecomputeReport::default();
    let quiet = Duration::from_secs(2);
    let mut last_record = std::time::Instant::now();
    loop {
        let message = match consumer.poll(Duration::from_millis(200)) {
            None => {
                if not_at_end.is_empty() && last_record.elapsed() >= quiet {
                    break;
                }
                continue;
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(partition))) => {
                not_at_end.remove(&partition);
                continue;
            }
            Some(other) => other?,
        };
        last_record = std::time::Instant::now();
        report.records += 1;
        let payload = message.payload().unwrap_or_default();
        let event = match decoder.decode_sync_as::<TaskEventView>(payload) {
            Err(e) if e.is_retriable() => runtime.block_on(decoder.decode_as(payload)),
            other => other,
        };
        let Some(event) = event
            .ok()
            .filter(|e: &TaskEventView| schemas::validation::validate_view(e).is_ok())
        else {
            report.invalid += 1;
            continue;
        };
        if schemas::validation::validate_not_future(event.completed_at, now_ms(), max_future_skew_ms).is_err()
        {
            report.future += 1;
            continue;
        }
        let day = day_of_ms(event.completed_at);
        if day < first || day > last {
            continue;
        }
        if !seen.insert(xxhash_rust::xxh3::xxh3_128(event.event_id.as_bytes())) {
            report.duplicates += 1;
            continue;
        }
        report.events_in_range += 1;
        let series = Series::new(event.tenant_id, event.agent_id);
        days.entry((day, series)).or_default().add(&event);
    }
    let now = now_ms();
    let rows: Vec<_> = days
        .into_iter()
        .map(|((day_index, series), mut aggregate)| {
            aggregate.latency.flush();
            to_metric(
                &DayRow {
                    series,
                    day_index,
                    aggregate,
                    is_final: true,
                },
                now,
            )
        })
        .collect();
    let rollups: BTreeSet<(&str, Date)> = rows.iter().map(|r| (r.tenant_id.as_str(), r.day)).collect();
    report.rows_written = (rows.len() + rollups.len()) as u64;
    runtime.block_on(store.upsert_daily_metrics_with_rollups(&rows))?;
    Ok(report)
}
