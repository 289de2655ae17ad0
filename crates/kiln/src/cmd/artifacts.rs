//! `kiln artifacts BUILD [--download DIR]`: a build's artifacts (job, name, size,
//! SHA-256), or every one downloaded into `DIR/<job>/<name>`, streamed, each size checked.
//! `kiln gc [--dry-run]`: a retention pass now (what goes, and why).

use super::{api, print_json};
use crate::api_client::Exit;
use crate::ClientOpts;
use kiln_wire::api::Artifact;
use std::path::Path;

pub async fn run(c: &ClientOpts, build: i64, download: Option<&Path>, json: bool) -> anyhow::Result<i32> {
    let api = api(c);
    let list: Vec<Artifact> = api.get(&format!("/api/v1/builds/{build}/artifacts")).await?;
    let Some(dir) = download else {
        if json {
            print_json(&list);
        } else if list.is_empty() {
            println!("build {build} kept no artifacts");
        } else {
            for a in &list {
                println!("{:<24} {:<40} {:>12}  {}", a.job, a.name, a.size, &a.sha256[..a.sha256.len().min(12)]);
            }
        }
        return Ok(0);
    };
    for a in &list {
        let rel = kiln_core::paths::safe_relative(&a.job).zip(kiln_core::paths::safe_relative(&a.name));
        let Some((folder, name)) = rel else {
            return Err(Exit(2, format!("artifact {:?} of job {:?} has an unsafe name", a.name, a.job)).into());
        };
        let dest = dir.join(folder).join(name);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Exit(2, format!("cannot make {}: {e}", parent.display())))?;
        }
        let n = api.download(&a.url, &dest).await?;
        if n != a.size {
            return Err(Exit(2, format!("{}: got {n} of {} bytes", dest.display(), a.size)).into());
        }
        println!("{}", dest.display());
    }
    Ok(0)
}

pub async fn gc(c: &ClientOpts, dry_run: bool) -> anyhow::Result<i32> {
    let r: kiln_wire::api::GcReport = api(c).post("/api/v1/gc", &kiln_wire::api::GcRequest { dry_run }).await?;
    if c.json {
        print_json(&r);
        return Ok(0);
    }
    let verb = if dry_run { "would remove" } else { "removed" };
    for i in &r.removed {
        let what = match i.what {
            kiln_wire::api::GcWhat::Build => "build",
            kiln_wire::api::GcWhat::Artifacts => "artifacts of build",
        };
        println!("{verb} {what} {} of {} ({} bytes): {}", i.build_id, i.project, i.bytes, i.reason);
    }
    println!("{} {} item(s), {} bytes{}", if dry_run { "would free" } else { "freed" }, r.removed.len(), r.bytes, if r.removed.is_empty() { " (nothing matches the retention policies)" } else { "" });
    Ok(0)
}
