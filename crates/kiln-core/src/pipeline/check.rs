//! Checks across jobs: `needs` names real jobs and forms no cycle, and `${{ matrix.X }}`
//! names an axis of the job's matrix.

use std::collections::HashMap;

use super::read::{JobSource, Reader};
use super::Pipeline;
use crate::template::{template_pieces, Piece};

pub(super) fn check(r: &mut Reader, p: &Pipeline, sources: &[JobSource]) {
    let index: HashMap<&str, usize> = p
        .jobs
        .iter()
        .enumerate()
        .map(|(i, j)| (j.name.as_str(), i))
        .collect();
    // edges[i]: (job index needed, position of the `needs` entry)
    let mut edges: Vec<Vec<(usize, super::yaml::Pos)>> = vec![Vec::new(); p.jobs.len()];
    for (i, (job, src)) in p.jobs.iter().zip(sources).enumerate() {
        for (need, pos) in &src.needs {
            match index.get(need.as_str()) {
                None => r.err(
                    *pos,
                    format!("job {:?} needs unknown job {need:?}", job.name),
                ),
                Some(&j) if j == i => r.err(*pos, format!("job {:?} needs itself", job.name)),
                Some(&j) => edges[i].push((j, *pos)),
            }
        }
        for (text, pos) in &src.templates {
            check_template(r, &job.name, src, text, *pos);
        }
    }
    find_cycles(r, p, &edges);
}

fn check_template(r: &mut Reader, job: &str, src: &JobSource, text: &str, pos: super::yaml::Pos) {
    let pieces = match template_pieces(text) {
        Ok(pieces) => pieces,
        Err(e) => return r.err(pos, format!("{e} in job {job:?}")),
    };
    for piece in pieces {
        let Piece::Matrix(axis) = piece else { continue };
        match &src.matrix_keys {
            None => r.err(
                pos,
                format!("${{{{ matrix.{axis} }}}} in job {job:?}, which has no matrix"),
            ),
            Some(keys) if !keys.contains(axis) => {
                let known: Vec<&str> = keys.iter().map(String::as_str).collect();
                r.err(pos, format!("${{{{ matrix.{axis} }}}} in job {job:?}: the matrix has no {axis:?} (it has: {})", known.join(", ")))
            }
            Some(_) => {}
        }
    }
}

/// Depth-first search; every back edge closes a cycle, reported once at the `needs` entry
/// that starts it.
fn find_cycles(r: &mut Reader, p: &Pipeline, edges: &[Vec<(usize, super::yaml::Pos)>]) {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        i: usize,
        edges: &[Vec<(usize, super::yaml::Pos)>],
        marks: &mut [Mark],
        stack: &mut Vec<(usize, super::yaml::Pos)>,
        found: &mut Vec<(Vec<usize>, super::yaml::Pos)>,
    ) {
        marks[i] = Mark::Open;
        for &(j, pos) in &edges[i] {
            match marks[j] {
                Mark::New => {
                    stack.push((i, pos));
                    visit(j, edges, marks, stack, found);
                    stack.pop();
                }
                Mark::Open => {
                    let start = stack
                        .iter()
                        .position(|(k, _)| *k == j)
                        .unwrap_or(stack.len());
                    let mut path: Vec<usize> = stack[start..].iter().map(|(k, _)| *k).collect();
                    path.push(i);
                    let at = stack.get(start).map_or(pos, |(_, p)| *p);
                    found.push((path, at));
                }
                Mark::Done => {}
            }
        }
        marks[i] = Mark::Done;
    }
    let mut marks = vec![Mark::New; edges.len()];
    let mut found = Vec::new();
    for i in 0..edges.len() {
        if marks[i] == Mark::New {
            visit(i, edges, &mut marks, &mut Vec::new(), &mut found);
        }
    }
    for (path, pos) in found {
        let mut names: Vec<&str> = path.iter().map(|&k| p.jobs[k].name.as_str()).collect();
        names.push(names[0]);
        r.err(pos, format!("cycle in needs: {}", names.join(" -> ")));
    }
}
