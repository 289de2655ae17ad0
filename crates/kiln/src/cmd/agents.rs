//! `kiln agents`, `kiln drain`.

use super::{api, print_json};
use crate::api_client::seg;
use crate::ClientOpts;
use kiln_wire::api::Agent;

pub async fn list(c: &ClientOpts) -> anyhow::Result<i32> {
    let agents: Vec<Agent> = api(c).get("/api/v1/agents").await?;
    if c.json {
        print_json(&agents);
        return Ok(0);
    }
    if agents.is_empty() {
        println!("no agents yet: KILN_AGENT_TOKEN=SECRET kiln agent --server URL (or --token-file FILE)");
    }
    for a in agents {
        let state = if a.draining { "draining" } else if a.online { "online" } else { "offline" };
        let labels: Vec<String> = a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let jobs = if a.jobs.is_empty() { "idle".to_string() } else { format!("running jobs {:?}", a.jobs) };
        println!("{:<20} {:<8} {}  last seen {}  [{}]", a.name, state, jobs, a.last_seen.unwrap_or_else(|| "never".into()), labels.join(" "));
    }
    Ok(0)
}

pub async fn drain(c: &ClientOpts, name: &str) -> anyhow::Result<i32> {
    let a: Agent = api(c).post(&format!("/api/v1/agents/{}/drain", seg(name)), &serde_json::json!({})).await?;
    if c.json {
        print_json(&a)
    } else {
        println!("agent {} will finish its current jobs and stop", a.name);
    }
    Ok(0)
}
