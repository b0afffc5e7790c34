//! Contract tests: each Rust type round-trips through its `.avsc`, both wire formats decode,
//! bad input gets a typed error, and data written with schema version 1 still decodes.

use std::collections::BTreeMap;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use proptest::prelude::*;
use schemas::codec::{
    encode_single_object, fingerprint, legacy_fingerprint, Decoder, Encoder, Frame, SINGLE_OBJECT_MARKER,
};
use schemas::kpi::{Counts, Latencies};
use schemas::task_event::schema_v1;
use schemas::{
    Anomaly, AvroRecord, DecodeError, FeatureContribution, KpiWindow, TaskEvent, TaskEventView, TaskStatus,
};

fn arb_status() -> impl Strategy<Value = TaskStatus> {
    prop::sample::select(TaskStatus::ALL.to_vec())
}

prop_compose! {
    fn arb_task_event()(
        event_id in "[a-f0-9-]{1,36}",
        task_id in ".{0,20}",
        tenant_id in "[a-z]{1,8}",
        agent_id in "[a-z-]{1,12}",
        status in arb_status(),
        human_interventions in 0i32..10,
        started_at in 0i64..4_000_000_000_000,
        latency in 0i64..10_000_000,
        cost_micros in 0i64..i64::MAX / 2,
        model in proptest::option::of("[a-z0-9-]{1,16}"),
        input_tokens in proptest::option::of(0i64..1_000_000),
        output_tokens in proptest::option::of(0i64..1_000_000),
        attributes in prop::collection::btree_map("[a-z]{1,6}", ".{0,10}", 0..4),
    ) -> TaskEvent {
        TaskEvent {
            event_id, task_id, tenant_id, agent_id, status, human_interventions, started_at,
            completed_at: started_at + latency, cost_micros, model, input_tokens, output_tokens,
            attributes,
        }
    }
}

prop_compose! {
    fn arb_kpi_window()(
        tenant_id in "[a-z]{1,8}",
        agent_id in "[a-z]{1,8}",
        window_start in 0i64..4_000_000_000_000,
        revision in 0i32..5,
        counts in prop::array::uniform7(0i64..1_000_000),
        p50 in proptest::option::of(0.0f64..1e6),
    ) -> KpiWindow {
        KpiWindow {
            window_id: KpiWindow::id_for(&tenant_id, &agent_id, window_start),
            tenant_id, agent_id, window_start, window_end: window_start + 60_000, revision,
            counts: Counts {
                tasks_total: counts[0], succeeded: counts[1], failed: counts[2], cancelled: counts[3],
                tasks_with_intervention: counts[4], interventions: counts[5], cost_micros: counts[6],
            },
            latency: Latencies {
                latency_p50_ms: p50, latency_p95_ms: p50.map(|v| v * 2.0), latency_p99_ms: p50.map(|v| v * 3.0),
            },
        }
    }
}

fn anomaly() -> Anomaly {
    Anomaly {
        anomaly_id: Anomaly::id_for("w", 0, "v1"),
        window_id: "w".into(),
        tenant_id: "acme".into(),
        agent_id: "bot".into(),
        window_start: 1,
        window_end: 60_001,
        lstm_score: 0.5,
        transformer_score: 0.25,
        lstm_normalized: 3.2,
        transformer_normalized: 2.1,
        ensemble_score: 2.65,
        threshold: 3.0,
        is_anomaly: false,
        top_features: vec![FeatureContribution {
            feature: "success_rate".into(),
            contribution: 0.7,
        }],
        model_version: "v1".into(),
        scored_at: 2,
        statistical_score: Some(7.125),
        explanation: vec![
            schemas::KpiExplanation {
                kpi: "success_rate".into(),
                observed: 0.52,
                expected: 0.86,
                low: 0.79,
                high: 0.93,
                evidence: 7.125,
            },
            schemas::KpiExplanation {
                kpi: "latency_p95_ms".into(),
                observed: 2_400.5,
                expected: 900.0,
                low: 612.25,
                high: 1_187.75,
                evidence: 3.5,
            },
        ],
    }
}

proptest! {
    #[test]
    fn task_event_round_trips_single_object(event in arb_task_event()) {
        let bytes = Encoder::<TaskEvent>::single_object().encode(&event).unwrap();
        prop_assert_eq!(Decoder::<TaskEvent>::new().decode_sync(&bytes).unwrap(), event);
    }

    #[test]
    fn task_event_body_is_plain_avro_of_its_schema(event in arb_task_event()) {
        // The body is plain Avro of the .avsc: apache-avro's generic (schema-driven, non-serde)
        // reader decodes all of it, so any other Avro implementation can.
        let bytes = Encoder::<TaskEvent>::single_object().encode(&event).unwrap();
        let mut body = &bytes[10..];
        let value = GenericDatumReader::builder(TaskEvent::schema()).build().unwrap()
            .read_value(&mut body).unwrap();
        prop_assert!(body.is_empty(), "trailing bytes");
        prop_assert_eq!(apache_avro::from_value::<TaskEvent>(&value).unwrap(), event);
    }

    #[test]
    fn kpi_window_round_trips(window in arb_kpi_window()) {
        let bytes = Encoder::<KpiWindow>::single_object().encode(&window).unwrap();
        prop_assert_eq!(Decoder::<KpiWindow>::new().decode_sync(&bytes).unwrap(), window);
    }

    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = Decoder::<TaskEvent>::new().decode_sync(&bytes);
    }
}

proptest! {
    /// The allocation-free view decodes every record to exactly what the owned type holds.
    #[test]
    fn the_borrowed_view_decodes_what_the_owned_event_holds(event in arb_task_event()) {
        let bytes = encode_single_object(&event).unwrap();
        let view = Decoder::<TaskEvent>::new().decode_sync_as::<TaskEventView>(&bytes).unwrap();
        prop_assert_eq!(view, event.view());
        prop_assert_eq!(
            schemas::validation::validate_view(&view),
            schemas::validation::validate(&event)
        );
    }
}

#[test]
fn anomaly_round_trips() {
    let bytes = Encoder::<Anomaly>::single_object().encode(&anomaly()).unwrap();
    assert_eq!(Decoder::<Anomaly>::new().decode_sync(&bytes).unwrap(), anomaly());
}

/// The fingerprint is checked against fastavro's in `fingerprints.rs`, the body against
/// apache-avro's datum reader above.
#[test]
fn single_object_header_is_the_avro_spec_header() {
    let bytes = Encoder::<TaskEvent>::single_object()
        .encode(&TaskEvent::example())
        .unwrap();
    assert_eq!(bytes[..2], SINGLE_OBJECT_MARKER);
    assert_eq!(bytes[2..10], fingerprint(TaskEvent::schema()).to_le_bytes());
    assert_eq!(
        Decoder::<TaskEvent>::new().decode_sync(&bytes).unwrap(),
        TaskEvent::example()
    );
}

#[test]
fn rejects_unknown_format_with_typed_error() {
    let decoder = Decoder::<TaskEvent>::new();
    assert!(matches!(
        decoder.decode_sync(b"{\"json\":1}"),
        Err(DecodeError::UnknownFormat { .. })
    ));
    assert!(matches!(
        decoder.decode_sync(&[]),
        Err(DecodeError::TooShort { len: 0 })
    ));
    assert!(matches!(
        decoder.decode_sync(&[0xC3, 0x01, 1, 2]),
        Err(DecodeError::TooShort { len: 4 })
    ));
    let mut unknown = vec![0xC3, 0x01];
    unknown.extend_from_slice(&42u64.to_le_bytes());
    assert!(matches!(
        decoder.decode_sync(&unknown),
        Err(DecodeError::UnknownFingerprint { fingerprint: 42, .. })
    ));
}

#[test]
fn rejects_truncated_body() {
    let bytes = Encoder::<TaskEvent>::single_object()
        .encode(&TaskEvent::example())
        .unwrap();
    let err = Decoder::<TaskEvent>::new()
        .decode_sync(&bytes[..bytes.len() - 5])
        .unwrap_err();
    assert_eq!(err.reason(), "malformed_avro", "{err}");
}

#[test]
fn confluent_frame_without_registry_is_rejected() {
    let bytes = Encoder::<TaskEvent>::confluent(7)
        .encode(&TaskEvent::example())
        .unwrap();
    assert_eq!(
        Frame::parse(&bytes).unwrap(),
        Frame::Confluent {
            schema_id: 7,
            body: &bytes[5..]
        }
    );
    let err = Decoder::<TaskEvent>::new().decode_sync(&bytes).unwrap_err();
    assert!(
        matches!(err, DecodeError::RegistryNotConfigured { schema_id: 7 }),
        "{err}"
    );
}

/// The fixture was written with the first schema version (`avro/task_event.v1.avsc`) by
/// `write_v1_fixture` below; the current reader must still decode it (BACKWARD compatibility).
#[test]
fn current_reader_decodes_v1_fixture() {
    let bytes = include_bytes!("fixtures/task_event_v1.single_object.bin");
    let event = Decoder::<TaskEvent>::new().decode_sync(bytes).unwrap();
    assert_eq!(event.event_id, "v1-event-1");
    assert_eq!(event.status, TaskStatus::Failed);
    assert_eq!(event.human_interventions, 2);
    assert_eq!(event.cost_micros, 4_200);
    assert_eq!(event.model, None, "fields added in v2 take their defaults");
    assert_eq!(event.attributes, BTreeMap::new());
    let view = Decoder::<TaskEvent>::new()
        .decode_sync_as::<TaskEventView>(bytes)
        .unwrap();
    assert_eq!(view, event.view(), "the view resolves v1 records the same way");
}

#[test]
fn v2_is_backward_compatible_with_v1() {
    apache_avro::schema_compatibility::SchemaCompatibility::can_read(schema_v1(), TaskEvent::schema())
        .expect("a v2 reader reads v1 data");
}

/// Regenerates the v1 fixture: `cargo test -p schemas --test contracts -- --ignored write_v1_fixture`.
/// It was written before the fingerprints followed the specification, so it carries the legacy
/// fingerprint (which readers must keep accepting).
#[test]
#[ignore]
fn write_v1_fixture() {
    let value = Value::Record(vec![
        ("event_id".into(), Value::String("v1-event-1".into())),
        ("task_id".into(), Value::String("task-9".into())),
        ("tenant_id".into(), Value::String("acme".into())),
        ("agent_id".into(), Value::String("triage".into())),
        ("status".into(), Value::Enum(1, "FAILED".into())),
        ("human_interventions".into(), Value::Int(2)),
        ("started_at".into(), Value::TimestampMillis(1_700_000_000_000)),
        ("completed_at".into(), Value::TimestampMillis(1_700_000_004_000)),
        ("cost_micros".into(), Value::Long(4_200)),
    ]);
    let mut bytes = SINGLE_OBJECT_MARKER.to_vec();
    bytes.extend_from_slice(&legacy_fingerprint(schema_v1()).to_le_bytes());
    bytes.extend(
        GenericDatumWriter::builder(schema_v1())
            .build()
            .unwrap()
            .write_value_to_vec(value)
            .unwrap(),
    );
    std::fs::write(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/task_event_v1.single_object.bin"
        ),
        bytes,
    )
    .unwrap();
}

/// A verdict of today's schema round-trips with and without the statistical score and the
/// explanation, and its body is plain Avro of `anomaly.avsc` (apache-avro's generic reader).
#[test]
fn anomaly_round_trips_with_and_without_score_and_explanation() {
    let bare = Anomaly {
        statistical_score: None,
        explanation: Vec::new(),
        ..anomaly()
    };
    for a in [anomaly(), bare] {
        let bytes = Encoder::<Anomaly>::single_object().encode(&a).unwrap();
        assert_eq!(Decoder::<Anomaly>::new().decode_sync(&bytes).unwrap(), a);
        let mut body = &bytes[10..];
        let value = GenericDatumReader::builder(Anomaly::schema())
            .build()
            .unwrap()
            .read_value(&mut body)
            .unwrap();
        assert!(body.is_empty(), "trailing bytes");
        assert_eq!(apache_avro::from_value::<Anomaly>(&value).unwrap(), a);
    }
}

/// A verdict written with the first schema version (`avro/anomaly.v1.avsc`, by apache-avro's
/// generic writer, not our encoder) decodes into today's type without a statistical score and
/// with an empty explanation (BACKWARD compatibility).
#[test]
fn anomaly_written_with_v1_decodes_without_score_and_explanation() {
    let v1 = schemas::anomaly::schema_v1();
    apache_avro::schema_compatibility::SchemaCompatibility::can_read(v1, Anomaly::schema())
        .expect("today's reader reads v1 data");
    let a = anomaly();
    let value = Value::Record(vec![
        ("anomaly_id".into(), Value::String(a.anomaly_id.clone())),
        ("window_id".into(), Value::String(a.window_id.clone())),
        ("tenant_id".into(), Value::String(a.tenant_id.clone())),
        ("agent_id".into(), Value::String(a.agent_id.clone())),
        ("window_start".into(), Value::TimestampMillis(a.window_start)),
        ("window_end".into(), Value::TimestampMillis(a.window_end)),
        ("lstm_score".into(), Value::Double(a.lstm_score)),
        ("transformer_score".into(), Value::Double(a.transformer_score)),
        ("lstm_normalized".into(), Value::Double(a.lstm_normalized)),
        (
            "transformer_normalized".into(),
            Value::Double(a.transformer_normalized),
        ),
        ("ensemble_score".into(), Value::Double(a.ensemble_score)),
        ("threshold".into(), Value::Double(a.threshold)),
        ("is_anomaly".into(), Value::Boolean(a.is_anomaly)),
        (
            "top_features".into(),
            Value::Array(vec![Value::Record(vec![
                ("feature".into(), Value::String("success_rate".into())),
                ("contribution".into(), Value::Double(0.7)),
            ])]),
        ),
        ("model_version".into(), Value::String(a.model_version.clone())),
        ("scored_at".into(), Value::TimestampMillis(a.scored_at)),
    ]);
    let mut bytes = SINGLE_OBJECT_MARKER.to_vec();
    bytes.extend_from_slice(&fingerprint(v1).to_le_bytes());
    bytes.extend(
        GenericDatumWriter::builder(v1)
            .build()
            .unwrap()
            .write_value_to_vec(value)
            .unwrap(),
    );
    assert_ne!(
        fingerprint(v1),
        fingerprint(Anomaly::schema()),
        "v1 is a writer schema of its own"
    );
    assert_eq!(
        Decoder::<Anomaly>::new().decode_sync(&bytes).unwrap(),
        Anomaly {
            statistical_score: None,
            explanation: Vec::new(),
            ..a
        }
    );
}
