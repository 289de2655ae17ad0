//! `kiln run`'s own timing history: each test's duration and each test group's fixed cost per
//! batch, kept in the repository's git folder (`.git/kiln/timings.json`) or, outside a git
//! repository, in the user's cache folder; merged after every run and importable from a
//! server's history, so that the next local run orders and sizes its batches as a build does.

use crate::localqueue::{GroupHistory, LocalResult};
use kiln_core::junit::Outcome;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// What earlier local runs (or an imported server history) knew.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LocalHistory {
    /// Each test's duration (ms): the mean of the last two observations.
    #[serde(default)]
    pub tests: BTreeMap<String, u64>,
    /// Each test group's fixed cost per batch (ms), as last measured.
    #[serde(default)]
    pub fixed_ms: BTreeMap<String, u64>,
    /// The tests whose last run failed (they go first next time).
    #[serde(default)]
    pub failed: BTreeSet<String>,
}

/// Where the history of the repository at `repo` lives: `<git dir>/kiln/timings.json`, or
/// `$XDG_CACHE_HOME/kiln/timings-<hash of the path>.json` (`~/.cache` by default) when `repo`
/// is not in a git repository.
pub fn history_path(repo: &Path) -> Option<PathBuf> {
    let out = std::process::Command::new("git").arg("-C").arg(repo).args(["rev-parse", "--absolute-git-dir"]).output().ok();
    if let Some(o) = out.filter(|o| o.status.success()) {
        let dir = String::from_utf8_lossy(&o.stdout).trim().to_string();
        if !dir.is_empty() {
            return Some(PathBuf::from(dir).join("kiln").join("timings.json"));
        }
    }
    let cache = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    let canonical = repo.canonicalize().unwrap_or_else(|_| repo.to_path_buf());
    // FNV-1a: a stable name per folder, no security role.
    let hash = canonical.to_string_lossy().bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3));
    Some(cache.join("kiln").join(format!("timings-{hash:016x}.json")))
}

impl LocalHistory {
    /// Read a history file; a missing file is an empty history.
    pub fn load(path: &Path) -> anyhow::Result<LocalHistory> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| anyhow::anyhow!("the timing history {} is malformed: {e}; delete it to start afresh", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(LocalHistory::default()),
            Err(e) => Err(anyhow::anyhow!("failed to read the timing history {}: {e}", path.display())),
        }
    }

    /// Write it (to a temporary file first, then renamed over the old one).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("failed to create {}: {e}", dir.display()))?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?).map_err(|e| anyhow::anyhow!("failed to write {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, path).map_err(|e| anyhow::anyhow!("failed to write {}: {e}", path.display()))?;
        Ok(())
    }

    /// What a test group plans with.
    pub fn group(&self, key: &str) -> GroupHistory {
        GroupHistory {
            tests: self.tests.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            fixed_ms: self.fixed_ms.get(key).copied(),
            failed: self.failed.iter().cloned().collect(),
        }
    }

    /// Add a run: each test's final try (the sum of its cases; a skipped test's time says
    /// nothing) and each group's measured fixed cost.
    pub fn record(&mut self, results: &[LocalResult], fixed_ms: &HashMap<String, u64>) {
        // Per test: its last try, that try's time, whether all its cases were skipped, whether
        // one failed.
        let mut last: HashMap<&str, (u32, u64, bool, bool)> = HashMap::new();
        for r in results {
            let e = last.entry(r.key.as_str()).or_insert((r.try_number, 0, true, false));
            if r.try_number > e.0 {
                *e = (r.try_number, 0, true, false);
            }
            if r.try_number == e.0 {
                e.1 += r.case.duration_ms;
                e.2 &= r.case.outcome == Outcome::Skipped;
                e.3 |= matches!(r.case.outcome, Outcome::Failed | Outcome::Errored);
            }
        }
        for (key, (_, ms, skipped, failed)) in last {
            if failed {
                self.failed.insert(key.to_string());
            } else {
                self.failed.remove(key);
            }
            if skipped {
                continue;
            }
            let merged = self.tests.get(key).map_or(ms, |old| (old + ms) / 2);
            self.tests.insert(key.to_string(), merged);
        }
        for (g, f) in fixed_ms {
            self.fixed_ms.insert(g.clone(), *f);
        }
    }

    /// Take a server's durations (`kiln tests PROJECT`'s `key` and `avg_ms`) for tests this
    /// history has not measured itself. Returns how many were added.
    pub fn import(&mut self, tests: impl IntoIterator<Item = (String, u64)>) -> usize {
        let mut added = 0;
        for (k, ms) in tests {
            if let std::collections::btree_map::Entry::Vacant(e) = self.tests.entry(k) {
                e.insert(ms);
                added += 1;
            }
        }
        added
    }
}
