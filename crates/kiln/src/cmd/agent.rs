//! `kiln agent`: take jobs from a server (the command line lives in `kiln_agent::cli`, which
//! the lean `kiln-agent` binary shares).

pub use kiln_agent::cli::AgentArgs;

pub async fn run(a: AgentArgs) -> anyhow::Result<i32> {
    Ok(kiln_agent::cli::run(a).await?)
}
