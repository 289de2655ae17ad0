//! The terminal style (ANSI SGR: bold, colours…) in effect at a point of a log, from the bytes
//! before it. A reader that starts in the middle of a log (the console opening it at its tail
//! or at a line, or reading the part above the view) starts in that style, so a colour set
//! before the part read still shows. Only what the console draws is kept: bold, dim, italic,
//! underline, and the foreground and background colours (16, 256 or RGB).

/// The style after `bytes`, as one SGR escape sequence (`ESC[1;31m`), or "" for the default.
pub fn style_after(bytes: &[u8]) -> String {
    let mut st = Style::default();
    let mut rest = bytes;
    while let Some(i) = rest.iter().position(|&b| b == 0x1b) {
        rest = &rest[i + 1..];
        let Some(b'[') = rest.first() else { continue };
        let params_len = rest[1..].iter().position(|b| !(b.is_ascii_digit() || *b == b';')).unwrap_or(rest.len() - 1);
        let end = 1 + params_len;
        if rest.get(end) == Some(&b'm') {
            // Digits and ';' only: ASCII.
            st.apply(std::str::from_utf8(&rest[1..end]).unwrap_or_default());
        }
        rest = &rest[end.min(rest.len())..];
    }
    st.sequence()
}

/// What the console draws of a style; colours are the SGR parameters that set them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Style {
    bold: bool,
    dim: bool,
    italic: bool,
    underline: bool,
    fg: Option<String>,
    bg: Option<String>,
}

impl Style {
    /// Apply one SGR sequence's parameters (`1;31`, `38;5;208`, "" for a reset).
    fn apply(&mut self, params: &str) {
        // As the console reads them: an empty parameter is 0, one too big for a number is
        // nothing it knows (not a reset).
        let p: Vec<u32> = if params.is_empty() { vec![0] } else { params.split(';').map(|x| if x.is_empty() { 0 } else { x.parse().unwrap_or(u32::MAX) }).collect() };
        let mut i = 0;
        while i < p.len() {
            match p[i] {
                0 => *self = Style::default(),
                1 => self.bold = true,
                2 => self.dim = true,
                3 => self.italic = true,
                4 => self.underline = true,
                22 => (self.bold, self.dim) = (false, false),
                23 => self.italic = false,
                24 => self.underline = false,
                c @ (30..=37 | 90..=97) => self.fg = Some(c.to_string()),
                39 => self.fg = None,
                c @ 40..=47 => self.bg = Some(c.to_string()),
                49 => self.bg = None,
                c @ (38 | 48) => {
                    // 256 colours (`5;N`) or RGB (`2;R;G;B`): their zeros are not resets, and
                    // values cut off at the end are 0, as the console takes them.
                    let n = match p.get(i + 1) {
                        Some(5) => 2,
                        Some(2) => 4,
                        _ => 0,
                    };
                    if n > 0 {
                        let colour = (i..=i + n).map(|j| p.get(j).copied().unwrap_or(0).to_string()).collect::<Vec<_>>().join(";");
                        if c == 38 { self.fg = Some(colour) } else { self.bg = Some(colour) }
                    }
                    i += n;
                }
                _ => {}
            }
            i += 1;
        }
    }

    fn sequence(&self) -> String {
        let mut p: Vec<String> = Vec::new();
        for (on, code) in [(self.bold, "1"), (self.dim, "2"), (self.italic, "3"), (self.underline, "4")] {
            if on {
                p.push(code.to_string());
            }
        }
        p.extend(self.fg.iter().chain(self.bg.iter()).cloned());
        if p.is_empty() { String::new() } else { format!("\x1b[{}m", p.join(";")) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_style_is_what_the_sequences_since_the_last_reset_set() {
        assert_eq!(style_after(b"plain text\nno colour\n"), "");
        assert_eq!(style_after(b"\x1b[31mred\nstill red\n"), "\x1b[31m");
        assert_eq!(style_after(b"\x1b[1m\x1b[32mbold green\x1b[0m\nplain\n"), "", "reset");
        assert_eq!(style_after(b"\x1b[1;31mx\x1b[mreset by an empty sequence"), "");
        assert_eq!(style_after(b"\x1b[1mbold \x1b[34mblue \x1b[22mnot bold"), "\x1b[34m");
        assert_eq!(style_after(b"\x1b[31;44mred on blue \x1b[39mdefault on blue"), "\x1b[44m");
        assert_eq!(style_after(b"\x1b[0;4;96mreset then underlined bright cyan"), "\x1b[4;96m");
    }

    #[test]
    fn zeros_in_256_and_rgb_colours_are_not_resets() {
        assert_eq!(style_after(b"\x1b[1m\x1b[38;2;0;0;0mblack, still bold"), "\x1b[1;38;2;0;0;0m");
        assert_eq!(style_after(b"\x1b[48;5;0m\x1b[3mon black"), "\x1b[3;48;5;0m");
        assert_eq!(style_after(b"\x1b[38;5mcut short: colour 0"), "\x1b[38;5;0m");
        assert_eq!(style_after(b"\x1b[48;2;9mcut short"), "\x1b[48;2;9;0;0m");
        assert_eq!(style_after(b"\x1b[38mnothing after it"), "");
    }

    #[test]
    fn other_escapes_and_broken_ones_change_nothing() {
        assert_eq!(style_after(b"\x1b[31m\x1b[2K\x1b[1Gprogress\r\x1b[?25l"), "\x1b[31m", "erase line, cursor moves");
        assert_eq!(style_after(b"\x1b[32mgreen \x1b"), "\x1b[32m", "a lone ESC at the end");
        assert_eq!(style_after(b"\x1b[32mgreen \x1b[31"), "\x1b[32m", "a sequence cut off at the end");
        assert_eq!(style_after(b"\x1b(B\x1b[35m"), "\x1b[35m");
        assert_eq!(style_after(b"\x1b[31m\x1b[4294967296mtoo big: not a reset"), "\x1b[31m");
        assert_eq!(style_after(b"\x1b[1;;31man empty parameter is 0"), "\x1b[31m");
    }
}
