//! `kiln retry BUILD --failed [--wait]`: a new build of the same commit that reruns only the
//! failed tests of `tests:` jobs and the failed plain jobs, linked to the original.

use super::api;
use super::builds::{build_line, follow_to_end};
use crate::api_client::Exit;
use crate::ClientOpts;
use kiln_wire::api::Build;

pub async fn retry(c: &ClientOpts, id: i64, failed: bool, wait: bool) -> anyhow::Result<i32> {
    if !failed {
        return Err(Exit(2, "say what to retry: --failed reruns the failed jobs and tests".into()).into());
    }
    let api = api(c);
    let b: Build = api.post(&format!("/api/v1/builds/{id}/retry"), &serde_json::json!({ "failed": true })).await?;
    if !wait {
        if c.json {
            super::print_json(&b);
        } else {
            println!("{} (retry of #{id})", build_line(&b));
        }
        return Ok(0);
    }
    follow_to_end(&api, b.id, c.json).await
}
