//! Uploaded test runs end to end: `kiln submit` and the API's multipart upload
//! run on agents like any build; archives are unpacked safely (zip-slip → 400,
//! nothing written outside); uploads past the limit get 413.

mod common;
use common::*;
use http::{multipart, send};
use std::io::Write;

fn upload(k: &Kiln, project: &str, parts: &[(&str, Option<&str>, &[u8])]) -> http::Resp {
    let (ct, body) = multipart(parts);
    send(&k.url, "POST", &format!("/api/v1/projects/{project}/runs"), &[("Authorization", &format!("Bearer {ADMIN}")), ("Content-Type", &ct)], &body, false)
}

/// Every file under `dir`, as paths relative to it.
fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p).into_iter().map(|f| format!("{}/{f}", e.file_name().to_string_lossy())));
        } else {
            out.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

#[test]
fn submit_runs_uploaded_files_on_an_agent_under_the_users_name() {
    let mut k = Kiln::start();
    k.agent("a1", &[]);
    let repo = k.repo("app", "jobs:\n  unit:\n    steps: [sh tests/run.sh]\n");
    k.add_project("app", &repo, &[]);
    // Files from a folder, the pipeline from the project's repository.
    let dir = k.path("work");
    std::fs::create_dir_all(dir.join("tests")).unwrap();
    std::fs::write(dir.join("tests/run.sh"), "echo uploaded-test-ran; test -f tests/data.txt && echo data-present\n").unwrap();
    std::fs::write(dir.join("tests/data.txt"), "x").unwrap();
    let out = std::process::Command::new(BIN)
        .args(["submit", "app", "tests", "--wait"])
        .current_dir(&dir)
        .env("KILN_SERVER", &k.url)
        .env("KILN_TOKEN", ADMIN)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let runs = k.json(&["builds", "app"]);
    let b = &runs[0];
    assert_eq!(b["trigger"], "upload");
    assert_eq!(b["triggered_by"], "admin");
    assert_eq!(b["status"], "passed");
    let logs = k.logs(b["id"].as_i64().unwrap());
    assert!(logs.contains("uploaded-test-ran") && logs.contains("data-present"), "{logs}");

    // A pipeline uploaded with the files wins over the project's; a failing run fails.
    let pipe = dir.join("p.yml");
    std::fs::write(&pipe, "jobs:\n  own:\n    steps: [echo own-pipeline, exit 4]\n").unwrap();
    let out = std::process::Command::new(BIN)
        .args(["submit", "app", "tests/run.sh", "--pipeline", "p.yml", "--wait"])
        .current_dir(&dir)
        .env("KILN_SERVER", &k.url)
        .env("KILN_TOKEN", ADMIN)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    let b = &k.json(&["builds", "app"])[0];
    assert_eq!(b["jobs"][0]["key"], "own");
    assert!(k.logs(b["id"].as_i64().unwrap()).contains("own-pipeline"));

    // A tar.gz archive through the API, holding its own .kiln.yml.
    let mut tgz = Vec::new();
    {
        let gz = flate2::write::GzEncoder::new(&mut tgz, flate2::Compression::fast());
        let mut t = tar::Builder::new(gz);
        for (name, data) in [(".kiln.yml", &b"jobs:\n  packed:\n    steps: [cat suite/x.txt]\n"[..]), ("suite/x.txt", b"from-the-archive\n")] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            t.append_data(&mut h, name, data).unwrap();
        }
        t.into_inner().unwrap().finish().unwrap();
    }
    let r = upload(&k, "app", &[("archive", Some("suite.tar.gz"), &tgz)]);
    assert_eq!(r.status, 200, "{}", r.text());
    let id = serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["id"].as_i64().unwrap();
    let b = k.wait_build(id, 60);
    assert_eq!(b["status"], "passed", "{b:#}");
    assert!(k.logs(id).contains("from-the-archive"));
    // The run is listed on the console's runs page with its status.
    let page = http::get(&k.url, "/runs", &[("Authorization", &format!("Bearer {ADMIN}"))]).text();
    assert!(page.contains(&format!("#{id}")) && page.contains("passed"));
}

#[test]
fn zip_slip_archive_is_rejected_and_nothing_lands_outside() {
    let k = Kiln::start();
    let repo = k.repo("app", "jobs:\n  j:\n    steps: [true]\n");
    k.add_project("app", &repo, &["--public"]);
    let mut zip = Vec::new();
    {
        let mut z = zip::ZipWriter::new(std::io::Cursor::new(&mut zip));
        let o = zip::write::SimpleFileOptions::default();
        z.start_file("fine.txt", o).unwrap();
        z.write_all(b"ok").unwrap();
        z.start_file("../../../zip-slip-evil.txt", o).unwrap();
        z.write_all(b"pwned").unwrap();
        z.finish().unwrap();
    }
    let r = upload(&k, "app", &[("archive", Some("evil.zip"), &zip)]);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("zip-slip-evil.txt"), "the error names the entry: {}", r.text());
    // Nothing written anywhere: no evil file in or above the data folder, no staging left.
    let all = files_under(k.dir.path());
    assert!(!all.iter().any(|f| f.contains("zip-slip-evil")), "{all:?}");
    assert!(!all.iter().any(|f| f.ends_with("fine.txt")), "a refused upload leaves nothing behind: {all:?}");
    // A plain file whose name climbs out is refused too, and no build was made.
    let r = upload(&k, "app", &[("file", Some("../up.txt"), b"x")]);
    assert_eq!(r.status, 400);
    assert_eq!(k.json(&["builds", "app"]).as_array().unwrap().len(), 0);
}

#[test]
fn uploads_past_the_limit_get_413() {
    let k = Kiln::start_with(&["--upload-limit", "2000"]);
    let repo = k.repo("app", "jobs:\n  j:\n    steps: [true]\n");
    k.add_project("app", &repo, &[]);
    let big = vec![b'x'; 5000];
    let r = upload(&k, "app", &[("file", Some("big.txt"), &big)]);
    assert_eq!(r.status, 413, "{}", r.text());
    // An archive small on the wire but large unpacked (4× the limit) is refused too.
    let mut zip = Vec::new();
    {
        let mut z = zip::ZipWriter::new(std::io::Cursor::new(&mut zip));
        z.start_file("bomb.txt", zip::write::SimpleFileOptions::default()).unwrap();
        z.write_all(&vec![b'0'; 200_000]).unwrap();
        z.finish().unwrap();
    }
    assert!(zip.len() < 2000, "test archive compresses well ({} bytes)", zip.len());
    let r = upload(&k, "app", &[("archive", Some("bomb.zip"), &zip)]);
    assert_eq!(r.status, 413, "{}", r.text());
    // Within the limit it works.
    let r = upload(&k, "app", &[("file", Some("small.txt"), b"fine")]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(k.json(&["builds", "app"]).as_array().unwrap().len(), 1);
}
