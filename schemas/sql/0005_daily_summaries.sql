-- Migration 5 (SQLite): the daily rows without their latency digest, as a covering index.
-- `daily_metrics` is WITHOUT ROWID, so a row is one b-tree cell, and a day's digest (up to
-- 16 KB) puts most of it on overflow pages. SQLite reads those pages (from the file, past its
-- page cache) to compare keys while it seeks and to reach `is_final` and `updated_at` behind the
-- digest, so a dashboard read of one tenant's week copied about half a megabyte. The
-- dashboards read every column but the digest (`Store::daily_summaries`), from this index
-- alone; each upsert of a row updates it too.
CREATE INDEX daily_metrics_summary ON daily_metrics (
    tenant_id, day, agent_id, tasks_total, succeeded, failed, cancelled, tasks_with_intervention,
    interventions, cost_micros, latency_p50_ms, latency_p95_ms, latency_p99_ms, is_final, updated_at
);
