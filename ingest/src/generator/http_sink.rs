//! The generator's HTTP sink: posts generated records to the gateway in batches of one tenant,
//! retrying what the gateway reports `failed` after its `Retry-After`. Records the gateway
//! rejects (the injected malformed ones) are counted, not retried.
//!
//! Order matters: the aggregator's watermark is the largest event time it has seen per
//! partition, and anything more than the allowed lateness behind it is diverted as late. The
//! generator compresses days into seconds, so requests that overtake each other can reorder
//! minutes or hours of simulated time. The sink therefore sends in **slices** of arrival time:
//! the records of one slice (at most `max_skew_ms` of simulated time, at most `batch x
//! in_flight` records) go concurrently, and a slice starts only when the previous one is
//! acknowledged. The reordering this adds is bounded by `max_skew_ms`, which must stay below
//! the allowed lateness minus the generator's own late-arrival delays.

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
    max_skew_ms: i64,
}

/// Default [`HttpSink::with_max_skew_ms`]: 50 s, which with the generator's late arrivals
/// (up to 240 s after completion) stays inside the aggregator's default allowed lateness (300 s).
pub const DEFAULT_MAX_SKEW_MS: i64 = 50_000;

/// Consecutive ranges of `arrivals` (sorted) of at most `max_records` records spanning at most
/// `max_skew_ms` each (a single record always makes a slice). `max_skew_ms <= 0`: no bound.
pub fn slices(arrivals: &[i64], max_records: usize, max_skew_ms: i64) -> Vec<std::ops::Range<usize>> {
    let max_records = max_records.max(1);
    let mut out = Vec::new();
    let mut start = 0;
    while start < arrivals.len() {
        let first = arrivals[start];
        let mut end = start + 1;
        while end < arrivals.len()
            && end - start < max_records
            && (max_skew_ms <= 0 || arrivals[end] - first <= max_skew_ms)
        {
            end += 1;
        }
        out.push(start..end);
        start = end;
    }
    out
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
            max_skew_ms: DEFAULT_MAX_SKEW_MS,
        }
    }

    /// Bounds the simulated time one slice of concurrent requests spans (`<= 0`: unbounded,
    /// for throughput benchmarks that do not care about lateness).
    pub fn with_max_skew_ms(mut self, max_skew_ms: i64) -> HttpSink {
        self.max_skew_ms = max_skew_ms;
        self
    }

    /// Sends records in slices of arrival time (see the module docs), one slice at a time.
    pub async fn send(&self, records: &[Emitted]) -> Result<HttpStats> {
        let mut ordered: Vec<&Emitted> = records.iter().collect();
        ordered.sort_by_key(|e| e.arrival_ms);
        let arrivals: Vec<i64> = ordered.iter().map(|e| e.arrival_ms).collect();
        let mut stats = HttpStats::default();
        for range in slices(&arrivals, self.batch * self.in_flight, self.max_skew_ms) {
            stats.merge(self.send_slice(&ordered[range]).await?);
        }
        Ok(stats)
    }

    /// Sends one slice: batches per tenant, `in_flight` at a time.
    async fn send_slice(&self, records: &[&Emitted]) -> Result<HttpStats> {
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn slices_are_bounded_by_skew_and_size() {
        let a = [0, 10, 20, 50, 51, 52, 53, 200];
        assert_eq!(slices(&a, 10, 25), vec![0..3, 3..7, 7..8]);
        assert_eq!(slices(&a, 2, 25), vec![0..2, 2..3, 3..5, 5..7, 7..8]);
        assert_eq!(slices(&a, 100, 0), vec![0..8], "unbounded skew");
        assert!(slices(&[], 10, 25).is_empty());
    }

    proptest! {
        #[test]
        fn slices_cover_everything_in_order(
            mut a in proptest::collection::vec(0i64..10_000, 0..200),
            max in 1usize..20,
            skew in 0i64..500,
        ) {
            a.sort_unstable();
            let s = slices(&a, max, skew);
            let mut next = 0;
            for r in &s {
                prop_assert_eq!(r.start, next);
                prop_assert!(r.end > r.start && r.len() <= max);
                prop_assert!(skew == 0 || r.len() == 1 || a[r.end - 1] - a[r.start] <= skew);
                next = r.end;
            }
            prop_assert_eq!(next, a.len());
        }
    }
}
