//! The lean `kiln-agent` binary (the agent alone, for agent machines): it takes the same flags
//! as `kiln agent`, runs jobs in the sandbox, and drains on SIGTERM. Needs bubblewrap
//! (`ci/setup-sandbox.sh`).

mod common;
use common::*;
use std::collections::BTreeSet;
use std::process::Command;

/// The `--flags` a help text lists.
fn flags(help: &[u8]) -> BTreeSet<String> {
    String::from_utf8_lossy(help)
        .split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']')
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| w.split(['=', '<', ':', '.']).next().unwrap().to_string())
        .collect()
}

#[test]
fn the_lean_agent_takes_exactly_the_flags_of_kiln_agent() {
    let lean = Command::new(lean_agent_bin()).arg("--help").output().unwrap();
    let full = Command::new(BIN).args(["agent", "--help"]).output().unwrap();
    assert!(lean.status.success() && full.status.success());
    let (mut lean, full) = (flags(&lean.stdout), flags(&full.stdout));
    // Only a program has a version; `kiln agent` is a subcommand of one.
    assert!(lean.remove("--version"));
    assert!(full.contains("--server") && full.contains("--isolation") && full.contains("--token-file"), "{full:?}");
    assert_eq!(lean, full);
}

#[test]
fn the_lean_agent_runs_a_job_in_the_sandbox_and_drains_on_sigterm() {
    let mut k = Kiln::start();
    let pid = k.lean_agent("lean", &["--label", "kind=lean"]);
    let work = k.path("work-lean");
    // The agent's saved token is in its work folder, which the sandbox hides.
    let pipeline = format!(
        "jobs:\n  j:\n    requires: {{kind: lean}}\n    steps:\n      - echo \"ran-on-$KILN_AGENT_NAME\"\n      - test ! -e {}/agent-token && echo token-hidden\n",
        work.display()
    );
    let repo = k.repo("p", &pipeline);
    k.add_project("p", &repo, &[]);
    let id = k.trigger("p");
    let b = k.wait_build(id, 60);
    assert_eq!(b["status"], "passed", "{b:#}\n{}", k.agent_log("lean"));
    let logs = k.logs(id);
    assert!(logs.contains("ran-on-lean") && logs.contains("token-hidden"), "{logs}");
    assert!(work.join("agent-token").exists(), "the lean agent saved no token of its own");
    signal(pid, "-TERM");
    assert_eq!(k.agent_exit("lean", 20), Some(0), "{}", k.agent_log("lean"));
}

/// The README's first command, `cargo run --release -- up`, needs `cargo run` to know which of
/// the workspace's binaries to run: exactly one package names its default, and it is kiln.
#[test]
fn cargo_run_from_the_workspace_runs_kiln() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut with_bins = Vec::new();
    let mut defaults = Vec::new();
    for c in std::fs::read_dir(root).unwrap() {
        let dir = c.unwrap().path();
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap_or_default();
        if dir.join("src/main.rs").exists() || manifest.contains("[[bin]]") {
            with_bins.push(dir.file_name().unwrap().to_string_lossy().into_owned());
        }
        for line in manifest.lines() {
            if let Some(v) = line.trim().strip_prefix("default-run") {
                defaults.push(v.trim_start_matches([' ', '=']).trim().trim_matches('"').to_string());
            }
        }
    }
    assert!(with_bins.len() >= 2, "the workspace has kiln and kiln-agent: {with_bins:?}");
    assert_eq!(defaults, ["kiln"], "packages with binaries: {with_bins:?}");
}
