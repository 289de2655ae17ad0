//! Tests of pipeline parsing and validation.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;

const EXAMPLE: &str = r#"
on:
  push: { branches: [main, "release/*"], paths: ["src/**"] }
  schedule: "0 3 * * *"          # a string or a list of strings
  after: [django-sample-app]     # a string or list
  manual: true
jobs:
  test:
    matrix:
      python: ["3.11", "3.12"]
      django: ["4.2", "5.1"]
      include: [{python: "3.13", django: "5.1"}]
      exclude: [{python: "3.12", django: "4.2"}]
    requires: { python: "${{ matrix.python }}" }
    env: { DJANGO: "${{ matrix.django }}" }
    timeout: 10m
    retries: 2
    steps:
      - pip install "django~=$DJANGO"
      - python -m pytest
  slow-suite:
    tests:
      shards: 4
      list: "python -m pytest --collect-only -q | grep ::"  # quoted: a plain `::` at the end of a line is YAML syntax
      run: python -m pytest {tests} --junitxml=$KILN_JUNIT_DIR/part.xml
      retries: 1
  publish:
    needs: [test, slow-suite]     # a string or list
    steps: [./scripts/publish.sh]
"#;

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn parses_the_design_example() {
    let p = parse(".kiln.yml", EXAMPLE).unwrap();
    assert_eq!(
        p.on,
        Triggers {
            push: Some(PushFilter {
                branches: strings(&["main", "release/*"]),
                paths: strings(&["src/**"])
            }),
            schedule: strings(&["0 3 * * *"]),
            after: strings(&["django-sample-app"]),
            manual: true,
        }
    );
    let names: Vec<&str> = p.jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(names, ["test", "slow-suite", "publish"]);
    let test = &p.jobs[0];
    assert_eq!(
        test.matrix,
        Some(Matrix {
            axes: vec![
                ("python".into(), strings(&["3.11", "3.12"])),
                ("django".into(), strings(&["4.2", "5.1"]))
            ],
            include: vec![map(&[("python", "3.13"), ("django", "5.1")])],
            exclude: vec![map(&[("python", "3.12"), ("django", "4.2")])],
        })
    );
    assert_eq!(test.requires, map(&[("python", "${{ matrix.python }}")]));
    assert_eq!(test.env, map(&[("DJANGO", "${{ matrix.django }}")]));
    assert_eq!(test.timeout, Some(Duration::from_secs(600)));
    assert_eq!(test.retries, Some(2));
    assert_eq!(
        test.steps,
        strings(&["pip install \"django~=$DJANGO\"", "python -m pytest"])
    );
    assert_eq!(
        p.jobs[1].tests,
        Some(TestsSpec {
            shards: 4,
            list: Some("python -m pytest --collect-only -q | grep ::".into()),
            run: "python -m pytest {tests} --junitxml=$KILN_JUNIT_DIR/part.xml".into(),
            split_files: None,
            retries: 1,
            reports: vec![],
            flaky_fails_build: false,
        })
    );
    assert!(p.jobs[1].steps.is_empty());
    assert_eq!(p.jobs[2].needs, strings(&["test", "slow-suite"]));
    assert_eq!(p.jobs[2].steps, strings(&["./scripts/publish.sh"]));
    assert_eq!(p.jobs[2].retries, None);
}

#[test]
fn scalars_where_strings_are_expected_keep_their_text() {
    let p = parse(
        "f",
        "jobs:\n  t:\n    matrix: { python: [3.10, 3.11, 3], flag: [true] }\n    env: { ONE: 1, ON: yes, PI: 3.140 }\n    timeout: 90\n    steps: [echo, 42]\n",
    )
    .unwrap();
    let j = &p.jobs[0];
    let m = j.matrix.as_ref().unwrap();
    assert_eq!(m.axes[0].1, strings(&["3.10", "3.11", "3"]));
    assert_eq!(m.axes[1].1, strings(&["true"]));
    assert_eq!(j.env, map(&[("ONE", "1"), ("ON", "yes"), ("PI", "3.140")]));
    assert_eq!(j.timeout, Some(Duration::from_secs(90)));
    assert_eq!(j.steps, strings(&["echo", "42"]));
}

#[test]
fn trigger_forms() {
    // Manual triggers are on unless the file turns them off.
    let d = Triggers { manual: true, ..Triggers::default() };
    let cases: &[(&str, Triggers)] = &[
        (
            "",
            Triggers {
                push: Some(PushFilter::default()),
                manual: true,
                ..d.clone()
            },
        ),
        ("on:\n", d.clone()),
        ("on: { manual: false }\n", Triggers::default()),
        (
            "on: push\n",
            Triggers {
                push: Some(PushFilter::default()),
                ..d.clone()
            },
        ),
        (
            "on: [push, manual]\n",
            Triggers {
                push: Some(PushFilter::default()),
                manual: true,
                ..d.clone()
            },
        ),
        (
            "on: { manual: true }\n",
            Triggers {
                manual: true,
                ..d.clone()
            },
        ),
        (
            "on: { push: }\n",
            Triggers {
                push: Some(PushFilter::default()),
                ..d.clone()
            },
        ),
        (
            "on: { push: false, after: lib }\n",
            Triggers {
                after: strings(&["lib"]),
                ..d.clone()
            },
        ),
        (
            "on:\n  push: { branches: main }\n  schedule: ['@daily', '*/5 * * * *']\n",
            Triggers {
                push: Some(PushFilter {
                    branches: strings(&["main"]),
                    paths: vec![],
                }),
                schedule: strings(&["@daily", "*/5 * * * *"]),
                ..d.clone()
            },
        ),
    ];
    for (on, want) in cases {
        let text = format!("{on}jobs: {{ a: {{ steps: [x] }} }}\n");
        assert_eq!(parse("f", &text).map(|p| p.on), Ok(want.clone()), "{on:?}");
    }
}

#[test]
fn artifacts_forms() {
    let p = parse("f", "jobs:\n  a:\n    steps: [x]\n    artifacts: [out/*.bin, 'logs/**']\n").unwrap();
    assert_eq!(p.jobs[0].artifacts, strings(&["out/*.bin", "logs/**"]));
    assert_eq!(p.jobs[0].artifacts_when, super::ArtifactsWhen::Always);
    let p = parse("f", "jobs:\n  a:\n    steps: [x]\n    artifacts:\n      paths: [report.html]\n      when: on_failure\n").unwrap();
    assert_eq!(p.jobs[0].artifacts, strings(&["report.html"]));
    assert_eq!(p.jobs[0].artifacts_when, super::ArtifactsWhen::OnFailure);
    assert!(!super::ArtifactsWhen::OnFailure.applies(true) && super::ArtifactsWhen::OnSuccess.applies(true));
}

#[test]
fn tests_block_forms() {
    let text = "jobs:\n  s:\n    steps: [pip install .]\n    tests:\n      split: files\n      files: tests/**/test_*.py\n      run: pytest {tests}\n      reports: [out/*.xml]\n      flaky_fails_build: true\n";
    let p = parse("f", text).unwrap();
    let t = p.jobs[0].tests.as_ref().unwrap();
    assert_eq!(t.shards, 1);
    assert_eq!(t.split_files.as_deref(), Some("tests/**/test_*.py"));
    assert_eq!(t.list, None);
    assert_eq!(t.reports, strings(&["out/*.xml"]));
    assert!(t.flaky_fails_build);
    assert_eq!(p.jobs[0].steps, strings(&["pip install ."]));
}

/// (file text, expected diagnostics as "LINE:COL: start of message")
const INVALID: &[(&str, &[&str])] = &[
    ("", &["1:1: the pipeline file is empty"]),
    ("# only a comment\n\n# another\n", &["1:1: the pipeline file is empty"]),
    ("jobs: [\n", &["1:7: invalid YAML: unclosed bracket"]),
    ("jobs:\n  a: {steps: [x]}\n  a: {steps: [y]}\n", &["3:3: invalid YAML: duplicate mapping key `a`"]),
    ("- a\n- b\n", &["1:1: the pipeline file must be a mapping with `jobs:`, found a list"]),
    ("on: push\n", &["1:1: no `jobs:` in the pipeline file"]),
    ("jobs: {}\n", &["1:7: `jobs` is empty"]),
    ("jobs:\n", &["1:1: `jobs` is empty"]),
    ("jobs: [a, b]\n", &["1:7: `jobs` must be a mapping"]),
    ("jobz:\n  a: {steps: [x]}\n", &[
        "1:1: unknown key \"jobz\" at the top level, did you mean \"jobs\"? (expected one of: on, jobs)",
        "1:1: no `jobs:` in the pipeline file",
    ]),
    ("x-defaults: &d {timeout: 5m}\njobs:\n  a: {steps: [x]}\n", &[]),
    ("jobs:\n  build:\n    stepz: [make]\n", &[
        "2:3: job \"build\" has no steps",
        "3:5: unknown key \"stepz\" in job \"build\", did you mean \"steps\"? (expected one of: steps, env, timeout, needs, requires, matrix, retries, tests, artifacts, network)",
    ]),
    ("jobs:\n  build:\n", &["2:3: job \"build\" has no steps"]),
    ("jobs:\n  build: {steps: []}\n", &["2:3: job \"build\" has no steps"]),
    ("jobs:\n  build: make\n", &["2:10: job \"build\" must be a mapping"]),
    ("jobs:\n  build:\n    steps:\n      - make\n      - ''\n      - {run: x}\n", &[
        "5:9: empty step in job \"build\"",
        "6:9: each entry of `steps` of job \"build\" must be a string, found a mapping",
    ]),
    ("jobs:\n  a:\n    timeout: soon\n    steps: [x]\n", &["3:14: `timeout` of job \"a\": invalid duration \"soon\""]),
    ("jobs:\n  a:\n    timeout: 0s\n    steps: [x]\n", &["3:14: `timeout` of job \"a\" must be longer than zero"]),
    ("jobs:\n  a:\n    retries: -1\n    steps: [x]\n", &["3:14: `retries` of job \"a\" must be a whole number from 0 to 10"]),
    ("jobs:\n  a:\n    needs: nope\n    steps: [x]\n", &["3:12: job \"a\" needs unknown job \"nope\""]),
    ("jobs:\n  a:\n    needs: [a]\n    steps: [x]\n", &["3:13: job \"a\" needs itself"]),
    (
        "jobs:\n  a:\n    needs: b\n    steps: [x]\n  b:\n    needs: [c]\n    steps: [x]\n  c:\n    needs: [a]\n    steps: [x]\n",
        &["3:12: cycle in needs: a -> b -> c -> a"],
    ),
    (
        "jobs:\n  a: {steps: [x]}\n  b: {needs: c, steps: [x]}\n  c: {needs: [a, b], steps: [x]}\n",
        &["3:14: cycle in needs: b -> c -> b"],
    ),
    ("on:\n  schedule: [\"0 3 * * *\", \"0 25 * * *\"]\njobs: {a: {steps: [x]}}\n", &[
        "2:27: invalid cron expression \"0 25 * * *\"",
    ]),
    ("on:\n  pushh: {}\njobs: {a: {steps: [x]}}\n", &["2:3: unknown key \"pushh\" in `on`, did you mean \"push\"?"]),
    ("on:\n  push: {branch: main}\njobs: {a: {steps: [x]}}\n", &[
        "2:10: unknown key \"branch\" in `on.push`, did you mean \"branches\"?",
    ]),
    ("on: [push, nightly]\njobs: {a: {steps: [x]}}\n", &["1:12: unknown trigger \"nightly\""]),
    ("on:\n  manual: sometimes\njobs: {a: {steps: [x]}}\n", &["2:11: `on.manual` must be true or false"]),
    ("jobs:\n  t:\n    matrix: {py: [\"3.11\"], os: []}\n    steps: [x]\n", &["3:32: matrix axis \"os\" in job \"t\" has no values"]),
    ("jobs:\n  t:\n    matrix: {py: \"3.11\"}\n    steps: [x]\n", &[
        "3:18: matrix axis \"py\" in job \"t\" must be a list of values, found a string",
    ]),
    ("jobs:\n  t:\n    matrix: {py: [a, a]}\n    steps: [x]\n", &["3:22: duplicate value \"a\" in matrix axis \"py\""]),
    ("jobs:\n  t:\n    matrix: {py: [a], exclude: [{py: a}]}\n    steps: [x]\n", &[
        "3:13: the matrix of job \"t\" has no cells",
    ]),
    ("jobs:\n  t:\n    matrix: {py: [a], exclude: [{os: a}]}\n    steps: [x]\n", &[
        "3:34: `exclude` in the matrix of job \"t\" names \"os\", which is not an axis (axes: py)",
    ]),
    ("jobs:\n  t:\n    matrix: {}\n    steps: [x]\n", &["3:13: the matrix of job \"t\" has no cells"]),
    (
        "jobs:\n  t:\n    matrix:\n      a: [1,2,3,4,5,6,7,8]\n      b: [1,2,3,4,5,6,7,8]\n      c: [1,2,3,4,5]\n    steps: [x]\n",
        &["4:7: the matrix of job \"t\" has 320 cells, more than the limit of 256"],
    ),
    (
        "jobs:\n  t:\n    matrix:\n      a: [1,2,3,4,5,6,7,8,9,10]\n      b: [1,2,3,4,5,6,7,8,9,10]\n      c: [1,2,3,4,5,6,7,8,9,10]\n      d: [1,2,3,4,5,6,7,8,9,10]\n      e: [1,2,3,4,5,6,7,8,9,10]\n    steps: [x]\n",
        &["4:7: the matrix of job \"t\" has 100000 combinations"],
    ),
    ("jobs:\n  s:\n    tests: {shards: 0, list: ls, run: 'pytest {tests}'}\n", &[
        "3:21: `shards` in `tests` of job \"s\" must be a whole number from 1 to 64, found \"0\"",
    ]),
    ("jobs:\n  s:\n    tests: {shards: 65, list: ls, run: 'pytest {tests}'}\n", &[
        "3:21: `shards` in `tests` of job \"s\" must be a whole number from 1 to 64",
    ]),
    ("jobs:\n  s:\n    tests: {list: ls, run: pytest}\n", &["3:28: `run` in `tests` of job \"s\" must contain {tests}"]),
    ("jobs:\n  s:\n    tests: {list: ls}\n", &["3:12: `tests` of job \"s\" needs `run:`"]),
    ("jobs:\n  s:\n    tests: {run: 'pytest {tests}'}\n", &["3:12: `tests` of job \"s\" needs `list:`"]),
    ("jobs:\n  s:\n    tests: {split: files, run: 'pytest {tests}'}\n", &[
        "3:12: `tests` of job \"s\" has `split: files` but no `files:` glob",
    ]),
    ("jobs:\n  s:\n    tests: {split: halves, files: x, run: 'pytest {tests}'}\n", &[
        "3:20: `split` in `tests` of job \"s\" must be \"files\"",
    ]),
    ("jobs:\n  s:\n    tests: {list: ls, split: files, files: '*.py', run: 'pytest {tests}'}\n", &[
        "3:12: `tests` of job \"s\" has both `list` and `split: files`",
    ]),
    ("jobs:\n  s:\n    tests: {list: ls, run: 'pytest {tests}', shard: 2}\n", &[
        "3:46: unknown key \"shard\" in `tests` of job \"s\", did you mean \"shards\"?",
    ]),
    ("jobs:\n  a:\n    steps: [x]\n    artifacts: {paths: [out/*], when: sometimes}\n", &[
        "4:39: `artifacts` of job \"a\".when must be one of always, on_success, on_failure, found \"sometimes\"",
    ]),
    ("jobs:\n  a:\n    steps: [x]\n    artifacts: {when: always, path: [x]}\n", &[
        "4:16: `artifacts` of job \"a\" needs `paths:`",
        "4:31: unknown key \"path\" in `artifacts` of job \"a\", did you mean \"paths\"?",
    ]),
    ("jobs:\n  a:\n    steps: [x]\n    artifacts: ['dist/${{ matrix.os }}/*']\n", &[
        "4:17: ${{ matrix.os }} in job \"a\", which has no matrix",
    ]),
    ("jobs:\n  a:\n    env: {PY: '${{ matrix.python }}'}\n    steps: [x]\n", &[
        "3:15: ${{ matrix.python }} in job \"a\", which has no matrix",
    ]),
    ("jobs:\n  a:\n    matrix: {py: [a]}\n    steps: ['echo ${{matrix.python}}', 'echo ${{ matrix.py }}']\n", &[
        "4:13: ${{ matrix.python }} in job \"a\": the matrix has no \"python\" (it has: py)",
    ]),
    ("jobs:\n  a:\n    steps: ['echo ${{ secrets.X }}', 'echo ${{ matrix.py']\n", &[
        "3:13: unsupported expression \"${{ secrets.X }}\"",
        "3:38: unclosed \"${{\" in \"echo ${{ matrix.py\" in job \"a\"",
    ]),
    ("jobs:\n  a:\n    env: {BAD-NAME: x, 1X: y}\n    steps: [x]\n", &[
        "3:11: \"BAD-NAME\" in job \"a\" is not a valid environment variable name",
        "3:24: \"1X\" in job \"a\" is not a valid environment variable name",
    ]),
    ("jobs:\n  a:\n    requires: {gpu: }\n    steps: [x]\n", &["3:16: \"gpu\" in `requires` of job \"a\" has no value"]),
    ("jobs:\n  'a b':\n    steps: [x]\n", &["2:3: invalid job name \"a b\""]),
    ("jobs:\n  a:\n    network: off\n    steps: [x]\n", &["3:14: `network` of job \"a\" must be true or false, found a string"]),
    // every problem is reported, sorted by position
    ("jobs:\n  a:\n    steps: [x]\n    timeout: never\n    needs: [ghost]\n  b:\n    bogus: 1\n", &[
        "4:14: `timeout` of job \"a\": invalid duration",
        "5:13: job \"a\" needs unknown job \"ghost\"",
        "6:3: job \"b\" has no steps",
        "7:5: unknown key \"bogus\" in job \"b\"",
    ]),
];

#[test]
fn reports_every_problem_with_its_position() {
    let mut failures = Vec::new();
    for (text, want) in INVALID {
        let got: Vec<String> = match parse("p.yml", text) {
            Ok(_) => Vec::new(),
            Err(diags) => diags
                .iter()
                .map(|d| {
                    assert_eq!(d.file, "p.yml");
                    format!("{}:{}: {}", d.line, d.column, d.message)
                })
                .collect(),
        };
        let ok =
            got.len() == want.len() && got.iter().zip(want.iter()).all(|(g, w)| g.starts_with(w));
        if !ok {
            failures.push(format!("for {text:?}\n got: {got:#?}\nwant: {want:#?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn matrix_cells_follow_include_and_exclude() {
    let m = |axes: &[(&str, &[&str])], include: &[&[(&str, &str)]], exclude: &[&[(&str, &str)]]| {
        Matrix {
            axes: axes
                .iter()
                .map(|(a, v)| (a.to_string(), strings(v)))
                .collect(),
            include: include.iter().map(|c| map(c)).collect(),
            exclude: exclude.iter().map(|c| map(c)).collect(),
        }
    };
    let show = |m: &Matrix| -> Vec<String> {
        m.cells()
            .iter()
            .map(|c| {
                c.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect()
    };
    let cases: Vec<(Matrix, Vec<&str>)> = vec![
        (
            m(&[("py", &["1", "2"]), ("dj", &["a", "b"])], &[], &[]),
            vec!["py=1,dj=a", "py=1,dj=b", "py=2,dj=a", "py=2,dj=b"],
        ),
        (
            m(
                &[("py", &["1", "2"]), ("dj", &["a", "b"])],
                &[],
                &[&[("py", "2"), ("dj", "a")]],
            ),
            vec!["py=1,dj=a", "py=1,dj=b", "py=2,dj=b"],
        ),
        (
            m(
                &[("py", &["1", "2"]), ("dj", &["a"])],
                &[],
                &[&[("py", "1")]],
            ),
            vec!["py=2,dj=a"],
        ),
        // a new combination becomes a cell
        (
            m(
                &[("py", &["1"]), ("dj", &["a"])],
                &[&[("py", "3"), ("dj", "b")]],
                &[],
            ),
            vec!["py=1,dj=a", "py=3,dj=b"],
        ),
        // extra keys are added to the cells they fit
        (
            m(
                &[("py", &["1", "2"])],
                &[&[("py", "2"), ("exp", "yes")], &[("os", "linux")]],
                &[],
            ),
            vec!["py=1,os=linux", "py=2,exp=yes,os=linux"],
        ),
        // an include equal to an existing cell adds nothing
        (m(&[("py", &["1"])], &[&[("py", "1")]], &[]), vec!["py=1"]),
        // include alone
        (
            m(&[], &[&[("py", "1")], &[("py", "2")]], &[]),
            vec!["py=1", "py=2"],
        ),
        (m(&[], &[], &[]), vec![]),
    ];
    for (matrix, want) in cases {
        assert_eq!(show(&matrix), want, "{matrix:?}");
    }
}

#[test]
fn network_key_cuts_a_job_off_or_leaves_it_on() {
    let p = parse("p.yml", "jobs:\n  a: {steps: [x], network: false}\n  b: {steps: [x], network: true}\n  c: {steps: [x]}\n").unwrap();
    let net: Vec<Network> = p.jobs.iter().map(|j| j.network).collect();
    assert_eq!(net, vec![Network::Off, Network::On, Network::On]);
}
