//! The rdkafka adapters every service shares, so that each client is configured the same way:
//!
//! - [`producer_config`]: idempotent, `acks=all` producers (accepted means durable).
//! - [`consumer_config`]: consumer-group members that never auto-commit or auto-store offsets
//!   (offsets are stored only after the write that covers them) and join groups fast.
//! - [`ensure_topics`]: creates the pipeline's topics if missing.
//! - [`fixed_assignment`]: the partitions a fixed [`settings::Assignment`] names.
//! - [`codec::Codecs`]: the encoders and decoders of the configured wire format (schema
//!   registry or not), for every producer and consumer.
//! - [`send_blocking`]: enqueue a record, waiting while the producer's queue is full;
//!   [`delivered`]: wait until enqueued records are acknowledged.
//! - [`dead_letter_headers`]: the Kafka Connect (KIP-298) style headers of a dead-lettered record;
//!   [`send_diverted`]: a consumed record re-sent unchanged to a dead-letter or late topic.
//! - [`worker`]: the one checkpointing consumer loop the aggregator, the scorer and the alerter
//!   plug their handlers into; [`checkpoint`]: its checkpoint protocol (deliver outputs, write
//!   the store, save state with offsets, commit) as a plain function over small traits;
//!   [`stored::StoredCheckpoints`]: partition state with its next offset in the store.
//! - [`open_store_and_topics`]: what a consuming service opens before it runs;
//!   [`service::run`]: the whole start of the aggregator and the alerter (store and topics,
//!   stop flag, operations endpoints, the loop on a thread of its own).
//! - [`resume_verdict`]: whether a consumer that resumed a little before an offset really got
//!   the records from there (some brokers answer a fetch from the middle of a batch with the
//!   next batch); the worker applies it after every seek, seeks back on any gap between
//!   consecutive records of a partition, and on a fetch that brings nothing while the log
//!   holds records beyond it (a resume inside the last batch).
#![deny(missing_docs)]

pub mod checkpoint;
pub mod codec;
pub mod service;
pub mod stored;
pub mod worker;

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

/// A Kafka adapter failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client could not be created or a request failed.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// Creating a topic failed.
    #[error("creating topic {topic}: {code}")]
    CreateTopic {
        /// The topic.
        topic: String,
        /// The broker's error code.
        code: RDKafkaErrorCode,
    },
    /// Registering a schema with the schema registry failed.
    #[error("schema registry: {0}")]
    Registry(#[from] schemas::EncodeError),
    /// [`fixed_assignment`] was called for consumer-group rebalancing.
    #[error("assignment `group` names no fixed partitions")]
    NotFixed,
}

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Settings shared by every client.
pub fn base_config(kafka: &settings::Kafka, role: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &kafka.brokers)
        .set("client.id", format!("{}-{role}", kafka.client_id))
        .set("log_level", "4");
    config
}

/// An idempotent producer: `acks=all`, retries without duplicates or reordering.
pub fn producer_config(kafka: &settings::Kafka, role: &str) -> ClientConfig {
    let mut config = base_config(kafka, role);
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .set("message.timeout.ms", "30000");
    config
}

/// A consumer-group member that stores and commits offsets only when told to.
pub fn consumer_config(kafka: &settings::Kafka, role: &str, group: &str) -> ClientConfig {
    let mut config = base_config(kafka, role);
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", kafka.session_timeout_ms.to_string())
        .set("heartbeat.interval.ms", kafka.heartbeat_interval_ms.to_string())
        .set("fetch.wait.max.ms", kafka.fetch_wait_max_ms.to_string())
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("isolation.level", "read_committed");
    config
}

/// Creates `topics` with the configured partitions and replication; existing ones are kept.
pub async fn ensure_topics(kafka: &settings::Kafka, topics: &[&str]) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = base_config(kafka, "admin").create()?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            NewTopic::new(
                t,
                kafka.partitions,
                TopicReplication::Fixed(kafka.replication_factor),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics(&new, &options).await? {
        match result {
            Ok(topic) => tracing::info!(%topic, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(Error::CreateTopic { topic, code }),
        }
    }
    Ok(())
}

/// Why a consuming service could not start: its store, or its topics.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened or migrated.
    #[error("opening the store")]
    Store(#[source] store::Error),
    /// The topics could not be created.
    #[error("creating topics")]
    Topics(#[source] Error),
}

/// What a consuming service (aggregator, alerter) opens before it runs: the migrated store,
/// then every topic of the pipeline ([`ensure_topics`]).
pub async fn open_store_and_topics(
    settings: &settings::Settings,
) -> Result<std::sync::Arc<dyn store::Store>, StartError> {
    let store = store::open_migrated(&settings.store.url)
        .await
        .map_err(StartError::Store)?;
    ensure_topics(&settings.kafka, &settings.kafka.topics.all())
        .await
        .map_err(StartError::Topics)?;
    Ok(store)
}

/// The partitions of `topic` that a fixed `assignment` names: `all` (from the topic's
/// metadata) or the listed ones, each of them; [`Error::NotFixed`] for `group`.
pub fn fixed_assignment<C: rdkafka::consumer::ConsumerContext>(
    consumer: &rdkafka::consumer::BaseConsumer<C>,
    topic: &str,
    assignment: &settings::Assignment,
) -> Result<rdkafka::TopicPartitionList> {
    use rdkafka::consumer::Consumer as _;
    let partitions: Vec<i32> = match assignment {
        settings::Assignment::Group => return Err(Error::NotFixed),
        settings::Assignment::All => {
            let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(30))?;
            metadata
                .topics()
                .iter()
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect()
        }
        settings::Assignment::Partitions(list) => list.clone(),
    };
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in partitions {
        tpl.add_partition(topic, p);
    }
    Ok(tpl)
}

/// Enqueues `record` on a thread that may block: while the producer's queue is full it waits
/// (5 ms at a time) for deliveries to drain it, instead of failing.
pub fn send_blocking<'a>(
    producer: &FutureProducer,
    mut record: FutureRecord<'a, [u8], [u8]>,
) -> std::result::Result<DeliveryFuture, KafkaError> {
    loop {
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Waits until every one of `deliveries` is acknowledged; the first failure is returned (a
/// cancelled delivery as [`KafkaError::Canceled`]).
pub async fn delivered(
    deliveries: impl IntoIterator<Item = DeliveryFuture>,
) -> std::result::Result<(), KafkaError> {
    for delivery in deliveries {
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => return Err(e),
            Err(_) => return Err(KafkaError::Canceled),
        }
    }
    Ok(())
}

/// Enqueues the consumed `message` unchanged (key and value) on `topic` (dead letters, late
/// events) with the [`dead_letter_headers`] naming where it came from and `reason`/`text`.
pub fn send_diverted(
    producer: &FutureProducer,
    topic: &str,
    message: &BorrowedMessage<'_>,
    reason: &str,
    text: &str,
) -> std::result::Result<DeliveryFuture, KafkaError> {
    let headers = dead_letter_headers(&DeadLetter {
        topic: message.topic(),
        partition: message.partition(),
        offset: message.offset(),
        reason,
        message: text,
    });
    let mut record = FutureRecord::<[u8], [u8]>::to(topic)
        .payload(message.payload().unwrap_or_default())
        .headers(headers);
    if let Some(key) = message.key() {
        record = record.key(key);
    }
    send_blocking(producer, record)
}

/// Where a dead-lettered record came from and why it was rejected.
#[derive(Debug, Clone)]
pub struct DeadLetter<'a> {
    /// Source topic.
    pub topic: &'a str,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// Stable error class (e.g. `malformed_avro`).
    pub reason: &'a str,
    /// Human-readable message.
    pub message: &'a str,
}

/// Header names of dead-lettered records (Kafka Connect's KIP-298 convention).
pub mod header {
    /// Source topic.
    pub const TOPIC: &str = "__connect.errors.topic";
    /// Source partition.
    pub const PARTITION: &str = "__connect.errors.partition";
    /// Source offset.
    pub const OFFSET: &str = "__connect.errors.offset";
    /// Error class.
    pub const CLASS: &str = "__connect.errors.exception.class.name";
    /// Error message.
    pub const MESSAGE: &str = "__connect.errors.exception.message";
}

/// The headers of a dead-lettered record; its key and value stay the original bytes.
pub fn dead_letter_headers(dl: &DeadLetter<'_>) -> OwnedHeaders {
    let partition = dl.partition.to_string();
    let offset = dl.offset.to_string();
    OwnedHeaders::new()
        .insert(Header {
            key: header::TOPIC,
            value: Some(dl.topic),
        })
        .insert(Header {
            key: header::PARTITION,
            value: Some(&partition),
        })
        .insert(Header {
            key: header::OFFSET,
            value: Some(&offset),
        })
        .insert(Header {
            key: header::CLASS,
            value: Some(dl.reason),
        })
        .insert(Header {
            key: header::MESSAGE,
            value: Some(dl.message),
        })
}

/// What the first record fetched after positioning a partition says about the position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeVerdict {
    /// The fetch covers the checkpointed offset: consume normally.
    Covered,
    /// The broker skipped records at or before the checkpointed offset: fetch again from here.
    SeekBack(i64),
    /// Records the checkpoint needs are gone from the log (retention): consume from here on.
    Lost,
}

/// Judges the first offset fetched after seeking to `fetch_from` for a partition whose state
/// reflects every record before `next_offset`; a further seek goes back at least twice
/// `min_rewind` records.
pub fn resume_verdict(
    fetch_from: i64,
    next_offset: i64,
    first_fetched: i64,
    min_rewind: i64,
) -> ResumeVerdict {
    if first_fetched <= next_offset {
        ResumeVerdict::Covered
    } else if fetch_from > 0 {
        let rewind = (next_offset - fetch_from).max(min_rewind).max(1);
        ResumeVerdict::SeekBack((next_offset - 2 * rewind).max(0))
    } else {
        ResumeVerdict::Lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_list_is_assigned_entry_for_entry() {
        let consumer: rdkafka::consumer::BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .set("group.id", "g")
            .create()
            .unwrap();
        for text in ["0", "0,2", " 3 , 1", "0, 1,2,3,4,5,6,7"] {
            let assignment: settings::Assignment = text.parse().unwrap();
            let tpl = fixed_assignment(&consumer, "t", &assignment).unwrap();
            let assigned: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            let written: Vec<i32> = text.split(',').map(|p| p.trim().parse().unwrap()).collect();
            assert_eq!(assigned, written, "{text}");
        }
        assert!(matches!(
            fixed_assignment(&consumer, "t", &settings::Assignment::Group),
            Err(Error::NotFixed)
        ));
    }

    #[test]
    fn a_fetch_that_reaches_the_checkpoint_is_covered() {
        assert_eq!(resume_verdict(4_000, 5_000, 4_000, 1_000), ResumeVerdict::Covered);
        assert_eq!(resume_verdict(4_000, 5_000, 4_700, 1_000), ResumeVerdict::Covered);
        assert_eq!(resume_verdict(4_000, 5_000, 5_000, 1_000), ResumeVerdict::Covered);
        assert_eq!(resume_verdict(0, 10, 0, 1_000), ResumeVerdict::Covered);
    }

    #[test]
    fn a_skipped_checkpoint_offset_seeks_back_twice_as_far() {
        // (fetched from, resume point, first offset fetched, rewind) -> where to seek.
        for (fetch_from, resume_at, first, rewind, to) in [
            (4_000, 5_000, 5_001, 1_000, 3_000),
            (3_000, 5_000, 5_300, 1_000, 1_000),
            (1_000, 5_000, 5_300, 1_000, 0),
            (500, 1_500, 1_501, 1_000, 0),
            // A zero rewind still seeks back.
            (5_000, 5_000, 5_001, 0, 4_998),
            (4_998, 5_000, 5_001, 0, 4_996),
        ] {
            assert_eq!(
                resume_verdict(fetch_from, resume_at, first, rewind),
                ResumeVerdict::SeekBack(to),
                "fetched from {fetch_from}, resume at {resume_at}, first {first}, rewind {rewind}"
            );
        }
    }

    #[test]
    fn a_gap_from_the_beginning_of_the_log_is_reported_as_lost() {
        assert_eq!(resume_verdict(0, 5_000, 7_000, 1_000), ResumeVerdict::Lost);
    }
}
