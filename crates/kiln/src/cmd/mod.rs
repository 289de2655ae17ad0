//! One module per group of subcommands.

pub mod agent;
pub mod agents;
pub mod artifacts;
pub mod builds;
pub mod check;
pub mod enrol;
pub mod db;
pub mod logs;
pub mod notify;
pub mod project;
pub mod run;
pub mod server;
pub mod submit;
pub mod tests;
pub mod up;
pub mod retry;
pub mod users;

use crate::api_client::Api;
use crate::ClientOpts;

pub fn api(c: &ClientOpts) -> Api {
    Api::new(&c.server, c.token.clone())
}

/// Print a value as pretty JSON (the `--json` output).
pub fn print_json<T: serde::Serialize>(v: &T) {
    println!("{}", serde_json::to_string_pretty(v).expect("plain data serialises"));
}

pub use kiln_agent::cli::shutdown_signal;
