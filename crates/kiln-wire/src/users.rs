//! The API's objects for people: users, personal API tokens, and who is asking.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub admin: bool,
    /// A disabled user can neither sign in nor use a token.
    #[serde(default)]
    pub disabled: bool,
    pub created_at: String,
}

/// `PATCH /api/v1/users/{name}` (admins only): what is given changes.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct UserUpdate {
    #[serde(default)]
    pub admin: Option<bool>,
    #[serde(default)]
    pub disabled: Option<bool>,
}

/// `POST /api/v1/users` (admins only). Without a password the server makes one and returns it once.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct UserCreate {
    pub name: String,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub admin: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserCreated {
    pub user: User,
    /// The generated password, shown only in this answer (None when one was given).
    pub password: Option<String>,
}

/// `POST /api/v1/users/{name}/password` (the user or an admin).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PasswordChange {
    pub password: String,
    /// The current password: needed to change your own password (an admin resetting someone else's needs none).
    #[serde(default)]
    pub current: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenInfo {
    pub id: i64,
    pub user: String,
    pub admin: bool,
    pub label: String,
    pub created_at: String,
}

/// `POST /api/v1/tokens`: a personal API token for the caller.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct TokenCreate {
    #[serde(default)]
    pub label: Option<String>,
    /// Admins only: make the token for this user (a service account or script).
    #[serde(default)]
    pub user: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenCreated {
    pub info: TokenInfo,
    /// The token itself, shown only in this answer (use it as KILN_TOKEN).
    pub token: String,
}

/// `GET /api/v1/me`: who the server takes the caller for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Me {
    pub signed_in: bool,
    pub name: String,
    pub admin: bool,
}
