//! Fuzzing, on stable Rust, of every parser of outside bytes: the pipeline YAML,
//! JUnit XML, each forge's webhook payload, archive extraction, and the agent
//! protocol's JSON. Inputs are generated and mutated from real samples
//! (proptest); every parser must answer (Ok or a clear error) without panicking,
//! and keep the invariants checked below.
//!
//! `KILN_FUZZ_CASES` sets the cases per parser (default 2,000; `fuzz/run.sh`
//! runs millions). A crash found here becomes a test in `regressions` below.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::sync::Arc;

fn cases() -> u32 {
    std::env::var("KILN_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000)
}

/// Run `check` on `cases()` inputs from `strategy`; print how many ran.
fn fuzz<S: Strategy>(name: &str, strategy: S, check: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let config = Config { cases: cases(), failure_persistence: None, max_shrink_iters: 2000, ..Config::default() };
    let mut runner = TestRunner::new(config);
    runner.run(&strategy, check).unwrap_or_else(|e| panic!("{name}: {e}"));
    eprintln!("fuzz {name}: {} cases", cases());
}

/// Tokens that tend to matter to parsers.
const TOKENS: &[&str] = &[
    "{", "}", "[", "]", "\"", "'", ":", ",", "-", "\n", "  ", "\t", "#", "&a", "*a", "!!str", "${{", "}}", "matrix.", "<", ">", "</", "/>", "<![CDATA[", "]]>", "&amp;",
    "&#0;", "\0", "\u{feff}", "\u{202e}", "0", "-1", "99999999999999999999", "1e999", "null", "true", "~", "\\u0000", "\\ud800", "refs/heads/", "0000000000000000000000000000000000000000",
];

/// A sample from `seeds`, changed by a few random edits: flip, insert, delete,
/// duplicate a slice, or insert a token.
fn mutated(seeds: Arc<Vec<Vec<u8>>>) -> impl Strategy<Value = Vec<u8>> {
    let n = seeds.len();
    (0..n, prop::collection::vec((0u8..5, any::<usize>(), any::<u8>(), 1usize..32), 0..8)).prop_map(move |(i, edits)| {
        let mut b = seeds[i].clone();
        for (op, at, byte, len) in edits {
            let at = at % (b.len() + 1);
            match op {
                0 if at < b.len() => b[at] ^= byte.max(1),
                1 => b.insert(at, byte),
                2 => {
                    let end = (at + len).min(b.len());
                    b.drain(at..end);
                }
                3 => {
                    let end = (at + len).min(b.len());
                    let piece = b[at..end].to_vec();
                    b.splice(at..at, piece);
                }
                _ => {
                    let t = TOKENS[byte as usize % TOKENS.len()].as_bytes();
                    b.splice(at..at, t.iter().copied());
                }
            }
        }
        b
    })
}

/// Mutated samples three times in four, arbitrary bytes otherwise.
fn inputs(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![3 => mutated(Arc::new(seeds)), 1 => prop::collection::vec(any::<u8>(), 0..600)]
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// ---- pipeline YAML ----

fn pipeline_seeds() -> Vec<Vec<u8>> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let mut seeds: Vec<Vec<u8>> = [".kiln.yml", "examples/hello/.kiln.yml", "examples/django-matrix/app/.kiln.yml", "examples/django-matrix/project/.kiln.yml"]
        .iter()
        .filter_map(|f| std::fs::read(format!("{root}/{f}")).ok())
        .collect();
    seeds.push(
        b"on:\n  push: { branches: [main], paths: [\"src/**\"] }\n  schedule: [\"0 3 * * *\"]\n  after: [up]\njobs:\n  t:\n    matrix:\n      a: [1,2]\n      b: [x,y]\n      include: [{a: 3, c: z}]\n      exclude: [{a: 1, b: x}]\n    tests: { shards: 4, list: \"ls\", run: \"run {tests}\", retries: 1 }\n    timeout: 10m\n    retries: 1\n    requires: { os: linux }\n    env: { K: \"${{ matrix.a }}\" }\n    artifacts: [\"out/**\"]\n  d:\n    needs: [t]\n    steps: [echo]\n"
            .to_vec(),
    );
    seeds
}

#[test]
fn pipeline_yaml() {
    fuzz("pipeline YAML", inputs(pipeline_seeds()), |b| {
        match kiln_core::pipeline::parse(".kiln.yml", &text(&b)) {
            Ok(p) => {
                let planned = kiln_server::caps::planned_jobs(&p);
                if planned <= 20_000 {
                    prop_assert_eq!(planned, kiln_core::expand::expand(&p).len(), "the cap counts what expand makes");
                }
            }
            Err(diags) => {
                prop_assert!(!diags.is_empty());
                for d in diags {
                    prop_assert!(d.line >= 1 && d.column >= 1 && !d.message.is_empty(), "{d:?}");
                }
            }
        }
        Ok(())
    });
}

// ---- JUnit XML ----

fn junit_seeds() -> Vec<Vec<u8>> {
    vec![
        br#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites><testsuite name="unit" tests="3" failures="1" time="0.5">
  <testcase classname="a.B" name="ok" time="0.1" file="a/b.py"/>
  <testcase classname="a.B" name="fails" time="0.2"><failure message="boom" type="AssertionError">trace &amp; more</failure></testcase>
  <testcase classname="a.B" name="skipped"><skipped/></testcase>
  <testcase classname="a.B" name="err"><error message="e"/><system-out>out</system-out></testcase>
</testsuite></testsuites>"#
            .to_vec(),
        br#"<testsuite name="s"><properties><property name="p" value="v"/></properties><testcase name="t" classname="c" time="1e3"/><testsuite name="nested"><testcase name="u"/></testsuite></testsuite>"#.to_vec(),
    ]
}

#[test]
fn junit_xml() {
    fuzz("JUnit XML", inputs(junit_seeds()), |b| {
        if let Ok(cases) = kiln_core::junit::parse("report.xml", &b) {
            let elements = b.windows(8).filter(|w| w == b"testcase").count();
            prop_assert!(cases.len() <= elements, "{} cases from {} testcase tags", cases.len(), elements);
        }
        Ok(())
    });
}

// ---- forge webhook payloads ----

fn forge_seeds() -> Vec<Vec<u8>> {
    let sha = "9fceb02d0ae598e95dc970b74767f19372d61af8";
    vec![
        serde_json::json!({"ref": "refs/heads/main", "before": "0".repeat(40), "after": sha, "created": true, "deleted": false,
            "commits": [{"id": sha, "message": "m", "added": ["a"], "removed": [], "modified": ["b"]}],
            "head_commit": {"id": sha}, "repository": {"full_name": "o/r"}, "pusher": {"name": "ada"}, "sender": {"login": "ada"}})
        .to_string()
        .into_bytes(),
        serde_json::json!({"object_kind": "push", "ref": "refs/heads/main", "before": sha, "after": sha, "checkout_sha": sha, "user_username": "lab",
            "commits": [{"id": sha, "added": [], "modified": ["x"], "removed": []}]})
        .to_string()
        .into_bytes(),
        serde_json::json!({"branch": "main", "commit": sha}).to_string().into_bytes(),
        br#"{"zen":"hi","hook_id":1}"#.to_vec(),
    ]
}

#[test]
fn forge_payloads() {
    use kiln_server::sources::forge::{self, Event};
    let events = ["push", "ping", "Push Hook", "Tag Push Hook", "issues", ""];
    fuzz("forge webhook payloads", (inputs(forge_seeds()), 0..events.len()), |(b, e)| {
        for event in [forge::github(events[e], &b), forge::gitea(events[e], &b), forge::gitlab(events[e], &b), forge::generic(&b)] {
            if let Ok(Event::Push(p)) = event {
                prop_assert!(!p.branch.is_empty(), "a push to no branch: {p:?}");
            }
        }
        Ok(())
    });
}

// ---- archive extraction ----

fn archive_seeds() -> Vec<Vec<u8>> {
    use std::io::Write;
    let mut zip_bytes = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut zip_bytes);
        let o = zip::write::SimpleFileOptions::default();
        z.add_directory("tests/", o).unwrap();
        z.start_file("tests/test_a.py", o).unwrap();
        z.write_all(b"def test_a(): pass\n").unwrap();
        z.start_file("README", zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored)).unwrap();
        z.write_all(b"hello").unwrap();
        z.finish().unwrap();
    }
    let mut tar_bytes = Vec::new();
    {
        let mut t = tar::Builder::new(&mut tar_bytes);
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        h.set_mode(0o755);
        t.append_data(&mut h, "dir/", &b""[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o644);
        t.append_data(&mut h, "dir/f.txt", &b"hello"[..]).unwrap();
        t.finish().unwrap();
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar_bytes).unwrap();
    vec![zip_bytes.into_inner(), tar_bytes, gz.finish().unwrap()]
}

/// Bytes and entries under `dir`.
fn size_of(dir: &std::path::Path) -> (u64, u64) {
    let mut total = (0, 0);
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let t = e.file_type().unwrap();
        total.1 += 1;
        if t.is_dir() {
            let (b, n) = size_of(&e.path());
            total = (total.0 + b, total.1 + n);
        } else {
            total.0 += e.metadata().unwrap().len();
        }
    }
    total
}

#[test]
fn archive_extraction() {
    use kiln_server::uploads::extract::{unpack, Budget, Kind};
    let root = tempfile::tempdir().unwrap();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    fuzz("archive extraction", (inputs(archive_seeds()), 0usize..3), |(b, k)| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let case = root.path().join(n.to_string());
        let dest = case.join("dest");
        std::fs::create_dir_all(&dest).unwrap();
        let archive = case.join("upload");
        std::fs::write(&archive, &b).unwrap();
        let limit = Budget { bytes: 4096, files: 8 };
        let mut budget = limit;
        let _ = unpack(&archive, [Kind::Zip, Kind::Tar, Kind::TarGz][k], &dest, &mut budget);
        let (bytes, entries) = size_of(&dest);
        prop_assert!(bytes <= limit.bytes && entries <= limit.files, "{bytes} bytes, {entries} entries unpacked");
        let outside: Vec<_> = std::fs::read_dir(&case).unwrap().flatten().map(|e| e.file_name()).filter(|n| n != "dest" && n != "upload").collect();
        prop_assert!(outside.is_empty(), "written outside the folder: {outside:?}");
        let _ = std::fs::remove_dir_all(&case);
        Ok(())
    });
}

// ---- the agent protocol's JSON ----

fn agent_seeds() -> Vec<Vec<u8>> {
    [
        r#"{"name":"a1","labels":{"os":"linux","python":"3.12"},"concurrency":2,"protocol":1}"#,
        r#"{"running":[{"job_id":3,"attempt":1}],"status":{"3":{"phase":"x"}},"free":1}"#,
        r#"{"attempt":1,"status":"passed","exit_code":0,"reason":null,"log_len":179}"#,
        r#"{"claim_id":"c-1","wait_secs":20}"#,
        r#"{"attempt":1,"group":"suite","tests":["a::b","c::d"],"max":5}"#,
        r#"{"attempt":1,"batch_id":4,"exit_code":1}"#,
        r#"{"job_id":5,"attempt":1,"build_id":2,"project":"p","repo":"https://h/r.git","branch":"main","commit":"abc","key":"t [1/2]","name":"t","steps":["echo"],"env":{"A":"b"},"timeout_secs":60,"shard_index":1,"shard_count":2,"secrets":["s"],"log_limit":0,"tests":null,"package":null}"#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

#[test]
fn agent_protocol_json() {
    use kiln_wire::agent::*;
    fn check<T: serde::de::DeserializeOwned + serde::Serialize>(b: &[u8]) -> Result<(), TestCaseError> {
        if let Ok(v) = serde_json::from_slice::<T>(b) {
            let again = serde_json::to_vec(&v).expect("what was read can be written");
            prop_assert!(serde_json::from_slice::<T>(&again).is_ok(), "{} does not read back", String::from_utf8_lossy(&again));
        }
        Ok(())
    }
    fuzz("agent protocol JSON", inputs(agent_seeds()), |b| {
        check::<RegisterRequest>(&b)?;
        check::<HeartbeatRequest>(&b)?;
        check::<FinishRequest>(&b)?;
        check::<ClaimRequest>(&b)?;
        check::<WaitRequest>(&b)?;
        check::<ClaimTestsRequest>(&b)?;
        check::<TestListUpload>(&b)?;
        check::<BatchDone>(&b)?;
        check::<JobAssignment>(&b)?;
        check::<TestBatch>(&b)?;
        Ok(())
    });
}
