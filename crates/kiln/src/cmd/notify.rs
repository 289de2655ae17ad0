//! `kiln notify PROJECT`: for a git `post-receive` hook — reads `oldrev newrev
//! refname` lines on stdin and tells the server about each pushed branch.
//!
//! With the project's webhook secret (`--webhook-secret-file`, `KILN_WEBHOOK_SECRET`) each
//! branch goes to the project's generic hook, signed: the hook then keeps a secret that can
//! only start builds of that project, not an API token that can do all its user can.

use super::{api, print_json};
use crate::api_client::{seg, Api, Exit};
use crate::ClientOpts;
use rand::Rng;
use std::io::BufRead;

/// How a push reaches the server.
enum Channel {
    /// `POST /api/v1/projects/{name}/push` with the caller's API token.
    Token,
    /// `POST /hooks/generic/{name}`, signed with the project's webhook secret.
    Signed(String),
}

pub async fn run(c: &ClientOpts, project: &str, secret_file: Option<&std::path::Path>) -> anyhow::Result<i32> {
    let channel = match secret_file {
        Some(f) => {
            let s = std::fs::read_to_string(f).map_err(|e| Exit(2, format!("cannot read the webhook secret file {}: {e}", f.display())))?;
            Channel::Signed(s.trim().to_string())
        }
        None => match std::env::var("KILN_WEBHOOK_SECRET") {
            Ok(s) if !s.trim().is_empty() => Channel::Signed(s.trim().to_string()),
            _ => Channel::Token,
        },
    };
    let api = api(c);
    let mut failed = 0;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [before, after, refname] = parts[..] else {
            if !line.trim().is_empty() {
                eprintln!("kiln notify: ignoring {line:?}: expected `oldrev newrev refname`");
            }
            continue;
        };
        let sent = match &channel {
            Channel::Token => {
                let body = serde_json::json!({ "before": before, "after": after, "ref": refname });
                api.post::<serde_json::Value, _>(&format!("/api/v1/projects/{}/push", seg(project)), &body).await
            }
            Channel::Signed(secret) => match signed_push(&api, project, secret, before, after, refname).await {
                Some(r) => r,
                None => continue,
            },
        };
        match sent {
            Ok(v) if c.json => print_json(&v),
            Ok(v) => match v.get("build") {
                Some(id) => println!("kiln: {refname} → build #{id} of {project}"),
                None => println!("kiln: {refname}: {}", v.get("ignored").and_then(|x| x.as_str()).unwrap_or("nothing to build")),
            },
            Err(e) => {
                // A push must never fail because CI is down: say so and go on.
                eprintln!("kiln notify: {refname}: {e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        return Err(Exit(2, format!("{failed} ref(s) not sent to the kiln server")).into());
    }
    Ok(0)
}

/// Send one pushed ref to the project's generic hook, signed; `None` for a ref that builds
/// nothing (a tag, a deletion), said on stdout as the server would.
async fn signed_push(api: &Api, project: &str, secret: &str, before: &str, after: &str, refname: &str) -> Option<anyhow::Result<serde_json::Value>> {
    let Some(branch) = refname.strip_prefix("refs/heads/") else {
        println!("kiln: {refname}: {refname} is not a branch");
        return None;
    };
    if after.bytes().all(|b| b == b'0') {
        println!("kiln: {refname}: {refname} was deleted");
        return None;
    }
    let body = serde_json::to_vec(&serde_json::json!({ "branch": branch, "commit": after, "before": before })).expect("JSON of strings");
    let signature = format!("sha256={}", kiln_server::signature::sign(secret, &body));
    // A new id for every delivery: the server drops one it has seen (a replay).
    let delivery = format!("notify-{:032x}", rand::rng().random::<u128>());
    let headers = [("x-kiln-signature-256", signature), ("x-kiln-delivery", delivery)];
    Some(api.post_bytes(&format!("/hooks/generic/{}", seg(project)), body, &headers).await)
}
