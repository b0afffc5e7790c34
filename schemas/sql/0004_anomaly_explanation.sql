-- Migration 4 (SQLite): the statistical member's score and the explanation of each verdict.
-- Rows written before read back with no statistical score (NULL) and an empty explanation.
ALTER TABLE anomalies ADD COLUMN statistical_score REAL;  -- NULL: not scored by the statistical member
ALTER TABLE anomalies ADD COLUMN explanation TEXT NOT NULL DEFAULT '[]';  -- JSON array of {kpi, observed, expected, low, high, evidence}
