//! Window close -> verdict latency, read off the topics: for every window, the time its KPI
//! record was appended to the KPI-window topic (the aggregator emits a window when its watermark
//! passes the window's end: that is when the window closes) against the time its verdict was
//! appended to the anomaly topic. Both are the records' Kafka timestamps (producer create time),
//! so the measurement needs no clock inside the services and covers the whole hand-over:
//! aggregator produce, broker, scorer fetch, batching, inference, verdict produce.
//!
//! [`join`] is pure; [`read_first_seen`] is the Kafka edge.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use crate::{Error, Result};

/// Latency quantiles of the windows that have both a KPI record and a verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencyReport {
    /// Windows with a KPI record and a verdict.
    pub windows: usize,
    /// KPI windows without a verdict (cold series, skipped or not yet scored).
    pub without_verdict: usize,
    /// Median latency (ms).
    pub p50_ms: i64,
    /// 90th percentile (ms).
    pub p90_ms: i64,
    /// 99th percentile (ms).
    pub p99_ms: i64,
    /// Largest latency (ms).
    pub max_ms: i64,
}

/// Joins the first time each window was seen on the KPI topic with the first time its verdict
/// was seen on the anomaly topic (by window id). Nearest-rank quantiles; `None` without pairs.
pub fn join(closed: &HashMap<String, i64>, verdicts: &HashMap<String, i64>) -> Option<LatencyReport> {
    let mut latencies: Vec<i64> = closed
        .iter()
        .filter_map(|(id, at)| verdicts.get(id).map(|v| (v - at).max(0)))
        .collect();
    if latencies.is_empty() {
        return None;
    }
    latencies.sort_unstable();
    let rank =
        |q: f64| latencies[((q * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len()) - 1];
    Some(LatencyReport {
        windows: latencies.len(),
        without_verdict: closed.len() - latencies.len(),
        p50_ms: rank(0.50),
        p90_ms: rank(0.90),
        p99_ms: rank(0.99),
        max_ms: *latencies.last().expect("non-empty"),
    })
}

/// Reads a topic from its beginning to its current end and returns, per key that `id_of`
/// extracts from a payload, the earliest record timestamp (ms). Records without a timestamp or
/// whose payload `id_of` rejects are skipped.
pub fn read_first_seen(
    kafka: &settings::Kafka,
    topic: &str,
    id_of: impl Fn(&[u8]) -> Option<String>,
) -> Result<HashMap<String, i64>> {
    let consumer: BaseConsumer = kafka_io::consumer_config(kafka, "scorer-latency", "scorer-latency")
        .set("enable.auto.commit", "false")
        .create()?;
    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut assignment = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for p in &partitions {
        let (low, high) = consumer.fetch_watermarks(topic, *p, timeout)?;
        if high > low {
            assignment.add_partition_offset(topic, *p, Offset::Offset(low))?;
            ends.insert(*p, high);
        }
    }
    let mut first = HashMap::new();
    if ends.is_empty() {
        return Ok(first);
    }
    consumer.assign(&assignment)?;
    let mut idle = 0;
    while !ends.is_empty() {
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            idle += 1;
            if idle > 60 {
                return Err(Error::Delivery(format!(
                    "{topic}: no records for 30 s before its end"
                )));
            }
            continue;
        };
        idle = 0;
        let message = message?;
        if message.offset() + 1 >= ends.get(&message.partition()).copied().unwrap_or(0) {
            ends.remove(&message.partition());
        }
        let (Some(at), Some(id)) = (
            message.timestamp().to_millis(),
            message.payload().and_then(&id_of),
        ) else {
            continue;
        };
        first
            .entry(id)
            .and_modify(|t: &mut i64| *t = (*t).min(at))
            .or_insert(at);
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, i64)]) -> HashMap<String, i64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn latencies_are_joined_by_window_and_ranked() {
        let closed: HashMap<String, i64> = (0..100).map(|i| (format!("w{i}"), 1_000)).collect();
        let verdicts: HashMap<String, i64> = (0..100).map(|i| (format!("w{i}"), 1_000 + i + 1)).collect();
        let r = join(&closed, &verdicts).expect("pairs");
        assert_eq!((r.windows, r.without_verdict), (100, 0));
        assert_eq!((r.p50_ms, r.p90_ms, r.p99_ms, r.max_ms), (50, 90, 99, 100));
    }

    #[test]
    fn windows_without_verdicts_are_counted_not_measured() {
        let r = join(&map(&[("a", 10), ("b", 20)]), &map(&[("a", 15), ("c", 1)])).expect("one pair");
        assert_eq!((r.windows, r.without_verdict, r.p99_ms), (1, 1, 5));
        assert_eq!(join(&map(&[("a", 1)]), &map(&[("b", 2)])), None);
    }

    #[test]
    fn a_verdict_stamped_before_its_window_counts_as_zero() {
        // Producer clocks of two hosts can disagree by a few ms.
        let r = join(&map(&[("a", 10)]), &map(&[("a", 7)])).expect("pair");
        assert_eq!(r.max_ms, 0);
    }
}
