//! A Confluent schema-registry client for the pipeline's records, built on
//! `schema_registry_converter` (registration with the topic-name strategy, lookup by id, both
//! cached by the library).

use apache_avro::Schema;
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{SchemaType, SubjectNameStrategy, SuppliedSchema};

use crate::{AvroRecord, DecodeError, EncodeError};

/// Client of one Confluent-compatible schema registry.
pub struct Registry {
    encoder: AvroEncoder,
    decoder: AvroDecoder,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl Registry {
    /// A client of the registry at `url` (e.g. `http://127.0.0.1:8081`).
    pub fn new(url: &str) -> Registry {
        Registry {
            encoder: AvroEncoder::new(SrSettings::new(url.to_string())),
            decoder: AvroDecoder::new(SrSettings::new(url.to_string())),
        }
    }

    /// Registers the current schema of `T` under the subject `<topic>-value` (idempotent in the
    /// registry) and returns its id, for [`crate::codec::Encoder::confluent`].
    pub async fn register<T: AvroRecord>(&self, topic: &str) -> Result<u32, EncodeError> {
        let supplied = SuppliedSchema::new(
            Some(T::FULL_NAME.to_string()),
            SchemaType::Avro,
            T::schema_text().to_string(),
        );
        let strategy = SubjectNameStrategy::TopicNameStrategyWithSchema(topic.to_string(), false, supplied);
        let subject = format!("{topic}-value");
        let schema = self
            .encoder
            .get_schema_and_id(&subject, strategy)
            .await
            .map_err(|e| EncodeError::Registry {
                retriable: e.retriable,
                message: e.to_string(),
            })?;
        Ok(schema.id)
    }

    /// The writer schema registered under `id`.
    pub async fn schema(&self, id: u32) -> Result<Schema, DecodeError> {
        let schema = self.decoder.get_schema(id).await.map_err(registry_error)?;
        Ok(schema.parsed.clone())
    }
}

fn registry_error(error: SRCError) -> DecodeError {
    DecodeError::Registry {
        retriable: error.retriable,
        message: error.to_string(),
    }
}
