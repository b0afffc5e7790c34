//! Users and tenant grants on ScyllaDB ([`UserStore`]): `email` and `username` made unique by
//! claim rows (see the backend's module docs and `schemas/cql/0003_users.cql`).

use async_trait::async_trait;
use scylla::{DeserializeRow, SerializeRow};
use uuid::Uuid;

use super::{applied, ScyllaStore};
use crate::model::normalize_login;
use crate::{Error, Result, User, UserStore};

#[derive(DeserializeRow, SerializeRow)]
#[scylla(flavor = "enforce_order", skip_name_checks)]
struct UserRow {
    id: Uuid,
    email: String,
    username: Option<String>,
    password_hash: String,
    created_at: i64,
    updated_at: i64,
}

impl From<UserRow> for User {
    fn from(r: UserRow) -> User {
        User {
            id: r.id,
            email: r.email,
            username: r.username,
            password_hash: r.password_hash,
            created_at_ms: r.created_at,
            updated_at_ms: r.updated_at,
        }
    }
}

const USER_COLUMNS: &str = "id, email, username, password_hash, created_at, updated_at";

/// A unique-value claim table of users: (table, key column, field named in [`Error::Taken`]).
#[derive(Clone, Copy)]
struct ClaimTable {
    table: &'static str,
    column: &'static str,
    field: &'static str,
}

const EMAIL_CLAIMS: ClaimTable = ClaimTable {
    table: "users_by_email",
    column: "email",
    field: "email",
};
const USERNAME_CLAIMS: ClaimTable = ClaimTable {
    table: "users_by_username",
    column: "username",
    field: "username",
};

impl ScyllaStore {
    /// The user id holding `value` in a claim table.
    async fn claim_owner(&self, claims: ClaimTable, value: &str) -> Result<Option<Uuid>> {
        let owner: Option<(Uuid,)> = self
            .read_one(
                format!("SELECT user_id FROM {} WHERE {} = ?", claims.table, claims.column),
                (value,),
            )
            .await?;
        Ok(owner.map(|(id,)| id))
    }

    /// Claims `value` for `user_id`; false when someone holds it already.
    async fn claim(&self, claims: ClaimTable, value: &str, user_id: Uuid) -> Result<bool> {
        let insert = format!(
            "INSERT INTO {} ({}, user_id) VALUES (?, ?)",
            claims.table, claims.column
        );
        if self.config.lwt {
            let result = self
                .session
                .execute_unpaged(format!("{insert} IF NOT EXISTS"), (value, user_id))
                .await
                .map_err(Error::scylla)?;
            return applied(result);
        }
        if self.claim_owner(claims, value).await?.is_some() {
            return Ok(false);
        }
        self.session
            .execute_unpaged(insert, (value, user_id))
            .await
            .map_err(Error::scylla)?;
        Ok(true)
    }

    /// Releases `value` if `user_id` holds it (never someone else's claim with LWT).
    async fn release(&self, claims: ClaimTable, value: &str, user_id: Uuid) -> Result<()> {
        let delete = format!("DELETE FROM {} WHERE {} = ?", claims.table, claims.column);
        if self.config.lwt {
            self.session
                .execute_unpaged(format!("{delete} IF user_id = ?"), (value, user_id))
                .await
                .map_err(Error::scylla)?;
        } else if self.claim_owner(claims, value).await? == Some(user_id) {
            self.session
                .execute_unpaged(delete, (value,))
                .await
                .map_err(Error::scylla)?;
        }
        Ok(())
    }

    async fn delete_user_row(&self, id: Uuid) -> Result<()> {
        self.session
            .execute_unpaged("DELETE FROM users WHERE id = ?", (id,))
            .await
            .map_err(Error::scylla)?;
        Ok(())
    }
}

#[async_trait]
impl UserStore for ScyllaStore {
    async fn create_user(&self, user: &User) -> Result<()> {
        let email = normalize_login(&user.email);
        let username = user.username.as_deref().map(normalize_login);
        let row = UserRow {
            id: user.id,
            email: email.clone(),
            username: username.clone(),
            password_hash: user.password_hash.clone(),
            created_at: user.created_at_ms,
            updated_at: user.updated_at_ms,
        };
        // 1. The row under a fresh id: unreachable until the claims point to it.
        self.session
            .execute_unpaged(
                format!("INSERT INTO users ({USER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"),
                &row,
            )
            .await
            .map_err(Error::scylla)?;
        // 2. The email claim.
        if !self.claim(EMAIL_CLAIMS, &email, user.id).await? {
            self.delete_user_row(user.id).await?;
            return Err(Error::Taken {
                field: EMAIL_CLAIMS.field,
            });
        }
        // 3. The username claim; on failure release the email claim again.
        if let Some(name) = &username {
            if !self.claim(USERNAME_CLAIMS, name, user.id).await? {
                self.release(EMAIL_CLAIMS, &email, user.id).await?;
                self.delete_user_row(user.id).await?;
                return Err(Error::Taken {
                    field: USERNAME_CLAIMS.field,
                });
            }
        }
        Ok(())
    }

    async fn user_by_id(&self, id: Uuid) -> Result<Option<User>> {
        let row: Option<UserRow> = self
            .read_one(format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?"), (id,))
            .await?;
        Ok(row.map(User::from))
    }

    async fn user_by_login(&self, login: &str) -> Result<Option<User>> {
        let login = normalize_login(login);
        let by_email = login.contains('@');
        let claims = if by_email { EMAIL_CLAIMS } else { USERNAME_CLAIMS };
        let Some(id) = self.claim_owner(claims, &login).await? else {
            return Ok(None);
        };
        // A claim left behind by an interrupted registration points to a row without this
        // value (or none): it never logs anyone in.
        Ok(self.user_by_id(id).await?.filter(|u| {
            if by_email {
                u.email == login
            } else {
                u.username.as_deref() == Some(login.as_str())
            }
        }))
    }

    async fn delete_user(&self, id: Uuid) -> Result<bool> {
        let Some(user) = self.user_by_id(id).await? else {
            return Ok(false);
        };
        // Read first: skips a needless tombstone (and the CQL test double refuses deletes
        // from a table that never had a row).
        if !self.tenants_of_user(id).await?.is_empty() {
            self.session
                .execute_unpaged("DELETE FROM user_tenants WHERE user_id = ?", (id,))
                .await
                .map_err(Error::scylla)?;
        }
        self.release(EMAIL_CLAIMS, &user.email, id).await?;
        if let Some(name) = &user.username {
            self.release(USERNAME_CLAIMS, name, id).await?;
        }
        self.delete_user_row(id).await?;
        Ok(true)
    }

    async fn grant_tenant(&self, user_id: Uuid, tenant_id: &str, at_ms: i64) -> Result<()> {
        if self
            .tenants_of_user(user_id)
            .await?
            .iter()
            .any(|t| t == tenant_id)
        {
            return Ok(()); // keep the first grant time
        }
        self.session
            .execute_unpaged(
                "INSERT INTO user_tenants (user_id, tenant_id, granted_at) VALUES (?, ?, ?)",
                (user_id, tenant_id, at_ms),
            )
            .await
            .map_err(Error::scylla)?;
        Ok(())
    }

    async fn revoke_tenant(&self, user_id: Uuid, tenant_id: &str) -> Result<bool> {
        if !self
            .tenants_of_user(user_id)
            .await?
            .iter()
            .any(|t| t == tenant_id)
        {
            return Ok(false);
        }
        self.session
            .execute_unpaged(
                "DELETE FROM user_tenants WHERE user_id = ? AND tenant_id = ?",
                (user_id, tenant_id),
            )
            .await
            .map_err(Error::scylla)?;
        Ok(true)
    }

    async fn tenants_of_user(&self, user_id: Uuid) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = self
            .read_all("SELECT tenant_id FROM user_tenants WHERE user_id = ?", (user_id,))
            .await?;
        let mut tenants: Vec<String> = rows.into_iter().map(|(t,)| t).collect();
        tenants.sort();
        Ok(tenants)
    }
}
