//! The lean `kiln-agent` binary's command line: it names itself, and an agent with no token
//! is told how to give one. (Jobs through it are tested end to end in kiln's
//! `tests/lean_agent.rs`; this test also makes `cargo test --workspace` build the binary.)

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_kiln-agent");

#[test]
fn it_names_itself_in_its_version() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("kiln-agent "), "{out:?}");
}

#[test]
fn without_a_token_it_says_how_to_give_one_and_exits_2() {
    let work = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["--server", "http://127.0.0.1:9", "--work-dir"])
        .arg(work.path())
        .env_remove("KILN_AGENT_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("kiln-agent: no agent token: set KILN_AGENT_TOKEN or give --token-file FILE"), "{err}");
}
