//! Secret masking for logs: whole strings, and byte streams cut into arbitrary chunks.

const MASK: &[u8] = b"***";
/// Shorter secrets are not masked: masking `ab` everywhere would wreck logs and hide nothing.
const MIN_SECRET_LEN: usize = 3;
/// Lines of a multi-line secret (a PEM key) are masked on their own when at least this long,
/// since programs often print such secrets line by line or with other line endings.
const MIN_LINE_LEN: usize = 8;

/// Replace every occurrence of each secret (at least 3 bytes long) with `***`. Overlapping or
/// adjacent occurrences become a single `***`, so no part of a secret survives.
pub fn mask_secrets(text: &str, secrets: &[String]) -> String {
    let mut m = Masker::new(secrets);
    let mut out = m.push(text.as_bytes());
    out.extend(m.finish());
    // Masked runs start and end on whole secrets, which are UTF-8: char boundaries are kept.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Masks secrets in a byte stream delivered in chunks: a secret cut across two chunks is still
/// masked. Holds back at most (longest secret − 1) bytes until more input or [`Masker::finish`].
#[derive(Debug, Clone)]
pub struct Masker {
    /// Longest first.
    secrets: Vec<Vec<u8>>,
    max_len: usize,
    held: Vec<u8>,
    /// Leading bytes of `held` already known to lie inside a secret found earlier.
    held_covered: usize,
    /// The output so far ends with `***` whose secret may continue into `held`.
    in_mask: bool,
}

impl Masker {
    pub fn new(secrets: &[String]) -> Self {
        let mut list: Vec<Vec<u8>> = Vec::new();
        for s in secrets {
            if s.len() >= MIN_SECRET_LEN {
                list.push(s.as_bytes().to_vec());
            }
            if s.contains('\n') {
                for line in s.lines().map(str::trim) {
                    if line.len() >= MIN_LINE_LEN {
                        list.push(line.as_bytes().to_vec());
                    }
                }
            }
        }
        list.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        list.dedup();
        let max_len = list.first().map_or(0, Vec::len);
        Masker {
            secrets: list,
            max_len,
            held: Vec::new(),
            held_covered: 0,
            in_mask: false,
        }
    }

    /// Feed a chunk; returns the bytes that are now safe to show.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        if self.secrets.is_empty() {
            return chunk.to_vec();
        }
        self.held.extend_from_slice(chunk);
        let keep = self.max_len - 1;
        let cut = self.held.len().saturating_sub(keep);
        self.emit(cut)
    }

    /// End of stream: returns everything still held back, masked.
    pub fn finish(&mut self) -> Vec<u8> {
        let out = self.emit(self.held.len());
        self.in_mask = false;
        out
    }

    /// Emit `held[..cut]`, masking what any secret covers; keep the rest.
    fn emit(&mut self, cut: usize) -> Vec<u8> {
        let buf = std::mem::take(&mut self.held);
        let mut covered = vec![false; buf.len()];
        covered[..self.held_covered]
            .iter_mut()
            .for_each(|c| *c = true);
        for s in &self.secrets {
            let mut i = 0;
            while i + s.len() <= buf.len() {
                if buf[i..].starts_with(s) {
                    covered[i..i + s.len()].iter_mut().for_each(|c| *c = true);
                }
                i += 1;
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
            (
                "-----BEGIN-----\r\nAAAABBBBCCCC\r\n",
                &["-----BEGIN-----\nAAAABBBBCCCC"],
                "***\r\n***\r\n",
            ),
        ];
        for (text, secrets, want) in cases {
            assert_eq!(
                mask_secrets(text, &strings(secrets)),
                *want,
                "{text:?} {secrets:?}"
            );
        }
    }

    fn stream(text: &str, secrets: &[&str], chunk: usize) -> String {
        let mut m = Masker::new(&strings(secrets));
        let mut out = Vec::new();
        for c in text.as_bytes().chunks(chunk) {
            let part = m.push(c);
            out.extend(part);
        }
        out.extend(m.finish());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn stream_gives_the_same_result_for_every_chunk_size() {
        let cases: &[(&str, &[&str])] = &[
            ("xx hunter2 yy hunter2hunter2 zz", &["hunter2"]),
            ("abcdefgh and abcdef and cdefgh.", &["abcdef", "cdefgh"]),
            (
                "line1\nTOKEN=s3cr3t-value\nline3\n",
                &["s3cr3t-value", "abc"],
            ),
            ("aaaaaaaaaaaaaaaaaaaa", &["aaa"]),
            ("nothing to hide", &["hunter2"]),
            ("nothing to hide", &[]),
        ];
        for (text, secrets) in cases {
            let want = mask_secrets(text, &strings(secrets));
            for chunk in 1..=text.len() {
                assert_eq!(stream(text, secrets, chunk), want, "{text:?} chunk {chunk}");
            }
        }
    }

    #[test]
    fn holds_back_less_than_the_longest_secret() {
        let mut m = Masker::new(&strings(&["hunter2"]));
        assert_eq!(m.push(b"0123456789"), b"0123");
        assert_eq!(m.push(b"hunt"), b"4567");
        assert_eq!(m.push(b"er2!"), b"89***");
        assert_eq!(m.finish(), b"!");
        assert_eq!(m.finish(), b"");
    }
}
