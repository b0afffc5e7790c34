use thiserror::Error;

/// Why bytes could not be decoded into an event. Every variant means "poison": the record is
/// dead-lettered with this message, never retried, except [`DecodeError::Registry`] with
/// `retriable == true`.
#[derive(Debug, Error)]
pub enum DecodeError {
    /// Too short to hold any supported header.
    #[error("record too short for a wire-format header ({len} bytes)")]
    TooShort {
        /// Length of the input.
        len: usize,
    },
    /// Starts with neither the single-object marker `C3 01` nor the Confluent magic byte 0.
    #[error("unknown wire format: first bytes {first:02x?} are neither Avro single-object (c3 01) nor Confluent (00)")]
    UnknownFormat {
        /// The first (up to two) bytes.
        first: Vec<u8>,
    },
    /// Single-object encoded with a schema this reader does not know.
    #[error("unknown schema fingerprint {fingerprint:016x} for {record}")]
    UnknownFingerprint {
        /// The CRC-64-AVRO fingerprint in the header.
        fingerprint: u64,
        /// The record the decoder expected.
        record: &'static str,
    },
    /// Confluent-framed, but no schema registry is configured.
    #[error("confluent-framed record (schema id {schema_id}) but no schema registry is configured")]
    RegistryNotConfigured {
        /// The schema id in the frame.
        schema_id: u32,
    },
    /// Confluent-framed with a schema id whose schema is not cached (sync decode only).
    #[error("schema id {schema_id} is not cached yet")]
    SchemaNotCached {
        /// The schema id in the frame.
        schema_id: u32,
    },
    /// The schema registry failed to give the writer schema.
    #[error("schema registry: {message}")]
    Registry {
        /// What the registry client said.
        message: String,
        /// Whether trying again may succeed (network trouble, 5xx).
        retriable: bool,
    },
    /// The writer schema cannot be resolved into the reader schema.
    #[error("writer schema {schema_id} of {record} is not compatible with the reader: {message}")]
    Incompatible {
        /// Registry id of the writer schema.
        schema_id: u32,
        /// The record the decoder expected.
        record: &'static str,
        /// The resolution error.
        message: String,
    },
    /// The Avro body is malformed for the writer schema.
    #[error("malformed avro body: {0}")]
    Avro(String),
}

impl DecodeError {
    /// A short, stable label for metrics and dead-letter headers.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::TooShort { .. } => "too_short",
            DecodeError::UnknownFormat { .. } => "unknown_format",
            DecodeError::UnknownFingerprint { .. } => "unknown_fingerprint",
            DecodeError::RegistryNotConfigured { .. } => "registry_not_configured",
            DecodeError::SchemaNotCached { .. } => "schema_not_cached",
            DecodeError::Registry { .. } => "registry",
            DecodeError::Incompatible { .. } => "incompatible_schema",
            DecodeError::Avro(_) => "malformed_avro",
        }
    }

    /// Whether the same bytes may decode later (only registry trouble).
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            DecodeError::Registry { retriable: true, .. } | DecodeError::SchemaNotCached { .. }
        )
    }
}

/// Why a value could not be encoded.
#[derive(Debug, Error)]
pub enum EncodeError {
    /// The value does not fit its schema (a bug in the caller or the type).
    #[error("avro encoding failed: {0}")]
    Avro(String),
    /// The registry refused or failed to register/look up the schema.
    #[error("schema registry: {message}")]
    Registry {
        /// What the registry client said.
        message: String,
        /// Whether trying again may succeed.
        retriable: bool,
    },
}
