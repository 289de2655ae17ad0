//! `kiln enrol`: enrolment secrets for agents (create, list, revoke) and revoking an agent.

use super::{api, print_json};
use crate::api_client::seg;
use crate::ClientOpts;
use clap::Subcommand;
use kiln_wire::enrol::{Enrolment, EnrolmentCreate, EnrolmentCreated};

#[derive(Subcommand)]
pub enum EnrolCmd {
    /// Make an enrolment secret (printed once): agents register with it as KILN_AGENT_TOKEN.
    Create {
        /// Agents enrolled with it must have this label, key=value or key=glob (repeatable).
        #[arg(long = "label", value_parser = kiln_core::labels::parse_label)]
        labels: Vec<(String, String)>,
        /// Its agents take jobs of this project only (a name or glob; repeatable).
        #[arg(long = "project")]
        projects: Vec<String>,
        /// How many agents may enrol with it [default: no limit].
        #[arg(long)]
        uses: Option<i64>,
    },
    /// List enrolment secrets (never the secrets themselves).
    List,
    /// Revoke an enrolment secret by id: no agent registers with it any more.
    Revoke { id: i64 },
    /// Revoke an agent: its token stops working and its running jobs run again elsewhere.
    RevokeAgent { name: String },
}

fn line(e: &Enrolment) -> String {
    let labels: Vec<String> = e.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let uses = e.uses_left.map_or_else(|| "unlimited".to_string(), |n| format!("{n} use(s) left"));
    let state = if e.revoked { "revoked" } else { "active" };
    format!(
        "{:<4} {:<8} {uses}, used {}  labels [{}]  projects [{}]  by {} at {}",
        e.id,
        state,
        e.used,
        labels.join(" "),
        e.projects.join(" "),
        e.created_by,
        e.created_at
    )
}

pub async fn run(action: EnrolCmd, c: &ClientOpts) -> anyhow::Result<i32> {
    let api = api(c);
    match action {
        EnrolCmd::Create { labels, projects, uses } => {
            let req = EnrolmentCreate { labels: labels.into_iter().collect(), projects, uses };
            let made: EnrolmentCreated = api.post("/api/v1/enrolments", &req).await?;
            if c.json {
                print_json(&made);
            } else {
                println!("{}", line(&made.enrolment));
                println!("secret (shown only this once): {}", made.secret);
                println!("start an agent with: KILN_AGENT_TOKEN=<secret> kiln agent --server URL --name NAME");
            }
        }
        EnrolCmd::List => {
            let list: Vec<Enrolment> = api.get("/api/v1/enrolments").await?;
            if c.json {
                print_json(&list);
            } else if list.is_empty() {
                println!("no enrolment secrets yet: kiln enrol create");
            } else {
                list.iter().for_each(|e| println!("{}", line(e)));
            }
        }
        EnrolCmd::Revoke { id } => {
            let _: serde_json::Value = api.delete(&format!("/api/v1/enrolments/{id}")).await?;
            println!("enrolment {id} revoked: no agent registers with it any more");
        }
        EnrolCmd::RevokeAgent { name } => {
            let v: serde_json::Value = api.post(&format!("/api/v1/agents/{}/revoke", seg(&name)), &serde_json::json!({})).await?;
            println!("agent {name} revoked ({} running job(s) queued again); it can come back only with a valid enrolment secret", v["requeued"]);
        }
    }
    Ok(0)
}
