//! The pipeline file (`.kiln.yml`): its model, and `parse`, which validates the whole file
//! and reports every problem with its line and column.

mod blocks;
mod check;
mod read;
#[cfg(test)]
mod tests;
pub(crate) mod yaml;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::diag::Diagnostic;

/// The most jobs one matrix may expand to.
pub const MAX_MATRIX_CELLS: usize = 256;
/// The most shards a `tests:` block may ask for.
pub const MAX_SHARDS: u32 = 64;
/// The most retries (`retries:` of a job or of a `tests:` block).
pub const MAX_RETRIES: u32 = 10;

/// A validated pipeline file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Pipeline {
    pub on: Triggers,
    /// In file order.
    pub jobs: Vec<JobSpec>,
}

/// When the pipeline runs. Without an `on:` key: on every push, and manually.
/// Manual triggers are allowed unless `on.manual: false`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Triggers {
    pub push: Option<PushFilter>,
    /// Cron expressions (UTC), validated.
    pub schedule: Vec<String>,
    /// Project names: run when one of their builds passes.
    pub after: Vec<String>,
    pub manual: bool,
}

/// Filters of the push trigger; an empty list means "all".
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PushFilter {
    pub branches: Vec<String>,
    pub paths: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct JobSpec {
    pub name: String,
    pub steps: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub timeout: Option<Duration>,
    pub needs: Vec<String>,
    /// Agent labels this job requires (values may be globs, `*` = present).
    pub requires: BTreeMap<String, String>,
    pub matrix: Option<Matrix>,
    /// Infrastructure retries (lease loss) for this job; `None` = the default.
    pub retries: Option<u32>,
    pub tests: Option<TestsSpec>,
    /// Globs of files to keep as artifacts.
    pub artifacts: Vec<String>,
    /// When the artifacts are uploaded (`artifacts: {paths, when}`).
    pub artifacts_when: ArtifactsWhen,
    /// Whether the job's steps may reach the network (`network: false` cuts them off).
    pub network: Network,
}

/// When a job's artifacts are uploaded, by how its steps ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactsWhen {
    /// Whatever happened (the default: a failed job's files often explain it).
    #[default]
    Always,
    OnSuccess,
    OnFailure,
}

impl ArtifactsWhen {
    pub const NAMES: &'static [&'static str] = &["always", "on_success", "on_failure"];

    pub fn parse(s: &str) -> Option<ArtifactsWhen> {
        match s {
            "always" => Some(ArtifactsWhen::Always),
            "on_success" => Some(ArtifactsWhen::OnSuccess),
            "on_failure" => Some(ArtifactsWhen::OnFailure),
            _ => None,
        }
    }

    /// Upload after steps that ended `passed` (true) or not?
    pub fn applies(self, passed: bool) -> bool {
        match self {
            ArtifactsWhen::Always => true,
            ArtifactsWhen::OnSuccess => passed,
            ArtifactsWhen::OnFailure => !passed,
        }
    }
}

/// A job's access to the network, from its `network:` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Network {
    /// The host's network (the default).
    #[default]
    On,
    /// Only a loopback interface of its own (`network: false`).
    Off,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Matrix {
    /// Axes in declared order, each with its values.
    pub axes: Vec<(String, Vec<String>)>,
    pub include: Vec<BTreeMap<String, String>>,
    pub exclude: Vec<BTreeMap<String, String>>,
}

/// A `tests:` block: a suite split across `shards` agents.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TestsSpec {
    pub shards: u32,
    /// Command printing one test id per line (queue mode).
    pub list: Option<String>,
    /// Command running some tests; `{tests}` is replaced by the shell-quoted ids.
    pub run: String,
    /// Glob of test files, for `split: files` (given as `split: files` + `files: GLOB`).
    pub split_files: Option<String>,
    /// How many times a failed test is retried.
    pub retries: u32,
    /// Globs of extra JUnit reports (besides `$KILN_JUNIT_DIR`).
    pub reports: Vec<String>,
    /// Whether a flaky test (failed, then passed on retry) fails the build.
    pub flaky_fails_build: bool,
}

impl Matrix {
    /// The matrix's cells, each as (axis, value) pairs: declared axes in order, then keys only
    /// `include` adds. Cross product of the axes, minus `exclude` (an entry removes the cells
    /// matching all its pairs), then `include` as in GitHub Actions: an entry whose pairs agree
    /// with the axis values of existing product cells adds its extra pairs to them; an entry
    /// that fits no cell becomes a cell of its own.
    pub fn cells(&self) -> Vec<Vec<(String, String)>> {
        let mut cells: Vec<Vec<(String, String)>> = Vec::new();
        if !self.axes.is_empty() && self.product_size() <= read::MAX_MATRIX_PRODUCT {
            cells.push(Vec::new());
            for (axis, values) in &self.axes {
                let mut next = Vec::with_capacity(cells.len() * values.len());
                for cell in &cells {
                    for v in values {
                        let mut c = cell.clone();
                        c.push((axis.clone(), v.clone()));
                        next.push(c);
                    }
                }
                cells = next;
            }
        }
        let get = |cell: &[(String, String)], k: &str| {
            cell.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone())
        };
        cells.retain(|cell| {
            !self
                .exclude
                .iter()
                .any(|ex| ex.iter().all(|(k, v)| get(cell, k).as_ref() == Some(v)))
        });
        let original = cells.len();
        let is_axis = |k: &str| self.axes.iter().any(|(a, _)| a == k);
        for inc in &self.include {
            let mut fitted = false;
            for cell in cells.iter_mut().take(original) {
                let fits = inc
                    .iter()
                    .filter(|(k, _)| is_axis(k))
                    .all(|(k, v)| get(cell, k).as_ref() == Some(v));
                if fits {
                    fitted = true;
                    for (k, v) in inc.iter().filter(|(k, _)| !is_axis(k)) {
                        match cell.iter_mut().find(|(a, _)| a == k) {
                            Some(slot) => slot.1 = v.clone(),
                            None => cell.push((k.clone(), v.clone())),
                        }
                    }
                }
            }
            if !fitted {
                let mut cell: Vec<(String, String)> = self
                    .axes
                    .iter()
                    .filter_map(|(a, _)| inc.get(a).map(|v| (a.clone(), v.clone())))
                    .collect();
                cell.extend(
                    inc.iter()
                        .filter(|(k, _)| !is_axis(k))
                        .map(|(k, v)| (k.clone(), v.clone())),
                );
                if !cells.contains(&cell) {
                    cells.push(cell);
                }
            }
        }
        cells
    }

    /// Size of the cross product of the axes (saturating).
    pub fn product_size(&self) -> usize {
        self.axes
            .iter()
            .fold(1usize, |n, (_, v)| n.saturating_mul(v.len()))
    }
}

/// Parse and validate a whole pipeline file, returning every problem found, each with file,
/// line and column, sorted by position.
pub fn parse(file: &str, text: &str) -> Result<Pipeline, Vec<Diagnostic>> {
    let tree = match yaml::parse(text) {
        Ok(tree) => tree,
        Err((pos, msg)) => return Err(vec![Diagnostic::new(file, pos.line, pos.column, msg)]),
    };
    let mut reader = read::Reader::new(file);
    let (pipeline, sources) = reader.pipeline(&tree);
    check::check(&mut reader, &pipeline, &sources);
    let mut diags = reader.diags;
    if diags.is_empty() {
        return Ok(pipeline);
    }
    diags.sort_by_key(|d| (d.line, d.column));
    diags.dedup();
    Err(diags)
}
