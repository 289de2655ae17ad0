//! The tail of a log past its limit: the log keeps its head as it comes (all of the limit
//! but its tail, `spool::head_of`), then only its last part, in a ring file beside the
//! spool. When the job ends
//! the ring is written after a marker saying how many bytes were dropped between
//! head and tail, so the end of the log (where failures usually are) survives.
//! Meanwhile the uploader reads the ring's last lines now and then (`window`) and sends them
//! as the log's live tail.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// A ring of the last `cap` bytes, on disk.
pub struct Tail {
    file: File,
    path: PathBuf,
    cap: u64,
    /// Bytes pushed in all.
    total: u64,
}

impl Tail {
    pub fn create(path: PathBuf, cap: u64) -> std::io::Result<Tail> {
        let file = std::fs::OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path)?;
        Ok(Tail { file, path, cap: cap.max(1), total: 0 })
    }

    pub fn push(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        // Only the last `cap` bytes of a huge push can survive.
        if bytes.len() as u64 > self.cap {
            let skip = bytes.len() - self.cap as usize;
            self.total += skip as u64;
            bytes = &bytes[skip..];
        }
        while !bytes.is_empty() {
            let at = self.total % self.cap;
            let n = bytes.len().min((self.cap - at) as usize);
            self.file.write_all_at(&bytes[..n], at)?;
            self.total += n as u64;
            bytes = &bytes[n..];
        }
        Ok(())
    }

    /// Write the marker and the kept tail to `out`; `limit` is the log limit named in the marker.
    pub fn finish(self, out: &mut File, limit: u64) -> std::io::Result<u64> {
        let kept = self.total.min(self.cap);
        let start = if self.total > self.cap { self.total % self.cap } else { 0 };
        // Start the tail at a line's beginning when one is near.
        let mut first = vec![0u8; kept.min(4096) as usize];
        self.read_ring(start, &mut first)?;
        let skip = if self.total > self.cap { first.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1) as u64 } else { 0 };
        let dropped = self.total - kept + skip;
        out.seek(SeekFrom::End(0))?;
        let mut written = 0;
        if dropped > 0 {
            let marker = format!("\n[kiln: {dropped} bytes dropped here: the log passed its {limit} byte limit, so it keeps its head and its tail]\n");
            out.write_all(marker.as_bytes())?;
            written += marker.len() as u64;
        }
        let mut buf = vec![0u8; 1 << 20];
        let mut pos = skip;
        while pos < kept {
            let n = ((kept - pos) as usize).min(buf.len());
            self.read_ring((start + pos) % self.cap, &mut buf[..n])?;
            out.write_all(&buf[..n])?;
            pos += n as u64;
            written += n as u64;
        }
        let _ = std::fs::remove_file(&self.path);
        Ok(written)
    }

    /// Fill `buf` from ring position `at`, wrapping around.
    fn read_ring(&self, at: u64, buf: &mut [u8]) -> std::io::Result<()> {
        read_ring(&self.file, self.cap, at, buf)
    }

    /// Bytes pushed in all.
    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn cap(&self) -> u64 {
        self.cap
    }
}

/// Fill `buf` from position `at` of a ring of `cap` bytes, wrapping around.
fn read_ring(file: &File, cap: u64, at: u64, buf: &mut [u8]) -> std::io::Result<()> {
    let first = buf.len().min((cap - at) as usize);
    file.read_exact_at(&mut buf[..first], at)?;
    if first < buf.len() {
        file.read_exact_at(&mut buf[first..], 0)?;
    }
    Ok(())
}

/// The last `n` bytes at most of the ring at `path` (`cap` bytes, `total` pushed in all),
/// starting at a line when one starts in them. The writer goes on meanwhile: the caller checks
/// that it did not come round to these bytes while they were read.
pub fn window(path: &Path, cap: u64, total: u64, n: usize) -> std::io::Result<Vec<u8>> {
    let file = File::open(path)?;
    let take = total.min(cap).min(n as u64);
    let mut buf = vec![0u8; take as usize];
    read_ring(&file, cap, (total - take) % cap, &mut buf)?;
    if take < total {
        if let Some(i) = buf.iter().position(|&b| b == b'\n').filter(|&i| i + 1 < buf.len()) {
            buf.drain(..=i);
        }
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn keeps_the_last_bytes_after_a_marker() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = Tail::create(dir.path().join("tail"), 100).unwrap();
        let mut all = Vec::new();
        for i in 0..50 {
            let line = format!("line {i}\n");
            all.extend_from_slice(line.as_bytes());
            t.push(line.as_bytes()).unwrap();
        }
        let mut out = std::fs::OpenOptions::new().create(true).read(true).write(true).truncate(true).open(dir.path().join("out")).unwrap();
        t.finish(&mut out, 1234).unwrap();
        let mut got = String::new();
        out.seek(SeekFrom::Start(0)).unwrap();
        out.read_to_string(&mut got).unwrap();
        assert!(got.ends_with("line 48\nline 49\n"), "{got}");
        let kept = got.split("]\n").nth(1).unwrap();
        assert!(kept.starts_with("line "), "the tail starts on a line: {kept:?}");
        let dropped: usize = got.trim_start().strip_prefix("[kiln: ").unwrap().split(' ').next().unwrap().parse().unwrap();
        assert_eq!(dropped + kept.len(), all.len());
        assert!(got.contains("1234 byte limit"));
    }

    #[test]
    fn the_window_is_the_last_lines_of_the_ring() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tail");
        let mut t = Tail::create(path.clone(), 100).unwrap();
        for i in 0..50 {
            t.push(format!("line {i}\n").as_bytes()).unwrap();
        }
        let w = String::from_utf8(window(&path, t.cap(), t.total(), 20).unwrap()).unwrap();
        assert_eq!(w, "line 48\nline 49\n", "the last 20 bytes, from the first whole line");
        let all = String::from_utf8(window(&path, t.cap(), t.total(), 1000).unwrap()).unwrap();
        assert!(all.ends_with("line 49\n") && all.starts_with("line ") && all.len() <= 100, "{all:?}");
        let mut short = Tail::create(dir.path().join("short"), 100).unwrap();
        short.push(b"one\ntwo").unwrap();
        assert_eq!(window(&dir.path().join("short"), 100, 7, 1000).unwrap(), b"one\ntwo", "nothing cut: all of it");
    }

    #[test]
    fn nothing_dropped_no_marker() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = Tail::create(dir.path().join("tail"), 100).unwrap();
        t.push(b"short\n").unwrap();
        let mut out = std::fs::OpenOptions::new().create(true).read(true).write(true).truncate(true).open(dir.path().join("out")).unwrap();
        t.finish(&mut out, 100).unwrap();
        assert_eq!(std::fs::read(dir.path().join("out")).unwrap(), b"short\n");
    }
}
