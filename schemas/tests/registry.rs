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
