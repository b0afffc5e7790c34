//! The two wire formats, both real standards:
//!
//! - **Avro single-object encoding** (Avro spec): `C3 01`, the 8-byte little-endian
//!   CRC-64-AVRO (Rabin) fingerprint of the writer schema's Parsing Canonical Form
//!   ([`crate::fingerprint`]), then the Avro binary body. Used when no schema registry is
//!   configured: the fingerprint names the writer schema, which every reader knows from `avro/`.
//!   Readers also accept the fingerprints this project wrote before it followed the
//!   specification ([`legacy_fingerprint`]).
//! - **Confluent wire format**: magic byte `0`, the 4-byte big-endian registry schema id, then
//!   the Avro binary body. Used when a schema registry is configured.
//!
//! [`Decoder`] accepts both and rejects anything else with a typed [`DecodeError`]. Data written
//! with an older schema version is resolved into the current type (BACKWARD compatibility).

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, RwLock};

#[cfg(feature = "registry")]
use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;

pub use crate::fingerprint::{fingerprint, legacy_fingerprint, parsing_canonical_form};
use crate::{AvroRecord, DecodeError, EncodeError};

/// First two bytes of an Avro single-object encoded record.
pub const SINGLE_OBJECT_MARKER: [u8; 2] = [0xC3, 0x01];
/// Length of the single-object header (marker + fingerprint).
pub const SINGLE_OBJECT_HEADER_LEN: usize = 10;
/// Magic byte of the Confluent wire format.
pub const CONFLUENT_MAGIC: u8 = 0;
/// Length of the Confluent header (magic + schema id).
pub const CONFLUENT_HEADER_LEN: usize = 5;

/// The header found at the front of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Avro single-object encoding.
    SingleObject {
        /// CRC-64-AVRO fingerprint of the writer schema.
        fingerprint: u64,
        /// The Avro body.
        body: &'a [u8],
    },
    /// Confluent wire format.
    Confluent {
        /// Registry id of the writer schema.
        schema_id: u32,
        /// The Avro body.
        body: &'a [u8],
    },
}

impl<'a> Frame<'a> {
    /// Reads the header of `bytes`; anything that is neither format is an error.
    pub fn parse(bytes: &'a [u8]) -> Result<Frame<'a>, DecodeError> {
        match bytes {
            [0xC3, 0x01, ..] => {
                if bytes.len() < SINGLE_OBJECT_HEADER_LEN {
                    return Err(DecodeError::TooShort { len: bytes.len() });
                }
                let fingerprint = u64::from_le_bytes(bytes[2..10].try_into().expect("8 bytes"));
                Ok(Frame::SingleObject {
                    fingerprint,
                    body: &bytes[SINGLE_OBJECT_HEADER_LEN..],
                })
            }
            [CONFLUENT_MAGIC, ..] => {
                if bytes.len() < CONFLUENT_HEADER_LEN {
                    return Err(DecodeError::TooShort { len: bytes.len() });
                }
                let schema_id = u32::from_be_bytes(bytes[1..5].try_into().expect("4 bytes"));
                Ok(Frame::Confluent {
                    schema_id,
                    body: &bytes[CONFLUENT_HEADER_LEN..],
                })
            }
            [] | [0xC3] => Err(DecodeError::TooShort { len: bytes.len() }),
            _ => Err(DecodeError::UnknownFormat {
                first: bytes[..bytes.len().min(2)].to_vec(),
            }),
        }
    }
}

/// Encodes values of `T` in one wire format. Build once, encode many: the schema is resolved
/// once and the header precomputed.
pub struct Encoder<T: AvroRecord> {
    writer: GenericDatumWriter<'static>,
    header: Vec<u8>,
    _type: PhantomData<fn(&T)>,
}

impl<T: AvroRecord> Encoder<T> {
    fn with_header(header: Vec<u8>) -> Self {
        let writer = GenericDatumWriter::builder(T::schema())
            .build()
            .expect("embedded schema resolves");
        Encoder {
            writer,
            header,
            _type: PhantomData,
        }
    }

    /// An encoder for Avro single-object encoding with the current schema.
    pub fn single_object() -> Self {
        let mut header = SINGLE_OBJECT_MARKER.to_vec();
        header.extend_from_slice(&fingerprint(T::schema()).to_le_bytes());
        Self::with_header(header)
    }

    /// An encoder for the Confluent wire format, with the registry id of the current schema
    /// (see `registry::Registry::register`).
    pub fn confluent(schema_id: u32) -> Self {
        let mut header = vec![CONFLUENT_MAGIC];
        header.extend_from_slice(&schema_id.to_be_bytes());
        Self::with_header(header)
    }

    /// Appends the encoded record (header + body) to `out`.
    pub fn encode_into(&self, value: &T, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.extend_from_slice(&self.header);
        self.writer
            .write_ser(out, value)
            .map(|_| ())
            .map_err(|e| EncodeError::Avro(e.to_string()))
    }

    /// The encoded record (header + body).
    pub fn encode(&self, value: &T) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(self.header.len() + 128);
        self.encode_into(value, &mut out)?;
        Ok(out)
    }
}

/// Encodes one value in Avro single-object encoding (builds an [`Encoder`] each call: use one
/// encoder for many values).
pub fn encode_single_object<T: AvroRecord>(value: &T) -> Result<Vec<u8>, EncodeError> {
    Encoder::<T>::single_object().encode(value)
}

/// A writer schema prepared for decoding (`serde_avro_fast` walks a precomputed graph).
type WriterSchema = Arc<serde_avro_fast::Schema>;

/// Prepares a writer schema for `serde_avro_fast`: its JSON form, parsed once.
fn prepare(schema: &Schema) -> Result<WriterSchema, String> {
    let json = serde_json::to_string(schema).map_err(|e| e.to_string())?;
    json.parse::<serde_avro_fast::Schema>()
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

/// Decodes records of `T` in either wire format, resolving older writer schemas into the
/// current one.
///
/// Decoding is serde-native (`serde_avro_fast`): the writer schema drives the reading and the
/// target type's serde derive does the resolution (a field the writer lacks takes its serde
/// default, a field the reader lacks is skipped). That is why a target may also be a view
/// that borrows its strings from the record bytes ([`Decoder::decode_sync_as`]). Whether a
/// foreign writer schema can be read at all is checked once, with Avro's schema-resolution
/// rules, before its first record is decoded.
pub struct Decoder<T: AvroRecord> {
    /// One per known writer schema (`T::writer_schemas()`), by index.
    known: Vec<WriterSchema>,
    /// Fingerprints of the known writer schemas and the index of each: the specification's
    /// and the legacy one per schema (a handful: scanned, not hashed).
    fingerprints: Vec<(u64, usize)>,
    by_schema_id: RwLock<HashMap<u32, WriterSchema>>,
    #[cfg(feature = "registry")]
    registry: Option<Arc<crate::registry::Registry>>,
    _type: PhantomData<fn() -> T>,
}

impl<T: AvroRecord> Default for Decoder<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: AvroRecord> Decoder<T> {
    /// A decoder without a schema registry: it decodes single-object records of every known
    /// schema version and rejects Confluent-framed ones.
    pub fn new() -> Self {
        let writers = T::writer_schemas();
        Decoder {
            known: writers
                .iter()
                .map(|writer| prepare(writer).expect("embedded schemas are valid Avro"))
                .collect(),
            fingerprints: writers
                .iter()
                .enumerate()
                .flat_map(|(index, writer)| {
                    [(fingerprint(writer), index), (legacy_fingerprint(writer), index)]
                })
                .collect(),
            by_schema_id: RwLock::new(HashMap::new()),
            #[cfg(feature = "registry")]
            registry: None,
            _type: PhantomData,
        }
    }

    /// A decoder that also decodes Confluent-framed records, fetching unknown schema ids from
    /// `registry`.
    #[cfg(feature = "registry")]
    pub fn with_registry(registry: Arc<crate::registry::Registry>) -> Self {
        let mut decoder = Self::new();
        decoder.registry = Some(registry);
        decoder
    }

    /// Decodes without any I/O. A Confluent-framed record whose schema id was not fetched yet
    /// gives [`DecodeError::SchemaNotCached`] (use [`Decoder::decode`] to fetch it).
    pub fn decode_sync(&self, bytes: &[u8]) -> Result<T, DecodeError> {
        self.decode_sync_as(bytes)
    }

    /// [`Decoder::decode_sync`] into another serde type of the same record, typically a view
    /// that borrows its strings from `bytes` (e.g. [`crate::task_event::TaskEventView`]), so
    /// that decoding allocates nothing.
    pub fn decode_sync_as<'a, V: serde::Deserialize<'a>>(&self, bytes: &'a [u8]) -> Result<V, DecodeError> {
        let (schema, body) = match Frame::parse(bytes)? {
            Frame::SingleObject { fingerprint, body } => match self.known_index(fingerprint) {
                Some(index) => (self.known[index].clone(), body),
                None => {
                    return Err(DecodeError::UnknownFingerprint {
                        fingerprint,
                        record: T::FULL_NAME,
                    })
                }
            },
            Frame::Confluent { schema_id, body } => {
                if !self.has_registry() {
                    return Err(DecodeError::RegistryNotConfigured { schema_id });
                }
                let cached = self
                    .by_schema_id
                    .read()
                    .expect("cache lock")
                    .get(&schema_id)
                    .cloned();
                match cached {
                    Some(schema) => (schema, body),
                    None => return Err(DecodeError::SchemaNotCached { schema_id }),
                }
            }
        };
        serde_avro_fast::from_datum_slice(body, &schema).map_err(|e| DecodeError::Avro(e.to_string()))
    }

    fn known_index(&self, fingerprint: u64) -> Option<usize> {
        self.fingerprints
            .iter()
            .find(|(known, _)| *known == fingerprint)
            .map(|(_, index)| *index)
    }

    fn has_registry(&self) -> bool {
        #[cfg(feature = "registry")]
        {
            self.registry.is_some()
        }
        #[cfg(not(feature = "registry"))]
        {
            false
        }
    }

    /// Decodes, fetching the writer schema of an unseen Confluent schema id from the registry
    /// first (once per id).
    #[cfg(feature = "registry")]
    pub async fn decode(&self, bytes: &[u8]) -> Result<T, DecodeError> {
        self.decode_as(bytes).await
    }

    /// [`Decoder::decode`] into another serde type of the same record (see
    /// [`Decoder::decode_sync_as`]).
    #[cfg(feature = "registry")]
    pub async fn decode_as<'a, V: serde::Deserialize<'a>>(&self, bytes: &'a [u8]) -> Result<V, DecodeError> {
        match self.decode_sync_as(bytes) {
            Err(DecodeError::SchemaNotCached { schema_id }) => {
                let registry = self.registry.as_ref().expect("checked by decode_sync");
                let writer = registry.schema(schema_id).await?;
                let prepared = match self.known_index(fingerprint(&writer)) {
                    Some(index) => self.known[index].clone(),
                    None => {
                        let incompatible = |message: String| DecodeError::Incompatible {
                            schema_id,
                            record: T::FULL_NAME,
                            message,
                        };
                        SchemaCompatibility::can_read(&writer, T::schema())
                            .map_err(|e| incompatible(e.to_string()))?;
                        prepare(&writer).map_err(incompatible)?
                    }
                };
                self.by_schema_id
                    .write()
                    .expect("cache lock")
                    .insert(schema_id, prepared);
                self.decode_sync_as(bytes)
            }
            other => other,
        }
    }
}
