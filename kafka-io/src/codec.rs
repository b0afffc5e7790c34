//! [`Codecs`]: the one place where the wire format of every topic is chosen from the settings.
//!
//! With `schema_registry.url` set, encoders write the Confluent wire format with the schema
//! registered under the topic, and decoders fetch the writer schemas of Confluent-framed
//! records from the registry; without it, encoders write Avro single-object encoding and
//! decoders read it (and refuse Confluent framing). Every producer and consumer of the
//! pipeline's records builds its encoders and decoders here, so no path can forget the
//! registry.

use std::sync::Arc;

use schemas::codec::{Decoder, Encoder};
use schemas::registry::Registry;
use schemas::AvroRecord;

use crate::Result;

/// Builds encoders and decoders of the configured wire format; one registry client shared by
/// all of them (its caches too).
#[derive(Debug, Clone)]
pub struct Codecs {
    registry: Option<Arc<Registry>>,
}

impl Codecs {
    /// The codecs of `settings` (`schema_registry.url`).
    pub fn from_settings(settings: &settings::SchemaRegistry) -> Codecs {
        Codecs {
            registry: settings.url().map(|url| Arc::new(Registry::new(url))),
        }
    }

    /// Whether a schema registry is configured.
    pub fn has_registry(&self) -> bool {
        self.registry.is_some()
    }

    /// A decoder of `T` records in either wire format the settings allow.
    pub fn decoder<T: AvroRecord>(&self) -> Decoder<T> {
        match &self.registry {
            Some(registry) => Decoder::with_registry(registry.clone()),
            None => Decoder::new(),
        }
    }

    /// An encoder of `T` records for `topic`; with a registry, registers the schema under
    /// `<topic>-value` first (idempotent).
    pub async fn encoder<T: AvroRecord>(&self, topic: &str) -> Result<Encoder<T>> {
        Ok(match &self.registry {
            Some(registry) => Encoder::confluent(registry.register::<T>(topic).await?),
            None => Encoder::single_object(),
        })
    }
}

#[cfg(test)]
mod tests {
    use schemas::codec::{Encoder, CONFLUENT_MAGIC};
    use schemas::{DecodeError, TaskEvent};

    use super::*;

    fn registry(url: Option<&str>) -> settings::SchemaRegistry {
        let env = url
            .map(|u| {
                std::collections::HashMap::from([(
                    "AGENTOPS__SCHEMA_REGISTRY__URL".to_string(),
                    u.to_string(),
                )])
            })
            .unwrap_or_default();
        settings::Settings::load(None, &env).unwrap().schema_registry
    }

    fn confluent_record() -> Vec<u8> {
        let bytes = Encoder::<TaskEvent>::confluent(7)
            .encode(&TaskEvent::example())
            .unwrap();
        assert_eq!(bytes[0], CONFLUENT_MAGIC);
        bytes
    }

    #[test]
    fn with_a_registry_decoders_fetch_confluent_schemas() {
        let codecs = Codecs::from_settings(&registry(Some("http://127.0.0.1:1")));
        assert!(codecs.has_registry());
        let err = codecs
            .decoder::<TaskEvent>()
            .decode_sync(&confluent_record())
            .unwrap_err();
        assert!(
            matches!(err, DecodeError::SchemaNotCached { schema_id: 7 }),
            "the decoder goes to the registry: {err:?}"
        );
        assert!(err.is_retriable());
    }

    #[test]
    fn without_a_registry_decoders_read_single_object_records_and_refuse_confluent_ones() {
        let codecs = Codecs::from_settings(&registry(None));
        assert!(!codecs.has_registry());
        let decoder = codecs.decoder::<TaskEvent>();
        let err = decoder.decode_sync(&confluent_record()).unwrap_err();
        assert!(
            matches!(err, DecodeError::RegistryNotConfigured { schema_id: 7 }),
            "{err:?}"
        );
        let encoder = block_on(codecs.encoder::<TaskEvent>("t")).unwrap();
        let bytes = encoder.encode(&TaskEvent::example()).unwrap();
        assert_eq!(decoder.decode_sync(&bytes).unwrap(), TaskEvent::example());
    }

    /// Runs a future that completes without I/O (no registry configured).
    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }
}
