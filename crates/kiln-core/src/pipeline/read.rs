//! Reading the YAML tree into the pipeline model, with a diagnostic for every misfit.

use std::collections::BTreeSet;

use super::yaml::{Node, Pos, Value};
use super::{JobSpec, Pipeline, PushFilter, Triggers, MAX_RETRIES};
use crate::diag::Diagnostic;
use crate::duration::parse_duration;
use crate::template::valid_name;

/// Above this many combinations before `exclude`, a matrix is refused without expanding it.
pub(super) const MAX_MATRIX_PRODUCT: usize = 65_536;

const TOP_KEYS: &[&str] = &["on", "jobs"];
const JOB_KEYS: &[&str] = &[
    "steps",
    "env",
    "timeout",
    "needs",
    "requires",
    "matrix",
    "retries",
    "tests",
    "artifacts",
    "network",
];

/// Positions and raw pieces of a job that the cross-job checks need.
#[derive(Debug)]
pub(super) struct JobSource {
    pub needs: Vec<(String, Pos)>,
    /// Strings that may hold `${{ matrix.X }}`.
    pub templates: Vec<(String, Pos)>,
    /// Axis names plus keys only `include` adds; `None` without a matrix.
    pub matrix_keys: Option<BTreeSet<String>>,
}

pub(super) struct Reader<'f> {
    file: &'f str,
    pub diags: Vec<Diagnostic>,
}

fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Edit distance, for "did you mean" hints.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// Where a value is, or where its key is when the value is empty (`key:` with nothing after).
pub(super) fn at(key: &Node, value: &Node) -> Pos {
    if value.value == Value::Null {
        key.pos
    } else {
        value.pos
    }
}

impl<'f> Reader<'f> {
    pub fn new(file: &'f str) -> Self {
        Reader {
            file,
            diags: Vec::new(),
        }
    }

    pub fn err(&mut self, pos: Pos, msg: impl Into<String>) {
        self.diags
            .push(Diagnostic::new(self.file, pos.line, pos.column, msg));
    }

    pub(super) fn unknown_key(&mut self, key: &Node, name: &str, place: &str, allowed: &[&str]) {
        let hint = allowed
            .iter()
            .map(|a| (distance(name, a), a))
            .filter(|(d, a)| *d <= 2 && *d < a.len())
            .min()
            .map(|(_, a)| format!(", did you mean {a:?}?"))
            .unwrap_or_default();
        self.err(
            key.pos,
            format!(
                "unknown key {name:?} {place}{hint} (expected one of: {})",
                allowed.join(", ")
            ),
        );
    }

    /// The entries of a mapping (none for an empty value), or a diagnostic.
    pub(super) fn entries<'n>(
        &mut self,
        node: &'n Node,
        pos: Pos,
        what: &str,
    ) -> Option<&'n [(Node, Node)]> {
        match &node.value {
            Value::Map(entries) => Some(entries),
            Value::Null => Some(&[]),
            _ => {
                self.err(
                    pos,
                    format!(
                        "{what} must be a mapping (key: value), found {}",
                        node.describe()
                    ),
                );
                None
            }
        }
    }

    pub(super) fn key<'n>(&mut self, key: &'n Node) -> Option<&'n str> {
        let k = key.scalar();
        if k.is_none() {
            self.err(
                key.pos,
                format!("a key must be a plain string, found {}", key.describe()),
            );
        }
        k
    }

    pub(super) fn string(&mut self, node: &Node, pos: Pos, what: &str) -> Option<String> {
        match node.scalar() {
            Some(s) => Some(s.to_owned()),
            None => {
                self.err(
                    pos,
                    format!("{what} must be a string, found {}", node.describe()),
                );
                None
            }
        }
    }

    /// A string or a list of strings.
    pub(super) fn strings(&mut self, node: &Node, pos: Pos, what: &str) -> Vec<(String, Pos)> {
        match &node.value {
            Value::Null => Vec::new(),
            Value::Scalar(s, _) => vec![(s.clone(), node.pos)],
            Value::Seq(items) => items
                .iter()
                .filter_map(|item| {
                    let s = item.scalar().map(|s| (s.to_owned(), item.pos));
                    if s.is_none() {
                        self.err(
                            item.pos,
                            format!(
                                "each entry of {what} must be a string, found {}",
                                item.describe()
                            ),
                        );
                    }
                    s
                })
                .collect(),
            Value::Map(_) => {
                self.err(
                    pos,
                    format!("{what} must be a string or a list of strings, found a mapping"),
                );
                Vec::new()
            }
        }
    }

    /// Like `strings`, each entry also non-blank.
    pub(super) fn nonblank_strings(
        &mut self,
        node: &Node,
        pos: Pos,
        what: &str,
    ) -> Vec<(String, Pos)> {
        let list = self.strings(node, pos, what);
        for (s, p) in &list {
            if s.trim().is_empty() {
                self.err(*p, format!("empty entry in {what}"));
            }
        }
        list
    }

    pub(super) fn number(
        &mut self,
        node: &Node,
        pos: Pos,
        what: &str,
        min: u32,
        max: u32,
    ) -> Option<u32> {
        let n = node
            .scalar()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .filter(|n| (min..=max).contains(n));
        if n.is_none() {
            let found = node
                .scalar()
                .map_or_else(|| node.describe().to_owned(), |s| format!("{s:?}"));
            self.err(
                pos,
                format!("{what} must be a whole number from {min} to {max}, found {found}"),
            );
        }
        n
    }

    pub(super) fn boolean(&mut self, node: &Node, pos: Pos, what: &str) -> Option<bool> {
        match node.scalar().map(str::to_ascii_lowercase).as_deref() {
            Some("true") => Some(true),
            Some("false") => Some(false),
            _ => {
                self.err(
                    pos,
                    format!("{what} must be true or false, found {}", node.describe()),
                );
                None
            }
        }
    }

    /// A mapping of strings to scalars; numbers and booleans become their text.
    pub(super) fn scalar_map(
        &mut self,
        node: &Node,
        pos: Pos,
        what: &str,
    ) -> Vec<(String, Pos, String, Pos)> {
        let mut out = Vec::new();
        for (k, v) in self.entries(node, pos, what).unwrap_or_default() {
            let Some(key) = self.key(k) else { continue };
            match &v.value {
                Value::Scalar(s, _) => out.push((key.to_owned(), k.pos, s.clone(), v.pos)),
                Value::Null => self.err(k.pos, format!("{key:?} in {what} has no value")),
                _ => self.err(
                    v.pos,
                    format!("{key:?} in {what} must be a string, found {}", v.describe()),
                ),
            }
        }
        out
    }

    pub fn pipeline(&mut self, root: &Node) -> (Pipeline, Vec<JobSource>) {
        let mut p = Pipeline::default();
        let mut sources = Vec::new();
        let entries = match &root.value {
            Value::Map(e) => e,
            Value::Null => {
                self.err(
                    Pos::START,
                    "the pipeline file is empty: it needs a `jobs:` mapping",
                );
                return (p, sources);
            }
            _ => {
                self.err(
                    root.pos,
                    format!(
                        "the pipeline file must be a mapping with `jobs:`, found {}",
                        root.describe()
                    ),
                );
                return (p, sources);
            }
        };
        let mut on = None;
        let mut jobs = None;
        for (k, v) in entries {
            match self.key(k) {
                Some("on") => on = Some((k, v)),
                Some("jobs") => jobs = Some((k, v)),
                Some(x) if x.starts_with("x-") => {} // extension keys, for YAML anchors
                Some(other) => self.unknown_key(k, other, "at the top level", TOP_KEYS),
                None => {}
            }
        }
        p.on = match on {
            Some((k, v)) => self.triggers(k, v),
            None => Triggers {
                push: Some(PushFilter::default()),
                manual: true,
                ..Triggers::default()
            },
        };
        match jobs {
            None => self.err(root.pos, "no `jobs:` in the pipeline file"),
            Some((k, v)) => {
                let list = self.entries(v, at(k, v), "`jobs`").unwrap_or_default();
                if list.is_empty() && matches!(v.value, Value::Map(_) | Value::Null) {
                    self.err(
                        at(k, v),
                        "`jobs` is empty: a pipeline needs at least one job",
                    );
                }
                for (name, body) in list {
                    if let Some((job, src)) = self.job(name, body) {
                        p.jobs.push(job);
                        sources.push(src);
                    }
                }
            }
        }
        (p, sources)
    }

    fn job(&mut self, name_node: &Node, body: &Node) -> Option<(JobSpec, JobSource)> {
        let name = self.key(name_node)?.to_owned();
        if !valid_name(&name, true) {
            self.err(
                name_node.pos,
                format!("invalid job name {name:?}: use letters, digits, '_', '-' and '.'"),
            );
        }
        let mut job = JobSpec {
            name: name.clone(),
            ..JobSpec::default()
        };
        let mut src = JobSource {
            needs: Vec::new(),
            templates: Vec::new(),
            matrix_keys: None,
        };
        let place = format!("in job {name:?}");
        let entries = self.entries(body, at(name_node, body), &format!("job {name:?}"))?;
        for (k, v) in entries {
            let pos = at(k, v);
            let Some(key) = self.key(k) else { continue };
            let what = format!("`{key}` of job {name:?}");
            match key {
                "steps" => {
                    for (s, p) in self.strings(v, pos, &what) {
                        if s.trim().is_empty() {
                            self.err(p, format!("empty step in job {name:?}"));
                        }
                        src.templates.push((s.clone(), p));
                        job.steps.push(s);
                    }
                }
                "env" => {
                    for (key, kpos, val, vpos) in self.scalar_map(v, pos, &what) {
                        if !valid_env_name(&key) {
                            self.err(kpos, format!("{key:?} in job {name:?} is not a valid environment variable name (letters, digits and '_', not starting with a digit)"));
                        }
                        src.templates.push((val.clone(), vpos));
                        job.env.insert(key, val);
                    }
                }
                "timeout" => {
                    if let Some(text) = self.string(v, pos, &what) {
                        match parse_duration(&text) {
                            Ok(d) if d.is_zero() => {
                                self.err(pos, format!("{what} must be longer than zero"))
                            }
                            Ok(d) => job.timeout = Some(d),
                            Err(e) => self.err(pos, format!("{what}: {e}")),
                        }
                    }
                }
                "needs" => src.needs = self.nonblank_strings(v, pos, &what),
                "requires" => {
                    for (key, kpos, val, vpos) in self.scalar_map(v, pos, &what) {
                        if !key
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c))
                        {
                            self.err(kpos, format!("invalid label name {key:?} in job {name:?} (letters, digits, '_', '-', '.', '/')"));
                        }
                        src.templates.push((val.clone(), vpos));
                        job.requires.insert(key, val);
                    }
                }
                "matrix" => {
                    if let Some((m, keys)) = self.matrix(v, pos, &name) {
                        job.matrix = Some(m);
                        src.matrix_keys = Some(keys);
                    }
                }
                "retries" => job.retries = self.number(v, pos, &what, 0, MAX_RETRIES),
                "tests" => job.tests = self.tests(k, v, &name, &mut src.templates),
                "artifacts" => {
                    let (globs, when) = self.artifacts(v, pos, &what);
                    for (glob, p) in globs {
                        src.templates.push((glob.clone(), p));
                        job.artifacts.push(glob);
                    }
                    job.artifacts_when = when;
                }
                "network" => {
                    if let Some(on) = self.boolean(v, pos, &what) {
                        job.network = if on { super::Network::On } else { super::Network::Off };
                    }
                }
                other => self.unknown_key(k, other, &place, JOB_KEYS),
            }
        }
        job.needs = src.needs.iter().map(|(n, _)| n.clone()).collect();
        if job.steps.is_empty()
            && job.tests.is_none()
            && !entries.iter().any(|(k, _)| k.scalar() == Some("tests"))
        {
            self.err(
                name_node.pos,
                format!("job {name:?} has no steps (give `steps:`, or a `tests:` block)"),
            );
        }
        Some((job, src))
    }
}
