//! Log uploads cost the server nothing until they are known to be allowed. Compressed ones
//! (`POST /api/v1/agent/jobs/{id}/log/zstd`): the calling agent must hold the attempt, and the
//! body and each frame's declared size must be within their caps, before a byte is
//! decompressed. The live tail of a log past its head (`PUT …/log/live`): only from the
//! holder, capped, and served to readers while the job runs. Against the real binary, with
//! agents registered by hand.

mod common;
use common::http::send;
use common::*;
use serde_json::{json, Value};

/// Register an agent by hand; answers its token.
fn register(k: &Kiln, name: &str, labels: Value) -> String {
    let body = json!({ "name": name, "labels": labels, "concurrency": 1, "protocol": kiln_wire::PROTOCOL_VERSION });
    let r = send(&k.url, "POST", "/api/v1/agent/register", &[("Authorization", &format!("Bearer {AGENT_TOKEN}")), ("Content-Type", "application/json")], body.to_string().as_bytes(), false);
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice::<Value>(&r.body).unwrap()["token"].as_str().unwrap().to_string()
}

/// Claim the one queued job as the agent with `token`: (job id, attempt).
fn claim(k: &Kiln, token: &str) -> (i64, i64) {
    for _ in 0..20 {
        let r = send(&k.url, "POST", "/api/v1/agent/claim", &[("Authorization", &format!("Bearer {token}")), ("Content-Type", "application/json")], b"{}", false);
        let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        if let Some(j) = v.get("job_id").and_then(Value::as_i64) {
            return (j, v["attempt"].as_i64().unwrap());
        }
    }
    panic!("no job to claim");
}

/// POST a compressed log upload: (status, error text or body).
fn upload(k: &Kiln, token: &str, job: i64, attempt: i64, offset: u64, body: &[u8]) -> (u16, String) {
    let r = send(&k.url, "POST", &format!("/api/v1/agent/jobs/{job}/log/zstd?attempt={attempt}&offset={offset}"), &[("Authorization", &format!("Bearer {token}")), ("Content-Type", "application/zstd")], body, false);
    (r.status, r.text())
}

/// A zstd frame that declares `declared` bytes of content (all zeros: a few hundred bytes compressed).
fn zeros_frame(declared: usize) -> Vec<u8> {
    zstd::bulk::compress(&vec![0u8; declared], 1).unwrap()
}

#[test]
fn a_compressed_log_upload_is_fenced_and_capped_before_it_is_decompressed() {
    let k = Kiln::start_with(&["--log-limit", "4194304"]);
    let repo = k.repo("frames", "jobs:\n  j:\n    steps: [sleep 60]\n");
    k.add_project("frames", &repo, &[]);
    let build = k.trigger("frames");
    let holder = register(&k, "holder", json!({}));
    let (job, attempt) = claim(&k, &holder);
    let rogue = register(&k, "rogue", json!({ "nothing": "matches" }));

    // The frame declares 64 MiB: refused for its size only once looked at. An agent that does
    // not hold the job is refused first, so the server never decompresses (or even reads) it.
    let bomb = zeros_frame(64 << 20);
    assert!(bomb.len() < 64 << 10);
    let (s, text) = upload(&k, &rogue, job, attempt, 0, &bomb);
    assert!(s == 403 || s == 409, "an agent not holding the job is refused before its frame is looked at, got {s}: {text}");
    let (s, text) = upload(&k, &rogue, job, attempt, 0, &vec![0u8; 9 << 20]);
    assert!(s == 403 || s == 409, "an oversized body from an agent not holding the job: {s}: {text}");

    // The holder: a frame declaring more than a frame's raw bytes is refused naming the cap.
    let (s, text) = upload(&k, &holder, job, attempt, 0, &bomb);
    assert_eq!(s, 400, "{text}");
    assert!(text.contains("declares 67108864 bytes") && text.contains("1048576"), "names the declared size and the cap: {text}");
    // A frame that does not say how big it is would have to be decompressed to know: refused.
    let mut e = zstd::stream::Encoder::new(Vec::new(), 1).unwrap();
    e.include_contentsize(false).unwrap();
    std::io::Write::write_all(&mut e, b"hello\n").unwrap();
    let (s, text) = upload(&k, &holder, job, attempt, 0, &e.finish().unwrap());
    assert_eq!(s, 400, "{text}");
    assert!(text.contains("does not declare its size"), "{text}");
    // More frames than an upload may carry.
    let many: Vec<u8> = (0..=kiln_wire::agent::LOG_FRAMES_MAX).flat_map(|_| zeros_frame(10)).collect();
    let (s, text) = upload(&k, &holder, job, attempt, 0, &many);
    assert_eq!(s, 400, "{text}");
    assert!(text.contains(&format!("more than {} zstd frames", kiln_wire::agent::LOG_FRAMES_MAX)), "{text}");
    // A body over the upload cap.
    let (s, text) = upload(&k, &holder, job, attempt, 0, &vec![0u8; 9 << 20]);
    assert_eq!(s, 413, "{text}");
    // Declared sizes that would pass the job's log limit (4 MiB here, plus the 1 MiB of slack an
    // agent's own notes may take): refused from the headers, naming the limit and its flag.
    let (s, text) = upload(&k, &holder, job, attempt, 4 << 20, &zeros_frame(1 << 20).repeat(2));
    assert_eq!(s, 413, "{text}");
    assert!(text.contains("4194304 byte limit") && text.contains("--log-limit"), "{text}");
    // Nothing above was stored.
    let held = |k: &Kiln| k.build(build)["jobs"][0]["attempts"][0]["log_len"].as_i64().unwrap();
    assert_eq!(held(&k), 0);

    // Good frames are kept, and read back whole.
    let text: Vec<u8> = (0..).map(|i| format!("line {i:07} of the log\n")).flat_map(String::into_bytes).take(1 << 20).collect();
    let mut body = zstd::bulk::compress(&text, 1).unwrap();
    body.extend(zstd::bulk::compress(&text, 1).unwrap());
    let (s, answer) = upload(&k, &holder, job, attempt, 0, &body);
    assert_eq!(s, 200, "{answer}");
    assert_eq!(held(&k), 2 << 20);
    // Resent from half way (a retry after a lost answer): nothing is stored twice.
    let (s, answer) = upload(&k, &holder, job, attempt, 1 << 20, &zstd::bulk::compress(&text, 1).unwrap());
    assert_eq!(s, 200, "{answer}");
    assert_eq!(held(&k), 2 << 20);
    let r = send(&k.url, "GET", &format!("/api/v1/jobs/{job}/raw?attempt={attempt}"), &[("Authorization", &format!("Bearer {ADMIN}"))], b"", false);
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 2 << 20);
    assert!(r.body[..1 << 20] == text[..] && r.body[1 << 20..] == text[..], "the log reads back as it was sent");

    // The live tail: only the holder's, at most LIVE_TAIL_MAX bytes, and readers see it.
    let live = |token: &str, body: &[u8]| {
        let r = send(&k.url, "PUT", &format!("/api/v1/agent/jobs/{job}/log/live?attempt={attempt}&past_head=5000"), &[("Authorization", &format!("Bearer {token}"))], body, false);
        (r.status, r.text())
    };
    let (s, text) = live(&rogue, b"forged last lines\n");
    assert!(s == 403 || s == 409, "{s}: {text}");
    let (s, text) = live(&holder, &vec![b'x'; kiln_wire::agent::LIVE_TAIL_MAX + 1]);
    assert_eq!(s, 413, "{text}");
    assert!(text.contains("LIVE_TAIL_MAX") && text.contains(&kiln_wire::agent::LIVE_TAIL_MAX.to_string()), "{text}");
    let read = |k: &Kiln| -> Value {
        let r = send(&k.url, "GET", &format!("/api/v1/jobs/{job}/log/live"), &[("Authorization", &format!("Bearer {ADMIN}"))], b"", false);
        assert_eq!(r.status, 200, "{}", r.text());
        serde_json::from_slice(&r.body).unwrap()
    };
    assert_eq!(read(&k)["live"], false, "none yet");
    let (s, text) = live(&holder, b"the last lines so far\n");
    assert_eq!(s, 200, "{text}");
    let v = read(&k);
    assert_eq!((v["live"].as_bool(), v["past_head"].as_u64(), v["text"].as_str()), (Some(true), Some(5000), Some("the last lines so far\n")), "{v}");
    // Once the attempt is over there is none: its tail is in the log.
    let fin = json!({"attempt": attempt, "status": "passed", "exit_code": 0, "reason": null, "log_len": 2 << 20});
    let r = send(&k.url, "POST", &format!("/api/v1/agent/jobs/{job}/finish"), &[("Authorization", &format!("Bearer {holder}")), ("Content-Type", "application/json")], fin.to_string().as_bytes(), false);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(read(&k)["live"], false);
}

#[test]
fn a_finish_carries_the_end_of_a_short_log_fenced_and_capped() {
    use base64::Engine;
    let k = Kiln::start();
    let repo = k.repo("rest", "jobs:\n  j:\n    steps: [sleep 60]\n");
    k.add_project("rest", &repo, &[]);
    let build = k.trigger("rest");
    let holder = register(&k, "holder", json!({}));
    let (job, attempt) = claim(&k, &holder);
    let rogue = register(&k, "rogue", json!({ "nothing": "matches" }));
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let finish = |token: &str, rest: Value, log_len: usize| {
        let body = json!({"attempt": attempt, "status": "passed", "exit_code": 0, "reason": null, "log_len": log_len, "log_rest": rest});
        let r = send(&k.url, "POST", &format!("/api/v1/agent/jobs/{job}/finish"), &[("Authorization", &format!("Bearer {token}")), ("Content-Type", "application/json")], body.to_string().as_bytes(), false);
        (r.status, r.text())
    };
    let held = |k: &Kiln| k.build(build)["jobs"][0]["attempts"][0]["log_len"].as_i64().unwrap();
    // Another agent's finish writes nothing into the holder's log.
    let (s, text) = finish(&rogue, json!({"offset": 0, "base64": b64(b"forged\n")}), 7);
    assert!(s == 403 || s == 409, "{s}: {text}");
    // More than FINISH_LOG_MAX bytes: refused naming the cap; not base64: refused.
    let big = vec![b'x'; kiln_wire::agent::FINISH_LOG_MAX + 1];
    let (s, text) = finish(&holder, json!({"offset": 0, "base64": b64(&big)}), big.len());
    assert_eq!(s, 413, "{text}");
    assert!(text.contains("FINISH_LOG_MAX") && text.contains(&kiln_wire::agent::FINISH_LOG_MAX.to_string()), "{text}");
    let (s, text) = finish(&holder, json!({"offset": 0, "base64": "not base64!"}), 4);
    assert_eq!(s, 400, "{text}");
    assert!(text.contains("not base64"), "{text}");
    assert_eq!(held(&k), 0, "nothing refused was stored");
    assert_eq!(k.build(build)["status"], "running");
    // The holder's log end and result, in one call; the log reads back whole.
    let log = b"kiln: job j\n\xffnot utf-8\n";
    let (s, text) = finish(&holder, json!({"offset": 0, "base64": b64(log)}), log.len());
    assert_eq!(s, 200, "{text}");
    assert_eq!(held(&k), log.len() as i64);
    assert_eq!(k.wait_build(build, 10)["status"], "passed");
    let r = send(&k.url, "GET", &format!("/api/v1/jobs/{job}/raw?attempt={attempt}"), &[("Authorization", &format!("Bearer {ADMIN}"))], b"", false);
    assert_eq!(r.body, log, "the log reads back as it was sent");
}
