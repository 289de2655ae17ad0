//! JUnit XML reports (pytest, cargo-nextest, Maven Surefire, go-junit-report, jest-junit) parsed into test results, and the rule that matches a result to a listed test id.

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use quick_xml::{Reader, XmlVersion};

/// How much failure text is kept when the failure has no `message` attribute.
const MESSAGE_LIMIT: usize = 4096;

/// The final outcome of one test case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Failed,
    Errored,
    Skipped,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [
        Outcome::Passed,
        Outcome::Failed,
        Outcome::Errored,
        Outcome::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Failed => "failed",
            Outcome::Errored => "errored",
            Outcome::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// One `<testcase>` of a report.
#[derive(Debug, Clone, PartialEq)]
pub struct TestCase {
    /// Name of the nearest enclosing `<testsuite>` ("" when there is none).
    pub suite: String,
    pub classname: String,
    pub name: String,
    pub file: Option<String>,
    pub duration_ms: u64,
    pub outcome: Outcome,
    /// The failure's (or error's, or skip's) `message` attribute, else the first ~4 KiB of its text.
    pub message: Option<String>,
}

impl TestCase {
    /// The id used to match against the tests a shard was given: `file::name` when the file is
    /// known and the classname has no class part (pytest's node id; with a class part, pytest's
    /// `file::Class::name`), else `classname::name`, else (no classname, or jest-junit's
    /// classname equal to the name) just `name`.
    pub fn id(&self) -> String {
        case_id(&self.classname, &self.name, self.file.as_deref())
    }
}

/// A case's id from its parts (see `TestCase::id`).
pub fn case_id(classname: &str, name: &str, file: Option<&str>) -> String {
    if let Some(file) = file.filter(|f| !f.is_empty()) {
        let module = pytest_module(file);
        if classname.is_empty() || classname == module {
            return format!("{file}::{name}");
        }
        if file.ends_with(".py") {
            if let Some(class) = classname.strip_prefix(&module).and_then(|r| r.strip_prefix('.')) {
                return format!("{file}::{}::{name}", class.replace('.', "::"));
            }
        }
    }
    if classname.is_empty() || classname == name {
        name.to_string()
    } else {
        format!("{classname}::{name}")
    }
}

/// How a stored case is named to people: its listed `key` when that names the case (a pytest
/// node id, a nextest test), else the case's own id (`classname::name`; a listed file's cases).
pub fn shown_id(key: &str, classname: &str, name: &str, file: Option<&str>) -> String {
    if key.ends_with(name) {
        return key.to_string();
    }
    case_id(classname, name, file)
}

/// pytest's classname for a test file: `tests/test_a.py` → `tests.test_a`.
fn pytest_module(path: &str) -> String {
    path.strip_suffix(".py").unwrap_or(path).replace('/', ".")
}

/// Whether `listed` (one id printed by a shard's `list` command) names `case`. True when it is:
/// the name; `classname` joined to the name by `::`, `.`, `#` or a space (nextest's `list`);
/// `file::name`; a pytest node id (`path.py::[Class::]name`) whose path and classes mangle to
/// the classname as pytest's junitxml does; or the case's file or suite (file/package splits).
pub fn matches_id(listed: &str, case: &TestCase) -> bool {
    if listed == case.name {
        return true;
    }
    if !case.classname.is_empty() {
        if let Some(rest) = listed.strip_prefix(case.classname.as_str()) {
            for sep in ["::", ".", "#", " "] {
                if rest.strip_prefix(sep) == Some(case.name.as_str()) {
                    return true;
                }
            }
        }
    }
    if let Some(file) = case.file.as_deref().filter(|f| !f.is_empty()) {
        if listed == file
            || listed.strip_prefix(file).and_then(|r| r.strip_prefix("::"))
                == Some(case.name.as_str())
        {
            return true;
        }
    }
    if !case.suite.is_empty() && listed == case.suite {
        return true;
    }
    // pytest: junitxml derives classname from the node id: split on "::", the path's '/' become
    // '.', ".py" is dropped, and all parts but the last are joined by '.'.
    let parts: Vec<&str> = listed.split("::").collect();
    if parts.len() >= 2 && parts[0].ends_with(".py") {
        let (name, prefix) = parts.split_last().expect("two parts or more");
        let mut classname = pytest_module(prefix[0]);
        for class in &prefix[1..] {
            classname.push('.');
            classname.push_str(class);
        }
        return *name == case.name && classname == case.classname;
    }
    false
}

/// A malformed report, with the 1-based line and column of the problem.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct JunitError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

fn error_at(file: &str, xml: &[u8], offset: u64, message: impl Into<String>) -> JunitError {
    let offset = usize::try_from(offset).unwrap_or(usize::MAX).min(xml.len());
    let before = &xml[..offset];
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    JunitError {
        file: file.to_string(),
        line: 1 + before.iter().filter(|&&b| b == b'\n').count(),
        // Count characters, not bytes: skip UTF-8 continuation bytes.
        column: 1 + before[line_start..]
            .iter()
            .filter(|&&b| b & 0xC0 != 0x80)
            .count(),
        message: message.into(),
    }
}

/// Seconds as written by the various tools ("0.012", "", "1,234.5", "1.5E-3", "0,5") to ms.
fn parse_time_ms(raw: &str) -> u64 {
    let s = raw.trim();
    // "1,234.5" and "12,345" use ',' for thousands; "0,5" and "12,25" use a decimal comma.
    let mut groups = s.split(['.', 'e', 'E']).next().unwrap_or("").split(',');
    let head = groups.next().unwrap_or("");
    let thousands = !matches!(head, "" | "0")
        && groups.all(|g| g.len() == 3 && g.bytes().all(|b| b.is_ascii_digit()));
    let normalized = if thousands {
        s.replace(',', "")
    } else {
        s.replacen(',', ".", 1)
    };
    match normalized.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 => (secs * 1000.0).round() as u64,
        _ => 0,
    }
}

/// The `<testcase>` being read.
struct OpenCase {
    case: TestCase,
    depth: usize,
    /// Depth of the failure/error/skipped child whose text becomes the message.
    capture: Option<usize>,
    text: String,
}

/// What has been read so far.
#[derive(Default)]
struct State {
    cases: Vec<TestCase>,
    suites: Vec<String>,
    open: Option<OpenCase>,
    depth: usize,
    saw_root: bool,
}

/// Parse one JUnit XML document. `file` is only used in errors. Errors carry the position
/// (line/column computed from the byte offset) of the malformed XML.
pub fn parse(file: &str, xml: &[u8]) -> Result<Vec<TestCase>, JunitError> {
    let mut reader = Reader::from_reader(xml);
    let mut st = State::default();
    loop {
        let start = reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|e| error_at(file, xml, reader.error_position(), e.to_string()))?;
        let err = |msg: String| error_at(file, xml, start, msg);
        match event {
            Event::Start(e) | Event::Empty(e) if st.depth == 0 && !is_root(&e) => {
                let name = e.name();
                let msg = format!(
                    "root element is <{}>, expected <testsuites> or <testsuite>",
                    name.as_ref()
                );
                return Err(err(msg));
            }
            Event::Start(e) => {
                st.depth += 1;
                st.open_element(&e).map_err(err)?;
            }
            Event::Empty(e) => {
                st.depth += 1;
                st.open_element(&e).map_err(err)?;
                st.close_element(e.local_name().as_ref());
            }
            Event::End(e) => st.close_element(e.local_name().as_ref()),
            Event::Text(t) => st.capture(&t.xml10_content()),
            Event::CData(t) => st.capture(&t.xml10_content()),
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => resolve_predefined_entity(&r)
                        .map_or_else(|| format!("&{};", &*r), str::to_string),
                    Err(e) => return Err(err(format!("bad character reference: {e}"))),
                };
                st.capture(&resolved);
            }
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    let problem = if st.depth > 0 {
        "unexpected end of document: unclosed element"
    } else if !st.saw_root {
        "no <testsuites> or <testsuite> element"
    } else {
        return Ok(st.cases);
    };
    Err(error_at(file, xml, xml.len() as u64, problem))
}

fn is_root(e: &BytesStart) -> bool {
    matches!(e.local_name().as_ref(), "testsuites" | "testsuite")
}

fn attr(e: &BytesStart, key: &str) -> Result<Option<String>, String> {
    match e.try_get_attribute(key) {
        Ok(None) => Ok(None),
        Ok(Some(a)) => a
            .normalized_value(XmlVersion::Implicit1_0)
            .map(|v| Some(v.into_owned()))
            .map_err(|err| format!("bad value of attribute {key}: {err}")),
        Err(err) => Err(format!("bad attribute in <{}>: {err}", e.name().as_ref())),
    }
}

fn trimmed(value: Option<String>) -> String {
    value.map(|v| v.trim().to_string()).unwrap_or_default()
}

impl State {
    /// An element opened at `self.depth`.
    fn open_element(&mut self, e: &BytesStart) -> Result<(), String> {
        self.saw_root = true;
        match (e.local_name().as_ref(), self.open.as_mut()) {
            ("testsuite", None) => self.suites.push(trimmed(attr(e, "name")?)),
            ("testcase", None) => {
                let case = TestCase {
                    suite: self.suites.last().cloned().unwrap_or_default(),
                    classname: trimmed(attr(e, "classname")?),
                    name: trimmed(attr(e, "name")?),
                    file: attr(e, "file")?.filter(|f| !f.is_empty()),
                    duration_ms: parse_time_ms(&attr(e, "time")?.unwrap_or_default()),
                    outcome: Outcome::Passed,
                    message: None,
                };
                let (depth, capture, text) = (self.depth, None, String::new());
                self.open = Some(OpenCase {
                    case,
                    depth,
                    capture,
                    text,
                });
            }
            (child, Some(oc)) if self.depth == oc.depth + 1 => {
                let outcome = match child {
                    "failure" => Outcome::Failed,
                    "error" => Outcome::Errored,
                    "skipped" => Outcome::Skipped,
                    // flakyFailure, rerunFailure, system-out, properties...: no effect.
                    _ => return Ok(()),
                };
                // Failure/error wins over skipped wins over passed; the first of a kind wins.
                let current = oc.case.outcome;
                if current == Outcome::Passed || (current == Outcome::Skipped && outcome != current)
                {
                    oc.case.outcome = outcome;
                    oc.case.message = attr(e, "message")?.filter(|m| !m.trim().is_empty());
                    oc.capture = oc.case.message.is_none().then_some(self.depth);
                    oc.text.clear();
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The element open at `self.depth` closed.
    fn close_element(&mut self, local_name: &str) {
        let depth = self.depth;
        self.depth = depth.saturating_sub(1);
        let Some(oc) = self.open.as_mut() else {
            if local_name == "testsuite" {
                self.suites.pop();
            }
            return;
        };
        if oc.capture == Some(depth) {
            oc.capture = None;
            let text = oc.text.trim();
            if !text.is_empty() {
                oc.case.message = Some(text.to_string());
            }
        }
        if oc.depth == depth {
            self.cases.push(self.open.take().expect("open case").case);
        }
    }

    /// Text directly inside the failure/error/skipped element being captured, up to the limit.
    fn capture(&mut self, text: &str) {
        let Some(oc) = self.open.as_mut() else { return };
        if oc.capture != Some(self.depth) || oc.text.len() >= MESSAGE_LIMIT {
            return;
        }
        let mut cut = text.len().min(MESSAGE_LIMIT - oc.text.len());
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        oc.text.push_str(&text[..cut]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One line per case: suite | id | outcome | ms | first line of the message.
    fn summary(name: &str, xml: &[u8]) -> String {
        let line = |c: &TestCase| {
            let msg = c.message.as_deref().map(|m| m.lines().next().unwrap_or(""));
            let (outcome, ms) = (c.outcome.as_str(), c.duration_ms);
            format!("{} | {} | {outcome} | {ms} | {msg:?}", c.suite, c.id())
        };
        let cases = parse(name, xml).unwrap();
        cases.iter().map(line).collect::<Vec<_>>().join("\n")
    }

    macro_rules! sample {
        ($stem:literal) => {
            parse(
                $stem,
                include_bytes!(concat!("../tests/data/junit/", $stem, ".xml")),
            )
            .unwrap()
        };
    }

    /// Each sample report, as its tool wrote it, gives the cases in its `.expected` file.
    macro_rules! dialect {
        ($test:ident, $stem:literal) => {
            #[test]
            fn $test() {
                let xml = include_bytes!(concat!("../tests/data/junit/", $stem, ".xml"));
                let expected = include_str!(concat!("../tests/data/junit/", $stem, ".expected"));
                assert_eq!(summary($stem, xml), expected.trim_end());
            }
        };
    }
    dialect!(pytest_sample, "pytest");
    dialect!(nextest_sample_with_retries_and_flaky, "nextest");
    dialect!(surefire_sample_with_bare_testsuite, "surefire");
    dialect!(go_junit_report_sample, "go-junit-report");
    dialect!(jest_junit_sample, "jest");

    #[test]
    fn full_failure_text_when_there_is_no_message() {
        let pytest = sample!("pytest");
        let lines: Vec<_> = pytest[1].message.as_deref().unwrap().lines().collect();
        assert_eq!(lines[1], "assert 1 == 2");
        let msg = sample!("jest")[1].message.clone().unwrap();
        assert!(msg.contains("Expected: 3\nReceived: 2"), "{msg}");
        assert!(msg.contains("new Promise (<anonymous>)"), "{msg}");
    }

    #[test]
    fn listed_ids_match_sample_results() {
        // `pytest --collect-only -q` printed these for the same suite: each matches one case.
        let cases = sample!("pytest");
        let listed = "test_ok test_fail test_skipped test_param[1-a] test_param[2-b] TestK::test_y test_errors";
        for (case, id) in cases.iter().zip(listed.split(' ')) {
            let id = format!("tests/test_a.py::{id}");
            let matching: Vec<_> = cases.iter().filter(|c| matches_id(&id, c)).collect();
            assert_eq!(matching, [case], "{id}");
        }
        // `cargo nextest list` prints "binary-id test-name".
        let fails = &sample!("nextest")[0];
        assert!(matches_id("demo tests::fails", fails) && matches_id("tests::fails", fails));
        assert!(
            !matches_id("demo tests::adds", fails) && !matches_id("demo::it tests::fails", fails)
        );
        let java = &sample!("surefire")[1];
        for sep in [".", "#", "::"] {
            assert!(matches_id(
                &format!("com.acme.widget.ParserTest{sep}parsesNumbers"),
                java
            ));
        }
        assert!(!matches_id(
            "com.acme.widget.ParserTest.parsesNumbersX",
            java
        ));
        let go = sample!("go-junit-report");
        assert!(
            matches_id("TestLimits", &go[3]) && matches_id("github.com/acme/widget/store", &go[5])
        );
        assert!(!matches_id("github.com/acme/widget/store", &go[3]));
    }

    #[test]
    fn nested_suites_times_entities_and_limits() {
        let long = "é".repeat(3000);
        let xml = format!(
            r#"<testsuites><testsuite name="outer"><testsuite name="inner">
            <testcase name="a" time="1,234.5"/><testcase name="b" time="1.5E-3"/></testsuite>
            <testcase name="c" time=""><failure>one &amp; <![CDATA[<two>]]> &#x33;</failure></testcase>
            <testcase name="d" time="0,25"><failure message="">{long}</failure><error message="later"/></testcase>
            <testcase name="e"><skipped/><failure message="wins"/></testcase></testsuite></testsuites>"#
        );
        let kept = "é".repeat(MESSAGE_LIMIT / 2);
        assert_eq!(
            summary("t.xml", xml.as_bytes()),
            format!(
                r#"inner | a | passed | 1234500 | None
inner | b | passed | 2 | None
outer | c | failed | 0 | Some("one & <two> 3")
outer | d | failed | 250 | Some("{kept}")
outer | e | failed | 0 | Some("wins")"#
            )
        );
        let times = ["12,345,678", "1,5e-3", " 0.0125 ", "-1", "abc"].map(parse_time_ms);
        assert_eq!(times, [12_345_678_000, 2, 13, 0, 0]);
    }

    #[test]
    fn errors_point_at_the_malformed_xml() {
        let err = |xml: &[u8]| parse("r.xml", xml).unwrap_err().to_string();
        for (xml, expected) in [
            (
                &b"<testsuite name='s'>\n  <testcase name='\xc3\xa9'>\n  </testcas>\n"[..],
                "r.xml:3:3: ill-formed document",
            ),
            (
                b"<testsuite>\n<testcase name='\xc3\xa9'>",
                "r.xml:2:20: unexpected end of document",
            ),
            (
                b"<?xml version='1.0'?>\n<html><body/></html>",
                "r.xml:2:1: root element is <html>",
            ),
            (b"", "r.xml:1:1: no <testsuites> or <testsuite> element"),
            (
                b"<testsuite><testcase name=a/></testsuite>",
                "r.xml:1:12: bad attribute",
            ),
            (
                b"<testsuite><testcase name='\xff'/></testsuite>",
                "r.xml:1:12: cannot decode input",
            ),
        ] {
            let got = err(xml);
            assert!(got.starts_with(expected), "{got}");
        }
    }

    #[test]
    fn outcome_names_round_trip() {
        for o in Outcome::ALL {
            assert_eq!(Outcome::parse(o.as_str()), Some(o));
        }
        assert_eq!(Outcome::parse("flaky"), None);
    }

    #[test]
    fn id_rules() {
        let case = |classname: &str, name: &str, file: Option<&str>| TestCase {
            suite: String::new(),
            classname: classname.into(),
            name: name.into(),
            file: file.map(Into::into),
            duration_ms: 0,
            outcome: Outcome::Passed,
            message: None,
        };
        let k = case("tests.test_a.TestK", "test_y", Some("tests/test_a.py"));
        assert!(matches_id("tests/test_a.py::TestK::test_y", &k));
        assert!(!matches_id("tests/test_a.py::TestOther::test_y", &k));
        assert!(!matches_id("tests/test_b.py::TestK::test_y", &k));
        let p = case("tests.test_a", "test_x[1-a]", None);
        assert!(matches_id("tests/test_a.py::test_x[1-a]", &p));
        assert!(!matches_id("tests/test_a.py::test_x[1-b]", &p));
        assert_eq!(p.id(), "tests.test_a::test_x[1-a]");
        let java = case("com.x.FooTest", "testA", Some("src/Foo.java"));
        assert_eq!(java.id(), "com.x.FooTest::testA");
        let more = [case("", "n", Some("a.py")), case("x", "y", None)];
        for c in [k, p, java].into_iter().chain(more) {
            assert!(matches_id(&c.id(), &c), "{}", c.id());
        }
    }

    #[test]
    fn a_stored_case_is_shown_by_its_key_when_the_key_names_it() {
        assert_eq!(shown_id("tests/test_a.py::test_x", "tests.test_a", "test_x", Some("tests/test_a.py")), "tests/test_a.py::test_x");
        assert_eq!(shown_id("tests/test_a.py", "tests.test_a", "test_x", Some("tests/test_a.py")), "tests/test_a.py::test_x");
        assert_eq!(shown_id("a.spec.js", "Suite", "works", None), "Suite::works");
    }
}
