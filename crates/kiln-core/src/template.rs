//! Templates in pipeline strings: `${{ matrix.NAME }}` placeholders split out of text, and
//! which names a matrix axis may have. A leaf: both the pipeline's checks and expansion use it.

/// A piece of a string that may hold `${{ matrix.NAME }}`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Piece<'a> {
    Text(&'a str),
    Matrix(&'a str),
}

/// Split a string into text and `${{ matrix.NAME }}` references (spaces inside the braces are
/// optional). Any other `${{ … }}` expression, or one left open, is an error.
pub(crate) fn template_pieces(s: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("${{") {
        if start > 0 {
            out.push(Piece::Text(&rest[..start]));
        }
        let after = &rest[start + 3..];
        let Some(end) = after.find("}}") else {
            return Err(format!("unclosed \"${{{{\" in {s:?}"));
        };
        let expr = after[..end].trim();
        let name = expr.strip_prefix("matrix.").filter(|n| valid_axis_name(n));
        match name {
            Some(n) => out.push(Piece::Matrix(n)),
            None => {
                return Err(format!("unsupported expression \"${{{{ {expr} }}}}\": only ${{{{ matrix.NAME }}}} is supported"))
            }
        }
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    Ok(out)
}

/// Whether `name` can be a matrix axis: letters, digits, `_` and `-`, not starting with `-`.
pub(crate) fn valid_axis_name(name: &str) -> bool {
    valid_name(name, false)
}

/// A name usable as a job name or matrix axis: letters, digits, `_`, `-` (and `.` for jobs).
pub(crate) fn valid_name(name: &str, dots: bool) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || (dots && c == '.'))
}
