//! `kiln agent`: take jobs from a server (the command line lives in `kiln_agent::cli`, which
//! the lean `kiln-agent` binary shares).

pub use kiln_agent::cli::AgentArgs;

pub async fn run(a: AgentArgs) -> anyhow::Result<i32> {
    kiln_agent::cli::run(a).await.map_err(|e| crate::api_client::Exit(e.0, e.1).into())
}
