//! Where a ScyllaDB store is and how it may be used: [`ScyllaConfig`], parsed from the store URL.

use crate::{Error, Result};

/// How to reach and use a ScyllaDB cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScyllaConfig {
    /// Contact points, `host:port`.
    pub nodes: Vec<String>,
    /// Keyspace (created if missing).
    pub keyspace: String,
    /// Replication factor of a created keyspace (`NetworkTopologyStrategy`).
    pub replication_factor: u32,
    /// Use lightweight transactions for checkpoint fencing.
    pub lwt: bool,
    /// Wait for schema agreement after DDL (real clusters: yes).
    pub schema_agreement: bool,
    /// The server runs `ALTER TABLE` (real clusters: yes). `false` only for the in-memory CQL
    /// test server, which has none: migrations then fold added columns into `CREATE TABLE`.
    pub alter_table: bool,
}

impl ScyllaConfig {
    /// Parses
    /// `scylla://host:port[,host:port]/keyspace[?replication_factor=N&lwt=B&schema_agreement=B&alter_table=B]`.
    pub fn from_url(url: &str) -> Result<ScyllaConfig> {
        let bad = |message: &str| Error::BadUrl {
            url: url.to_string(),
            message: message.to_string(),
        };
        let rest = url
            .strip_prefix("scylla://")
            .ok_or_else(|| bad("expected scylla://"))?;
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (hosts, keyspace) = rest.split_once('/').ok_or_else(|| bad("missing /<keyspace>"))?;
        let nodes: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(String::from)
            .collect();
        if nodes.is_empty() {
            return Err(bad("no hosts"));
        }
        if keyspace.is_empty() || !keyspace.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(bad("keyspace must be non-empty [A-Za-z0-9_]"));
        }
        let mut config = ScyllaConfig {
            nodes,
            keyspace: keyspace.to_string(),
            replication_factor: 3,
            lwt: true,
            schema_agreement: true,
            alter_table: true,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| bad("query parameters are key=value"))?;
            let flag = || {
                value
                    .parse::<bool>()
                    .map_err(|_| bad(&format!("{key} must be true or false")))
            };
            match key {
                "replication_factor" => {
                    config.replication_factor = value
                        .parse()
                        .map_err(|_| bad("replication_factor must be a positive integer"))?
                }
                "lwt" => config.lwt = flag()?,
                "schema_agreement" => config.schema_agreement = flag()?,
                "alter_table" => config.alter_table = flag()?,
                other => return Err(bad(&format!("unknown parameter `{other}`"))),
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let c =
            ScyllaConfig::from_url("scylla://a:9042,b:9042/agentops?replication_factor=1&lwt=false").unwrap();
        assert_eq!(c.nodes, vec!["a:9042", "b:9042"]);
        assert_eq!(c.keyspace, "agentops");
        assert_eq!(c.replication_factor, 1);
        assert!(!c.lwt && c.schema_agreement && c.alter_table);
        let double = ScyllaConfig::from_url("scylla://a/ks?alter_table=false").unwrap();
        assert!(!double.alter_table && double.lwt);
        for bad in [
            "scylla://a:9042",
            "scylla:///ks",
            "scylla://a/ks?x=1",
            "scylla://a/k-s",
            "scylla://a/ks?lwt=maybe",
            "scylla://a/ks?alter_table=no",
        ] {
            assert!(ScyllaConfig::from_url(bad).is_err(), "{bad}");
        }
    }
}
