//! Agent enrolment on the wire: enrolment secrets (the admin's API) and token rotation
//! (the agent protocol).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `POST /api/v1/enrolments` (admins only).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct EnrolmentCreate {
    /// Labels (`key` → value or glob) every agent enrolled with it must have.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Projects (names or globs) whose jobs its agents may take; empty: any.
    #[serde(default)]
    pub projects: Vec<String>,
    /// How many agents may enrol with it; none: no limit.
    #[serde(default)]
    pub uses: Option<i64>,
}

/// An enrolment secret as listed (the secret itself is shown only once, at creation).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Enrolment {
    pub id: i64,
    pub labels: BTreeMap<String, String>,
    pub projects: Vec<String>,
    pub uses_left: Option<i64>,
    pub used: i64,
    pub created_by: String,
    pub created_at: String,
    pub revoked: bool,
}

/// The answer to `POST /api/v1/enrolments`: the secret, once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnrolmentCreated {
    pub enrolment: Enrolment,
    pub secret: String,
}

/// The answer to `POST /api/v1/agent/rotate`: the agent's new token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RotateResponse {
    pub token: String,
}
