//! Reading the nested blocks: `on:` of the pipeline, `matrix:` and `tests:` of a job.

use std::collections::{BTreeMap, BTreeSet};

use super::read::{at, Reader, MAX_MATRIX_PRODUCT};
use super::yaml::{Kind, Node, Pos, Value};
use super::{ArtifactsWhen, Matrix, PushFilter, TestsSpec, Triggers, MAX_MATRIX_CELLS, MAX_RETRIES, MAX_SHARDS};
use crate::template::valid_name;

const TESTS_KEYS: &[&str] = &[
    "shards",
    "list",
    "run",
    "split",
    "files",
    "retries",
    "reports",
    "flaky_fails_build",
];

const ON_KEYS: &[&str] = &["push", "schedule", "after", "manual"];
const PUSH_KEYS: &[&str] = &["branches", "paths"];

/// A matrix `include`/`exclude` entry, with the position of each key.
type Combo = (BTreeMap<String, String>, Vec<(String, Pos)>);

impl Reader<'_> {
    pub(super) fn triggers(&mut self, key: &Node, node: &Node) -> Triggers {
        // Manual triggers stay allowed unless the file says `manual: false`.
        let mut t = Triggers { manual: true, ..Triggers::default() };
        if let Value::Scalar(..) | Value::Seq(_) = node.value {
            // `on: push` / `on: [push, manual]`
            for (event, pos) in self.strings(node, node.pos, "`on`") {
                match event.as_str() {
                    "push" => t.push = Some(PushFilter::default()),
                    "manual" => t.manual = true,
                    "schedule" | "after" => self.err(
                        pos,
                        format!("`{event}` needs a value: write it as `on: {{ {event}: ... }}`"),
                    ),
                    _ => self.err(
                        pos,
                        format!(
                            "unknown trigger {event:?} (expected one of: {})",
                            ON_KEYS.join(", ")
                        ),
                    ),
                }
            }
            return t;
        }
        for (k, v) in self
            .entries(node, at(key, node), "`on`")
            .unwrap_or_default()
        {
            let pos = at(k, v);
            match self.key(k) {
                Some("push") => t.push = self.push(v, pos),
                Some("schedule") => {
                    for (expr, p) in self.nonblank_strings(v, pos, "`on.schedule`") {
                        match crate::cron::validate_cron(&expr) {
                            Ok(()) => t.schedule.push(expr),
                            Err(e) => self.err(p, e),
                        }
                    }
                }
                Some("after") => {
                    t.after = self
                        .nonblank_strings(v, pos, "`on.after`")
                        .into_iter()
                        .map(|(s, _)| s)
                        .collect()
                }
                Some("manual") => t.manual = self.boolean(v, pos, "`on.manual`").unwrap_or(false),
                Some(other) => self.unknown_key(k, other, "in `on`", ON_KEYS),
                None => {}
            }
        }
        t
    }

    fn push(&mut self, node: &Node, pos: Pos) -> Option<PushFilter> {
        match &node.value {
            Value::Null => Some(PushFilter::default()),
            Value::Scalar(_, Kind::Bool) => self
                .boolean(node, pos, "`on.push`")
                .filter(|b| *b)
                .map(|_| PushFilter::default()),
            Value::Map(entries) => {
                let mut f = PushFilter::default();
                for (k, v) in entries {
                    let pos = at(k, v);
                    match self.key(k) {
                        Some("branches") => {
                            f.branches = self
                                .nonblank_strings(v, pos, "`on.push.branches`")
                                .into_iter()
                                .map(|(s, _)| s)
                                .collect()
                        }
                        Some("paths") => {
                            f.paths = self
                                .nonblank_strings(v, pos, "`on.push.paths`")
                                .into_iter()
                                .map(|(s, _)| s)
                                .collect()
                        }
                        Some(other) => self.unknown_key(k, other, "in `on.push`", PUSH_KEYS),
                        None => {}
                    }
                }
                Some(f)
            }
            _ => {
                self.err(
                    pos,
                    format!(
                        "`on.push` must be a mapping with branches and paths, or true, found {}",
                        node.describe()
                    ),
                );
                None
            }
        }
    }

    pub(super) fn matrix(
        &mut self,
        node: &Node,
        pos: Pos,
        job: &str,
    ) -> Option<(Matrix, BTreeSet<String>)> {
        let before = self.diags.len();
        let what = format!("the matrix of job {job:?}");
        let mut m = Matrix::default();
        let mut keys = BTreeSet::new();
        let mut exclude_keys = Vec::new();
        for (k, v) in self.entries(node, pos, &what)? {
            let Some(key) = self.key(k) else { continue };
            if key == "include" || key == "exclude" {
                for (combo, combo_keys) in self.combos(v, at(k, v), &format!("`{key}` in {what}")) {
                    if key == "include" {
                        keys.extend(combo.keys().cloned());
                        m.include.push(combo);
                    } else {
                        exclude_keys.extend(combo_keys);
                        m.exclude.push(combo);
                    }
                }
                continue;
            }
            if !valid_name(key, false) {
                self.err(k.pos, format!("invalid matrix axis name {key:?} in job {job:?}: use letters, digits, '_' and '-'"));
            }
            let Value::Seq(items) = &v.value else {
                self.err(
                    at(k, v),
                    format!(
                        "matrix axis {key:?} in job {job:?} must be a list of values, found {}",
                        v.describe()
                    ),
                );
                continue;
            };
            if items.is_empty() {
                self.err(
                    v.pos,
                    format!("matrix axis {key:?} in job {job:?} has no values"),
                );
            }
            let mut values: Vec<String> = Vec::new();
            for item in items {
                match item.scalar() {
                    Some(s) if values.iter().any(|x| x == s) => {
                        self.err(item.pos, format!("duplicate value {s:?} in matrix axis {key:?} of job {job:?}"))
                    }
                    Some(s) => values.push(s.to_owned()),
                    None => self.err(item.pos, format!("a value of matrix axis {key:?} in job {job:?} must be a string, found {}", item.describe())),
                }
            }
            keys.insert(key.to_owned());
            m.axes.push((key.to_owned(), values));
        }
        for (k, p) in exclude_keys {
            if !m.axes.iter().any(|(a, _)| *a == k) {
                let axes: Vec<&str> = m.axes.iter().map(|(a, _)| a.as_str()).collect();
                self.err(
                    p,
                    format!(
                        "`exclude` in {what} names {k:?}, which is not an axis (axes: {})",
                        axes.join(", ")
                    ),
                );
            }
        }
        if self.diags.len() > before {
            return None; // cell counts of a broken matrix would only add noise
        }
        let product = m.product_size();
        if product > MAX_MATRIX_PRODUCT {
            self.err(pos, format!("{what} has {product} combinations, more than the limit of {MAX_MATRIX_CELLS} cells"));
            return None;
        }
        let cells = m.cells().len();
        if cells == 0 {
            self.err(
                pos,
                format!("{what} has no cells (no axes, or every combination is excluded)"),
            );
        } else if cells > MAX_MATRIX_CELLS {
            self.err(
                pos,
                format!("{what} has {cells} cells, more than the limit of {MAX_MATRIX_CELLS}"),
            );
        }
        Some((m, keys))
    }

    /// A list of `{axis: value}` mappings (matrix include/exclude), with each key's position.
    fn combos(&mut self, node: &Node, pos: Pos, what: &str) -> Vec<Combo> {
        let items: &[Node] = match &node.value {
            Value::Seq(items) => items,
            Value::Null => &[],
            _ => {
                self.err(
                    pos,
                    format!(
                        "{what} must be a list of mappings, found {}",
                        node.describe()
                    ),
                );
                &[]
            }
        };
        let mut out = Vec::new();
        for item in items {
            let entries = self.scalar_map(item, item.pos, what);
            let mut combo = BTreeMap::new();
            let mut key_pos = Vec::new();
            for (k, kpos, v, _) in entries {
                if !valid_name(&k, false) {
                    self.err(kpos, format!("invalid matrix axis name {k:?} in {what}"));
                }
                key_pos.push((k.clone(), kpos));
                combo.insert(k, v);
            }
            if combo.is_empty() && matches!(item.value, Value::Map(_) | Value::Null) {
                self.err(item.pos, format!("empty entry in {what}"));
            }
            out.push((combo, key_pos));
        }
        out
    }

    pub(super) fn tests(
        &mut self,
        key: &Node,
        node: &Node,
        job: &str,
        templates: &mut Vec<(String, Pos)>,
    ) -> Option<TestsSpec> {
        let what = format!("`tests` of job {job:?}");
        let block = at(key, node);
        let mut t = TestsSpec {
            shards: 1,
            ..TestsSpec::default()
        };
        let (mut run, mut split) = (None, None);
        let mut files_pos = None;
        for (k, v) in self.entries(node, block, &what)? {
            let pos = at(k, v);
            let Some(name) = self.key(k) else { continue };
            let field = format!("`{name}` in {what}");
            match name {
                "shards" => t.shards = self.number(v, pos, &field, 1, MAX_SHARDS).unwrap_or(1),
                "list" => {
                    t.list = self
                        .string(v, pos, &field)
                        .inspect(|s| templates.push((s.clone(), pos)))
                }
                "run" => run = self.string(v, pos, &field).map(|s| (s, pos)),
                "split" => split = self.string(v, pos, &field).map(|s| (s, pos)),
                "files" => {
                    t.split_files = self
                        .string(v, pos, &field)
                        .inspect(|s| templates.push((s.clone(), pos)));
                    files_pos = Some(pos);
                }
                "retries" => t.retries = self.number(v, pos, &field, 0, MAX_RETRIES).unwrap_or(0),
                "reports" => {
                    t.reports = self
                        .nonblank_strings(v, pos, &field)
                        .into_iter()
                        .map(|(s, _)| s)
                        .collect()
                }
                "flaky_fails_build" => {
                    t.flaky_fails_build = self.boolean(v, pos, &field).unwrap_or(false)
                }
                other => self.unknown_key(k, other, &format!("in {what}"), TESTS_KEYS),
            }
        }
        match run {
            None => self.err(
                block,
                format!("{what} needs `run:`, a command with {{tests}} where the test ids go"),
            ),
            Some((r, pos)) => {
                if !r.contains("{tests}") {
                    self.err(
                        pos,
                        format!("`run` in {what} must contain {{tests}}, where the test ids go"),
                    );
                }
                templates.push((r.clone(), pos));
                t.run = r;
            }
        }
        let files_mode = match &split {
            Some((s, _)) if s == "files" => true,
            Some((s, pos)) => {
                self.err(*pos, format!("`split` in {what} must be \"files\" (without it, the output of `list` is split), found {s:?}"));
                false
            }
            None => false,
        };
        match (files_mode, &t.split_files, files_pos) {
            (true, None, _) => self.err(
                block,
                format!("{what} has `split: files` but no `files:` glob"),
            ),
            (false, Some(_), Some(p)) if split.is_none() => {
                self.err(p, format!("`files` in {what} needs `split: files`"))
            }
            _ => {}
        }
        if files_mode && t.list.is_some() {
            self.err(
                block,
                format!("{what} has both `list` and `split: files`: use one"),
            );
        } else if split.is_none() && t.list.is_none() {
            self.err(block, format!("{what} needs `list:` (a command printing the test ids) or `split: files` with `files: GLOB`"));
        }
        if !files_mode {
            t.split_files = None;
        }
        Some(t)
    }
}

const ARTIFACTS_KEYS: &[&str] = &["paths", "when"];

impl Reader<'_> {
    /// `artifacts:` as a glob or list of globs, or `{paths: [...], when: always|on_success|on_failure}`.
    pub(super) fn artifacts(&mut self, node: &Node, pos: Pos, what: &str) -> (Vec<(String, Pos)>, ArtifactsWhen) {
        let Value::Map(_) = node.value else {
            return (self.nonblank_strings(node, pos, what), ArtifactsWhen::default());
        };
        let mut globs = Vec::new();
        let mut when = ArtifactsWhen::default();
        let mut has_paths = false;
        for (k, v) in self.entries(node, pos, what).unwrap_or_default() {
            let Some(name) = self.key(k) else { continue };
            match name {
                "paths" => {
                    has_paths = true;
                    globs = self.nonblank_strings(v, k.pos, &format!("{what}.paths"));
                }
                "when" => {
                    if let Some(w) = self.string(v, k.pos, &format!("{what}.when")) {
                        match ArtifactsWhen::parse(&w) {
                            Some(x) => when = x,
                            None => self.err(v.pos, format!("{what}.when must be one of {}, found {w:?}", ArtifactsWhen::NAMES.join(", "))),
                        }
                    }
                }
                other => self.unknown_key(k, other, &format!("in {what}"), ARTIFACTS_KEYS),
            }
        }
        if !has_paths {
            self.err(pos, format!("{what} needs `paths:` (a list of globs)"));
        }
        (globs, when)
    }
}
