//! The gateway's API keys on ScyllaDB ([`ApiKeyStore`]): one partition per key id.

use async_trait::async_trait;
use scylla::{DeserializeRow, SerializeRow};

use super::ScyllaStore;
use crate::{ApiKey, ApiKeyStore, Error, Result};

#[derive(DeserializeRow, SerializeRow)]
#[scylla(flavor = "enforce_order", skip_name_checks)]
struct ApiKeyRow {
    key_id: String,
    tenant_id: String,
    secret_sha256: String,
    label: String,
    created_at: i64,
    revoked_at: Option<i64>,
}

impl From<ApiKeyRow> for ApiKey {
    fn from(r: ApiKeyRow) -> ApiKey {
        ApiKey {
            key_id: r.key_id,
            tenant_id: r.tenant_id,
            secret_sha256: r.secret_sha256,
            label: r.label,
            created_at_ms: r.created_at,
            revoked_at_ms: r.revoked_at,
        }
    }
}

const API_KEY_COLUMNS: &str = "key_id, tenant_id, secret_sha256, label, created_at, revoked_at";

#[async_trait]
impl ApiKeyStore for ScyllaStore {
    async fn create_api_key(&self, key: &ApiKey) -> Result<()> {
        let row = ApiKeyRow {
            key_id: key.key_id.clone(),
            tenant_id: key.tenant_id.clone(),
            secret_sha256: key.secret_sha256.clone(),
            label: key.label.clone(),
            created_at: key.created_at_ms,
            revoked_at: key.revoked_at_ms,
        };
        let insert = format!("INSERT INTO api_keys ({API_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)");
        if self.config.lwt {
            let result = self
                .session
                .execute_unpaged(format!("{insert} IF NOT EXISTS"), &row)
                .await
                .map_err(Error::scylla)?;
            let rows = result.into_rows_result().map_err(Error::scylla)?;
            let applied = rows
                .maybe_first_row::<(bool,)>()
                .ok()
                .flatten()
                .is_none_or(|(a,)| a);
            if !applied {
                return Err(Error::Conflict(format!("api key {} exists", key.key_id)));
            }
            return Ok(());
        }
        if self.api_key(&key.key_id).await?.is_some() {
            return Err(Error::Conflict(format!("api key {} exists", key.key_id)));
        }
        self.session
            .execute_unpaged(insert, &row)
            .await
            .map_err(Error::scylla)?;
        Ok(())
    }

    async fn api_key(&self, key_id: &str) -> Result<Option<ApiKey>> {
        let row: Option<ApiKeyRow> = self
            .read_one(
                format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE key_id = ?"),
                (key_id,),
            )
            .await?;
        Ok(row.map(ApiKey::from))
    }

    async fn api_keys(&self) -> Result<Vec<ApiKey>> {
        let rows: Vec<ApiKeyRow> = self
            .read_all(format!("SELECT {API_KEY_COLUMNS} FROM api_keys"), ())
            .await?;
        let mut keys: Vec<ApiKey> = rows.into_iter().map(ApiKey::from).collect();
        keys.sort_by(|a, b| (&a.tenant_id, &a.key_id).cmp(&(&b.tenant_id, &b.key_id)));
        Ok(keys)
    }

    async fn revoke_api_key(&self, key_id: &str, at_ms: i64) -> Result<bool> {
        let Some(key) = self.api_key(key_id).await? else {
            return Ok(false);
        };
        if key.revoked_at_ms.is_none() {
            self.session
                .execute_unpaged(
                    "UPDATE api_keys SET revoked_at = ? WHERE key_id = ?",
                    (at_ms, key_id),
                )
                .await
                .map_err(Error::scylla)?;
        }
        Ok(true)
    }
}
