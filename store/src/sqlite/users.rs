//! Users and tenant grants on SQLite ([`UserStore`]): UNIQUE constraints keep email and
//! username unique.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};
use uuid::Uuid;

use super::SqliteStore;
use crate::model::normalize_login;
use crate::{Error, Result, User, UserStore};

#[async_trait]
impl UserStore for SqliteStore {
    async fn create_user(&self, user: &User) -> Result<()> {
        let mut u = user.clone();
        u.email = normalize_login(&u.email);
        u.username = u.username.as_deref().map(normalize_login);
        self.with_conn(move |conn| {
            // IMMEDIATE: writers from other processes (the CLI) are serialized too; the UNIQUE
            // constraints stay the last word either way.
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let exists = |sql: &str, value: &str| -> Result<bool> {
                Ok(tx
                    .query_row(sql, params![value], |_| Ok(()))
                    .optional()?
                    .is_some())
            };
            if exists("SELECT 1 FROM users WHERE email = ?1", &u.email)? {
                return Err(Error::Taken { field: "email" });
            }
            if let Some(name) = &u.username {
                if exists("SELECT 1 FROM users WHERE username = ?1", name)? {
                    return Err(Error::Taken { field: "username" });
                }
            }
            tx.execute(
                &format!("INSERT INTO users ({USER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
                params![
                    u.id.to_string(),
                    u.email,
                    u.username,
                    u.password_hash,
                    u.created_at_ms,
                    u.updated_at_ms
                ],
            )
            .map_err(unique_violation)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn user_by_id(&self, id: Uuid) -> Result<Option<User>> {
        self.read(move |conn| {
            conn.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"))?
                .query_row(params![id.to_string()], user_from_row)
                .optional()?
                .transpose()
        })
        .await
    }

    async fn user_by_login(&self, login: &str) -> Result<Option<User>> {
        let login = normalize_login(login);
        self.read(move |conn| {
            let column = if login.contains('@') { "email" } else { "username" };
            conn.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE {column} = ?1"))?
                .query_row(params![login], user_from_row)
                .optional()?
                .transpose()
        })
        .await
    }

    async fn delete_user(&self, id: Uuid) -> Result<bool> {
        self.with_conn(move |conn| {
            let tx = conn.transaction()?;
            let id = id.to_string();
            tx.execute("DELETE FROM user_tenants WHERE user_id = ?1", params![id])?;
            let deleted = tx.execute("DELETE FROM users WHERE id = ?1", params![id])?;
            tx.commit()?;
            Ok(deleted > 0)
        })
        .await
    }

    async fn grant_tenant(&self, user_id: Uuid, tenant_id: &str, at_ms: i64) -> Result<()> {
        let tenant = tenant_id.to_string();
        self.with_conn(move |conn| {
            conn.execute(
                "INSERT OR IGNORE INTO user_tenants (user_id, tenant_id, granted_at) VALUES (?1, ?2, ?3)",
                params![user_id.to_string(), tenant, at_ms],
            )?;
            Ok(())
        })
        .await
    }

    async fn revoke_tenant(&self, user_id: Uuid, tenant_id: &str) -> Result<bool> {
        let tenant = tenant_id.to_string();
        self.with_conn(move |conn| {
            Ok(conn.execute(
                "DELETE FROM user_tenants WHERE user_id = ?1 AND tenant_id = ?2",
                params![user_id.to_string(), tenant],
            )? > 0)
        })
        .await
    }

    async fn tenants_of_user(&self, user_id: Uuid) -> Result<Vec<String>> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT tenant_id FROM user_tenants WHERE user_id = ?1 ORDER BY tenant_id")?;
            let rows = stmt
                .query_map(params![user_id.to_string()], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }
}

const USER_COLUMNS: &str = "id, email, username, password_hash, created_at, updated_at";

/// A `users` row; the outer error is SQLite's, the inner one a corrupt id.
fn user_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<User>> {
    let id: String = row.get(0)?;
    let user = User {
        id: Uuid::nil(),
        email: row.get(1)?,
        username: row.get(2)?,
        password_hash: row.get(3)?,
        created_at_ms: row.get(4)?,
        updated_at_ms: row.get(5)?,
    };
    Ok(match Uuid::parse_str(&id) {
        Ok(id) => Ok(User { id, ..user }),
        Err(e) => Err(Error::Corrupt {
            column: "users.id",
            message: format!("{id}: {e}"),
        }),
    })
}

/// A UNIQUE violation on `users` (another process won a race) as [`Error::Taken`].
fn unique_violation(e: rusqlite::Error) -> Error {
    if let rusqlite::Error::SqliteFailure(f, Some(message)) = &e {
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE {
            if message.contains("users.email") {
                return Error::Taken { field: "email" };
            }
            if message.contains("users.username") {
                return Error::Taken { field: "username" };
            }
        }
    }
    Error::Sqlite(e)
}
