//! `kiln-agent`: the agent alone, for agent machines. It takes exactly what `kiln agent` takes
//! and behaves the same; it maps none of the server's code, so it stays small in memory.

use clap::Parser;

/// Take jobs from a kiln server (the same as `kiln agent`).
#[derive(Parser)]
#[command(name = "kiln-agent", version)]
struct Cli {
    #[command(flatten)]
    agent: kiln_agent::cli::AgentArgs,
}

fn main() {
    let cli = Cli::parse();
    kiln_agent::cli::init_tracing();
    // An agent only waits on the network and its steps: one thread keeps it small.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let code = match rt.block_on(kiln_agent::cli::run(cli.agent)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kiln-agent: {}", e.1);
            e.0
        }
    };
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    std::process::exit(code);
}
