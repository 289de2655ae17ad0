//! Who this agent is to the server: it enrols once with an enrolment secret, saves the
//! per-agent token it gets in its work folder (`agent-token`, mode 0600) and registers with
//! that token on every restart; `--rotate-token` swaps it for a new one.

use crate::client::{backoff, CallError, Client};
use crate::AgentConfig;
use kiln_wire::agent::{RegisterRequest, RegisterResponse};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where the agent keeps its own token.
pub fn token_path(work_dir: &Path) -> PathBuf {
    work_dir.join("agent-token")
}

fn read_saved(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// Write the token readable by this user only (a temporary file is made 0600), atomically:
/// never a moment at a wider mode or half written.
fn save(path: &Path, token: &str) -> anyhow::Result<()> {
    let fail = |e: std::io::Error| anyhow::anyhow!("failed to save the agent token to {}: {e}", path.display());
    let mut f = tempfile::NamedTempFile::new_in(path.parent().unwrap_or(Path::new("."))).map_err(fail)?;
    f.write_all(token.as_bytes()).and_then(|_| f.as_file().sync_all()).map_err(fail)?;
    f.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
}

/// Register, retrying while the server is unreachable (or the name is still online under an
/// old process's token); any other refusal is final. Returns a client carrying the agent's token.
pub async fn register(cfg: &AgentConfig, req: &RegisterRequest, control: &crate::Control) -> anyhow::Result<(Client, u64)> {
    let path = token_path(&cfg.work_dir);
    let enrol = Client::new(&cfg.server, &cfg.token);
    let mut saved = read_saved(&path);
    let mut tries = 0;
    loop {
        let client = saved.as_deref().map_or_else(|| enrol.clone(), |t| enrol.with_token(t));
        let err = match client.register(req).await {
            Ok(r) => return finish(cfg, &path, client, r, saved.is_some()).await,
            Err(e) => e,
        };
        match err {
            CallError::Unauthorized(e) if saved.is_some() => {
                tracing::warn!("the server refused the token saved in {} ({e}): enrolling again with the enrolment secret", path.display());
                saved = None;
                continue;
            }
            CallError::Unreachable(e) => {
                tries += 1;
                if tries == 1 || tries % 10 == 0 {
                    tracing::warn!("cannot reach the server at {} ({e}); retrying", cfg.server);
                }
            }
            CallError::Stale(e) if e.contains("is online under another token") => {
                tries += 1;
                if tries == 1 || tries % 10 == 0 {
                    tracing::warn!("{e}; retrying until it goes offline");
                }
            }
            e => anyhow::bail!("the server refused this agent: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff(tries)) => {}
            _ = control.drain.cancelled() => anyhow::bail!("stopped before registering"),
        }
    }
}

/// Keep the token the server gave (rotating it first when asked).
async fn finish(cfg: &AgentConfig, path: &Path, client: Client, r: RegisterResponse, had_saved: bool) -> anyhow::Result<(Client, u64)> {
    let mut client = client.with_token(&r.token);
    if !had_saved {
        save(path, &r.token)?;
        tracing::info!("enrolled as agent {}; its token is saved in {}", cfg.name, path.display());
    }
    if cfg.rotate_token {
        let new = client.rotate().await.map_err(|e| anyhow::anyhow!("failed to rotate the agent token: {e}"))?;
        save(path, &new)?;
        client = client.with_token(&new);
        tracing::info!("rotated the agent token; the new one is saved in {}", path.display());
    }
    Ok((client, r.heartbeat_secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_token_is_private_and_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = token_path(dir.path());
        save(&p, "first").unwrap();
        save(&p, "second").unwrap();
        assert_eq!(read_saved(&p).as_deref(), Some("second"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
    }
}
