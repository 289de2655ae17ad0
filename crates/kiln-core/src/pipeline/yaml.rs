//! A YAML tree that keeps the source position of every node, built on serde-saphyr's
//! `Spanned`, so that validation can point at the exact key or value it complains about.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{MessageFormatter, Spanned, UserMessageFormatter};

/// A 1-based position in the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    pub const START: Pos = Pos { line: 1, column: 1 };
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Kind {
    Str,
    Bool,
    Int,
    Float,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    /// A scalar as written: numbers and booleans keep their source text (`3.10` stays `3.10`).
    Scalar(String, Kind),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub pos: Pos,
    pub value: Value,
}

impl Node {
    /// What this node is, for messages: "a string", "a list", …
    pub fn describe(&self) -> &'static str {
        match &self.value {
            Value::Null => "nothing",
            Value::Scalar(_, Kind::Str) => "a string",
            Value::Scalar(_, Kind::Bool) => "a boolean",
            Value::Scalar(_, _) => "a number",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    pub fn scalar(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar(s, _) => Some(s),
            _ => None,
        }
    }
}

/// Parse YAML text into a tree; on a syntax error, its position and message.
pub(crate) fn parse(text: &str) -> Result<Node, (Pos, String)> {
    // `strict_booleans`: `on`, `yes`, `no` stay strings (the `on:` key must not become `true`).
    let options = serde_saphyr::options! { strict_booleans: true };
    match serde_saphyr::from_str_with_options::<Spanned<Raw>>(text, options) {
        Ok(raw) => Ok(convert(raw, text)),
        Err(e) => {
            let pos = e
                .location()
                .filter(|l| l.line() > 0)
                .map_or(Pos::START, |l| Pos {
                    line: l.line() as usize,
                    column: l.column().max(1) as usize,
                });
            let msg = UserMessageFormatter
                .format_message(e.without_snippet())
                .into_owned();
            let msg = msg
                .split(", set DuplicateKeyPolicy")
                .next()
                .unwrap_or_default()
                .to_owned();
            Err((pos, format!("invalid YAML: {msg}")))
        }
    }
}

fn convert(raw: Spanned<Raw>, text: &str) -> Node {
    let pos = Pos {
        line: raw.referenced.line() as usize,
        column: raw.referenced.column() as usize,
    };
    // The defined span points at the scalar itself even when it is reached through an alias.
    let span = raw.defined.span();
    let source = || -> Option<String> {
        let start = usize::try_from(span.byte_offset()?).ok()?;
        let len = usize::try_from(span.byte_len()?).ok()?;
        text.get(start..start + len).map(|s| s.trim().to_owned())
    };
    let scalar = |kind: Kind, fallback: String| {
        let t = source()
            .filter(|s| !s.is_empty() && !s.starts_with('*'))
            .unwrap_or(fallback);
        Value::Scalar(t, kind)
    };
    let value = match raw.value {
        Raw::Null => Value::Null,
        Raw::Bool(b) => scalar(Kind::Bool, b.to_string()),
        Raw::Int(i) => scalar(Kind::Int, i.to_string()),
        Raw::Float(f) => scalar(Kind::Float, f.to_string()),
        Raw::Str(s) => Value::Scalar(s, Kind::Str),
        Raw::Seq(items) => Value::Seq(items.into_iter().map(|n| convert(n, text)).collect()),
        Raw::Map(entries) => Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (convert(k, text), convert(v, text)))
                .collect(),
        ),
    };
    Node { pos, value }
}

/// What serde-saphyr hands us, before positions are made 1-based and scalars re-read.
enum Raw {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Raw>>),
    Map(Vec<(Spanned<Raw>, Spanned<Raw>)>),
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
        Raw::deserialize(d)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Raw, E> {
        Ok(Raw::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Raw, E> {
        Ok(Raw::Int(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Raw, E> {
        Ok(Raw::Int(v.into()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Raw, E> {
        Ok(Raw::Int(v))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Raw, E> {
        Ok(Raw::Float(v as f64))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Raw, E> {
        Ok(Raw::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Raw, E> {
        Ok(Raw::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Raw, E> {
        Ok(Raw::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Raw, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = a.next_element::<Spanned<Raw>>()? {
            items.push(item);
        }
        Ok(Raw::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Raw, A::Error> {
        let mut entries = Vec::new();
        while let Some(k) = a.next_key::<Spanned<Raw>>()? {
            let v = a.next_value::<Spanned<Raw>>()?;
            entries.push((k, v));
        }
        Ok(Raw::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(n: &Node) -> String {
        let at = format!("@{}:{}", n.pos.line, n.pos.column);
        match &n.value {
            Value::Null => format!("null{at}"),
            Value::Scalar(s, k) => format!("{s}:{k:?}{at}"),
            Value::Seq(v) => format!(
                "[{}]{at}",
                v.iter().map(show).collect::<Vec<_>>().join(", ")
            ),
            Value::Map(v) => format!(
                "{{{}}}{at}",
                v.iter()
                    .map(|(k, v)| format!("{} => {}", show(k), show(v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    #[test]
    fn keeps_positions_and_source_text() {
        let cases = [
            ("a: 1\n", "{a:Str@1:1 => 1:Int@1:4}@1:1"),
            ("on: [3.10, x, true, yes, ~]\n", "{on:Str@1:1 => [3.10:Float@1:6, x:Str@1:12, true:Bool@1:15, yes:Str@1:21, null@1:26]@1:5}@1:1"),
            ("k:\n  - \"q\"\n  - 0x1F\n", "{k:Str@1:1 => [q:Str@2:5, 0x1F:Int@3:5]@2:3}@1:1"),
            ("a: &x 1.50\nb: *x\n", "{a:Str@1:1 => 1.50:Float@1:7, b:Str@2:1 => 1.50:Float@2:4}@1:1"),
            ("", "null@1:1"),
        ];
        for (src, want) in cases {
            assert_eq!(show(&parse(src).unwrap()), want, "{src:?}");
        }
    }

    #[test]
    fn reports_syntax_errors_with_position() {
        let cases = [
            ("a: [\n", Pos { line: 1, column: 4 }, "unclosed bracket"),
            (
                "a: 1\na: 2\n",
                Pos { line: 2, column: 1 },
                "duplicate mapping key `a`",
            ),
            ("a: 1\n b: 2\n", Pos { line: 2, column: 3 }, ""),
        ];
        for (src, pos, text) in cases {
            let (p, msg) = parse(src).unwrap_err();
            assert_eq!(p, pos, "{src:?}: {msg}");
            assert!(
                msg.starts_with("invalid YAML: ") && msg.contains(text),
                "{src:?}: {msg}"
            );
            assert!(
                !msg.contains("DuplicateKeyPolicy") && !msg.contains("line "),
                "{msg}"
            );
        }
    }
}
