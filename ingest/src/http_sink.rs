//! The generator's HTTP sink: posts generated records to the gateway in batches of one tenant,
//! with a bounded number of requests in flight (so batches of a series may overtake each other
//! by at most that many requests: seconds of simulated time, well within the aggregator's
//! allowed lateness), retrying what the gateway reports `failed` after its `Retry-After`.
//! Records the gateway rejects (the injected malformed ones) are counted, not retried.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt, TryStreamExt};
use serde_json::Value;

use crate::generator::{Emitted, Record};
use crate::{Error, Result};

/// Counts and request latencies of a run.
#[derive(Debug, Clone, Default)]
pub struct HttpStats {
    /// Events the gateway acknowledged as durable.
    pub accepted: u64,
    /// Records it rejected.
    pub rejected: u64,
    /// Retries after 429/503.
    pub retries: u64,
    /// Request latencies in microseconds.
    pub latencies_us: Vec<u64>,
}

impl HttpStats {
    /// Adds another run's counts and latencies.
    pub fn merge(&mut self, other: HttpStats) {
        self.accepted += other.accepted;
        self.rejected += other.rejected;
        self.retries += other.retries;
        self.latencies_us.extend(other.latencies_us);
    }
}

/// Posts to `POST {base_url}/v1/events` with one API key per tenant.
pub struct HttpSink {
    client: reqwest::Client,
    url: String,
    keys: BTreeMap<String, String>,
    batch: usize,
    in_flight: usize,
}

fn http_err(e: impl std::fmt::Display) -> Error {
    Error::Http(e.to_string())
}

impl HttpSink {
    /// A sink posting batches of `batch` records, at most `in_flight` requests at a time, with
    /// the given tenant -> token keys.
    pub fn new(base_url: &str, keys: BTreeMap<String, String>, batch: usize, in_flight: usize) -> HttpSink {
        HttpSink {
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .expect("http client"),
            url: format!("{}/v1/events", base_url.trim_end_matches('/')),
            keys,
            batch: batch.max(1),
            in_flight: in_flight.max(1),
        }
    }

    /// Sends records: batches per tenant, in order of first record, `in_flight` at a time.
    pub async fn send(&self, records: &[Emitted]) -> Result<HttpStats> {
        let mut by_tenant: BTreeMap<&str, Vec<Vec<u8>>> = BTreeMap::new();
        for e in records {
            let (tenant, json) = match &e.record {
                Record::Event(ev) | Record::Invalid { event: ev, .. } => (
                    ev.tenant_id.as_str(),
                    serde_json::to_vec(ev.as_ref()).expect("events serialize"),
                ),
                Record::Garbage(bytes) => (
                    "",
                    serde_json::to_vec(&String::from_utf8_lossy(bytes)).expect("strings serialize"),
                ),
            };
            // Records without a known tenant go through the first tenant's key (and get rejected).
            let tenant = if self.keys.contains_key(tenant) {
                tenant
            } else {
                self.keys.keys().next().map(String::as_str).unwrap_or("")
            };
            by_tenant.entry(tenant).or_default().push(json);
        }
        let mut batches: Vec<(&str, &[Vec<u8>])> = Vec::new();
        let mut chunked: Vec<_> = by_tenant
            .iter()
            .map(|(t, v)| (*t, v.chunks(self.batch)))
            .collect();
        // Interleave tenants so every tenant progresses at the same pace.
        loop {
            let before = batches.len();
            for (tenant, chunks) in chunked.iter_mut() {
                if let Some(chunk) = chunks.next() {
                    batches.push((tenant, chunk));
                }
            }
            if batches.len() == before {
                break;
            }
        }
        let results: Vec<HttpStats> = stream::iter(batches)
            .map(|(tenant, chunk)| self.post(tenant, chunk))
            .buffered(self.in_flight)
            .try_collect()
            .await?;
        let mut stats = HttpStats::default();
        for s in results {
            stats.merge(s);
        }
        Ok(stats)
    }

    async fn post(&self, tenant: &str, events: &[Vec<u8>]) -> Result<HttpStats> {
        let token = self
            .keys
            .get(tenant)
            .ok_or_else(|| http_err(format!("no API key for tenant {tenant}")))?;
        let mut stats = HttpStats::default();
        let mut pending: Vec<&[u8]> = events.iter().map(Vec::as_slice).collect();
        let mut attempts = 0;
        while !pending.is_empty() {
            let mut body = Vec::with_capacity(pending.iter().map(|e| e.len() + 1).sum::<usize>() + 2);
            body.push(b'[');
            for (i, e) in pending.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(e);
            }
            body.push(b']');
            let started = Instant::now();
            let response = self
                .client
                .post(&self.url)
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .map_err(http_err)?;
            stats.latencies_us.push(started.elapsed().as_micros() as u64);
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let body: Value = response.json().await.map_err(http_err)?;
            let Some(results) = body["results"].as_array() else {
                return Err(http_err(format!("gateway answered {status}: {body}")));
            };
            let mut retry = Vec::new();
            for r in results {
                match r["status"].as_str() {
                    Some("accepted") => stats.accepted += 1,
                    Some("rejected") => stats.rejected += 1,
                    _ => retry.push(pending[r["index"].as_u64().unwrap_or(0) as usize]),
                }
            }
            if !retry.is_empty() {
                attempts += 1;
                if attempts > 20 {
                    return Err(http_err(format!(
                        "{} events still not accepted after 20 retries",
                        retry.len()
                    )));
                }
                stats.retries += 1;
                tokio::time::sleep(Duration::from_secs(retry_after.unwrap_or(1))).await;
            }
            pending = retry;
        }
        Ok(stats)
    }
}
