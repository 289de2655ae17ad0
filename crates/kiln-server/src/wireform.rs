//! Values in the API's wire form that need nothing of the server: times as RFC 3339 text and
//! a run's test counts. A leaf: `convert.rs` and `notify/` both use it.

use kiln_wire::api;

/// Epoch milliseconds as RFC 3339 UTC with milliseconds (sorts as text).
pub fn ts(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// A run's test counts as the API shows them (no first failure known here).
pub fn test_summary(c: kiln_core::testrun::Counts) -> api::TestSummary {
    api::TestSummary { total: c.total, passed: c.passed, failed: c.failed, errored: c.errored, skipped: c.skipped, flaky: c.flaky, first_failure_ms: None }
}
