//! Paths that come from users (uploaded file names, archive entries): a path
//! is accepted only if it stays inside the folder it is unpacked into.

use std::path::{Component, Path, PathBuf};

/// The relative path `name` as a safe path under some folder, or None if it
/// would leave it: absolute, `..` anywhere, a Windows drive or a NUL byte.
/// Backslashes count as separators (zip files made on Windows use them).
/// `./a/./b` becomes `a/b`; an empty result (".", "") is None.
pub fn safe_relative(name: &str) -> Option<PathBuf> {
    if name.contains('\0') || name.starts_with('/') || name.starts_with('\\') {
        return None;
    }
    let unified = name.replace('\\', "/");
    if unified.len() >= 2 && unified.as_bytes()[1] == b':' {
        return None;
    }
    let mut out = PathBuf::new();
    for c in Path::new(&unified).components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::safe_relative;

    #[test]
    fn keeps_plain_relative_paths() {
        assert_eq!(safe_relative("tests/test_a.py").unwrap().to_str(), Some("tests/test_a.py"));
        assert_eq!(safe_relative("./a/./b.txt").unwrap().to_str(), Some("a/b.txt"));
        assert_eq!(safe_relative("dir\\file.txt").unwrap().to_str(), Some("dir/file.txt"));
        assert_eq!(safe_relative("a/b/").unwrap().to_str(), Some("a/b"));
    }

    #[test]
    fn refuses_paths_that_leave_the_folder() {
        for bad in ["../x", "a/../../x", "a/../b", "/etc/passwd", "\\x", "..\\..\\x", "C:\\x", "c:/x", "", ".", "./", "a\0b"] {
            assert!(safe_relative(bad).is_none(), "{bad:?} accepted");
        }
    }
}
