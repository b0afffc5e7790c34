-- Migration 2 (SQLite): per-tenant API keys of the ingest gateway. Only a SHA-256 of the
-- secret part is stored; the key id is the public part, used for the lookup.
CREATE TABLE api_keys (
    key_id        TEXT    NOT NULL PRIMARY KEY,
    tenant_id     TEXT    NOT NULL,
    secret_sha256 TEXT    NOT NULL,  -- hex
    label         TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,  -- epoch ms
    revoked_at    INTEGER            -- epoch ms; NULL while valid
) WITHOUT ROWID;
