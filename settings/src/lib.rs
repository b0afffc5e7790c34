//! The one typed configuration used by every service.
//!
//! Values come from three layers, later ones win:
//! 1. the embedded defaults (`src/default.toml`),
//! 2. an optional TOML file (`--config path`),
//! 3. environment variables `AGENTOPS__<SECTION>__<KEY>` (e.g. `AGENTOPS__KAFKA__BROKERS`,
//!    `AGENTOPS__KAFKA__TOPICS__TASK_EVENTS`); values are read as TOML scalars when they parse
//!    as such (`6000`, `true`) and as strings otherwise.
//!
//! Loading is pure ([`Settings::load`] takes the file text and the environment as a map) and
//! fails with one [`Error`] that names the key and what is wrong with it. Unknown keys are
//! errors too, so a typo never passes silently. Secrets are [`Secret`]s: masked when printed.
//!
//! A service binary's command line is a [`Cli`]: `--config` ([`ConfigArgs`]) and the binary's
//! own subcommands, parsed with [`cli!`] (which names the binary in `--help` and `--version`).
//!
//! ```
//! use std::collections::HashMap;
//! let env = HashMap::from([("AGENTOPS__KAFKA__BROKERS".to_string(), "kafka:9092".to_string())]);
//! let settings = settings::Settings::load(None, &env).unwrap();
//! assert_eq!(settings.kafka.brokers, "kafka:9092");
//! ```
#![deny(missing_docs)]

mod alerter;
mod assignment;
mod cli;
mod secret;
mod sections;

use std::collections::HashMap;

pub use alerter::{Alerter, PagerDuty, Webhook, MIN_WEBHOOK_SECRET_BYTES};
pub use assignment::Assignment;
pub use cli::{Cli, ConfigArgs};
pub use secret::Secret;
pub use sections::*;

/// Prefix of the environment variables that override settings.
pub const ENV_PREFIX: &str = "AGENTOPS__";
const DEFAULTS: &str = include_str!("default.toml");

/// A configuration problem; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file (or an environment value) is not valid TOML.
    #[error("config {source_name}: {message}")]
    Syntax {
        /// Where the bad text came from (file name or variable).
        source_name: String,
        /// The parser's message.
        message: String,
    },
    /// A key has a value of the wrong type, is unknown, or is missing.
    #[error("config key `{key}`: {message}")]
    Key {
        /// Dotted path of the key, e.g. `kafka.session_timeout_ms`.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A value parses but is not acceptable.
    #[error("config key `{key}`: {message}")]
    Invalid {
        /// Dotted path of the key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The config file could not be read.
    #[error("config file {path}: {message}")]
    Read {
        /// The path given.
        path: String,
        /// The I/O error.
        message: String,
    },
}

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Settings {
    /// Loads the defaults, then `file` (name and TOML text) if given, then the overrides in
    /// `env` (only keys starting with [`ENV_PREFIX`] are read), then validates.
    pub fn load(file: Option<(&str, &str)>, env: &HashMap<String, String>) -> Result<Settings> {
        let mut root: toml::Table = DEFAULTS.parse().expect("embedded default.toml parses");
        if let Some((name, text)) = file {
            let table: toml::Table = text.parse().map_err(|e: toml::de::Error| Error::Syntax {
                source_name: name.to_string(),
                message: e.message().to_string(),
            })?;
            merge(&mut root, table);
        }
        let mut vars: Vec<_> = env.iter().filter(|(k, _)| k.starts_with(ENV_PREFIX)).collect();
        vars.sort();
        for (name, value) in vars {
            let path: Vec<String> = name[ENV_PREFIX.len()..]
                .split("__")
                .map(|s| s.to_ascii_lowercase())
                .collect();
            set_path(&mut root, &path, env_value(value)).map_err(|message| Error::Key {
                key: path.join("."),
                message: format!("from {name}: {message}"),
            })?;
        }
        let settings: Settings = serde_path_to_error::deserialize(toml::Value::Table(root)).map_err(|e| {
            let key = e.path().to_string();
            Error::Key {
                key,
                message: e.into_inner().message().to_string(),
            }
        })?;
        settings.validate()?;
        Ok(settings)
    }

    /// Loads from an optional file path and the process environment.
    pub fn from_file_and_env(path: Option<&std::path::Path>) -> Result<Settings> {
        let text = match path {
            Some(p) => Some(std::fs::read_to_string(p).map_err(|e| Error::Read {
                path: p.display().to_string(),
                message: e.to_string(),
            })?),
            None => None,
        };
        let name = path.map(|p| p.display().to_string()).unwrap_or_default();
        let env: HashMap<String, String> = std::env::vars().collect();
        Settings::load(text.as_deref().map(|t| (name.as_str(), t)), &env)
    }
}

/// An environment value: a TOML scalar or array if it parses as one, else a string.
fn env_value(raw: &str) -> toml::Value {
    let doc = format!("v = {raw}");
    match doc.parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn set_path(root: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty key")?;
    let mut table = root;
    for part in parents {
        table = match table
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(Default::default()))
        {
            toml::Value::Table(t) => t,
            _ => return Err(format!("`{part}` is not a section")),
        };
    }
    // A string-typed default keeps string values even when they look like numbers
    // (e.g. a topic named `2024`).
    let value = match (table.get(last), value) {
        (Some(toml::Value::String(_)), v) if !v.is_str() => toml::Value::String(scalar_text(&v)),
        (_, v) => v,
    };
    table.insert(last.clone(), value);
    Ok(())
}

fn scalar_text(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
