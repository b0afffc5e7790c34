//! The workload generator: realistic, labelled task events in simulated time, deterministic
//! from a seed. Pure: no clock, no I/O; callers write the batches wherever they want.
//!
//! Model, per series (tenant x agent), all parameters drawn from the seed:
//! - **volume**: a Poisson process per hour whose rate follows a diurnal curve in the tenant's
//!   time zone (peak mid-afternoon) and a weekly one (weekends quieter);
//! - **latency**: log-normal with a per-series median and spread, plus a heavy Pareto tail on
//!   about 1% of the tasks;
//! - **outcome**: per-agent success, cancel and human-intervention probabilities;
//! - **cost**: from the model's per-token prices and log-normal token counts (integer micro-USD);
//! - **defects** at configurable rates: duplicates (a producer retry: same `event_id`, arriving
//!   seconds later), late arrivals (within the aggregator's allowed lateness) and very late ones
//!   (beyond it), and malformed records (invalid fields or bytes that are not an event);
//! - **incidents** on every series except the control agents, labelled with their series, kind
//!   and interval: latency regression, success-rate drop, intervention surge, cost spike, slow
//!   latency drift, traffic outage.
//!
//! Every (series, hour) has its own random stream, so the output is identical whatever the
//! number of threads; batches come out per simulated hour in arrival order.
//!
//! Layout: `config.rs` ([`GenConfig`] and its checks), this module (the model and the
//! [`Generator`]); the generator's sinks: [`KafkaSink`] (the task-events topic, through the one
//! [`crate::producer::TaskEventProducer`]) and [`http_sink`] (the gateway). The data set on disk
//! is [`crate::dataset`].

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal, Pareto, Poisson};
use rand_pcg::Pcg64Mcg;
use rayon::prelude::*;
use schemas::time::{day_of_ms, DAY_MS};
use schemas::{TaskEvent, TaskStatus};
use serde::{Deserialize, Serialize};

mod config;
pub mod http_sink;
mod kafka_sink;

pub use config::{ConfigError, GenConfig};
pub use kafka_sink::KafkaSink;

/// Milliseconds in an hour.
pub const HOUR_MS: i64 = 3_600_000;

/// The kinds of injected incidents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentKind {
    /// Latency multiplied by `magnitude`.
    LatencyRegression,
    /// Success probability lowered by `magnitude` (the difference fails).
    SuccessRateDrop,
    /// Intervention probability raised by `magnitude`.
    InterventionSurge,
    /// Cost multiplied by `magnitude`.
    CostSpike,
    /// Latency growing linearly to `magnitude` times over the interval.
    SlowDrift,
    /// Volume reduced by the share `magnitude`.
    TrafficOutage,
}

impl IncidentKind {
    /// Every kind, in the order they are assigned to series.
    pub const ALL: [IncidentKind; 6] = [
        IncidentKind::LatencyRegression,
        IncidentKind::SuccessRateDrop,
        IncidentKind::InterventionSurge,
        IncidentKind::CostSpike,
        IncidentKind::SlowDrift,
        IncidentKind::TrafficOutage,
    ];

    /// (minimum, maximum) duration in ms and the magnitude.
    fn shape(self) -> (i64, i64, f64) {
        match self {
            IncidentKind::LatencyRegression => (2 * HOUR_MS, 6 * HOUR_MS, 3.0),
            IncidentKind::SuccessRateDrop => (HOUR_MS, 4 * HOUR_MS, 0.35),
            IncidentKind::InterventionSurge => (2 * HOUR_MS, 6 * HOUR_MS, 0.35),
            IncidentKind::CostSpike => (HOUR_MS, 3 * HOUR_MS, 4.0),
            IncidentKind::SlowDrift => (2 * DAY_MS, 3 * DAY_MS, 2.5),
            IncidentKind::TrafficOutage => (HOUR_MS, 3 * HOUR_MS, 0.97),
        }
    }
}

/// An injected incident: the label a detector is judged against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// Tenant of the affected series.
    pub tenant_id: String,
    /// Agent of the affected series.
    pub agent_id: String,
    /// What goes wrong.
    pub kind: IncidentKind,
    /// Start (epoch ms, inclusive).
    pub start_ms: i64,
    /// End (epoch ms, exclusive).
    pub end_ms: i64,
    /// Size of the effect (see [`IncidentKind`]).
    pub magnitude: f64,
}

/// One record of the generated stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A valid event (or a duplicate of one). Boxed: records are moved around a lot.
    Event(Box<TaskEvent>),
    /// An event with an invalid field: must be rejected, never counted.
    Invalid {
        /// The event.
        event: Box<TaskEvent>,
        /// Which defect it carries.
        defect: &'static str,
    },
    /// Bytes that are not an event at all.
    Garbage(Vec<u8>),
}

/// A record and when it reaches the pipeline (simulated epoch ms).
#[derive(Debug, Clone, PartialEq)]
pub struct Emitted {
    /// Arrival time; equal to `completed_at` for on-time events.
    pub arrival_ms: i64,
    /// The record.
    pub record: Record,
}

/// A model the agents use, with prices in micro-USD per token.
struct Model {
    name: &'static str,
    input_price: f64,
    output_price: f64,
}

const MODELS: [Model; 4] = [
    Model {
        name: "gpt-4o-mini",
        input_price: 0.15,
        output_price: 0.6,
    },
    Model {
        name: "gpt-4o",
        input_price: 2.5,
        output_price: 10.0,
    },
    Model {
        name: "claude-sonnet-4",
        input_price: 3.0,
        output_price: 15.0,
    },
    Model {
        name: "llama-3.1-70b",
        input_price: 0.6,
        output_price: 0.6,
    },
];

const TENANT_NAMES: [&str; 8] = [
    "acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "tyrell",
];
const AGENT_NAMES: [&str; 8] = [
    "support-bot",
    "code-review",
    "triage",
    "sales-assist",
    "data-analyst",
    "qa-runner",
    "scheduler",
    "research",
];
/// Tenant time zones (UTC offset, hours): where their diurnal peak lands.
const TENANT_UTC_OFFSETS: [i64; 8] = [-5, 1, -8, 9, 0, 5, -3, 8];

fn name(names: &[&str], i: u32) -> String {
    let base = names[i as usize % names.len()];
    match i as usize / names.len() {
        0 => base.to_string(),
        round => format!("{base}-{round}"),
    }
}

/// The fixed parameters of one series.
#[derive(Debug, Clone)]
struct Profile {
    tenant_id: String,
    agent_id: String,
    region: String,
    utc_offset_h: i64,
    tasks_per_day: f64,
    success_p: f64,
    cancel_p: f64,
    intervention_p: f64,
    latency: LogNormal<f64>,
    model: usize,
    incident: Option<Incident>,
}

/// SplitMix64 finalizer: independent seeds for independent streams.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn stream(seed: u64, a: u64, b: u64) -> Pcg64Mcg {
    Pcg64Mcg::seed_from_u64(mix(mix(mix(seed) ^ a) ^ b))
}

/// Diurnal factor at a local hour (0..24), mean 1 over a day.
fn diurnal(local_hour: i64) -> f64 {
    let raw = |h: f64| 0.15 + (-((h - 14.0) * (h - 14.0)) / (2.0 * 4.0 * 4.0)).exp();
    let mean: f64 = (0..24).map(|h| raw(h as f64 + 0.5)).sum::<f64>() / 24.0;
    raw(local_hour.rem_euclid(24) as f64 + 0.5) / mean
}

/// Weekly factor for a day since the epoch, mean 1 over a week (1970-01-01 was a Thursday).
fn weekly(day_index: i64) -> f64 {
    let weekday = (day_index + 3).rem_euclid(7); // 0 = Monday
    if weekday >= 5 {
        0.45 / (5.9 / 7.0)
    } else {
        1.0 / (5.9 / 7.0)
    }
}

/// Whether `ms` lies in working hours (a weekday, 09:00-17:00) of a UTC offset of `offset_h`.
fn in_working_hours(ms: i64, offset_h: i64) -> bool {
    let local = ms + offset_h * HOUR_MS;
    let weekday = (local.div_euclid(DAY_MS) + 3).rem_euclid(7); // 0 = Monday
    let hour = local.rem_euclid(DAY_MS) / HOUR_MS;
    weekday < 5 && (9..17).contains(&hour)
}

/// The first start in working hours at or after `start_ms` (in whole hours) that is still
/// before `latest`, else the last one at or after `earliest`, else `start_ms` unchanged.
fn working_hours_start(start_ms: i64, earliest: i64, latest: i64, offset_h: i64) -> i64 {
    let forward = (0..)
        .map(|h| start_ms + h * HOUR_MS)
        .take_while(|t| *t < latest)
        .find(|t| in_working_hours(*t, offset_h));
    let backward = || {
        (1..)
            .map(|h| start_ms - h * HOUR_MS)
            .take_while(|t| *t >= earliest)
            .find(|t| in_working_hours(*t, offset_h))
    };
    forward.or_else(backward).unwrap_or(start_ms)
}

/// The generator: profiles and incidents are fixed at construction; [`Generator::hours`]
/// yields the stream.
#[derive(Debug, Clone)]
pub struct Generator {
    config: GenConfig,
    profiles: Vec<Profile>,
}

impl Generator {
    /// Draws the series profiles and incidents.
    pub fn new(config: GenConfig) -> Result<Generator, ConfigError> {
        config.validate()?;
        let start = config.start_day_ms();
        let end = config.end_ms();
        let mut profiles = Vec::new();
        let mut incident_no = 0usize;
        for t in 0..config.tenants {
            for a in 0..config.agents_per_tenant {
                let index = profiles.len() as u64;
                let mut rng = stream(config.seed, 0xA11CE, index);
                let tenant_id = name(&TENANT_NAMES, t);
                let agent_id = name(&AGENT_NAMES, a);
                let median_ms: f64 = rng.random_range(400.0..6_000.0);
                let sigma: f64 = rng.random_range(0.35..0.8);
                let control = a >= config.agents_per_tenant - config.control_agents_per_tenant;
                let incident = (config.incidents && !control).then(|| {
                    let kind = IncidentKind::ALL[incident_no % IncidentKind::ALL.len()];
                    incident_no += 1;
                    let (min, max, magnitude) = kind.shape();
                    let duration = rng.random_range(min..=max).min((end - start) / 2);
                    // Leave the first third of the period clean: a baseline to learn from.
                    let earliest = start + (end - start) / 3;
                    let latest = (end - duration).max(earliest + 1);
                    let mut start_ms = rng.random_range(earliest..latest) / 60_000 * 60_000;
                    if config.incidents_in_working_hours {
                        let offset = TENANT_UTC_OFFSETS[t as usize % TENANT_UTC_OFFSETS.len()];
                        start_ms = working_hours_start(start_ms, earliest, latest, offset);
                    }
                    Incident {
                        tenant_id: tenant_id.clone(),
                        agent_id: agent_id.clone(),
                        kind,
                        start_ms,
                        end_ms: start_ms + duration,
                        magnitude,
                    }
                });
                profiles.push(Profile {
                    region: ["eu-west", "us-east", "ap-south"][(t % 3) as usize].to_string(),
                    utc_offset_h: TENANT_UTC_OFFSETS[t as usize % TENANT_UTC_OFFSETS.len()],
                    tasks_per_day: config.tasks_per_series_per_day * rng.random_range(0.4..1.6),
                    success_p: rng.random_range(0.80..0.97),
                    cancel_p: rng.random_range(0.005..0.03),
                    intervention_p: rng.random_range(0.02..0.15),
                    latency: LogNormal::new(median_ms.ln(), sigma).expect("valid log-normal"),
                    model: rng.random_range(0..MODELS.len()),
                    incident,
                    tenant_id,
                    agent_id,
                });
            }
        }
        Ok(Generator { config, profiles })
    }

    /// The configuration.
    pub fn config(&self) -> &GenConfig {
        &self.config
    }

    /// The injected incidents (the labels).
    pub fn incidents(&self) -> Vec<Incident> {
        self.profiles.iter().filter_map(|p| p.incident.clone()).collect()
    }

    /// The series, as (tenant, agent), and whether each is a clean control series.
    pub fn series(&self) -> Vec<(String, String, bool)> {
        self.profiles
            .iter()
            .map(|p| (p.tenant_id.clone(), p.agent_id.clone(), p.incident.is_none()))
            .collect()
    }

    /// How many simulated hours there are.
    pub fn hour_count(&self) -> usize {
        self.config.days as usize * 24
    }

    /// The stream, one batch per simulated hour in arrival order (records arriving after the
    /// simulated period come with the last batch).
    pub fn hours(&self) -> Hours<'_> {
        Hours {
            generator: self,
            next_hour: 0,
            generated_until: 0,
            pending: BTreeMap::new(),
        }
    }

    /// The records of one series whose tasks complete within one hour, with their arrivals.
    fn series_hour(&self, series: usize, hour: usize) -> Vec<Emitted> {
        let c = &self.config;
        let p = &self.profiles[series];
        let mut rng = stream(c.seed, series as u64 + 1, hour as u64);
        let hour_start = c.start_day_ms() + hour as i64 * HOUR_MS;
        let day_index = day_of_ms(hour_start);
        let local_hour = hour_start.div_euclid(HOUR_MS) + p.utc_offset_h;
        let rate = p.tasks_per_day / 24.0 * diurnal(local_hour) * weekly(day_index);
        let n = Poisson::new(rate)
            .map(|d| d.sample(&mut rng) as usize)
            .unwrap_or(0);
        let mut times: Vec<i64> = (0..n)
            .map(|_| hour_start + rng.random_range(0..HOUR_MS))
            .collect();
        times.sort_unstable();
        let tail: Pareto<f64> = Pareto::new(1.0, 1.5).expect("valid Pareto");
        let input_tokens = LogNormal::new(1_500f64.ln(), 0.6).expect("valid log-normal");
        let output_tokens = LogNormal::new(350f64.ln(), 0.7).expect("valid log-normal");
        let model = &MODELS[p.model];
        let mut out = Vec::with_capacity(n + n / 20);
        for (i, completed_at) in times.into_iter().enumerate() {
            let effect = p
                .incident
                .as_ref()
                .filter(|inc| (inc.start_ms..inc.end_ms).contains(&completed_at));
            let (mut latency_x, mut success_p, mut intervention_p, mut cost_x) =
                (1.0, p.success_p, p.intervention_p, 1.0);
            if let Some(inc) = effect {
                match inc.kind {
                    IncidentKind::LatencyRegression => latency_x = inc.magnitude,
                    IncidentKind::SuccessRateDrop => success_p = (success_p - inc.magnitude).max(0.0),
                    IncidentKind::InterventionSurge => {
                        intervention_p = (intervention_p + inc.magnitude).min(1.0)
                    }
                    IncidentKind::CostSpike => cost_x = inc.magnitude,
                    IncidentKind::SlowDrift => {
                        let ramp = (completed_at - inc.start_ms) as f64 / (inc.end_ms - inc.start_ms) as f64;
                        latency_x = 1.0 + (inc.magnitude - 1.0) * ramp;
                    }
                    IncidentKind::TrafficOutage => {
                        if rng.random::<f64>() < inc.magnitude {
                            continue; // thinned away: the task never ran
                        }
                    }
                }
            }
            let mut latency = p.latency.sample(&mut rng);
            if rng.random::<f64>() < 0.01 {
                latency *= tail.sample(&mut rng).min(50.0);
            }
            let latency_ms = ((latency * latency_x) as i64).max(1);
            let roll: f64 = rng.random();
            let status = if roll < success_p {
                TaskStatus::Succeeded
            } else if roll < success_p + p.cancel_p {
                TaskStatus::Cancelled
            } else {
                TaskStatus::Failed
            };
            let human_interventions = if rng.random::<f64>() < intervention_p {
                1 + i32::from(rng.random::<f64>() < 0.3) + i32::from(rng.random::<f64>() < 0.1)
            } else {
                0
            };
            let tokens_in = input_tokens.sample(&mut rng).round() as i64;
            let tokens_out = if status == TaskStatus::Cancelled {
                0
            } else {
                output_tokens.sample(&mut rng).round() as i64
            };
            let cost =
                (tokens_in as f64 * model.input_price + tokens_out as f64 * model.output_price) * cost_x;
            let event = TaskEvent {
                event_id: uuid::Builder::from_random_bytes(rng.random())
                    .into_uuid()
                    .to_string(),
                task_id: format!("{}-{hour}-{i}", p.agent_id),
                tenant_id: p.tenant_id.clone(),
                agent_id: p.agent_id.clone(),
                status,
                human_interventions,
                started_at: completed_at - latency_ms,
                completed_at,
                cost_micros: cost.round() as i64,
                model: Some(model.name.to_string()),
                input_tokens: Some(tokens_in),
                output_tokens: Some(tokens_out),
                attributes: BTreeMap::from([("region".to_string(), p.region.clone())]),
            };
            let roll: f64 = rng.random();
            let arrival_ms = if roll < c.late_rate {
                completed_at + rng.random_range(c.late_delay_ms.0..=c.late_delay_ms.1)
            } else if roll < c.late_rate + c.very_late_rate {
                completed_at + rng.random_range(c.very_late_delay_ms.0..=c.very_late_delay_ms.1)
            } else {
                completed_at
            };
            if rng.random::<f64>() < c.malformed_rate {
                out.push(Emitted {
                    arrival_ms,
                    record: malformed(&mut rng, &event),
                });
            }
            if rng.random::<f64>() < c.duplicate_rate {
                let retry_ms = arrival_ms + rng.random_range(50..30_000);
                out.push(Emitted {
                    arrival_ms: retry_ms,
                    record: Record::Event(Box::new(event.clone())),
                });
            }
            out.push(Emitted {
                arrival_ms,
                record: Record::Event(Box::new(event)),
            });
        }
        out
    }
}

/// A broken sibling of `event`, with a fresh id so it can never shadow a valid event.
fn malformed(rng: &mut Pcg64Mcg, event: &TaskEvent) -> Record {
    let mut bad = event.clone();
    bad.event_id = uuid::Builder::from_random_bytes(rng.random())
        .into_uuid()
        .to_string();
    match rng.random_range(0..5) {
        0 => {
            bad.started_at = bad.completed_at + 1_000;
            Record::Invalid {
                event: Box::new(bad),
                defect: "completed_before_started",
            }
        }
        1 => {
            bad.cost_micros = -bad.cost_micros - 1;
            Record::Invalid {
                event: Box::new(bad),
                defect: "negative_cost",
            }
        }
        2 => {
            bad.tenant_id.clear();
            Record::Invalid {
                event: Box::new(bad),
                defect: "empty_tenant_id",
            }
        }
        3 => {
            bad.human_interventions = -1;
            Record::Invalid {
                event: Box::new(bad),
                defect: "negative_interventions",
            }
        }
        _ => Record::Garbage(format!("{{\"event\": \"{}\", \"truncated\": tru", bad.event_id).into_bytes()),
    }
}

/// Hours generated together (in parallel) by [`Hours`].
const GENERATION_BLOCK_HOURS: usize = 6;

/// Iterator over the stream, one simulated hour at a time.
pub struct Hours<'a> {
    generator: &'a Generator,
    next_hour: usize,
    /// Hours before this one are generated.
    generated_until: usize,
    /// Records arriving in later hours, by arrival hour.
    pending: BTreeMap<i64, Vec<Emitted>>,
}

impl Iterator for Hours<'_> {
    type Item = Vec<Emitted>;

    fn next(&mut self) -> Option<Vec<Emitted>> {
        let g = self.generator;
        let hours = g.hour_count();
        if self.next_hour >= hours {
            return None;
        }
        let hour = self.next_hour;
        self.next_hour += 1;
        let start = g.config.start_day_ms();
        if hour >= self.generated_until {
            // Generate a block of hours at once: enough parallel work for every core.
            let block = hour..(hour + GENERATION_BLOCK_HOURS).min(hours);
            self.generated_until = block.end;
            let series = g.profiles.len();
            let produced: Vec<Vec<Emitted>> = block
                .flat_map(|h| (0..series).map(move |s| (h, s)))
                .collect::<Vec<_>>()
                .into_par_iter()
                .map(|(h, s)| g.series_hour(s, h))
                .collect();
            for record in produced.into_iter().flatten() {
                let arrival_hour = ((record.arrival_ms - start).div_euclid(HOUR_MS)).min(hours as i64 - 1);
                self.pending.entry(arrival_hour).or_default().push(record);
            }
        }
        let mut batch = if self.next_hour == hours {
            std::mem::take(&mut self.pending)
                .into_values()
                .flatten()
                .collect()
        } else {
            self.pending.remove(&(hour as i64)).unwrap_or_default()
        };
        batch.sort_by_key(|e| e.arrival_ms); // stable: ties keep series order
        Some(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> GenConfig {
        GenConfig {
            days: 3,
            tenants: 2,
            agents_per_tenant: 3,
            control_agents_per_tenant: 1,
            tasks_per_series_per_day: 400.0,
            ..GenConfig::default()
        }
    }

    fn events(g: &Generator) -> Vec<Emitted> {
        g.hours().flatten().collect()
    }

    #[test]
    fn same_seed_same_stream_other_seed_other_stream() {
        let a = events(&Generator::new(small()).unwrap());
        let b = events(&Generator::new(small()).unwrap());
        assert_eq!(a, b);
        let c = events(&Generator::new(GenConfig { seed: 43, ..small() }).unwrap());
        assert_ne!(a, c);
    }

    #[test]
    fn the_stream_does_not_depend_on_the_thread_count() {
        let g = Generator::new(small()).unwrap();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let single = pool.install(|| events(&g));
        assert_eq!(single, events(&g));
    }

    fn valid_events(all: &[Emitted]) -> Vec<&TaskEvent> {
        all.iter()
            .filter_map(|e| match &e.record {
                Record::Event(ev) => Some(&**ev),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn batches_are_in_arrival_order_and_events_are_valid_and_in_range() {
        let c = small();
        let g = Generator::new(c.clone()).unwrap();
        let all = events(&g);
        assert!(all.windows(2).all(|w| w[0].arrival_ms <= w[1].arrival_ms));
        let valid = valid_events(&all);
        let expected = c.tasks_per_series_per_day * 6.0 * 3.0;
        assert!(
            (valid.len() as f64) > expected * 0.5 && (valid.len() as f64) < expected * 1.6,
            "{} events",
            valid.len()
        );
        for e in &valid {
            assert!(e.completed_at >= c.start_ms && e.completed_at < c.end_ms());
            assert!(e.started_at < e.completed_at && e.cost_micros >= 0 && e.human_interventions >= 0);
            assert!(!e.tenant_id.is_empty() && !e.agent_id.is_empty());
        }
    }

    #[test]
    fn duplicates_and_late_arrivals_come_at_their_rates() {
        let c = GenConfig {
            duplicate_rate: 0.05,
            late_rate: 0.05,
            malformed_rate: 0.01,
            ..small()
        };
        let all = events(&Generator::new(c.clone()).unwrap());
        let valid = valid_events(&all);
        let distinct: std::collections::HashSet<&str> = valid.iter().map(|e| e.event_id.as_str()).collect();
        let dup_share = (valid.len() - distinct.len()) as f64 / distinct.len() as f64;
        assert!((0.035..0.065).contains(&dup_share), "duplicates {dup_share}");
        let malformed = all
            .iter()
            .filter(|e| !matches!(e.record, Record::Event(_)))
            .count();
        assert!(malformed > 0 && (malformed as f64) < valid.len() as f64 * 0.02);
        // Late arrivals, measured without duplicates (a retry also arrives seconds later).
        let all = events(
            &Generator::new(GenConfig {
                duplicate_rate: 0.0,
                ..c
            })
            .unwrap(),
        );
        let valid = all
            .iter()
            .filter(|e| matches!(e.record, Record::Event(_)))
            .count();
        let late = all
            .iter()
            .filter(|e| matches!(&e.record, Record::Event(ev) if e.arrival_ms > ev.completed_at))
            .count();
        let late_share = late as f64 / valid as f64;
        assert!((0.035..0.065).contains(&late_share), "late {late_share}");
    }

    #[test]
    fn every_kind_of_incident_is_injected_and_control_series_stay_clean() {
        let c = GenConfig {
            days: 12,
            tasks_per_series_per_day: 10.0,
            ..GenConfig::default()
        };
        let g = Generator::new(c.clone()).unwrap();
        let incidents = g.incidents();
        assert_eq!(
            incidents.len() as u32,
            c.tenants * (c.agents_per_tenant - c.control_agents_per_tenant)
        );
        for kind in IncidentKind::ALL {
            assert!(incidents.iter().any(|i| i.kind == kind), "{kind:?} missing");
        }
        for i in &incidents {
            assert!(
                i.start_ms >= c.start_ms + (c.end_ms() - c.start_ms) / 3
                    && i.end_ms <= c.end_ms()
                    && i.start_ms < i.end_ms
            );
        }
        let controls: Vec<_> = g.series().into_iter().filter(|s| s.2).collect();
        assert_eq!(controls.len() as u32, c.tenants * c.control_agents_per_tenant);
        assert!(controls
            .iter()
            .all(|(t, a, _)| !incidents.iter().any(|i| &i.tenant_id == t && &i.agent_id == a)));
    }

    #[test]
    fn working_hours_move_only_the_incidents_starts() {
        let c = GenConfig {
            days: 12,
            tasks_per_series_per_day: 10.0,
            ..GenConfig::default()
        };
        let any_time = Generator::new(c.clone()).unwrap().incidents();
        let working = Generator::new(GenConfig {
            incidents_in_working_hours: true,
            ..c.clone()
        })
        .unwrap()
        .incidents();
        let offset =
            |i: &Incident| TENANT_UTC_OFFSETS[TENANT_NAMES.iter().position(|n| *n == i.tenant_id).unwrap()];
        assert_eq!(any_time.len(), working.len());
        assert!(
            any_time.iter().any(|i| !in_working_hours(i.start_ms, offset(i))),
            "the seed should have an incident outside working hours to move"
        );
        for (a, w) in any_time.iter().zip(&working) {
            let local = w.start_ms + offset(w) * HOUR_MS;
            let hour = local.rem_euclid(DAY_MS) / HOUR_MS;
            let weekday = (local.div_euclid(DAY_MS) + 3).rem_euclid(7);
            assert!(
                weekday < 5 && (9..17).contains(&hour),
                "{w:?}: weekday {weekday} hour {hour}"
            );
            assert_eq!((a.kind, a.end_ms - a.start_ms), (w.kind, w.end_ms - w.start_ms));
            assert!(w.start_ms >= c.start_ms + (c.end_ms() - c.start_ms) / 3 && w.end_ms <= c.end_ms());
        }
        // Boundaries: 09:00 is inside, 17:00 and Saturday are not (UTC offset 0; 2025-10-03 is a Friday).
        let friday = 1_759_449_600_000;
        assert!(in_working_hours(friday + 9 * HOUR_MS, 0));
        assert!(!in_working_hours(friday + 9 * HOUR_MS - 1, 0));
        assert!(!in_working_hours(friday + 17 * HOUR_MS, 0));
        assert!(!in_working_hours(friday + DAY_MS + 10 * HOUR_MS, 0));
        assert!(in_working_hours(friday + 10 * HOUR_MS, -5) == in_working_hours(friday + 5 * HOUR_MS, 0));
    }

    #[test]
    fn incidents_change_what_they_claim() {
        let c = GenConfig {
            days: 9,
            tenants: 1,
            agents_per_tenant: 6,
            control_agents_per_tenant: 0,
            tasks_per_series_per_day: 3_000.0,
            ..GenConfig::default()
        };
        let g = Generator::new(c).unwrap();
        let all: Vec<TaskEvent> = events(&g)
            .into_iter()
            .filter_map(|e| match e.record {
                Record::Event(ev) => Some(*ev),
                _ => None,
            })
            .collect();
        for inc in g.incidents() {
            let of_series = |inside: bool| -> Vec<&TaskEvent> {
                all.iter()
                    .filter(|e| {
                        e.agent_id == inc.agent_id
                            && (inc.start_ms..inc.end_ms).contains(&e.completed_at) == inside
                    })
                    .collect()
            };
            let (inside, outside) = (of_series(true), of_series(false));
            let mean = |v: &[&TaskEvent], f: &dyn Fn(&TaskEvent) -> f64| {
                v.iter().map(|e| f(e)).sum::<f64>() / v.len().max(1) as f64
            };
            let per_hour = |v: &[&TaskEvent], hours: f64| v.len() as f64 / hours;
            let hours_in = (inc.end_ms - inc.start_ms) as f64 / HOUR_MS as f64;
            let ok = match inc.kind {
                IncidentKind::LatencyRegression | IncidentKind::SlowDrift => {
                    let median = |v: &[&TaskEvent]| {
                        let mut l: Vec<i64> = v.iter().map(|e| e.latency_ms()).collect();
                        schemas::kpi::exact_quantile(&mut l, 0.5).unwrap_or(0) as f64
                    };
                    median(&inside) > 1.4 * median(&outside)
                }
                IncidentKind::SuccessRateDrop => {
                    let tsr = |e: &TaskEvent| f64::from(u8::from(e.status == TaskStatus::Succeeded));
                    mean(&inside, &tsr) < mean(&outside, &tsr) - 0.2
                }
                IncidentKind::InterventionSurge => {
                    let hir = |e: &TaskEvent| f64::from(u8::from(e.human_interventions > 0));
                    mean(&inside, &hir) > mean(&outside, &hir) + 0.2
                }
                IncidentKind::CostSpike => {
                    let cost = |e: &TaskEvent| e.cost_micros as f64;
                    mean(&inside, &cost) > 2.5 * mean(&outside, &cost)
                }
                IncidentKind::TrafficOutage => {
                    per_hour(&inside, hours_in) < 0.2 * per_hour(&outside, 9.0 * 24.0 - hours_in)
                }
            };
            assert!(
                ok,
                "{:?} on {} not visible ({} events inside)",
                inc.kind,
                inc.agent_id,
                inside.len()
            );
        }
    }

    #[test]
    fn bad_settings_name_the_field() {
        let e = Generator::new(GenConfig {
            duplicate_rate: 1.5,
            ..small()
        })
        .unwrap_err();
        assert_eq!(e.field, "duplicate_rate");
        let e = Generator::new(GenConfig {
            control_agents_per_tenant: 9,
            ..small()
        })
        .unwrap_err();
        assert_eq!(e.field, "control_agents_per_tenant");
        assert!(Generator::new(GenConfig { days: 0, ..small() }).is_err());
    }
}
