//! The console's JS listens only for event kinds the server sends: every kind it names on its
//! `EventSource` is one of `kiln_wire::events::EventKind` (or `resync`), so a renamed kind
//! fails here rather than leaving a page that is never live.

use kiln_wire::events::{EventKind, RESYNC};

/// Every kind the JS subscribes to: `es.addEventListener("kind", …)` and
/// `["a", "b"].forEach((k) => es.addEventListener(k, …))`.
fn listened(js: &str) -> Vec<String> {
    let mut kinds = Vec::new();
    for line in js.lines() {
        if let Some(rest) = line.split("es.addEventListener(\"").nth(1) {
            kinds.push(rest.split('"').next().unwrap().to_string());
        }
        if line.contains(".forEach((k) => es.addEventListener(k") {
            let list = line.trim().strip_prefix('[').and_then(|l| l.split(']').next()).expect("a list of kinds");
            kinds.extend(list.split(',').map(|k| k.trim().trim_matches('"').to_string()));
        }
    }
    kinds
}

#[test]
fn the_console_listens_only_for_kinds_that_are_sent() {
    let js = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/console.js")).unwrap();
    let kinds = listened(&js);
    assert!(kinds.len() >= 4, "found too few listened kinds ({kinds:?}): has console.js changed how it subscribes?");
    let sent: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).chain([RESYNC]).collect();
    for k in &kinds {
        assert!(sent.contains(&k.as_str()), "console.js listens for {k:?}, which the server never sends (kinds: {sent:?})");
    }
    // The parser sees what it must: a kind that is not sent would be caught.
    assert_eq!(listened("    [\"build\", \"nope\"].forEach((k) => es.addEventListener(k, soon));"), ["build", "nope"]);
}
