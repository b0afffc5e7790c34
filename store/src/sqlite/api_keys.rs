//! The gateway's API keys on SQLite ([`ApiKeyStore`]).

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};

use super::SqliteStore;
use crate::{ApiKey, ApiKeyStore, Error, Result};

#[async_trait]
impl ApiKeyStore for SqliteStore {
    async fn create_api_key(&self, key: &ApiKey) -> Result<()> {
        let k = key.clone();
        self.with_conn(move |conn| {
            let inserted = conn.execute(
                "INSERT OR IGNORE INTO api_keys (key_id, tenant_id, secret_sha256, label, created_at, revoked_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![k.key_id, k.tenant_id, k.secret_sha256, k.label, k.created_at_ms, k.revoked_at_ms],
            )?;
            if inserted == 0 {
                return Err(Error::Conflict(format!("api key {} exists", k.key_id)));
            }
            Ok(())
        })
        .await
    }

    async fn api_key(&self, key_id: &str) -> Result<Option<ApiKey>> {
        let id = key_id.to_string();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE key_id = ?1"
                ))?
                .query_row(params![id], api_key_from_row)
                .optional()?)
        })
        .await
    }

    async fn api_keys(&self) -> Result<Vec<ApiKey>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {API_KEY_COLUMNS} FROM api_keys ORDER BY tenant_id, key_id"
            ))?;
            let rows = stmt
                .query_map([], api_key_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn revoke_api_key(&self, key_id: &str, at_ms: i64) -> Result<bool> {
        let id = key_id.to_string();
        self.with_conn(move |conn| {
            let found = conn.query_row(
                "SELECT count(*) FROM api_keys WHERE key_id = ?1",
                params![id],
                |r| r.get::<_, i64>(0),
            )?;
            conn.execute(
                "UPDATE api_keys SET revoked_at = ?2 WHERE key_id = ?1 AND revoked_at IS NULL",
                params![id, at_ms],
            )?;
            Ok(found > 0)
        })
        .await
    }
}

const API_KEY_COLUMNS: &str = "key_id, tenant_id, secret_sha256, label, created_at, revoked_at";

fn api_key_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ApiKey> {
    Ok(ApiKey {
        key_id: row.get(0)?,
        tenant_id: row.get(1)?,
        secret_sha256: row.get(2)?,
        label: row.get(3)?,
        created_at_ms: row.get(4)?,
        revoked_at_ms: row.get(5)?,
    })
}
