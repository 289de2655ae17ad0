//! ARCHITECTURE.md's layering invariants, checked on the source: every permission is decided in
//! `app::access`, and the adapters (API, console, webhooks, uploads, the agent protocol) neither write the store's
//! use-case tables nor emit events or wake agents themselves: they call `app::*`.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// (file relative to src/, line number, line) of every non-comment line containing `pattern`.
fn find(files: &[PathBuf], pattern: &str) -> Vec<String> {
    let mut hits = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if !code.starts_with("//") && code.contains(pattern) {
                hits.push(format!("{}:{}: {}", f.strip_prefix(src()).unwrap().display(), n + 1, code));
            }
        }
    }
    hits
}

#[test]
fn every_permission_is_decided_in_access() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files.retain(|f| !f.starts_with(src().join("app")));
    // Roles, sight and visibility are read only by `app::access`.
    for pattern in ["store.role(", "store.roles_of(", ".visibility ==", "Visibility::Private", "Visibility::Internal", "fn require_admin", "fn require_user(&self"] {
        let hits = find(&files, pattern);
        assert!(hits.is_empty(), "`{pattern}` outside app/ (decide it in app::access):\n{}", hits.join("\n"));
    }
}

#[test]
fn adapters_call_use_cases_and_never_emit_or_wake_themselves() {
    let mut files = Vec::new();
    for dir in ["api", "console", "uploads"] {
        rust_files(&src().join(dir), &mut files);
    }
    files.push(src().join("sources/hooks.rs"));
    files.push(src().join("agent_api.rs"));
    files.push(src().join("badge.rs"));
    for pattern in [
        ".emit(",
        ".wake_agents(",
        ".wake_control(",
        "store.cancel(",
        "store.set_draining(",
        "store.create_project(",
        "store.update_project(",
        "store.grant(",
        "store.revoke(",
        "store.set_password(",
        "store.create_token(",
        "store.revoke_token(",
        "start_build(",
    ] {
        let hits = find(&files, pattern);
        assert!(hits.is_empty(), "`{pattern}` in an adapter (write the use case once in app/ and call it):\n{}", hits.join("\n"));
    }
}

/// Only `kiln-wire` types cross the agent protocol: its handlers define no body, answer or
/// query type of their own and build no JSON by hand (the agent reads the same types).
#[test]
fn the_agent_protocol_speaks_only_kiln_wire_types() {
    let files: Vec<PathBuf> = ["agent_api.rs", "tests_api.rs", "artifacts.rs"].iter().map(|f| src().join(f)).collect();
    for pattern in ["json!(", "Json<serde_json::Value>", "derive("] {
        // Any derive that makes a (de)serialisable type, whatever else it derives.
        let hits: Vec<String> = find(&files, pattern).into_iter().filter(|h| pattern != "derive(" || h.contains("Serialize") || h.contains("Deserialize")).collect();
        assert!(hits.is_empty(), "`{pattern}` in the agent protocol (put the type in kiln_wire::agent):\n{}", hits.join("\n"));
    }
}
