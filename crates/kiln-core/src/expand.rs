//! Expanding a validated pipeline into the jobs of one build: one per job × matrix cell × shard.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::pipeline::{Pipeline, TestsSpec};
use crate::template::{template_pieces, Piece};

/// Infrastructure retries of a job that does not say.
pub const DEFAULT_RETRIES: u32 = 2;

/// One claimable job of a build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedJob {
    /// Unique in the build: `build`, `test (python=3.11, django=4.2)`, `suite [2/4]`,
    /// `suite (py=3.11) [2/4]`.
    pub key: String,
    /// The pipeline job's name.
    pub name: String,
    pub matrix: BTreeMap<String, String>,
    /// With `${{ matrix.X }}` substituted.
    pub steps: Vec<String>,
    /// Substituted, plus each matrix value as `MATRIX_<AXIS>` (an explicit env entry wins).
    pub env: BTreeMap<String, String>,
    /// Substituted.
    pub requires: BTreeMap<String, String>,
    /// Keys of planned jobs: needing `test` means needing every cell and shard of `test`.
    pub needs: Vec<String>,
    pub timeout: Option<Duration>,
    pub retries: u32,
    /// With `list`, `run` and `split_files` substituted.
    pub tests: Option<TestsSpec>,
    /// Globs of files to keep as artifacts (the job's `artifacts`, substituted).
    pub artifacts: Vec<String>,
    pub artifacts_when: crate::pipeline::ArtifactsWhen,
    pub network: crate::pipeline::Network,
    /// 1-based; 1 of 1 when not sharded.
    pub shard_index: u32,
    pub shard_count: u32,
}

/// Replace `${{ matrix.NAME }}` with the cell's value (empty if the cell has no such key).
/// Strings that are not valid templates are returned unchanged.
pub fn substitute(s: &str, cell: &BTreeMap<String, String>) -> String {
    match template_pieces(s) {
        Ok(pieces) => pieces
            .into_iter()
            .map(|p| match p {
                Piece::Text(t) => t,
                Piece::Matrix(name) => cell.get(name).map_or("", String::as_str),
            })
            .collect(),
        Err(_) => s.to_owned(),
    }
}

/// `MATRIX_` + the axis uppercased, anything not a letter or digit turned into `_`.
pub fn matrix_env_name(axis: &str) -> String {
    let tail: String = axis
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("MATRIX_{tail}")
}

/// Expand a validated pipeline into the jobs of one build, in a stable order (file order,
/// then cells, then shards).
pub fn expand(p: &Pipeline) -> Vec<PlannedJob> {
    let mut out: Vec<PlannedJob> = Vec::new();
    let mut keys_of: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for job in &p.jobs {
        let cells = match &job.matrix {
            Some(m) => m.cells(),
            None => vec![Vec::new()],
        };
        let shard_count = job.tests.as_ref().map_or(1, |t| t.shards.max(1));
        for cell in cells {
            let label = if cell.is_empty() {
                String::new()
            } else {
                let pairs: Vec<String> = cell.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!(" ({})", pairs.join(", "))
            };
            let matrix: BTreeMap<String, String> = cell.into_iter().collect();
            let sub = |s: &String| substitute(s, &matrix);
            let mut env: BTreeMap<String, String> = matrix
                .iter()
                .map(|(k, v)| (matrix_env_name(k), v.clone()))
                .collect();
            env.extend(job.env.iter().map(|(k, v)| (k.clone(), sub(v))));
            let tests = job.tests.as_ref().map(|t| TestsSpec {
                list: t.list.as_ref().map(sub),
                run: sub(&t.run),
                split_files: t.split_files.as_ref().map(sub),
                ..t.clone()
            });
            for shard in 1..=shard_count {
                let suffix = if shard_count > 1 {
                    format!(" [{shard}/{shard_count}]")
                } else {
                    String::new()
                };
                let key = format!("{}{label}{suffix}", job.name);
                keys_of
                    .entry(job.name.as_str())
                    .or_default()
                    .push(key.clone());
                out.push(PlannedJob {
                    key,
                    name: job.name.clone(),
                    matrix: matrix.clone(),
                    steps: job.steps.iter().map(sub).collect(),
                    env: env.clone(),
                    requires: job
                        .requires
                        .iter()
                        .map(|(k, v)| (k.clone(), sub(v)))
                        .collect(),
                    needs: Vec::new(),
                    timeout: job.timeout,
                    retries: job.retries.unwrap_or(DEFAULT_RETRIES),
                    tests: tests.clone(),
                    artifacts: job.artifacts.iter().map(sub).collect(),
                    artifacts_when: job.artifacts_when,
                    network: job.network,
                    shard_index: shard,
                    shard_count,
                });
            }
        }
    }
    let needs_of: BTreeMap<&str, &Vec<String>> =
        p.jobs.iter().map(|j| (j.name.as_str(), &j.needs)).collect();
    for planned in &mut out {
        planned.needs = needs_of[planned.name.as_str()]
            .iter()
            .flat_map(|n| keys_of.get(n.as_str()).cloned().unwrap_or_default())
            .collect();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::parse;

    fn plan(text: &str) -> Vec<PlannedJob> {
        expand(&parse("f", text).unwrap_or_else(|d| panic!("{d:?}")))
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn template_pieces_and_substitution() {
        let cell = map(&[("python", "3.12"), ("os", "linux")]);
        let cases = [
            ("plain", "plain"),
            ("py${{ matrix.python }}", "py3.12"),
            ("${{matrix.python}}-${{  matrix.os  }}!", "3.12-linux!"),
            ("${{ matrix.missing }}|", "|"),
            ("$HOME ${PATH} {tests}", "$HOME ${PATH} {tests}"),
            ("bad ${{ env.X }}", "bad ${{ env.X }}"),
        ];
        for (input, want) in cases {
            assert_eq!(substitute(input, &cell), want, "{input}");
        }
        assert_eq!(
            template_pieces("a${{ matrix.x }}b"),
            Ok(vec![Piece::Text("a"), Piece::Matrix("x"), Piece::Text("b")])
        );
        assert!(template_pieces("${{ matrix.x")
            .unwrap_err()
            .contains("unclosed"));
        assert!(template_pieces("${{ 1 + 1 }}")
            .unwrap_err()
            .contains("unsupported"));
    }

    #[test]
    fn matrix_env_names() {
        for (axis, want) in [
            ("python", "MATRIX_PYTHON"),
            ("node-version", "MATRIX_NODE_VERSION"),
            ("a_1", "MATRIX_A_1"),
        ] {
            assert_eq!(matrix_env_name(axis), want);
        }
    }

    #[test]
    fn plain_job_is_one_planned_job_with_defaults() {
        let jobs = plan(
            "jobs:\n  build:\n    steps: [make]\n    env: {A: b}\n    artifacts: out/*.tar.gz\n",
        );
        assert_eq!(
            jobs,
            vec![PlannedJob {
                key: "build".into(),
                name: "build".into(),
                matrix: BTreeMap::new(),
                steps: vec!["make".into()],
                env: map(&[("A", "b")]),
                requires: BTreeMap::new(),
                needs: vec![],
                timeout: None,
                retries: DEFAULT_RETRIES,
                tests: None,
                artifacts: vec!["out/*.tar.gz".into()],
                artifacts_when: Default::default(),
                network: Default::default(),
                shard_index: 1,
                shard_count: 1,
            }]
        );
    }

    #[test]
    fn matrix_cells_are_keyed_and_substituted() {
        let text = "jobs:
  test:
    matrix:
      python: [3.11, 3.12]
      django: [4.2, 5.1]
      include: [{python: 3.13, django: 5.1}, {python: 3.11, experimental: yes}]
      exclude: [{python: 3.12, django: 4.2}]
    requires: { python: '${{ matrix.python }}' }
    env: { DJANGO: '${{ matrix.django }}', MATRIX_DJANGO: mine }
    timeout: 10m
    retries: 0
    steps: ['pip install django~=${{ matrix.django }}']
";
        let jobs = plan(text);
        let keys: Vec<&str> = jobs.iter().map(|j| j.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "test (python=3.11, django=4.2, experimental=yes)",
                "test (python=3.11, django=5.1, experimental=yes)",
                "test (python=3.12, django=5.1)",
                "test (python=3.13, django=5.1)",
            ]
        );
        let j = &jobs[2];
        assert_eq!(j.name, "test");
        assert_eq!(j.matrix, map(&[("python", "3.12"), ("django", "5.1")]));
        assert_eq!(j.steps, ["pip install django~=5.1"]);
        assert_eq!(j.requires, map(&[("python", "3.12")]));
        assert_eq!(
            j.env,
            map(&[
                ("DJANGO", "5.1"),
                ("MATRIX_DJANGO", "mine"),
                ("MATRIX_PYTHON", "3.12")
            ])
        );
        assert_eq!(j.timeout, Some(Duration::from_secs(600)));
        assert_eq!(j.retries, 0);
        assert_eq!(
            jobs[0].env.get("MATRIX_EXPERIMENTAL").map(String::as_str),
            Some("yes")
        );
    }

    #[test]
    fn shards_and_needs() {
        let text = "jobs:
  lint:
    steps: [ruff .]
  suite:
    matrix: { py: ['3.11', '3.12'] }
    needs: lint
    tests:
      shards: 2
      list: pytest --collect-only -q
      run: python${{ matrix.py }} -m pytest {tests}
  publish:
    needs: [suite, lint]
    steps: [./publish.sh]
";
        let jobs = plan(text);
        let summary: Vec<(String, u32, u32, Vec<String>)> = jobs
            .iter()
            .map(|j| (j.key.clone(), j.shard_index, j.shard_count, j.needs.clone()))
            .collect();
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let suite = s(&[
            "suite (py=3.11) [1/2]",
            "suite (py=3.11) [2/2]",
            "suite (py=3.12) [1/2]",
            "suite (py=3.12) [2/2]",
        ]);
        let mut publish_needs = suite.clone();
        publish_needs.push("lint".into());
        assert_eq!(
            summary,
            vec![
                ("lint".into(), 1, 1, vec![]),
                (suite[0].clone(), 1, 2, s(&["lint"])),
                (suite[1].clone(), 2, 2, s(&["lint"])),
                (suite[2].clone(), 1, 2, s(&["lint"])),
                (suite[3].clone(), 2, 2, s(&["lint"])),
                ("publish".into(), 1, 1, publish_needs),
            ]
        );
        assert_eq!(
            jobs[3].tests.as_ref().unwrap().run,
            "python3.12 -m pytest {tests}"
        );
        let single = plan("jobs:\n  s:\n    tests: {shards: 1, list: ls, run: 'x {tests}'}\n");
        assert_eq!((single[0].key.as_str(), single[0].shard_count), ("s", 1));
    }
}
