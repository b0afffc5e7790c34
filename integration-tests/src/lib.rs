//! Harness of the integration tests: a real Tansu broker per test, started from the binary the
//! project's scripts install (`scripts/install-tansu.sh`), on a free port of 127.0.0.1, stopped
//! when dropped. Tests depend on the event contracts, rdkafka and the services' binaries, never
//! on service internals.
#![deny(missing_docs)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;

/// Storage engine of a test broker.
#[derive(Debug, Clone)]
pub enum Engine {
    /// `memory://`: fast, lost on restart.
    Memory,
    /// `sqlite://<file>`: survives a restart (SIGKILL included).
    Sqlite(PathBuf),
}

/// A Tansu broker process owned by one test.
#[derive(Debug)]
pub struct TansuBroker {
    child: Option<Child>,
    port: u16,
    engine: Engine,
}

/// The Tansu binary: `$TANSU_BIN`, else where `scripts/install-tansu.sh` puts it.
pub fn tansu_bin() -> PathBuf {
    if let Ok(path) = std::env::var("TANSU_BIN") {
        return PathBuf::from(path);
    }
    let cache = std::env::var("AGENTOPS_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/agentops"));
    cache.join("tansu-0.6.0-dynostore-libsql/bin/tansu")
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .unwrap()
        .port()
}

impl TansuBroker {
    /// Starts a broker with the memory engine.
    pub fn start() -> TansuBroker {
        Self::start_with(Engine::Memory)
    }

    /// Starts a broker with `engine` on a free port and waits until it accepts connections.
    pub fn start_with(engine: Engine) -> TansuBroker {
        let mut broker = TansuBroker {
            child: None,
            port: free_port(),
            engine,
        };
        broker.spawn();
        broker
    }

    fn spawn(&mut self) {
        let bin = tansu_bin();
        assert!(
            bin.exists(),
            "Tansu binary {} is missing: run scripts/install-deps.sh",
            bin.display()
        );
        let url = format!("tcp://127.0.0.1:{}", self.port);
        // Tansu 0.6 resolves a `sqlite://` path against its working directory, absolute or
        // not: the broker runs in the database's folder and gets the file name.
        let (storage, cwd) = match &self.engine {
            Engine::Memory => ("memory://tansu/".to_string(), None),
            Engine::Sqlite(path) => (
                format!(
                    "sqlite://{}",
                    path.file_name().expect("a file name").to_string_lossy()
                ),
                path.parent().map(PathBuf::from),
            ),
        };
        let mut command = Command::new(bin);
        if let Some(dir) = cwd {
            command.current_dir(dir);
        }
        let child = command
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                &storage,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen on {}", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `bootstrap.servers` of this broker.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the broker (SIGKILL) and starts it again on the same port and storage.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Kills the broker (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A client config for this broker with the settings tests need (fast group joins).
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", self.bootstrap())
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "500")
            .set("log_level", "3");
        config
    }

    /// Creates `topic` with `partitions` partitions.
    pub async fn create_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = self.client_config().create().expect("admin client");
        let results = admin
            .create_topics(
                &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
                &AdminOptions::new(),
            )
            .await
            .expect("create_topics");
        for r in results {
            r.expect("topic created");
        }
    }
}

impl Drop for TansuBroker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The KPI window length the services run with (`aggregator.window_secs`, built-in default).
pub fn window_ms() -> i64 {
    let settings =
        settings::Settings::load(None, &std::collections::HashMap::new()).expect("built-in settings load");
    i64::from(settings.aggregator.window_secs) * 1000
}

/// A topic name no other test uses.
pub fn unique_topic(prefix: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// Path of a workspace binary (`aggregator`, `ingest`, ...) built next to the test binary, or
/// the one `$<NAME>_BIN` names (e.g. `AUTH_API_BIN=$PWD/target/release/auth-api`, an absolute
/// path: measure another build).
pub fn bin_path(name: &str) -> PathBuf {
    let var = format!("{}_BIN", name.to_uppercase().replace('-', "_"));
    if let Some(path) = std::env::var_os(&var) {
        let path = PathBuf::from(path);
        assert!(path.exists(), "{var}={} is missing", path.display());
        return path;
    }
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target/<profile>");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        path.display()
    );
    path
}

/// A service process started for a test, killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct Service {
    child: Child,
}

impl Service {
    /// Starts `bin args` with `env` added to the environment; logs go to `log`.
    pub fn start(bin: &str, args: &[&str], env: &[(String, String)], log: &std::path::Path) -> Service {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let child = Command::new(bin_path(bin))
            .args(args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env(
                "RUST_LOG",
                std::env::var("SERVICE_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .expect("start service");
        Service { child }
    }

    /// SIGKILL, no chance to checkpoint.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for a clean exit; returns whether it exited successfully.
    pub fn terminate(mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().map(|s| s.success()).unwrap_or(false)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a workspace binary to completion; returns its stdout, panics with stderr on failure.
pub fn run_bin(bin: &str, args: &[&str], env: &[(String, String)]) -> String {
    let out = Command::new(bin_path(bin))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("run binary");
    assert!(
        out.status.success(),
        "{bin} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// The environment of a pipeline service on `broker`: task events on `task_events`, fresh
/// unique topics for every other output, fresh consumer groups, the SQLite store at `db`,
/// checkpoints every `checkpoint_ms`, the committed model set and a free metrics port.
pub fn pipeline_env(
    broker: &TansuBroker,
    db: &str,
    task_events: &str,
    checkpoint_ms: u64,
) -> Vec<(String, String)> {
    let mut env = vec![
        ("AGENTOPS__KAFKA__BROKERS".to_string(), broker.bootstrap()),
        ("AGENTOPS__STORE__URL".to_string(), format!("sqlite://{db}")),
        (
            "AGENTOPS__AGGREGATOR__CHECKPOINT_INTERVAL_MS".to_string(),
            checkpoint_ms.to_string(),
        ),
        (
            "AGENTOPS__AGGREGATOR__CONSUMER_GROUP".to_string(),
            unique_topic("agg"),
        ),
        // The generated data lies in simulated past time: finality by the event-time watermark
        // only (a test that wants the clock turns it on).
        (
            "AGENTOPS__AGGREGATOR__FINALIZE_DAYS_BY_CLOCK".to_string(),
            "false".to_string(),
        ),
        (
            "AGENTOPS__KAFKA__TOPICS__TASK_EVENTS".to_string(),
            task_events.to_string(),
        ),
        // Port 0: every aggregator instance of a test gets its own metrics port.
        (
            "AGENTOPS__AGGREGATOR__METRICS_LISTEN".to_string(),
            "127.0.0.1:0".to_string(),
        ),
        (
            "AGENTOPS__SCORER__CONSUMER_GROUP".to_string(),
            unique_topic("scorer"),
        ),
        (
            "AGENTOPS__SCORER__METRICS_LISTEN".to_string(),
            format!("127.0.0.1:{}", free_port()),
        ),
        (
            "AGENTOPS__SCORER__MODEL_DIR".to_string(),
            models_dir().display().to_string(),
        ),
    ];
    for name in ["kpi_windows", "anomalies", "dead_letter", "late_events"] {
        env.push((
            format!("AGENTOPS__KAFKA__TOPICS__{}", name.to_uppercase()),
            unique_topic(name),
        ));
    }
    env
}

/// Creates the output topics `pipeline_env` named (KPI windows, anomalies, dead letters, late
/// events) with `partitions` partitions each.
pub async fn create_output_topics(broker: &TansuBroker, env: &[(String, String)], partitions: i32) {
    for key in ["KPI_WINDOWS", "ANOMALIES", "DEAD_LETTER", "LATE_EVENTS"] {
        broker
            .create_topic(
                env_value(env, &format!("AGENTOPS__KAFKA__TOPICS__{key}")),
                partitions,
            )
            .await;
    }
}

/// Sets a pipeline up on `broker` for the services of `env`: the task-event topic
/// (`events_partitions`), the output topics (`output_partitions`) and the store's schema.
pub async fn prepare_pipeline(
    broker: &TansuBroker,
    env: &[(String, String)],
    events_partitions: i32,
    output_partitions: i32,
) {
    broker
        .create_topic(
            env_value(env, "AGENTOPS__KAFKA__TOPICS__TASK_EVENTS"),
            events_partitions,
        )
        .await;
    create_output_topics(broker, env, output_partitions).await;
    run_bin("aggregator", &["migrate"], env);
}

/// `AGENTOPS__<SERVICE>__ASSIGNMENT=all` for each service: it owns every partition of its input
/// without a consumer group (no joins to wait for, and Tansu never expires a SIGKILLed member).
pub fn own_all_partitions(services: &[&str]) -> Vec<(String, String)> {
    services
        .iter()
        .map(|s| {
            (
                format!("AGENTOPS__{}__ASSIGNMENT", s.to_uppercase().replace('-', "_")),
                "all".to_string(),
            )
        })
        .collect()
}

/// The committed model set of the scorer.
pub fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scorer/models")
}

/// The value of `key` in a service environment.
pub fn env_value<'a>(env: &'a [(String, String)], key: &str) -> &'a str {
    env.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("{key} not set"))
}

/// Every record of `topic`, all partitions from the beginning up to their end at the time of
/// the call (read by assignment, no consumer group: safe across broker restarts). Gives up on a
/// partition that reports no end within `timeout`.
pub fn read_topic(
    broker: &TansuBroker,
    topic: &str,
    timeout: Duration,
) -> Vec<rdkafka::message::OwnedMessage> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::error::KafkaError;
    use rdkafka::{Offset, TopicPartitionList};

    let consumer: BaseConsumer = broker
        .client_config()
        .set("group.id", unique_topic("topic-reader"))
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("topic metadata");
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    assert!(!partitions.is_empty(), "topic {topic} has no partitions");
    let mut list = TopicPartitionList::new();
    for p in &partitions {
        list.add_partition_offset(topic, *p, Offset::Beginning)
            .expect("partition offset");
    }
    consumer.assign(&list).expect("assign");
    let mut open: std::collections::HashSet<i32> = partitions.into_iter().collect();
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    while !open.is_empty() && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push(m.detach()),
            Some(Err(KafkaError::PartitionEOF(p))) => {
                open.remove(&p);
            }
            Some(Err(_)) | None => {}
        }
    }
    out
}

/// Asserts that the flags of a cost spike name cost as their top feature and explain it: cost
/// per task observed above the series' normal range.
pub fn assert_cost_spike_explained(inside: &[&schemas::Anomaly]) {
    assert!(
        inside.iter().any(|a| a
            .top_features
            .first()
            .is_some_and(|f| f.feature == "cost_per_task_z")),
        "cost is named as the driving feature of the incident's flags"
    );
    let explained = inside
        .iter()
        .filter_map(|a| a.explanation.first())
        .find(|x| x.kpi == "cost_per_task_micros")
        .unwrap_or_else(|| {
            panic!(
                "no flag of the cost spike explains cost: {:?}",
                inside.first().map(|a| &a.explanation)
            )
        });
    assert!(
        explained.observed > explained.high
            && explained.expected < explained.high
            && explained.low <= explained.expected,
        "observed above the normal range: {explained:?}"
    );
}
