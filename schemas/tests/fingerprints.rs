//! The single-object fingerprints against another implementation: fastavro's Parsing Canonical
//! Form and CRC-64-AVRO of every schema in `avro/`, and one record of each written by fastavro
//! the way a third-party producer that follows the specification writes it
//! (`fixtures/fastavro/`, produced by `fixtures/fastavro/generate.py`). Also: the legacy
//! fingerprints our topics already hold keep decoding.

use std::collections::BTreeMap;

use apache_avro::Schema;
use schemas::codec::{
    fingerprint, legacy_fingerprint, parsing_canonical_form, Decoder, Encoder, SINGLE_OBJECT_MARKER,
};
use schemas::kpi::{Counts, Latencies};
use schemas::task_event::schema_v1;
use schemas::{Anomaly, AvroRecord, KpiWindow, TaskEvent, TaskStatus};

/// fastavro's fingerprint (hex of the 8 header bytes) by canonical form, over every schema file
/// the fixtures were made from.
fn fastavro() -> BTreeMap<String, String> {
    let text = include_str!("fixtures/fastavro/fingerprints.json");
    let document: serde_json::Value = serde_json::from_str(text).unwrap();
    document["schemas"]
        .as_object()
        .unwrap()
        .values()
        .map(|entry| {
            (
                entry["canonical_form"].as_str().unwrap().to_string(),
                entry["fingerprint"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// fastavro's fingerprint of `schema`, found by our canonical form of it.
fn fastavro_fingerprint(schema: &Schema) -> String {
    let form = parsing_canonical_form(schema);
    fastavro().get(&form).cloned().unwrap_or_else(|| {
        panic!(
            "fastavro computed no schema with our canonical form {form}: a schema changed \
             (rerun schemas/tests/fixtures/fastavro/generate.py) or our canonical form is wrong"
        )
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every schema file of `avro/`, parsed.
fn schema_files() -> Vec<(String, Schema)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/avro");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "avsc"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let schema = Schema::parse_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            (path.file_name().unwrap().to_string_lossy().to_string(), schema)
        })
        .collect()
}

#[test]
fn canonical_forms_and_fingerprints_of_every_schema_file_equal_fastavros() {
    let files = schema_files();
    assert!(files.len() >= 4, "{files:?}");
    for (name, schema) in &files {
        assert_eq!(
            hex(&fingerprint(schema).to_le_bytes()),
            fastavro_fingerprint(schema),
            "{name}"
        );
    }
    // The values of the issue that found the bug.
    assert_eq!(
        hex(&fingerprint(TaskEvent::schema()).to_le_bytes()),
        "94b9e703f76891ea"
    );
}

#[test]
fn every_writer_schema_is_one_fastavro_knows() {
    for schema in TaskEvent::writer_schemas()
        .iter()
        .chain(KpiWindow::writer_schemas())
        .chain(Anomaly::writer_schemas())
    {
        assert_eq!(
            hex(&fingerprint(schema).to_le_bytes()),
            fastavro_fingerprint(schema)
        );
    }
}

#[test]
fn our_single_object_header_is_the_one_fastavro_computes() {
    let fp = fastavro_fingerprint(TaskEvent::schema());
    let bytes = Encoder::<TaskEvent>::single_object()
        .encode(&TaskEvent::example())
        .unwrap();
    assert_eq!(bytes[..2], SINGLE_OBJECT_MARKER);
    assert_eq!(hex(&bytes[2..10]), fp);
    let fp = fastavro_fingerprint(KpiWindow::schema());
    let window = KpiWindow {
        window_id: "w".into(),
        tenant_id: "acme".into(),
        agent_id: "a".into(),
        window_start: 0,
        window_end: 900_000,
        revision: 0,
        counts: Counts::default(),
        latency: Latencies::default(),
    };
    let bytes = Encoder::<KpiWindow>::single_object().encode(&window).unwrap();
    assert_eq!(hex(&bytes[2..10]), fp);
}

#[test]
fn records_written_by_fastavro_decode() {
    let event = Decoder::<TaskEvent>::new()
        .decode_sync(include_bytes!("fixtures/fastavro/task_event.single_object.bin"))
        .unwrap();
    assert_eq!(
        event,
        TaskEvent {
            event_id: "fastavro-1".into(),
            task_id: "task-7".into(),
            tenant_id: "acme".into(),
            agent_id: "triage".into(),
            status: TaskStatus::Cancelled,
            human_interventions: 1,
            started_at: 1_763_900_000_000,
            completed_at: 1_763_900_004_500,
            cost_micros: 12_345,
            model: Some("gpt-x".into()),
            input_tokens: Some(900),
            output_tokens: None,
            attributes: BTreeMap::from([("region".into(), "eu".into())]),
        }
    );
    let v1 = Decoder::<TaskEvent>::new()
        .decode_sync(include_bytes!(
            "fixtures/fastavro/task_event.v1.single_object.bin"
        ))
        .unwrap();
    assert_eq!(
        (v1.event_id.as_str(), v1.status, v1.cost_micros, v1.model),
        ("fastavro-v1", TaskStatus::Succeeded, 700, None)
    );
    let window_bytes = include_bytes!("fixtures/fastavro/kpi_window.single_object.bin");
    let window = Decoder::<KpiWindow>::new().decode_sync(window_bytes).unwrap();
    // The counts are one embedded `Counts` in Rust and seven fields of the record on the wire:
    // written again, the window is fastavro's record to the byte.
    assert_eq!(
        Encoder::<KpiWindow>::single_object().encode(&window).unwrap(),
        window_bytes
    );
    assert_eq!(
        (
            window.window_id.as_str(),
            window.revision,
            window.counts.tasks_total,
            window.latency.latency_p50_ms,
            window.latency.latency_p99_ms
        ),
        ("w-1", 1, 10, Some(120.5), None)
    );
    let anomaly = Decoder::<Anomaly>::new()
        .decode_sync(include_bytes!("fixtures/fastavro/anomaly_v1.single_object.bin"))
        .unwrap();
    assert_eq!(
        (
            anomaly.anomaly_id.as_str(),
            anomaly.top_features[0].feature.as_str(),
            anomaly.scored_at
        ),
        ("a-1", "cost_per_task", 1_763_901_060_000)
    );
}

/// The fingerprints written before the fix: apache-avro 0.22's canonical form, which keeps
/// `{"type":"long"}` for the `timestamp-millis` fields (every schema here has one). Topics hold
/// records with them. (The comparison with apache-avro holds while it is the 0.22 dependency.)
#[test]
fn legacy_fingerprints_are_apache_avros_and_still_decode() {
    assert_eq!(
        hex(&legacy_fingerprint(TaskEvent::schema()).to_le_bytes()),
        "e85ec218d8f25360"
    );
    for (name, schema) in schema_files() {
        let apache = schema.fingerprint::<apache_avro::rabin::Rabin>().bytes;
        assert_eq!(
            legacy_fingerprint(&schema).to_le_bytes()[..],
            apache[..8],
            "{name}"
        );
        assert_ne!(legacy_fingerprint(&schema), fingerprint(&schema), "{name}");
    }
    // A record of today's schema with the legacy header, as the gateway wrote it before.
    let current = Encoder::<TaskEvent>::single_object()
        .encode(&TaskEvent::example())
        .unwrap();
    let mut legacy = current.clone();
    legacy[2..10].copy_from_slice(&legacy_fingerprint(TaskEvent::schema()).to_le_bytes());
    let decoder = Decoder::<TaskEvent>::new();
    assert_eq!(decoder.decode_sync(&legacy).unwrap(), TaskEvent::example());
    assert_eq!(decoder.decode_sync(&current).unwrap(), TaskEvent::example());
    // The committed v1 fixture carries the legacy v1 fingerprint.
    let v1 = include_bytes!("fixtures/task_event_v1.single_object.bin");
    assert_eq!(v1[2..10], legacy_fingerprint(schema_v1()).to_le_bytes());
}
