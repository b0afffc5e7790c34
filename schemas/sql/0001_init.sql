-- Migration 1 (SQLite): daily metrics, checkpoints, anomalies.
CREATE TABLE daily_metrics (
    tenant_id               TEXT    NOT NULL,
    day                     TEXT    NOT NULL,  -- ISO date (UTC), sorts chronologically
    agent_id                TEXT    NOT NULL,  -- '*' = all agents of the tenant
    tasks_total             INTEGER NOT NULL,
    succeeded               INTEGER NOT NULL,
    failed                  INTEGER NOT NULL,
    cancelled               INTEGER NOT NULL,
    tasks_with_intervention INTEGER NOT NULL,
    interventions           INTEGER NOT NULL,
    cost_micros             INTEGER NOT NULL,
    latency_p50_ms          REAL,
    latency_p95_ms          REAL,
    latency_p99_ms          REAL,
    latency_digest          BLOB    NOT NULL,
    is_final                INTEGER NOT NULL,
    updated_at              INTEGER NOT NULL,  -- epoch ms
    PRIMARY KEY (tenant_id, day, agent_id)
) WITHOUT ROWID;

CREATE TABLE checkpoints (
    consumer_group TEXT    NOT NULL,
    topic          TEXT    NOT NULL,
    partition_id   INTEGER NOT NULL,
    next_offset    INTEGER NOT NULL,
    state          BLOB    NOT NULL,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (consumer_group, topic, partition_id)
) WITHOUT ROWID;

CREATE TABLE anomalies (
    tenant_id              TEXT    NOT NULL,
    window_start           INTEGER NOT NULL,
    agent_id               TEXT    NOT NULL,
    anomaly_id             TEXT    NOT NULL,
    window_id              TEXT    NOT NULL,
    window_end             INTEGER NOT NULL,
    lstm_score             REAL    NOT NULL,
    transformer_score      REAL    NOT NULL,
    lstm_normalized        REAL    NOT NULL,
    transformer_normalized REAL    NOT NULL,
    ensemble_score         REAL    NOT NULL,
    threshold              REAL    NOT NULL,
    is_anomaly             INTEGER NOT NULL,
    top_features           TEXT    NOT NULL,  -- JSON array of {feature, contribution}
    model_version          TEXT    NOT NULL,
    scored_at              INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, window_start, agent_id)
) WITHOUT ROWID;
