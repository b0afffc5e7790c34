//! Request bodies of `POST /v1/traces` into the official OTLP message
//! ([`ExportTraceServiceRequest`], `opentelemetry-proto`): the media type, `Content-Encoding`
//! (identity or gzip, bounded after decompression), binary protobuf and OTLP/JSON.
//!
//! OTLP/JSON (OTLP specification, "JSON Protobuf Encoding") differs from the protobuf JSON
//! mapping in three ways that the generated serde already follows: trace and span ids are hex
//! strings, enum values are integers, field names are lowerCamelCase. Where the generated serde
//! is stricter than the specification, [`decode_json`] retries once through a small adapter
//! ([`normalize_json`]) instead of refusing a valid request:
//! - 64-bit integers (`startTimeUnixNano`, ...) are written as decimal strings by exporters, but
//!   the protobuf JSON mapping lets a parser accept numbers too: numbers become strings;
//! - a missing `resourceSpans` is an empty request (proto3 defaults);
//! - an empty `AnyValue` (`"value": {}`) is a valid "empty" value: it is dropped.
//!
//! Everything here is pure: bytes in, a message or a [`DecodeError`] out.

use std::borrow::Cow;
use std::io::Read as _;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;
use warp::http::StatusCode;

/// The two encodings of OTLP/HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/x-protobuf`: binary protobuf.
    Protobuf,
    /// `application/json`: OTLP/JSON.
    Json,
}

impl Format {
    /// The media type of this format (requests and responses use the same).
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => "application/x-protobuf",
            Format::Json => "application/json",
        }
    }
}

/// Why a request body cannot be read. Nothing of such a request is published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// `Content-Type` is missing or neither protobuf nor JSON.
    #[error("unsupported Content-Type `{0}`: send application/x-protobuf or application/json")]
    UnsupportedContentType(String),
    /// `Content-Encoding` other than gzip or identity.
    #[error("unsupported Content-Encoding `{0}`: send gzip or identity")]
    UnsupportedEncoding(String),
    /// The body says gzip but is not.
    #[error("body is not valid gzip: {0}")]
    BadGzip(String),
    /// The decompressed body exceeds the limit.
    #[error("decompressed body exceeds {limit} bytes (ingest.max_body_bytes)")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// Not a valid `ExportTraceServiceRequest` in the declared format.
    #[error("malformed {format}: {message}")]
    Malformed {
        /// `protobuf` or `OTLP/JSON`.
        format: &'static str,
        /// The decoder's message.
        message: String,
    },
}

impl DecodeError {
    /// The HTTP status that answers this error (OTLP/HTTP: 400 is not retryable).
    pub fn status(&self) -> StatusCode {
        match self {
            DecodeError::UnsupportedContentType(_) | DecodeError::UnsupportedEncoding(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            DecodeError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            DecodeError::BadGzip(_) | DecodeError::Malformed { .. } => StatusCode::BAD_REQUEST,
        }
    }

    /// A stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::UnsupportedContentType(_) => "unsupported_content_type",
            DecodeError::UnsupportedEncoding(_) => "unsupported_encoding",
            DecodeError::BadGzip(_) => "bad_gzip",
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::Malformed { .. } => "malformed",
        }
    }
}

/// The format named by a `Content-Type` header (parameters such as `charset` are ignored).
pub fn format(content_type: Option<&str>) -> Result<Format, DecodeError> {
    let raw = content_type.unwrap_or("");
    let media = raw.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match media.as_str() {
        "application/x-protobuf" | "application/protobuf" => Ok(Format::Protobuf),
        "application/json" => Ok(Format::Json),
        _ => Err(DecodeError::UnsupportedContentType(raw.to_string())),
    }
}

/// The body after `Content-Encoding`: as is for none or `identity`, inflated for `gzip`, at
/// most `limit` bytes either way.
pub fn decompress<'a>(
    encoding: Option<&str>,
    body: &'a [u8],
    limit: u64,
) -> Result<Cow<'a, [u8]>, DecodeError> {
    let encoding = encoding.map(|e| e.trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("") | Some("identity") => {
            if body.len() as u64 > limit {
                return Err(DecodeError::TooLarge { limit });
            }
            Ok(Cow::Borrowed(body))
        }
        Some("gzip") | Some("x-gzip") => {
            let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit as usize));
            flate2::read::GzDecoder::new(body)
                .take(limit + 1)
                .read_to_end(&mut out)
                .map_err(|e| DecodeError::BadGzip(e.to_string()))?;
            if out.len() as u64 > limit {
                return Err(DecodeError::TooLarge { limit });
            }
            Ok(Cow::Owned(out))
        }
        Some(other) => Err(DecodeError::UnsupportedEncoding(other.to_string())),
    }
}

/// Decodes a request body of the given format.
pub fn decode(format: Format, body: &[u8]) -> Result<ExportTraceServiceRequest, DecodeError> {
    match format {
        Format::Protobuf => ExportTraceServiceRequest::decode(body).map_err(|e| DecodeError::Malformed {
            format: "protobuf",
            message: e.to_string(),
        }),
        Format::Json => decode_json(body),
    }
}

/// OTLP/JSON: the generated serde first, then once more through [`normalize_json`].
pub fn decode_json(body: &[u8]) -> Result<ExportTraceServiceRequest, DecodeError> {
    let malformed = |e: serde_json::Error| DecodeError::Malformed {
        format: "OTLP/JSON",
        message: e.to_string(),
    };
    match serde_json::from_slice(body) {
        Ok(request) => Ok(request),
        Err(first) => {
            // Not JSON at all: the first error is the one to report.
            let mut value: serde_json::Value = serde_json::from_slice(body).map_err(|_| malformed(first))?;
            if !value.is_object() {
                return Err(DecodeError::Malformed {
                    format: "OTLP/JSON",
                    message: "body must be a JSON object (ExportTraceServiceRequest)".into(),
                });
            }
            normalize_json(&mut value);
            serde_json::from_value(value).map_err(malformed)
        }
    }
}

/// Fields of type `fixed64`/`uint64`/`int64` in trace requests outside `AnyValue`.
const INT64_FIELDS: [&str; 3] = ["startTimeUnixNano", "endTimeUnixNano", "timeUnixNano"];

/// Rewrites what the specification allows and the generated serde refuses (see the module
/// documentation); everything else is left for the generated serde to judge.
pub fn normalize_json(value: &mut serde_json::Value) {
    use serde_json::Value;
    if let Value::Object(root) = value {
        root.entry("resourceSpans")
            .or_insert_with(|| Value::Array(Vec::new()));
    }
    fn walk(value: &mut Value) {
        match value {
            Value::Object(map) => {
                for key in INT64_FIELDS {
                    if let Some(v) = map.get_mut(key) {
                        if let Value::Number(n) = v {
                            *v = Value::String(n.to_string());
                        }
                    }
                }
                if map
                    .get("value")
                    .is_some_and(|v| v.as_object().is_some_and(|o| o.is_empty()))
                {
                    map.remove("value");
                }
                map.values_mut().for_each(walk);
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(value);
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn media_types_and_their_parameters() {
        assert_eq!(format(Some("application/x-protobuf")), Ok(Format::Protobuf));
        assert_eq!(format(Some("Application/JSON; charset=utf-8")), Ok(Format::Json));
        assert!(matches!(
            format(None),
            Err(DecodeError::UnsupportedContentType(_))
        ));
        assert_eq!(
            format(Some("text/json")).unwrap_err().status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
    }

    #[test]
    fn gzip_is_bounded_at_the_exact_limit() {
        let body = vec![b'a'; 100];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&body).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(
            decompress(Some("gzip"), &gz, 100).unwrap().as_ref(),
            body.as_slice()
        );
        assert_eq!(
            decompress(Some("gzip"), &gz, 99).unwrap_err(),
            DecodeError::TooLarge { limit: 99 }
        );
        assert_eq!(decompress(None, &body, 100).unwrap().len(), 100);
        assert_eq!(
            decompress(Some("identity"), &body, 99).unwrap_err().status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert!(matches!(
            decompress(Some("gzip"), &body, 1000),
            Err(DecodeError::BadGzip(_))
        ));
        assert!(matches!(
            decompress(Some("zstd"), &body, 1000),
            Err(DecodeError::UnsupportedEncoding(_))
        ));
    }

    #[test]
    fn the_adapter_turns_numbers_into_strings_and_drops_empty_values() {
        let mut v = serde_json::json!({"resourceSpans": [{"scopeSpans": [{"spans": [{
            "startTimeUnixNano": 5, "endTimeUnixNano": "6",
            "attributes": [{"key": "a", "value": {}}, {"key": "b", "value": {"intValue": 3}}],
            "events": [{"timeUnixNano": 7}]
        }]}]}]});
        normalize_json(&mut v);
        let span = &v["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(span["startTimeUnixNano"], "5");
        assert_eq!(span["endTimeUnixNano"], "6");
        assert_eq!(span["events"][0]["timeUnixNano"], "7");
        assert!(span["attributes"][0].get("value").is_none());
        assert_eq!(
            span["attributes"][1]["value"]["intValue"], 3,
            "AnyValue ints are read as is"
        );
        let request = decode_json(serde_json::to_vec(&v).unwrap().as_slice()).unwrap();
        assert_eq!(
            request.resource_spans[0].scope_spans[0].spans[0].start_time_unix_nano,
            5
        );
        assert!(decode_json(b"{}").unwrap().resource_spans.is_empty());
    }

    #[test]
    fn malformed_bodies_name_the_format() {
        let e = decode(Format::Protobuf, &[0xff]).unwrap_err();
        assert_eq!((e.status(), e.reason()), (StatusCode::BAD_REQUEST, "malformed"));
        assert!(e.to_string().starts_with("malformed protobuf"));
        let e = decode(Format::Json, b"not json").unwrap_err();
        assert!(e.to_string().starts_with("malformed OTLP/JSON"));
        let e = decode(Format::Json, br#"{"resourceSpans": 3}"#).unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    }
}
