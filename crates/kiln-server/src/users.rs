//! People: argon2 password hashes, the first admin made at first start, and
//! the rules for names and passwords. Hashing runs on `hashpool`'s few threads.

use crate::error::{AppError, AppResult};
use kiln_store::{Store, UserRow};

/// The name of the admin user made at first start.
pub const FIRST_ADMIN: &str = "admin";

/// A PHC string (`$argon2id$v=19$…`) for `password`, with a fresh salt.
pub async fn hash_password(password: &str) -> AppResult<String> {
    let pw = password.to_string();
    crate::hashpool::run(move || crate::hashpool::hash(pw.as_bytes()))
        .await
        .map_err(|e| AppError::Internal(format!("password hashing: {e}")))?
        .map_err(|e| AppError::Internal(format!("failed to hash a password: {e}")))
}

/// Whether `password` matches `hash` (a PHC string). A malformed hash never matches.
pub async fn verify_password(password: &str, hash: &str) -> bool {
    let (pw, hash) = (password.to_string(), hash.to_string());
    crate::hashpool::run(move || crate::hashpool::verify(pw.as_bytes(), &hash)).await.unwrap_or(false)
}

/// A hash of a password nobody has, checked when the user does not exist so
/// that a wrong name takes as long as a wrong password.
async fn decoy_hash() -> String {
    static DECOY: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    DECOY.get_or_init(|| async { hash_password(&kiln_store::random_token()).await.unwrap_or_default() }).await.clone()
}

/// The user if `name` and `password` match one.
pub async fn authenticate(store: &Store, name: &str, password: &str) -> AppResult<Option<UserRow>> {
    match store.user(name).await? {
        // A disabled user's right password is refused like a wrong one.
        Some(u) => Ok((verify_password(password, &u.password_hash).await && !u.disabled).then_some(u)),
        None => {
            verify_password(password, &decoy_hash().await).await;
            Ok(None)
        }
    }
}

pub fn validate_user_name(name: &str) -> AppResult<()> {
    let ok = !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c));
    if ok {
        Ok(())
    } else {
        Err(AppError::BadRequest(format!("invalid user name {name:?}: use letters, digits, '-', '_', '.' and '@' (at most 64)")))
    }
}

pub fn validate_password(password: &str) -> AppResult<()> {
    if password.chars().count() < 8 {
        return Err(AppError::BadRequest("a password needs at least 8 characters".into()));
    }
    if password.len() > 1024 {
        return Err(AppError::BadRequest("a password may have at most 1024 bytes".into()));
    }
    Ok(())
}

/// A random password that is easy to copy (letters and digits, 20 characters).
pub fn generate_password() -> String {
    kiln_store::random_token()[..20].to_string()
}

/// Make a user; returns the user and the password when one was generated.
pub async fn create_user(store: &Store, name: &str, password: Option<&str>, admin: bool) -> AppResult<(UserRow, Option<String>)> {
    validate_user_name(name)?;
    let generated = password.is_none().then(generate_password);
    let pw = password.map(str::to_string).or_else(|| generated.clone()).unwrap_or_default();
    validate_password(&pw)?;
    let user = store.create_user(name, &hash_password(&pw).await?, admin).await?;
    Ok((user, generated))
}

/// At first start (no user yet) make the admin user. Returns the password if it was generated.
pub async fn seed_first_admin(store: &Store, password: Option<&str>) -> AppResult<Option<String>> {
    if store.count_users().await? > 0 {
        return Ok(None);
    }
    let (_, generated) = create_user(store, FIRST_ADMIN, password, true).await?;
    Ok(generated)
}
