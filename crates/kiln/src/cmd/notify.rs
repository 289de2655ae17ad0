//! `kiln notify PROJECT`: for a git `post-receive` hook — reads `oldrev newrev
//! refname` lines on stdin and tells the server about each pushed branch.

use super::{api, print_json};
use crate::api_client::{seg, Exit};
use crate::ClientOpts;
use std::io::BufRead;

pub async fn run(c: &ClientOpts, project: &str) -> anyhow::Result<i32> {
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
        let body = serde_json::json!({ "before": before, "after": after, "ref": refname });
        match api.post::<serde_json::Value, _>(&format!("/api/v1/projects/{}/push", seg(project)), &body).await {
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
