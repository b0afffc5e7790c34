//! Users and grants over the store (only its [`UserStore`]), shared by the service and the CLI.
//! Nothing here signs or verifies a token, so `auth-api create-user|grant|revoke|delete-user`
//! run without `auth_api.jwt_secret`.

use schemas::time::now_ms;
use store::{User, UserStore, Uuid};

use crate::accounts::{NewAccount, RegisterRequest, UserView};
use crate::dashboard::check_id;
use crate::passwords::Hasher;
use crate::{Error, Result};

/// Creates a user: the account rules, bcrypt, the store (which keeps email and username
/// unique).
pub async fn create_user(
    store: &(impl UserStore + ?Sized),
    hasher: &Hasher,
    req: RegisterRequest,
) -> Result<UserView> {
    let account = NewAccount::parse(req)?;
    // Cheap pre-checks before paying for bcrypt; the store decides races.
    if store.user_by_login(&account.email).await?.is_some() {
        return Err(Error::Taken { field: "email" });
    }
    if let Some(name) = &account.username {
        if store.user_by_login(name).await?.is_some() {
            return Err(Error::Taken { field: "username" });
        }
    }
    let password_hash = hasher.hash(account.password).await?;
    let now = now_ms();
    let user = User {
        id: Uuid::new_v4(),
        email: account.email,
        username: account.username,
        password_hash,
        created_at_ms: now,
        updated_at_ms: now,
    };
    match store.create_user(&user).await {
        Ok(()) => {}
        Err(store::Error::Taken { field }) => return Err(Error::Taken { field }),
        Err(e) => return Err(e.into()),
    }
    tracing::info!(user_id = %user.id, "user registered");
    Ok(UserView::from(&user))
}

/// Grants `tenant` (an identifier by [`check_id`]) to the user with this email or username.
pub async fn grant(store: &(impl UserStore + ?Sized), login: &str, tenant: &str) -> Result<User> {
    check_id("tenant", tenant)?;
    let user = user(store, login).await?;
    store.grant_tenant(user.id, tenant, now_ms()).await?;
    Ok(user)
}

/// Revokes `tenant` from the user; false when it was not granted.
pub async fn revoke(store: &(impl UserStore + ?Sized), login: &str, tenant: &str) -> Result<bool> {
    let user = user(store, login).await?;
    Ok(store.revoke_tenant(user.id, tenant).await?)
}

/// Deletes the user and its grants.
pub async fn delete_user(store: &(impl UserStore + ?Sized), login: &str) -> Result<User> {
    let user = user(store, login).await?;
    store.delete_user(user.id).await?;
    Ok(user)
}

/// The user with this email or username.
pub async fn user(store: &(impl UserStore + ?Sized), login: &str) -> Result<User> {
    store.user_by_login(login).await?.ok_or_else(|| Error::Invalid {
        field: "email",
        message: format!("no user `{login}`"),
    })
}
