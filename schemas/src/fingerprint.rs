//! Schema fingerprints of the Avro single-object encoding: the CRC-64-AVRO (Rabin) fingerprint
//! of a schema's **Parsing Canonical Form**, both as the Avro specification defines them
//! (<https://avro.apache.org/docs/1.12.0/specification/#parsing-canonical-form-for-schemas>), so
//! that the Java library, fastavro and any other implementation compute the same 8 bytes.
//!
//! The canonical form is built here, not taken from `apache_avro`: apache-avro 0.22 keeps
//! `{"type":"long"}` for a primitive that carries other attributes (a `timestamp-millis` field)
//! where the specification, after stripping `logicalType`, writes `"long"`. Records written
//! before this module carry that fingerprint ([`legacy_fingerprint`]); readers accept both.

use apache_avro::Schema;
use serde_json::{Map, Value};

/// Primitive type names: a schema object of one of these types is written as the bare name.
const PRIMITIVES: [&str; 8] = [
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];

/// The attributes the canonical form keeps, in the order it writes them ([STRIP], [ORDER]).
const KEPT: [&str; 7] = ["name", "type", "fields", "symbols", "items", "values", "size"];

/// How a primitive with extra attributes (`{"type":"long","logicalType":"..."}`) is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Primitives {
    /// The specification: always the bare name (`"long"`).
    Spec,
    /// What apache-avro 0.22 wrote: the bare name only for an object with no other attribute,
    /// `{"type":"long"}` otherwise.
    Legacy,
}

/// The CRC-64-AVRO fingerprint of `data` (the Avro specification's Rabin fingerprint), as the
/// u64 whose little-endian bytes are the 8 bytes of a single-object header.
pub fn crc64_avro(data: &[u8]) -> u64 {
    data.iter().fold(EMPTY, |fp, &byte| {
        (fp >> 8) ^ TABLE[((fp ^ u64::from(byte)) & 0xff) as usize]
    })
}

const EMPTY: u64 = 0xc15d_213a_a4d7_a795;

const TABLE: [u64; 256] = {
    let mut table = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut fp = i as u64;
        let mut bit = 0;
        while bit < 8 {
            fp = (fp >> 1) ^ (EMPTY & (fp & 1).wrapping_neg());
            bit += 1;
        }
        table[i] = fp;
        i += 1;
    }
    table
};

/// The Parsing Canonical Form of `schema`, as the specification defines it.
pub fn parsing_canonical_form(schema: &Schema) -> String {
    canonical_form(schema, Primitives::Spec)
}

/// The single-object fingerprint of `schema`: CRC-64-AVRO of its Parsing Canonical Form, as the
/// u64 read from the little-endian bytes of the header. What every writer puts in the header.
pub fn fingerprint(schema: &Schema) -> u64 {
    crc64_avro(parsing_canonical_form(schema).as_bytes())
}

/// The fingerprint this project wrote before it followed the specification (apache-avro's
/// canonical form: `{"type":"long"}` for the `timestamp-millis` fields). Topics hold records
/// with it, so readers accept it next to [`fingerprint`]; nothing writes it any more.
pub fn legacy_fingerprint(schema: &Schema) -> u64 {
    crc64_avro(canonical_form(schema, Primitives::Legacy).as_bytes())
}

fn canonical_form(schema: &Schema, primitives: Primitives) -> String {
    let json = serde_json::to_value(schema).expect("a parsed schema serializes to JSON");
    let mut out = String::with_capacity(512);
    let mut writer = Writer {
        primitives,
        defined: Vec::new(),
        out: &mut out,
    };
    writer.schema(&json, "");
    out
}

struct Writer<'a> {
    primitives: Primitives,
    /// Full names of the named types already written: later occurrences are references.
    defined: Vec<String>,
    out: &'a mut String,
}

/// The full name of a named type: `name` as is when it holds a dot, else the namespace
/// attribute's or the enclosing one's namespace in front of it ([FULLNAMES]).
fn full_name(name: &str, namespace: Option<&str>, enclosing: &str) -> String {
    if name.contains('.') {
        return name.to_string();
    }
    match namespace.unwrap_or(enclosing) {
        "" => name.to_string(),
        ns => format!("{ns}.{name}"),
    }
}

/// The namespace part of a full name.
fn namespace_of(full_name: &str) -> &str {
    full_name.rsplit_once('.').map_or("", |(ns, _)| ns)
}

impl Writer<'_> {
    fn string(&mut self, s: &str) {
        // [STRINGS]: no escapes beyond what JSON requires (names and symbols never need any).
        self.out
            .push_str(&serde_json::to_string(s).expect("strings serialize"));
    }

    fn schema(&mut self, schema: &Value, namespace: &str) {
        match schema {
            Value::String(name) => {
                if PRIMITIVES.contains(&name.as_str()) {
                    self.string(name);
                } else {
                    // A reference to a named type ([FULLNAMES]).
                    let name = full_name(name, None, namespace);
                    self.string(&name);
                }
            }
            Value::Array(branches) => {
                self.out.push('[');
                for (i, branch) in branches.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.schema(branch, namespace);
                }
                self.out.push(']');
            }
            Value::Object(object) => self.object(object, namespace),
            // Not a schema: written as JSON so that the fingerprint still depends on it.
            other => self.out.push_str(&other.to_string()),
        }
    }

    fn object(&mut self, object: &Map<String, Value>, namespace: &str) {
        let Some(kind) = object.get("type") else {
            self.out.push_str("{}");
            return;
        };
        let kind_name = kind.as_str().unwrap_or_default();
        if PRIMITIVES.contains(&kind_name) {
            let bare = match self.primitives {
                Primitives::Spec => true,
                Primitives::Legacy => object.len() == 1,
            };
            if bare {
                self.string(kind_name);
            } else {
                self.out.push_str("{\"type\":");
                self.string(kind_name);
                self.out.push('}');
            }
            return;
        }
        let named = matches!(kind_name, "record" | "error" | "enum" | "fixed");
        if !named && !matches!(kind_name, "array" | "map") {
            // `{"type": <schema>}`: the nested schema itself.
            self.schema(kind, namespace);
            return;
        }
        let name = named
            .then(|| object.get("name").and_then(Value::as_str))
            .flatten()
            .map(|name| full_name(name, object.get("namespace").and_then(Value::as_str), namespace));
        if let Some(name) = &name {
            if self.defined.contains(name) {
                self.string(name);
                return;
            }
            self.defined.push(name.clone());
        }
        let inner_namespace = name.as_deref().map_or(namespace, namespace_of).to_string();
        self.out.push('{');
        let mut first = true;
        for key in KEPT {
            let Some(value) = object.get(key) else { continue };
            if key == "name" && name.is_none() {
                continue;
            }
            if !first {
                self.out.push(',');
            }
            first = false;
            self.string(key);
            self.out.push(':');
            match key {
                "name" => {
                    let name = name.as_deref().expect("a name attribute gives a name");
                    self.string(name);
                }
                "type" => self.string(kind_name),
                "fields" => self.fields(value, &inner_namespace),
                "symbols" => self.out.push_str(&value.to_string()),
                "items" | "values" => self.schema(value, &inner_namespace),
                // [INTEGERS]: no quotes, no leading zeros.
                "size" => match value {
                    Value::String(s) => self.out.push_str(
                        &s.trim()
                            .parse::<u64>()
                            .map_or_else(|_| s.clone(), |n| n.to_string()),
                    ),
                    other => self.out.push_str(&other.to_string()),
                },
                _ => unreachable!("only kept attributes"),
            }
        }
        self.out.push('}');
    }

    /// A record's fields: only `name` and `type` are kept.
    fn fields(&mut self, fields: &Value, namespace: &str) {
        let Some(fields) = fields.as_array() else {
            self.out.push_str(&fields.to_string());
            return;
        };
        self.out.push('[');
        for (i, field) in fields.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.out.push('{');
            let mut first = true;
            if let Some(name) = field.get("name") {
                self.out.push_str("\"name\":");
                self.out.push_str(&name.to_string());
                first = false;
            }
            if let Some(kind) = field.get("type") {
                if !first {
                    self.out.push(',');
                }
                self.out.push_str("\"type\":");
                self.schema(kind, namespace);
            }
            self.out.push('}');
        }
        self.out.push(']');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcf(text: &str) -> String {
        parsing_canonical_form(&Schema::parse_str(text).unwrap())
    }

    #[test]
    fn crc64_avro_of_the_empty_input_is_the_empty_fingerprint() {
        assert_eq!(crc64_avro(b""), EMPTY);
    }

    #[test]
    fn primitives_lose_their_attributes_and_the_object_form() {
        assert_eq!(
            pcf(r#"{"type":"long","logicalType":"timestamp-millis"}"#),
            r#""long""#
        );
        assert_eq!(pcf(r#"{"type":"string"}"#), r#""string""#);
        // The fingerprint of "int" as fastavro and the Java library compute it.
        assert_eq!(
            crc64_avro(br#""int""#).to_le_bytes(),
            [0x8f, 0x5c, 0x39, 0x3f, 0x1a, 0xd5, 0x75, 0x72]
        );
    }

    #[test]
    fn names_are_full_attributes_stripped_and_ordered() {
        let text = r#"{"namespace":"a.b","type":"record","doc":"x","name":"R","aliases":["Q"],
            "fields":[{"doc":"d","type":{"type":"enum","name":"E","symbols":["X","Y"]},"name":"e","default":"X"},
                      {"name":"again","type":"E"},
                      {"name":"f","type":{"type":"fixed","size":16,"name":"c.F"}},
                      {"name":"m","type":{"type":"map","values":{"type":"array","items":"int"}}}]}"#;
        assert_eq!(
            pcf(text),
            concat!(
                r#"{"name":"a.b.R","type":"record","fields":["#,
                r#"{"name":"e","type":{"name":"a.b.E","type":"enum","symbols":["X","Y"]}},"#,
                r#"{"name":"again","type":"a.b.E"},"#,
                r#"{"name":"f","type":{"name":"c.F","type":"fixed","size":16}},"#,
                r#"{"name":"m","type":{"type":"map","values":{"type":"array","items":"int"}}}]}"#
            )
        );
    }
}
