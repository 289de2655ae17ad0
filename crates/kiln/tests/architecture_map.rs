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

/// Each crate: its name, its `src` folder and its source files (paths inside `src`).
fn crate_sources() -> Vec<(String, std::path::PathBuf, Vec<String>)> {
    let mut out = Vec::new();
    for c in std::fs::read_dir(root().join("crates")).unwrap() {
        let c = c.unwrap().path();
        let src = c.join("src");
        if !src.is_dir() {
            continue;
        }
        let mut files = Vec::new();
        modules(&src, &src, &mut files);
        out.push((c.file_name().unwrap().to_string_lossy().into_owned(), src, files));
    }
    out
}

/// The crates' modules, as (crate, path inside its `src`), crate roots left out.
fn all_modules() -> Vec<(String, String)> {
    let mut all = Vec::new();
    for (name, _, files) in crate_sources() {
        for m in files {
            if !matches!(Path::new(&m).file_name().and_then(|n| n.to_str()), Some("lib.rs" | "main.rs" | "mod.rs")) {
                all.push((name.clone(), m));
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

// ── Modules import each other without cycles ────────────────────────────────────────────
//
// A crate's top-level modules (`convert.rs`, `notify/`) must depend on each other one way:
// every `crate::<module>` a module's files name (`use crate::x::…`, `crate::x::f()`,
// `use crate::{x, y::z}`) is an edge, and no edges may go round. Code of a `#[cfg(test)] mod
// … { … }` and comment lines do not count: a test may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};

/// Modules of a crate that still import each other round in a cycle, as one strongly
/// connected set each, with why. None are left (kiln-server's, review §2 (a), came apart);
/// one written here may only shrink.
const KNOWN_TANGLES: &[(&str, &[&str], &str)] = &[];

/// Inside a known tangle, the pairs that still import each other directly. Any other pair
/// that does is a new back-edge — like `convert` ⇄ `notify` was.
const KNOWN_MUTUAL: &[(&str, &str, &str, &str)] = &[];

/// The top-level modules that `text` (one file's source) names as `crate::<module>`.
fn crate_refs(text: &str) -> BTreeSet<String> {
    // Leave out each `#[cfg(test)] mod … {`, up to its closing `}` alone on a line (rustfmt
    // puts a top-level module's there), and every comment line.
    let mut code = String::with_capacity(text.len());
    let mut lines = text.lines().peekable();
    while let Some(l) = lines.next() {
        if l.trim() == "#[cfg(test)]" && lines.peek().is_some_and(|n| n.starts_with("mod ") && n.trim_end().ends_with('{')) {
            lines.by_ref().find(|n| *n == "}");
        } else if !l.trim_start().starts_with("//") {
            code.push_str(l);
            code.push('\n');
        }
    }
    let ident = |s: &str| -> String { s.trim_start().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect() };
    let mut out = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().next_back();
        let after = &rest[i + "crate::".len()..];
        rest = after;
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = after.strip_prefix('{') {
            let (mut depth, mut start) = (0, 0);
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        out.insert(ident(&group[start..j]));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.insert(ident(&group[start..j]));
                        start = j + 1;
                    }
                    _ => {}
                }
            }
        } else {
            out.insert(ident(after));
        }
    }
    out.retain(|m| m.starts_with(|c: char| c.is_ascii_lowercase() || c == '_'));
    out
}

/// Per crate: each top-level module and the other top-level modules it names.
fn module_graphs() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let mut graphs = BTreeMap::new();
    for (name, src, files) in crate_sources() {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for f in &files {
            let top = f.split('/').next().unwrap().trim_end_matches(".rs").to_string();
            if top == "lib" || top == "main" {
                continue;
            }
            let refs = crate_refs(&std::fs::read_to_string(src.join(f)).unwrap());
            g.entry(top).or_default().extend(refs);
        }
        let names: BTreeSet<String> = g.keys().cloned().collect();
        for (m, refs) in g.iter_mut() {
            refs.retain(|r| r != m && names.contains(r));
        }
        graphs.insert(name, g);
    }
    graphs
}

/// The modules `from` reaches.
fn reach(g: &BTreeMap<String, BTreeSet<String>>, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from.to_string()];
    while let Some(m) = todo.pop() {
        for n in g.get(&m).into_iter().flatten() {
            if seen.insert(n.clone()) {
                todo.push(n.clone());
            }
        }
    }
    seen
}

/// The sets of two or more modules that import each other round (strongly connected).
fn tangles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    let reached: BTreeMap<&String, BTreeSet<String>> = g.keys().map(|m| (m, reach(g, m))).collect();
    let mut out: Vec<BTreeSet<String>> = Vec::new();
    for m in g.keys() {
        if !reached[m].contains(m) || out.iter().any(|t| t.contains(m)) {
            continue;
        }
        out.push(g.keys().filter(|n| n == &m || (reached[m].contains(*n) && reached[n].contains(m))).cloned().collect());
    }
    out
}

/// A shortest cycle through `m`, written `a → b → a`.
fn cycle_through(g: &BTreeMap<String, BTreeSet<String>>, m: &str) -> String {
    let mut back: BTreeMap<String, String> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([m.to_string()]);
    while let Some(at) = queue.pop_front() {
        for n in g.get(&at).into_iter().flatten() {
            if n == m {
                let mut path = vec![m.to_string(), at.clone()];
                while let Some(p) = back.get(path.last().unwrap()) {
                    path.push(p.clone());
                }
                path.reverse();
                path.pop();
                path.push(m.to_string());
                return path.join(" → ");
            }
            if !back.contains_key(n) && n != m {
                back.insert(n.clone(), at.clone());
                queue.push_back(n.clone());
            }
        }
    }
    format!("{m} (no cycle)")
}

/// What is wrong with one crate's graph: cycles outside the known tangles, known tangles
/// that changed, pairs importing each other that are not known.
fn cycle_problems(krate: &str, g: &BTreeMap<String, BTreeSet<String>>, known: &[(&str, &[&str], &str)], mutual: &[(&str, &str, &str, &str)]) -> Vec<String> {
    let mut problems = Vec::new();
    let known: Vec<BTreeSet<String>> = known.iter().filter(|k| k.0 == krate).map(|k| k.1.iter().map(|m| m.to_string()).collect()).collect();
    for t in tangles(g) {
        if known.contains(&t) {
            continue;
        }
        match known.iter().find(|k| !k.is_disjoint(&t)) {
            Some(k) if t.is_subset(k) => problems.push(format!("{krate}: a known tangle shrank (good): write down what is left, {t:?}")),
            Some(k) => {
                let new = t.difference(k).next().unwrap();
                problems.push(format!("{krate}: module `{new}` joined a known tangle: {}", cycle_through(g, new)));
            }
            None => problems.push(format!("{krate}: modules import each other in a cycle: {}", cycle_through(g, t.first().unwrap()))),
        }
    }
    for k in &known {
        if !tangles(g).iter().any(|t| t.is_superset(k)) {
            problems.push(format!("{krate}: a known tangle came apart (good): write down what is left of {k:?}"));
        }
    }
    for (a, refs) in g {
        for b in refs.iter().filter(|b| a < *b && g[*b].contains(a)) {
            if !mutual.iter().any(|m| m.0 == krate && (m.1, m.2) == (a.as_str(), b.as_str())) {
                problems.push(format!("{krate}: `{a}` and `{b}` import each other: {a} → {b} → {a}"));
            }
        }
    }
    for m in mutual.iter().filter(|m| m.0 == krate) {
        if !(g.get(m.1).is_some_and(|r| r.contains(m.2)) && g.get(m.2).is_some_and(|r| r.contains(m.1))) {
            problems.push(format!("{krate}: `{}` and `{}` no longer import each other (good): take them off KNOWN_MUTUAL", m.1, m.2));
        }
    }
    problems
}

#[test]
fn modules_of_a_crate_import_each_other_without_cycles() {
    let mut problems = Vec::new();
    for (krate, g) in module_graphs() {
        problems.extend(cycle_problems(&krate, &g, KNOWN_TANGLES, KNOWN_MUTUAL));
    }
    assert!(problems.is_empty(), "module import cycles (see ARCHITECTURE.md's invariants):\n{}", problems.join("\n"));
}

#[test]
fn the_check_sees_a_cycle() {
    // The check itself: references are found in every form, test code is left out, and a
    // cycle is named.
    let refs = crate_refs("use crate::a::X;\nuse crate::{b, c::{D, E}};\n// crate::z\nfn f() { crate::d::g(); $crate::e::h(); kiln_crate::y(); }\n#[cfg(test)]\nmod tests;\nfn k() { crate::f::k() }\n#[cfg(test)]\nmod tests {\n    use crate::x;\n}\nfn l() { crate::g::l() }\n");
    assert_eq!(refs.into_iter().collect::<Vec<_>>(), ["a", "b", "c", "d", "e", "f", "g"]);
    let g = |edges: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            g.entry(a.to_string()).or_default().insert(b.to_string());
            g.entry(b.to_string()).or_default();
        }
        g
    };
    assert!(cycle_problems("k", &g(&[("a", "b"), ("b", "c")]), &[], &[]).is_empty());
    let p = cycle_problems("k", &g(&[("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]), &[], &[]);
    assert_eq!(p, ["k: modules import each other in a cycle: a → b → c → a"]);
    let p = cycle_problems("k", &g(&[("convert", "notify"), ("notify", "convert")]), &[], &[]);
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(p[1].contains("`convert` and `notify` import each other"), "{p:?}");
    // Inside a known tangle a new direct pair still fails, and a new module joining it too.
    let tangle: &[(&str, &[&str], &str)] = &[("k", &["a", "b", "c"], "why")];
    assert!(cycle_problems("k", &g(&[("a", "b"), ("b", "c"), ("c", "a")]), tangle, &[]).is_empty());
    let p = cycle_problems("k", &g(&[("a", "b"), ("b", "c"), ("c", "a"), ("c", "b")]), tangle, &[]);
    assert_eq!(p, ["k: `b` and `c` import each other: b → c → b"]);
    let p = cycle_problems("k", &g(&[("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("d", "a")]), tangle, &[]);
    assert_eq!(p, ["k: module `d` joined a known tangle: d → a → b → c → d"]);
}
