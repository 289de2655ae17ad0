//! ARCHITECTURE.md is the map of the code: every module under `crates/*/src` is named on it,
//! and every module it names exists. A module added, moved or removed without the map fails
//! here.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every `.rs` file under `dir`, as its path relative to `base`.
fn modules(base: &Path, dir: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            modules(base, &p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
        }
    }
}

/// The crates' modules, as (crate, path inside its `src`), crate roots left out.
fn all_modules() -> Vec<(String, String)> {
    let mut all = Vec::new();
    for c in std::fs::read_dir(root().join("crates")).unwrap() {
        let c = c.unwrap().path();
        let src = c.join("src");
        if !src.is_dir() {
            continue;
        }
        let mut ms = Vec::new();
        modules(&src, &src, &mut ms);
        for m in ms {
            if !matches!(Path::new(&m).file_name().and_then(|n| n.to_str()), Some("lib.rs" | "main.rs" | "mod.rs")) {
                all.push((c.file_name().unwrap().to_string_lossy().into_owned(), m));
            }
        }
    }
    all.sort();
    all
}

/// The map names a module by its path in its crate (`api/logread.rs`), or by its file name or
/// name in backticks (`queue.rs`, `expand`) — at the top of its crate, or, for a module in a
/// folder, where the map also names the folder (`notify/` … `email.rs`).
fn named(map: &str, module: &str) -> bool {
    let in_backticks = |name: &str| [format!("`{name}`"), format!("`{name} "), format!("`{name}:"), format!("/{name}`")].iter().any(|p| map.contains(p.as_str()));
    if in_backticks(module) {
        return true;
    }
    let (folder, file) = match module.rsplit_once('/') {
        Some((folder, file)) => (Some(folder), file),
        None => (None, module),
    };
    let by_name = in_backticks(file) || in_backticks(file.trim_end_matches(".rs"));
    match folder {
        None => by_name,
        Some(f) => by_name && map.contains(&format!("`{f}/")),
    }
}

#[test]
fn every_module_is_on_the_map() {
    let map = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let missing: Vec<String> = all_modules().into_iter().filter(|(_, m)| !named(&map, m)).map(|(c, m)| format!("crates/{c}/src/{m}")).collect();
    assert!(missing.is_empty(), "modules ARCHITECTURE.md does not name (add them to its code map): {missing:#?}");
}

#[test]
fn every_module_the_map_names_exists() {
    let map = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let modules = all_modules();
    let exists = |name: &str| modules.iter().any(|(_, m)| m == name || m.ends_with(&format!("/{name}")));
    let mut gone = Vec::new();
    let crates: Vec<PathBuf> = std::fs::read_dir(root().join("crates")).unwrap().map(|c| c.unwrap().path()).collect();
    for piece in map.split('`').skip(1).step_by(2) {
        // A file in backticks: a module (`queue.rs`, `api/logread.rs`), a crate's file
        // (`kiln-store/src/projects.rs`, `crates/kiln/tests/suites.rs`) or a test of some
        // crate (`tests/layers.rs`); not a pattern.
        let named = piece.trim();
        if !named.ends_with(".rs") || named.contains(' ') || named.contains('*') {
            continue;
        }
        let found = if named.starts_with("crates/") {
            root().join(named).is_file()
        } else if named.starts_with("kiln") && named.contains('/') {
            root().join("crates").join(named).is_file()
        } else if named.starts_with("tests/") {
            crates.iter().any(|c| c.join(named).is_file())
        } else {
            exists(named)
        };
        if !found {
            gone.push(named.to_string());
        }
    }
    gone.sort();
    gone.dedup();
    assert!(gone.is_empty(), "ARCHITECTURE.md names modules that do not exist: {gone:?}");
}

#[test]
fn the_check_sees_a_missing_module() {
    // The check itself: a map without a module's name fails it, one with it passes.
    assert!(!named("`queue.rs` (claims)", "seal.rs"));
    assert!(named("`queue.rs` (claims), `seal.rs` (seals)", "seal.rs"));
    assert!(named("the batch planner (`batchplan`: …)", "batchplan.rs"));
    assert!(!named("`batchplan`", "api/batchplan.rs"), "a nested module's folder is named too");
    assert!(named("`notify/` (what a change sends: `plan.rs`)", "notify/plan.rs"));
    assert!(named("`api/logread.rs`: log slices", "api/logread.rs"));
}
