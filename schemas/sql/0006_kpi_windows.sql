-- Migration 6 (SQLite): every 15-minute KPI window the scorer read, with its verdict, for the
-- dashboards. One row per (tenant, window start, agent), the order in which a tenant's range is
-- read, replaced whole by each write (a replay or a revision never duplicates it). The verdict
-- columns are NULL for a window not scored (a series' first windows, before it has a full model
-- input). Rows are kept for
-- `store.window_retention_days` after their last write: each write deletes the rows older than
-- that through `kpi_windows_updated`.
CREATE TABLE kpi_windows (
    tenant_id               TEXT    NOT NULL,
    window_start            INTEGER NOT NULL,  -- epoch ms, inclusive
    agent_id                TEXT    NOT NULL,
    window_end              INTEGER NOT NULL,  -- epoch ms, exclusive
    revision                INTEGER NOT NULL,
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
    lstm_score              REAL,              -- calibrated (normalized) member scores
    transformer_score       REAL,
    statistical_score       REAL,
    ensemble_score          REAL,              -- NULL: not scored
    threshold               REAL,
    is_anomaly              INTEGER,
    model_version           TEXT,
    explanation             TEXT,              -- JSON array of {kpi, observed, expected, low, high, evidence}
    updated_at              INTEGER NOT NULL,  -- epoch ms of the write
    PRIMARY KEY (tenant_id, window_start, agent_id)
) WITHOUT ROWID;

CREATE INDEX kpi_windows_updated ON kpi_windows (updated_at);
