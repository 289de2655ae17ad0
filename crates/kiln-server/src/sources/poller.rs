//! The poller: projects with `poll` set have their repository fetched at that
//! interval; a branch head that moved starts one build of the newest commit
//! (or one per new commit with `poll_each_commit`). Heads seen are kept in the
//! database, so after a restart no old commit is built again, and servers that
//! share a database build each move once (compare-and-set on the head).
//! Projects are polled concurrently (at most `CONCURRENT_POLLS` at once), so one
//! slow or silent repository never holds up another.

use crate::app::trigger::{start_build, Origin};
use crate::branch_heads::{baseline, baseline_key, head_key};
use crate::git;
use crate::state::AppState;
use kiln_store::ProjectRow;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Projects polled at once, at most.
pub const CONCURRENT_POLLS: usize = 8;
/// At most this many builds for one poll with `poll_each_commit`.
const EACH_COMMIT_CAP: usize = 20;

/// Fetch once and start builds for branches whose head moved.
pub async fn poll(st: &AppState, p: &ProjectRow) -> Result<usize, String> {
    if st.store.kv_get(&baseline_key(p.id)).await.map_err(|e| e.to_string())?.is_none() {
        baseline(st, p).await?;
        return Ok(0);
    }
    let mirror = st.mirrors.refresh(p.id, &p.repo, Instant::now()).await?;
    let mut started = 0;
    for (branch, sha) in git::branch_heads(&mirror).await? {
        let key = head_key(p.id, &branch);
        let old = st.store.kv_get(&key).await.map_err(|e| e.to_string())?;
        if old.as_deref() == Some(sha.as_str()) {
            continue;
        }
        let commits = match (&old, p.settings.poll_each_commit == Some(true)) {
            (Some(o), true) => {
                let out = git::git(Some(&mirror), &["rev-list", "--reverse", &format!("{o}..{sha}")]).await.unwrap_or_default();
                let mut list: Vec<String> = out.lines().map(str::to_string).collect();
                if list.len() > EACH_COMMIT_CAP {
                    list.drain(..list.len() - EACH_COMMIT_CAP);
                }
                if list.is_empty() { vec![sha.clone()] } else { list }
            }
            _ => vec![sha.clone()],
        };
        // Claim the move first: of several servers polling one database, one builds it.
        if !st.store.kv_cas(&key, old.as_deref(), &sha).await.map_err(|e| e.to_string())? {
            continue;
        }
        let mut before = old.clone();
        for c in commits {
            let origin = Origin { before: before.clone(), ..Origin::new("poll", format!("poller ({})", p.settings.poll.as_deref().unwrap_or("")))};
            start_build(st, p, Some(&branch), Some(&c), origin, crate::app::access::Starter::Source).await.map_err(|e| e.to_string())?;
            before = Some(c);
            started += 1;
        }
    }
    Ok(started)
}

/// The poller service: checks four times a second which projects are due, and
/// polls each due one in its own task (one poll per project at a time).
pub async fn run(st: AppState, stop: CancellationToken) {
    let mut last: HashMap<i64, Instant> = HashMap::new();
    let slots = Arc::new(Semaphore::new(CONCURRENT_POLLS));
    let busy: Arc<Mutex<HashSet<i64>>> = Default::default();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if !st.duties.held(crate::duties::Duty::Poller) {
            continue;
        }
        let Ok(projects) = st.store.list_projects().await else { continue };
        for p in projects {
            let Some(every) = p.settings.poll.as_deref().and_then(|s| kiln_core::duration::parse_duration(s).ok()) else { continue };
            if last.get(&p.id).is_some_and(|t| t.elapsed() < every) || busy.lock().unwrap().contains(&p.id) {
                continue;
            }
            last.insert(p.id, Instant::now());
            busy.lock().unwrap().insert(p.id);
            let (st, slots, busy) = (st.clone(), slots.clone(), busy.clone());
            tokio::spawn(async move {
                if let Ok(_slot) = slots.acquire().await {
                    if let Err(e) = poll(&st, &p).await {
                        tracing::warn!("polling {} failed: {e}", p.name);
                    }
                }
                busy.lock().unwrap().remove(&p.id);
            });
        }
    }
}
