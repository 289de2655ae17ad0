//! Diagnostics: a problem found in a user's file, with its 1-based position.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One problem in a file, at a 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl Diagnostic {
    pub fn new(file: &str, line: usize, column: usize, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.to_owned(),
            line,
            column,
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    /// `FILE:LINE:COL: MESSAGE`, the form editors and terminals turn into links.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

impl std::error::Error for Diagnostic {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_file_line_column_message() {
        let d = Diagnostic::new(".kiln.yml", 3, 7, "unknown key \"stepz\"");
        assert_eq!(d.to_string(), ".kiln.yml:3:7: unknown key \"stepz\"");
    }
}
