//! Secret masking: whole strings, byte streams cut into arbitrary chunks, and the rule for
//! which secrets kiln accepts at all.
//!
//! Each secret is masked as written and in the forms programs commonly turn it into:
//! base64 (standard and URL-safe, alone or inside a longer base64 stream at any of its three
//! alignments), URL-encoding (`%XX`, upper and lower case, `+` for space) and XML/HTML escaping
//! (`&amp;`…, as JUnit writers produce). This is best effort: a step that wants to leak a secret
//! it was given can always encode it some other way. What protects secrets is which builds get
//! them at all.
//!
//! ```text
//!  secret ─► forms: raw, lines of a multi-line secret, base64 (std, url; 3 offsets), %-encoded, &escaped;
//!  chunk ─► held tail + chunk ─► Aho-Corasick (overlapping) ─► covered bytes → `***` ─► emit all
//!           but the longest tail that may still begin a secret
//! ```

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine;

const MASK: &[u8] = b"***";
/// Shorter secrets are not masked: masking `ab` everywhere would wreck logs and hide nothing.
/// (New secrets must be at least [`MIN_SECRET_CHARS`] long; see [`check_secret`].)
const MIN_SECRET_LEN: usize = 3;
/// Lines of a multi-line secret (a PEM key) are masked on their own when at least this long,
/// since programs often print such secrets line by line or with other line endings.
const MIN_LINE_LEN: usize = 8;
/// A derived form (a base64 fragment) shorter than this is not masked: it would match by chance.
const MIN_DERIVED_LEN: usize = 8;
/// The shortest secret a project may have.
pub const MIN_SECRET_CHARS: usize = 6;

/// Why a secret is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("secret {name} is {len} characters long; secrets must have at least {min} characters, since a shorter one cannot be masked in logs without wrecking them")]
    TooShort { name: String, len: usize, min: usize },
}

/// Refuse a secret value kiln could not mask usefully (shorter than [`MIN_SECRET_CHARS`]).
pub fn check_secret(name: &str, value: &str) -> Result<(), SecretError> {
    let len = value.chars().count();
    if len < MIN_SECRET_CHARS {
        return Err(SecretError::TooShort { name: name.to_string(), len, min: MIN_SECRET_CHARS });
    }
    Ok(())
}

/// Replace every occurrence of each secret (and of its encoded forms) with `***`. Overlapping
/// or adjacent occurrences become a single `***`, so no part of a secret survives.
pub fn mask_secrets(text: &str, secrets: &[String]) -> String {
    let mut m = Masker::new(secrets);
    let mut out = m.push(text.as_bytes());
    out.extend(m.finish());
    // Masked runs start and end on whole secrets, which are UTF-8: char boundaries are kept.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// [`mask_secrets`] for bytes that need not be UTF-8 (a JUnit report).
pub fn mask_bytes(data: &[u8], secrets: &[String]) -> Vec<u8> {
    let mut m = Masker::new(secrets);
    let mut out = m.push(data);
    out.extend(m.finish());
    out
}

/// Mask every string (keys included) of a JSON value, in place.
pub fn mask_json(v: &mut serde_json::Value, secrets: &[String]) {
    if secrets.is_empty() {
        return;
    }
    match v {
        serde_json::Value::String(s) => *s = mask_secrets(s, secrets),
        serde_json::Value::Array(a) => a.iter_mut().for_each(|x| mask_json(x, secrets)),
        serde_json::Value::Object(o) => {
            let old = std::mem::take(o);
            for (k, mut x) in old {
                mask_json(&mut x, secrets);
                o.insert(mask_secrets(&k, secrets), x);
            }
        }
        _ => {}
    }
}

/// The byte strings to mask for one secret: itself and the forms programs turn it into.
pub fn forms(secret: &str) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut add = |f: Vec<u8>, min: usize| {
        if f.len() >= min && !out.contains(&f) {
            out.push(f);
        }
    };
    if secret.len() < MIN_SECRET_LEN {
        return Vec::new();
    }
    add(secret.as_bytes().to_vec(), MIN_SECRET_LEN);
    if secret.contains('\n') {
        for line in secret.lines().map(str::trim) {
            add(line.as_bytes().to_vec(), MIN_LINE_LEN);
        }
    }
    let bytes = secret.as_bytes();
    for engine in [&base64::engine::general_purpose::STANDARD, &base64::engine::general_purpose::URL_SAFE] {
        // Encoded alone, with its padding.
        add(engine.encode(bytes).into_bytes(), MIN_DERIVED_LEN);
        // Inside a longer stream: after 0, 1 or 2 other bytes of its 3-byte group, only the
        // characters that depend on the secret's bytes alone are certain.
        for skip in 0..3 {
            let rest = &bytes[skip.min(bytes.len())..];
            let whole = rest.len() / 3 * 3;
            add(engine.encode(&rest[..whole]).into_bytes(), MIN_DERIVED_LEN);
        }
    }
    for upper in [true, false] {
        add(percent_encode(bytes, upper, false), MIN_SECRET_LEN);
        add(percent_encode(bytes, upper, true), MIN_SECRET_LEN);
    }
    add(xml_escape(secret, false).into_bytes(), MIN_SECRET_LEN);
    add(xml_escape(secret, true).into_bytes(), MIN_SECRET_LEN);
    out
}

/// `%XX` for every byte but the unreserved ones; `plus` writes a space as `+` (forms).
fn percent_encode(bytes: &[u8], upper: bool, plus: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b);
        } else if plus && b == b' ' {
            out.push(b'+');
        } else if upper {
            out.extend(format!("%{b:02X}").bytes());
        } else {
            out.extend(format!("%{b:02x}").bytes());
        }
    }
    out
}

/// XML escaping as writers do it: `&amp; &lt; &gt;`, and quotes too when `quotes`.
fn xml_escape(s: &str, quotes: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if quotes => out.push_str("&quot;"),
            '\'' if quotes => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Masks secrets in a byte stream delivered in chunks: a secret cut across two chunks is still
/// masked. Holds back only the tail of the input that may still be the start of a secret (at
/// most the longest form − 1 bytes) until more input or [`Masker::finish`].
#[derive(Debug, Clone)]
pub struct Masker {
    /// Every form of every secret; `None` when there is nothing to mask.
    matcher: Option<AhoCorasick>,
    forms: Vec<Vec<u8>>,
    held: Vec<u8>,
    /// Leading bytes of `held` already known to lie inside a secret found earlier.
    held_covered: usize,
    /// The output so far ends with `***` whose secret may continue into `held`.
    in_mask: bool,
}

impl Masker {
    pub fn new(secrets: &[String]) -> Self {
        let mut list: Vec<Vec<u8>> = secrets.iter().flat_map(|s| forms(s)).collect();
        list.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        list.dedup();
        let matcher = if list.is_empty() {
            None
        } else {
            Some(AhoCorasick::builder().match_kind(MatchKind::Standard).build(&list).expect("a few short literal patterns always build"))
        };
        Masker { matcher, forms: list, held: Vec::new(), held_covered: 0, in_mask: false }
    }

    /// Feed a chunk; returns the bytes that are now safe to show.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        if self.matcher.is_none() {
            return chunk.to_vec();
        }
        self.held.extend_from_slice(chunk);
        let keep = self.possible_start(&self.held);
        let cut = self.held.len() - keep;
        self.emit(cut)
    }

    /// End of stream: returns everything still held back, masked.
    pub fn finish(&mut self) -> Vec<u8> {
        let out = self.emit(self.held.len());
        self.in_mask = false;
        out
    }

    /// The length of the longest tail of `buf` that is a proper prefix of some form: the bytes
    /// that must wait, since the next chunk may complete a secret.
    fn possible_start(&self, buf: &[u8]) -> usize {
        let longest = self.forms.first().map_or(0, Vec::len);
        let mut best = 0;
        for n in (1..longest.min(buf.len() + 1)).rev() {
            let tail = &buf[buf.len() - n..];
            if self.forms.iter().any(|f| f.len() > n && f.starts_with(tail)) {
                best = n;
                break;
            }
        }
        best
    }

    /// Emit `held[..cut]`, masking what any form covers; keep the rest.
    fn emit(&mut self, cut: usize) -> Vec<u8> {
        let buf = std::mem::take(&mut self.held);
        let mut covered = vec![false; buf.len()];
        covered[..self.held_covered].iter_mut().for_each(|c| *c = true);
        if let Some(m) = &self.matcher {
            for found in m.find_overlapping_iter(&buf) {
                covered[found.start()..found.end()].iter_mut().for_each(|c| *c = true);
            }
        }
        let mut out = Vec::with_capacity(cut);
        for (byte, cov) in buf[..cut].iter().zip(&covered) {
            if *cov {
                if !self.in_mask {
                    out.extend_from_slice(MASK);
                    self.in_mask = true;
                }
            } else {
                out.push(*byte);
                self.in_mask = false;
            }
        }
        self.held_covered = covered[cut..].iter().take_while(|c| **c).count();
        self.held = buf[cut..].to_vec();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn masks_whole_strings() {
        let cases: &[(&str, &[&str], &str)] = &[
            ("token=hunter2 ok", &["hunter2"], "token=*** ok"),
            ("hunter2hunter2", &["hunter2"], "***"),
            ("a hunter2 b hunter2", &["hunter2"], "a *** b ***"),
            ("no secrets here", &["hunter2"], "no secrets here"),
            ("ab is short", &["ab", ""], "ab is short"),
            ("abcdefgh", &["abcdef", "cdefgh"], "***"),
            ("key=abc123xyz", &["abc", "abc123xyz"], "key=***"),
            ("pré-secret-é!", &["é-secret-é"], "pr***!"),
            ("", &["hunter2"], ""),
            ("-----BEGIN-----\r\nAAAABBBBCCCC\r\n", &["-----BEGIN-----\nAAAABBBBCCCC"], "***\r\n***\r\n"),
        ];
        for (text, secrets, want) in cases {
            assert_eq!(mask_secrets(text, &strings(secrets)), *want, "{text:?} {secrets:?}");
        }
    }

    #[test]
    fn masks_encoded_forms() {
        let s = "s3cr3t-deploy-key-XYZ";
        let b64 = base64::engine::general_purpose::STANDARD;
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let secret = strings(&[s]);
        // Alone (as `printf %s "$S" | base64` prints it) and URL-safe without padding.
        assert_eq!(mask_secrets(&format!("b64={}", b64.encode(s)), &secret), "b64=***");
        assert_eq!(mask_secrets(&format!("u={}.", url.encode("a?b=c&key=s3cr3t-deploy-key-XYZ")), &secret).matches("***").count(), 1);
        // Inside a longer base64 stream, at every alignment: no run of the secret's own
        // characters survives.
        for pre in ["", "x", "xy", "xyz", "json{\"k\":\""] {
            let enc = b64.encode(format!("{pre}{s}\"}}"));
            let masked = mask_secrets(&enc, &secret);
            assert!(masked.contains("***"), "{pre:?}: {enc} -> {masked}");
            let plain = b64.encode(s);
            assert!(!masked.contains(&plain[4..plain.len() - 4]), "{pre:?}: {masked}");
        }
        // URL-encoded and XML-escaped.
        let odd = "p@ss w/rd&<ok>";
        let secret = strings(&[odd]);
        for text in ["p%40ss%20w%2Frd%26%3Cok%3E", "p%40ss+w%2frd%26%3cok%3e", "p@ss w/rd&amp;&lt;ok&gt;"] {
            assert_eq!(mask_secrets(&format!("[{text}]"), &secret), "[***]", "{text}");
        }
    }

    #[test]
    fn masks_json_strings_and_keys() {
        let mut v = serde_json::json!({"note": "got hunter22!", "hunter22": [1, "x hunter22"], "n": 3});
        mask_json(&mut v, &strings(&["hunter22"]));
        assert_eq!(v, serde_json::json!({"note": "got ***!", "***": [1, "x ***"], "n": 3}));
    }

    #[test]
    fn refuses_short_secrets() {
        assert!(check_secret("K", "abcdef").is_ok());
        let e = check_secret("API_KEY", "abc12").unwrap_err().to_string();
        assert!(e.contains("API_KEY") && e.contains("at least 6"), "{e}");
        assert!(check_secret("K", "ééééé").is_err(), "counted in characters, not bytes");
    }

    fn stream(text: &[u8], secrets: &[&str], cuts: &[usize]) -> Vec<u8> {
        let mut m = Masker::new(&strings(secrets));
        let mut out = Vec::new();
        let mut from = 0;
        for &c in cuts.iter().chain(std::iter::once(&text.len())) {
            out.extend(m.push(&text[from..c]));
            from = c;
        }
        out.extend(m.finish());
        out
    }

    #[test]
    fn stream_gives_the_same_result_for_every_chunking() {
        let b64 = base64::engine::general_purpose::STANDARD.encode("xs3cr3t-valueyz");
        let cases: Vec<(String, &[&str])> = vec![
            ("xx hunter2 yy hunter2hunter2 zz".into(), &["hunter2"]),
            ("abcdefgh and abcdef and cdefgh.".into(), &["abcdef", "cdefgh"]),
            ("line1\nTOKEN=s3cr3t-value\nline3\n".into(), &["s3cr3t-value", "abc"]),
            (format!("b64 {b64} and s3cr3t%2Dvalue and s3cr3t-value."), &["s3cr3t-value"]),
            ("aaaaaaaaaaaaaaaaaaaa".into(), &["aaa"]),
            ("nothing to hide".into(), &["hunter2"]),
            ("nothing to hide".into(), &[]),
        ];
        for (text, secrets) in &cases {
            let want = mask_secrets(text, &strings(secrets)).into_bytes();
            let bytes = text.as_bytes();
            for chunk in 1..=bytes.len() {
                let cuts: Vec<usize> = (chunk..bytes.len()).step_by(chunk).collect();
                assert_eq!(stream(bytes, secrets, &cuts), want, "{text:?} chunk {chunk}");
            }
            // Two chunks, split at every position; and three, at every pair of positions.
            for a in 0..=bytes.len() {
                assert_eq!(stream(bytes, secrets, &[a]), want, "{text:?} split at {a}");
                for b in a..=bytes.len() {
                    assert_eq!(stream(bytes, secrets, &[a, b]), want, "{text:?} split at {a}, {b}");
                }
            }
        }
    }

    #[test]
    fn holds_back_only_a_possible_start() {
        let mut m = Masker::new(&strings(&["hunter2"]));
        assert_eq!(m.push(b"0123456789"), b"0123456789", "nothing here can start a secret");
        assert_eq!(m.push(b"xhunt"), b"x");
        assert_eq!(m.push(b"er2!"), b"***!");
        assert_eq!(m.push(b"hunted."), b"hunted.");
        assert_eq!(m.finish(), b"");
    }
}
