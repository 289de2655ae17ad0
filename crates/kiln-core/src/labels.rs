//! Matching: agent labels against job requirements, and the globs used for
//! label values, branch filters and path filters.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Tok {
    Lit(char),
    /// `?`: one character (not `/` in path mode).
    One,
    /// `*`: any run of characters; `cross` says whether it may contain `/`.
    Star {
        cross: bool,
    },
    /// `**/` in path mode: nothing, or any run ending with `/` (zero or more folders).
    Dirs,
}

fn compile(pattern: &str, path_mode: bool) -> Vec<Tok> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut toks = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => {
                let mut run = 1;
                while i + run < chars.len() && chars[i + run] == '*' {
                    run += 1;
                }
                i += run;
                if !path_mode {
                    toks.push(Tok::Star { cross: true });
                } else if run == 1 {
                    toks.push(Tok::Star { cross: false });
                } else if i < chars.len() && chars[i] == '/' {
                    i += 1;
                    toks.push(Tok::Dirs);
                } else {
                    toks.push(Tok::Star { cross: true });
                }
                continue;
            }
            '?' => toks.push(Tok::One),
            c => toks.push(Tok::Lit(c)),
        }
        i += 1;
    }
    toks
}

/// Dynamic programming over (token, position): linear in pattern × text, no backtracking blow-up.
fn run(toks: &[Tok], text: &str, path_mode: bool) -> bool {
    let t: Vec<char> = text.chars().collect();
    let m = t.len();
    // next[j]: do toks[i+1..] match t[j..]?
    let mut next = vec![false; m + 1];
    next[m] = true;
    let mut cur = vec![false; m + 1];
    for tok in toks.iter().rev() {
        let mut dirs_tail = false; // for Dirs: some k > j with t[k-1] == '/' && next[k]
        for j in (0..=m).rev() {
            cur[j] = match *tok {
                Tok::Lit(c) => j < m && t[j] == c && next[j + 1],
                Tok::One => j < m && !(path_mode && t[j] == '/') && next[j + 1],
                Tok::Star { cross } => next[j] || (j < m && (cross || t[j] != '/') && cur[j + 1]),
                Tok::Dirs => {
                    if j < m {
                        dirs_tail = dirs_tail || (t[j] == '/' && next[j + 1]);
                    }
                    next[j] || dirs_tail
                }
            };
        }
        std::mem::swap(&mut cur, &mut next);
    }
    next[0]
}

/// A glob on one string: `*` any run of chars, `?` one char; everything else literal.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    run(&compile(pattern, false), text, false)
}

/// Path glob: `**` crosses `/`, `*` and `?` do not; `**/` also matches no folder at all.
pub fn path_glob_match(pattern: &str, path: &str) -> bool {
    run(&compile(pattern, true), path, true)
}

/// Does an agent with these labels satisfy these requirements? Each required key must be
/// present and match (equality, or a glob like `3.*`). A required value `*` means "key present".
pub fn matches(requires: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    requires
        .iter()
        .all(|(k, want)| labels.get(k).is_some_and(|have| glob_match(want, have)))
}

/// The requirements this agent does not satisfy, as `key=value` strings.
pub fn missing(
    requires: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> Vec<String> {
    requires
        .iter()
        .filter(|(k, want)| !labels.get(*k).is_some_and(|have| glob_match(want, have)))
        .map(|(k, want)| format!("{k}={want}"))
        .collect()
}

/// A label set as events and metrics spell it: `k=v` sorted by key, joined by commas (`""`: none).
pub fn label_set(labels: &BTreeMap<String, String>) -> String {
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// Parse `key=value` (a CLI `--label`). The key is letters, digits, `_`, `-`, `.`, `/`; the value may be empty.
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    let Some((k, v)) = s.split_once('=') else {
        return Err(format!(
            "invalid label {s:?}: expected key=value, like python=3.12"
        ));
    };
    let k = k.trim();
    if k.is_empty() {
        return Err(format!("invalid label {s:?}: the key before '=' is empty"));
    }
    if let Some(bad) = k
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_-./".contains(*c)))
    {
        return Err(format!(
            "invalid label {s:?}: {bad:?} is not allowed in a key (letters, digits, '_', '-', '.', '/')"
        ));
    }
    Ok((k.to_owned(), v.trim().to_owned()))
}

/// Include/exclude filter: a leading `!` excludes. With no positive pattern everything not
/// excluded is in.
fn filter(patterns: &[String], text: &str) -> bool {
    let mut any_positive = false;
    let mut included = false;
    for p in patterns {
        if let Some(neg) = p.strip_prefix('!') {
            if path_glob_match(neg, text) {
                return false;
            }
        } else {
            any_positive = true;
            included = included || path_glob_match(p, text);
        }
    }
    included || !any_positive
}

/// Branch filter of a push trigger: empty = every branch; `*` does not cross `/`, `**` does;
/// a leading `!` excludes.
pub fn branch_matches(patterns: &[String], branch: &str) -> bool {
    patterns.is_empty() || filter(patterns, branch)
}

/// Path filter of a push trigger: empty = true; else true if any changed path is matched by
/// a pattern and not excluded by a `!` pattern. No changed paths and some patterns: false.
pub fn paths_match(patterns: &[String], changed: &[String]) -> bool {
    patterns.is_empty() || changed.iter().any(|path| filter(patterns, path))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn glob_on_one_string() {
        let cases = [
            ("3.*", "3.12", true),
            ("3.*", "3.", true),
            ("3.*", "2.7", false),
            ("*", "", true),
            ("*", "a/b", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("a?c", "a/c", true),
            ("linux", "linux", true),
            ("linux", "linux2", false),
            ("*x*y*", "axbyc", true),
            ("*x*y*", "ayxb", false),
            ("", "", true),
            ("", "a", false),
            (
                "a*b*c*d*e*f*g",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                false,
            ),
            ("é*", "été", true),
        ];
        for (p, t, want) in cases {
            assert_eq!(glob_match(p, t), want, "glob_match({p:?}, {t:?})");
        }
    }

    #[test]
    fn glob_on_paths() {
        let cases = [
            ("src/**", "src/a/b.rs", true),
            ("src/**", "src/a.rs", true),
            ("src/**", "docs/a.rs", false),
            ("src/*", "src/a.rs", true),
            ("src/*", "src/a/b.rs", false),
            ("**/*.rs", "a.rs", true),
            ("**/*.rs", "x/y/a.rs", true),
            ("**/*.rs", "x/y/a.py", false),
            ("src/**/test_*.py", "src/test_a.py", true),
            ("src/**/test_*.py", "src/p/q/test_a.py", true),
            ("src/**/test_*.py", "srcx/test_a.py", false),
            ("*.md", "README.md", true),
            ("*.md", "docs/README.md", false),
            ("**.md", "docs/README.md", true),
            ("a?c", "a/c", false),
            ("docs/", "docs/", true),
        ];
        for (p, t, want) in cases {
            assert_eq!(path_glob_match(p, t), want, "path_glob_match({p:?}, {t:?})");
        }
    }

    #[test]
    fn label_requirements() {
        let labels = map(&[("os", "linux"), ("python", "3.12"), ("arch", "x86_64")]);
        type Case<'a> = (&'a [(&'a str, &'a str)], bool, &'a [&'a str]);
        let cases: &[Case] = &[
            (&[], true, &[]),
            (&[("os", "linux")], true, &[]),
            (&[("os", "macos")], false, &["os=macos"]),
            (&[("python", "3.*")], true, &[]),
            (&[("python", "3.11")], false, &["python=3.11"]),
            (&[("gpu", "*")], false, &["gpu=*"]),
            (&[("arch", "*"), ("os", "linux")], true, &[]),
            (
                &[("gpu", "cuda"), ("os", "windows")],
                false,
                &["gpu=cuda", "os=windows"],
            ),
        ];
        for (req, ok, miss) in cases {
            let req = map(req);
            assert_eq!(matches(&req, &labels), *ok, "{req:?}");
            assert_eq!(missing(&req, &labels), strings(miss), "{req:?}");
        }
    }

    #[test]
    fn parses_cli_labels() {
        assert_eq!(
            parse_label("python=3.12"),
            Ok(("python".into(), "3.12".into()))
        );
        assert_eq!(
            parse_label("k8s.io/arch=arm64"),
            Ok(("k8s.io/arch".into(), "arm64".into()))
        );
        assert_eq!(parse_label("empty="), Ok(("empty".into(), "".into())));
        assert_eq!(parse_label("a=b=c"), Ok(("a".into(), "b=c".into())));
        for bad in ["python", "=3.12", "py thon=3", ""] {
            let e = parse_label(bad).unwrap_err();
            assert!(e.contains("invalid label"), "{bad}: {e}");
        }
    }

    #[test]
    fn branch_filters() {
        let cases: &[(&[&str], &str, bool)] = &[
            (&[], "anything/at/all", true),
            (&["main"], "main", true),
            (&["main"], "mainline", false),
            (&["main", "release/*"], "release/1.0", true),
            (&["release/*"], "release/1.0/hotfix", false),
            (&["release/**"], "release/1.0/hotfix", true),
            (&["!wip/*"], "main", true),
            (&["!wip/*"], "wip/x", false),
            (&["**", "!dependabot/**"], "dependabot/npm/x", false),
            (&["**", "!dependabot/**"], "feature/x", true),
        ];
        for (pats, branch, want) in cases {
            assert_eq!(
                branch_matches(&strings(pats), branch),
                *want,
                "{pats:?} {branch}"
            );
        }
    }

    #[test]
    fn path_filters() {
        let cases: &[(&[&str], &[&str], bool)] = &[
            (&[], &[], true),
            (&[], &["x"], true),
            (&["src/**"], &[], false),
            (&["src/**"], &["docs/a.md", "src/lib.rs"], true),
            (&["src/**"], &["docs/a.md"], false),
            (&["!docs/**"], &["docs/a.md"], false),
            (&["!docs/**"], &["docs/a.md", "Cargo.toml"], true),
            (&["src/**", "!src/**/*.md"], &["src/README.md"], false),
            (
                &["src/**", "!src/**/*.md"],
                &["src/README.md", "src/main.rs"],
                true,
            ),
        ];
        for (pats, changed, want) in cases {
            assert_eq!(
                paths_match(&strings(pats), &strings(changed)),
                *want,
                "{pats:?} {changed:?}"
            );
        }
    }
}
