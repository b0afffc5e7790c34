//! The Confluent wire-format path against an HTTP **test double** of the schema-registry REST
//! API (wiremock): registration, framing, lookup by id, and registry errors.

use std::sync::Arc;

use schemas::codec::{Decoder, Encoder};
use schemas::registry::Registry;
use schemas::{AvroRecord, DecodeError, TaskEvent};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn fake_registry(schema_id: u32, schema_text: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/subjects/task-events-value/versions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "id": schema_id })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/schemas/ids/{schema_id}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "schema": schema_text })))
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn registers_encodes_and_decodes_confluent_frames() {
    let server = fake_registry(21, TaskEvent::schema_text()).await;
    let registry = Arc::new(Registry::new(&server.uri()));
    let id = registry.register::<TaskEvent>("task-events").await.unwrap();
    assert_eq!(id, 21);
    let bytes = Encoder::<TaskEvent>::confluent(id)
        .encode(&TaskEvent::example())
        .unwrap();
    assert_eq!(bytes[..5], [0, 0, 0, 0, 21]);

    let decoder = Decoder::<TaskEvent>::with_registry(registry);
    assert!(matches!(
        decoder.decode_sync(&bytes),
        Err(DecodeError::SchemaNotCached { schema_id: 21 })
    ));
    assert_eq!(decoder.decode(&bytes).await.unwrap(), TaskEvent::example());
    // Now cached: no I/O needed.
    assert_eq!(decoder.decode_sync(&bytes).unwrap(), TaskEvent::example());
}

#[tokio::test]
async fn decodes_records_written_with_the_v1_schema_from_the_registry() {
    let v1 = include_str!("../avro/task_event.v1.avsc");
    let server = fake_registry(3, v1).await;
    let decoder = Decoder::<TaskEvent>::with_registry(Arc::new(Registry::new(&server.uri())));
    let fixture = include_bytes!("fixtures/task_event_v1.single_object.bin");
    let mut framed = vec![0, 0, 0, 0, 3];
    framed.extend_from_slice(&fixture[10..]);
    let event = decoder.decode(&framed).await.unwrap();
    assert_eq!(event.event_id, "v1-event-1");
    assert_eq!(event.model, None);
}

#[tokio::test]
async fn unknown_schema_id_is_a_registry_error() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/schemas/ids/99"))
        .respond_with(
            ResponseTemplate::new(404)
                .set_body_json(json!({"error_code": 40403, "message": "Schema not found"})),
        )
        .mount(&server)
        .await;
    let decoder = Decoder::<TaskEvent>::with_registry(Arc::new(Registry::new(&server.uri())));
    let err = decoder.decode(&[0, 0, 0, 0, 99, 2, 0]).await.unwrap_err();
    assert!(matches!(err, DecodeError::Registry { .. }), "{err}");
}

/// A schema only the registry knows (a newer producer's version with an extra field, or a
/// reordered one): records written with it decode into the current type, the unknown field
/// skipped, once a compatibility check against the current schema passed.
#[tokio::test]
async fn decodes_records_of_a_newer_compatible_schema_the_registry_holds() {
    let mut newer: serde_json::Value = serde_json::from_str(TaskEvent::schema_text()).unwrap();
    let fields = newer["fields"].as_array_mut().unwrap();
    fields.insert(2, json!({"name": "region", "type": "string", "default": ""}));
    let server = fake_registry(7, &newer.to_string()).await;
    let decoder = Decoder::<TaskEvent>::with_registry(Arc::new(Registry::new(&server.uri())));

    let newer_schema = apache_avro::Schema::parse(&newer).unwrap();
    let mut value = apache_avro::to_value(TaskEvent::example()).unwrap();
    let apache_avro::types::Value::Record(entries) = &mut value else {
        panic!("a record")
    };
    entries.insert(
        2,
        ("region".into(), apache_avro::types::Value::String("eu".into())),
    );
    let mut framed = vec![0, 0, 0, 0, 7];
    framed.extend(
        apache_avro::writer::datum::GenericDatumWriter::builder(&newer_schema)
            .build()
            .unwrap()
            .write_value_to_vec(value)
            .unwrap(),
    );
    assert_eq!(decoder.decode(&framed).await.unwrap(), TaskEvent::example());
    assert_eq!(
        decoder.decode_sync_as::<schemas::TaskEventView>(&framed).unwrap(),
        TaskEvent::example().view()
    );
}

#[tokio::test]
async fn a_registry_schema_the_current_type_cannot_read_is_refused_by_name() {
    let mut without_cost: serde_json::Value = serde_json::from_str(TaskEvent::schema_text()).unwrap();
    without_cost["fields"]
        .as_array_mut()
        .unwrap()
        .retain(|f| f["name"] != "cost_micros");
    let server = fake_registry(8, &without_cost.to_string()).await;
    let decoder = Decoder::<TaskEvent>::with_registry(Arc::new(Registry::new(&server.uri())));
    let err = decoder.decode(&[0, 0, 0, 0, 8, 2, 0]).await.unwrap_err();
    assert!(
        matches!(&err, DecodeError::Incompatible { schema_id: 8, message, .. } if message.contains("cost_micros")),
        "{err}"
    );
}
