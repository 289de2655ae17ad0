//! Small helpers to read portable column types (JSON text, 0/1 booleans, statuses as enums).

use crate::{Result, StoreError};
use std::collections::BTreeMap;

pub(crate) fn json_map(text: &str) -> Result<BTreeMap<String, String>> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("label map {text:?}: {e}")))
}

pub(crate) fn json_list(text: &str) -> Result<Vec<String>> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("list {text:?}: {e}")))
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("serialising plain data cannot fail")
}

/// A job's status column, as the state machine's enum.
pub(crate) fn job_status(r: &sqlx::any::AnyRow, column: &str) -> Result<kiln_core::state::JobStatus> {
    use sqlx::Row;
    let text: String = r.try_get(column)?;
    kiln_core::state::JobStatus::parse(&text).ok_or_else(|| StoreError::Corrupt(format!("job status {text:?}")))
}

/// A build's status column, as the enum.
pub(crate) fn build_status(r: &sqlx::any::AnyRow, column: &str) -> Result<kiln_core::state::BuildStatus> {
    use sqlx::Row;
    parse_build_status(&r.try_get::<String, _>(column)?)
}

/// A build status as a statement returned it.
pub(crate) fn parse_build_status(text: &str) -> Result<kiln_core::state::BuildStatus> {
    kiln_core::state::BuildStatus::parse(text).ok_or_else(|| StoreError::Corrupt(format!("build status {text:?}")))
}

/// A notification delivery's status, as its row holds it.
pub(crate) fn delivery_status(r: &sqlx::any::AnyRow, column: &str) -> Result<kiln_core::state::DeliveryStatus> {
    use sqlx::Row;
    let text: String = r.try_get(column)?;
    kiln_core::state::DeliveryStatus::parse(&text).ok_or_else(|| StoreError::Corrupt(format!("delivery status {text:?}")))
}

/// A build status column that may be empty (NULL: never set).
pub(crate) fn maybe_build_status(r: &sqlx::any::AnyRow, column: &str) -> Result<Option<kiln_core::state::BuildStatus>> {
    use sqlx::Row;
    r.try_get::<Option<String>, _>(column)?.as_deref().map(parse_build_status).transpose()
}
