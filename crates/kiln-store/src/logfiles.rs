//! Log bytes on disk, one folder per job under the log folder and a few files per
//! attempt in it (`<logs>/<job>/<attempt>.<kind>`): append-only, compressed,
//! readable at any offset in bounded memory.
//!
//! ```text
//!   <attempt>.open      the raw bytes after the last sealed segment (< SEGMENT)
//!   <attempt>.sealed    zstd frames, one per SEGMENT of raw bytes, back to back
//!   <attempt>.index     one 32-byte entry per frame: raw start, frame start, frame length, raw length, newlines
//!   <attempt>.live      while the job runs, the last lines past the log's head
//! ```
//!
//! A job's first log costs one folder and one file: a folder per attempt as well (the
//! layout before, `<logs>/<job>/<attempt>/<kind>`, which [`LogFiles::upgrade_layout`]
//! moves once) was one more inode to allocate for every job, a tenth of a trivial
//! job's server CPU in the engine bench's profile.
//!
//! The database's `attempts.log_len` says how many bytes are accepted; the files
//! may hold a little more after a crash between the file write and the row update.
//! Those extra bytes came from the same attempt at the same offsets (an agent's
//! spool is append-only), so a resent chunk skips them instead of writing them
//! twice. A torn write (half a frame, half an index entry) is cut off on the next
//! append. Several servers on one PostgreSQL database share one log folder
//! (`--logs`); appends to one attempt take turns behind its row lock.

use crate::logframes::LogFrames;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Raw bytes per compressed frame: the most a read decompresses at once.
pub const SEGMENT: usize = kiln_wire::agent::LOG_FRAME;
const ENTRY: usize = 32;
const LEVEL: i32 = 1;

/// One sealed frame.
#[derive(Debug, Clone, Copy)]
struct Entry {
    raw_start: u64,
    zst_start: u64,
    zst_len: u32,
    raw_len: u32,
    lines: u64,
}

impl Entry {
    fn raw_end(&self) -> u64 {
        self.raw_start + self.raw_len as u64
    }
    fn zst_end(&self) -> u64 {
        self.zst_start + self.zst_len as u64
    }
    fn encode(&self) -> [u8; ENTRY] {
        let mut b = [0u8; ENTRY];
        b[0..8].copy_from_slice(&self.raw_start.to_le_bytes());
        b[8..16].copy_from_slice(&self.zst_start.to_le_bytes());
        b[16..20].copy_from_slice(&self.zst_len.to_le_bytes());
        b[20..24].copy_from_slice(&self.raw_len.to_le_bytes());
        b[24..32].copy_from_slice(&self.lines.to_le_bytes());
        b
    }
    fn decode(b: &[u8]) -> Entry {
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        Entry { raw_start: u64_at(0), zst_start: u64_at(8), zst_len: u32_at(16), raw_len: u32_at(20), lines: u64_at(24) }
    }
}

/// The folder holding every attempt's log.
#[derive(Debug, Clone)]
pub struct LogFiles {
    root: PathBuf,
}

/// One attempt's files: `<job folder>/<attempt>.<kind>`.
#[derive(Debug, Clone)]
struct AttemptFiles {
    job_dir: PathBuf,
    attempt: i64,
}

impl AttemptFiles {
    fn path(&self, kind: &str) -> PathBuf {
        self.job_dir.join(format!("{}.{kind}", self.attempt))
    }
}

/// Marks a log folder whose attempts are files in their job's folder, not folders.
const LAYOUT_MARK: &str = "layout-attempt-files";

/// A match found by [`LogFiles::search`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogMatch {
    /// 1-based line number.
    pub line: u64,
    /// Byte offset where the line starts.
    pub offset: u64,
    /// The line (cut to a few hundred bytes), lossily decoded.
    pub text: String,
}

/// What a search found: every occurrence counted, the first few lines kept.
#[derive(Debug, Clone, Default)]
pub struct SearchResult {
    pub count: u64,
    pub lines_matched: u64,
    pub matches: Vec<LogMatch>,
}

fn corrupt(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

impl LogFiles {
    pub fn new(root: impl Into<PathBuf>) -> LogFiles {
        LogFiles { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn files(&self, job_id: i64, attempt: i64) -> AttemptFiles {
        AttemptFiles { job_dir: self.job_dir(job_id), attempt }
    }

    /// Move the logs of the layout before (a folder per attempt, `<job>/<attempt>/<kind>`)
    /// to files in their job's folder (`<job>/<attempt>.<kind>`), once: a mark in the log
    /// folder says it is done, so later starts do not read every job's folder. A move cut
    /// short is finished by the next start (a file renamed is not found again). Returns the
    /// attempts moved.
    pub fn upgrade_layout(&self) -> io::Result<u64> {
        let mark = self.root.join(LAYOUT_MARK);
        if mark.exists() {
            return Ok(0);
        }
        std::fs::create_dir_all(&self.root)?;
        let mut moved = 0;
        for job in std::fs::read_dir(&self.root)? {
            let job = job?;
            if !job.file_type()?.is_dir() || job.file_name().to_str().and_then(|n| n.parse::<i64>().ok()).is_none() {
                continue;
            }
            for attempt in std::fs::read_dir(job.path())? {
                let attempt = attempt?;
                let Some(n) = attempt.file_name().to_str().and_then(|n| n.parse::<i64>().ok()) else { continue };
                if !attempt.file_type()?.is_dir() {
                    continue;
                }
                // Several servers sharing the folder may start together: what another one
                // moved already is gone, not an error.
                let files = match std::fs::read_dir(attempt.path()) {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    r => r?,
                };
                for f in files {
                    let f = f?;
                    let kind = f.file_name();
                    gone_is_done(std::fs::rename(f.path(), job.path().join(format!("{n}.{}", kind.to_string_lossy()))))?;
                }
                gone_is_done(std::fs::remove_dir(attempt.path()))?;
                moved += 1;
            }
        }
        File::create(&mark)?.sync_all()?;
        Ok(moved)
    }

    /// Folder of all of a job's attempts (removed whole by retention).
    pub fn job_dir(&self, job_id: i64) -> PathBuf {
        self.root.join(job_id.to_string())
    }

    fn entries(at: &AttemptFiles) -> io::Result<Vec<Entry>> {
        let bytes = match std::fs::read(at.path("index")) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        // A torn last entry (a crash mid-write) is not part of the index.
        let mut out: Vec<Entry> = bytes.chunks_exact(ENTRY).map(Entry::decode).collect();
        // Entries must follow each other; anything after a break is a leftover.
        let mut end = 0;
        let mut keep = 0;
        for e in &out {
            if e.raw_start != end {
                break;
            }
            end = e.raw_end();
            keep += 1;
        }
        out.truncate(keep);
        Ok(out)
    }

    /// Bytes the files hold for this attempt (0 when it has none).
    pub fn len(&self, job_id: i64, attempt: i64) -> io::Result<u64> {
        let at = self.files(job_id, attempt);
        let sealed = Self::entries(&at)?.last().map_or(0, Entry::raw_end);
        let open = match std::fs::metadata(at.path("open")) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        Ok(sealed + open)
    }

    /// Append `data`, which starts at byte `offset` of the attempt's log; the
    /// caller has checked that `offset` is what the database holds. Bytes the
    /// files already hold past it (left by an interrupted append) are skipped.
    pub fn append(&self, job_id: i64, attempt: i64, offset: u64, data: &[u8]) -> io::Result<()> {
        let at = self.files(job_id, attempt);
        std::fs::create_dir_all(&at.job_dir)?;
        let entries = Self::entries(&at)?;
        let sealed_len = entries.last().map_or(0, Entry::raw_end);
        let zst_len = entries.last().map_or(0, Entry::zst_end);
        let mut open = OpenOptions::new().create(true).read(true).write(true).truncate(false).open(at.path("open"))?;
        let have = sealed_len + open.metadata()?.len();
        if have < offset {
            return Err(corrupt(format!("log files of job {job_id} attempt {attempt} hold {have} bytes, the database {offset}: {} was changed by hand", at.path("open").display())));
        }
        let skip = ((have - offset) as usize).min(data.len());
        let mut data = &data[skip..];
        if data.is_empty() {
            return Ok(());
        }
        let mut open_len = (have - sealed_len) as usize;
        if open_len + data.len() < SEGMENT {
            open.seek(SeekFrom::End(0))?;
            return open.write_all(data);
        }
        // Seal whole segments: what `open` holds plus the start of `data`, then whole SEGMENTs of `data`.
        let (mut sealed, mut index) = Self::open_to_seal(&at, zst_len, entries.len())?;
        let (mut raw_start, mut zst_start) = (sealed_len, zst_len);
        let mut buf = Vec::with_capacity(SEGMENT);
        while open_len + data.len() >= SEGMENT {
            buf.clear();
            if open_len > 0 {
                open.seek(SeekFrom::Start(0))?;
                buf.resize(open_len, 0);
                open.read_exact(&mut buf)?;
            }
            let take = SEGMENT - open_len;
            buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            let frame = zstd::bulk::compress(&buf, LEVEL)?;
            sealed.write_all(&frame)?;
            let e = Entry { raw_start, zst_start, zst_len: frame.len() as u32, raw_len: buf.len() as u32, lines: memchr::memchr_iter(b'\n', &buf).count() as u64 };
            index.write_all(&e.encode())?;
            raw_start = e.raw_end();
            zst_start = e.zst_end();
            open.set_len(0)?;
            open_len = 0;
        }
        open.seek(SeekFrom::Start(0))?;
        open.write_all(data)
    }

    /// Flush an attempt's files and their folder to disk.
    pub fn sync(&self, job_id: i64, attempt: i64) -> io::Result<()> {
        let at = self.files(job_id, attempt);
        for name in ["sealed", "index", "open"] {
            match File::open(at.path(name)) {
                Ok(f) => f.sync_all()?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        File::open(&at.job_dir)?.sync_all()
    }

    /// The sealed segments and their index, opened for appending after `entries` entries
    /// (`zst_len` compressed bytes); what a crash half-wrote past them is dropped.
    fn open_to_seal(at: &AttemptFiles, zst_len: u64, entries: usize) -> io::Result<(std::fs::File, std::fs::File)> {
        let mut sealed = OpenOptions::new().create(true).write(true).truncate(false).open(at.path("sealed"))?;
        sealed.set_len(zst_len)?;
        sealed.seek(SeekFrom::End(0))?;
        let mut index = OpenOptions::new().create(true).write(true).truncate(false).open(at.path("index"))?;
        index.set_len((entries * ENTRY) as u64)?;
        index.seek(SeekFrom::End(0))?;
        Ok((sealed, index))
    }

    /// Append zstd frames the agent compressed (checked: `logframes.rs`), starting at raw byte
    /// `offset`. When the files end exactly there with no open bytes, each frame is kept as it
    /// came (one sealed segment, not compressed again); otherwise their bytes, decompressed one
    /// frame at a time, go through [`LogFiles::append`] (which skips bytes the files hold).
    pub fn append_frames(&self, job_id: i64, attempt: i64, offset: u64, frames: &LogFrames) -> io::Result<()> {
        let at = self.files(job_id, attempt);
        std::fs::create_dir_all(&at.job_dir)?;
        let entries = Self::entries(&at)?;
        let sealed_len = entries.last().map_or(0, Entry::raw_end);
        let zst_len = entries.last().map_or(0, Entry::zst_end);
        let open_len = match std::fs::metadata(at.path("open")) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        if open_len > 0 || sealed_len != offset {
            let mut from = offset;
            for (zst, f) in frames.iter() {
                self.append(job_id, attempt, from, &crate::logframes::decompress(zst, f)?)?;
                from += f.raw_len as u64;
            }
            return Ok(());
        }
        let (mut sealed, mut index) = Self::open_to_seal(&at, zst_len, entries.len())?;
        let (mut raw_start, mut zst_start) = (sealed_len, zst_len);
        for (zst, f) in frames.iter() {
            sealed.write_all(zst)?;
            let e = Entry { raw_start, zst_start, zst_len: zst.len() as u32, raw_len: f.raw_len, lines: f.lines };
            index.write_all(&e.encode())?;
            raw_start = e.raw_end();
            zst_start = e.zst_end();
        }
        Ok(())
    }

    /// Replace the attempt's live tail (the last lines past the log's head, while the job runs)
    /// with `text`; `past_head` bytes were printed past the head so far. Written aside and
    /// renamed into place, so a reader sees the old window or the new one, never half of one.
    pub fn set_live(&self, job_id: i64, attempt: i64, past_head: u64, text: &[u8]) -> io::Result<()> {
        let at = self.files(job_id, attempt);
        std::fs::create_dir_all(&at.job_dir)?;
        let aside = at.path("live.new");
        let mut f = File::create(&aside)?;
        f.write_all(&past_head.to_le_bytes())?;
        f.write_all(text)?;
        std::fs::rename(aside, at.path("live"))
    }

    /// The attempt's live tail, if it has one: (bytes printed past the head, the last lines).
    pub fn live(&self, job_id: i64, attempt: i64) -> io::Result<Option<(u64, Vec<u8>)>> {
        let mut f = match File::open(self.files(job_id, attempt).path("live")) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut all = Vec::new();
        // Bounded: a live tail is written by the server, at most LIVE_TAIL_MAX after its length.
        Read::take(&mut f, 8 + kiln_wire::agent::LIVE_TAIL_MAX as u64).read_to_end(&mut all)?;
        if all.len() < 8 {
            return Ok(None);
        }
        let past_head = u64::from_le_bytes(all[..8].try_into().unwrap());
        Ok(Some((past_head, all.split_off(8))))
    }

    /// Read at most `max` bytes from `offset`, not past `end` (the accepted length).
    pub fn read(&self, job_id: i64, attempt: i64, offset: u64, max: usize, end: u64) -> io::Result<Vec<u8>> {
        let mut r = self.reader(job_id, attempt, end)?;
        let mut out = Vec::new();
        let mut at = offset;
        while out.len() < max && at < end {
            let piece = r.piece(at)?;
            if piece.is_empty() {
                break;
            }
            let take = piece.len().min(max - out.len());
            out.extend_from_slice(&piece[..take]);
            at += take as u64;
        }
        Ok(out)
    }

    /// A sequential reader (for downloads and searches).
    pub fn reader(&self, job_id: i64, attempt: i64, end: u64) -> io::Result<LogReader> {
        let files = self.files(job_id, attempt);
        let entries = Self::entries(&files)?;
        Ok(LogReader { files, entries, end, cached: None })
    }

    /// The 1-based number of the line holding byte `offset`.
    pub fn line_at(&self, job_id: i64, attempt: i64, offset: u64, end: u64) -> io::Result<u64> {
        let mut r = self.reader(job_id, attempt, end)?;
        let offset = offset.min(end);
        let whole = r.entries.partition_point(|e| e.raw_end() <= offset);
        let mut lines: u64 = r.entries[..whole].iter().map(|e| e.lines).sum();
        let mut at = r.entries.get(whole.wrapping_sub(1)).filter(|_| whole > 0).map_or(0, Entry::raw_end);
        while at < offset {
            let piece = r.piece(at)?;
            if piece.is_empty() {
                break;
            }
            let take = piece.len().min((offset - at) as usize);
            lines += memchr::memchr_iter(b'\n', &piece[..take]).count() as u64;
            at += take as u64;
        }
        Ok(lines + 1)
    }

    /// The byte offset where 1-based line `line` starts (None past the last line).
    pub fn offset_of_line(&self, job_id: i64, attempt: i64, line: u64, end: u64) -> io::Result<Option<u64>> {
        if line <= 1 {
            return Ok(Some(0));
        }
        let mut r = self.reader(job_id, attempt, end)?;
        // Newlines to pass: line - 1. Whole segments first, from the index.
        let mut need = line - 1;
        let mut at = 0u64;
        for e in &r.entries {
            if e.lines >= need || e.raw_end() > end {
                break;
            }
            need -= e.lines;
            at = e.raw_end();
        }
        loop {
            let piece = r.piece(at)?;
            if piece.is_empty() {
                return Ok(None);
            }
            let n = memchr::memchr_iter(b'\n', piece).count() as u64;
            if n >= need {
                let i = memchr::memchr_iter(b'\n', piece).nth((need - 1) as usize).unwrap();
                let off = at + i as u64 + 1;
                return Ok((off < end).then_some(off));
            }
            need -= n;
            at += piece.len() as u64;
        }
    }

    /// Count every occurrence of `needle` and keep the first `keep` matching lines.
    pub fn search(&self, job_id: i64, attempt: i64, needle: &[u8], keep: usize, end: u64) -> io::Result<SearchResult> {
        let mut res = SearchResult::default();
        if needle.is_empty() {
            return Ok(res);
        }
        let finder = memchr::memmem::Finder::new(needle);
        let mut r = self.reader(job_id, attempt, end)?;
        // Lines are searched whole: the partial last line of a piece waits for the next one.
        let mut carry: Vec<u8> = Vec::new();
        let mut carry_start = 0u64;
        let mut line = 1u64;
        let mut last_line: Option<u64> = None;
        let mut at = 0u64;
        loop {
            let piece_start = at;
            let piece = r.piece(at)?.to_vec();
            let last = piece.is_empty();
            at += piece.len() as u64;
            let (block, block_start) = if carry.is_empty() {
                (piece, piece_start)
            } else {
                let mut b = std::mem::take(&mut carry);
                b.extend_from_slice(&piece);
                (b, carry_start)
            };
            let cut = if last { block.len() } else { memchr::memrchr(b'\n', &block).map_or(0, |i| i + 1) };
            let (whole, rest) = block.split_at(cut);
            // Occurrences over the whole block; line numbers by counting newlines between them.
            let mut counted = 0usize;
            for m in finder.find_iter(whole) {
                line += memchr::memchr_iter(b'\n', &whole[counted..m]).count() as u64;
                counted = m;
                res.count += 1;
                if last_line == Some(line) {
                    continue;
                }
                last_line = Some(line);
                res.lines_matched += 1;
                if res.matches.len() < keep {
                    let from = memchr::memrchr(b'\n', &whole[..m]).map_or(0, |i| i + 1);
                    let to = memchr::memchr(b'\n', &whole[m..]).map_or(whole.len(), |i| m + i);
                    let text = &whole[from..to.min(from + 400)];
                    res.matches.push(LogMatch { line, offset: block_start + from as u64, text: String::from_utf8_lossy(text).into_owned() });
                }
            }
            line += memchr::memchr_iter(b'\n', &whole[counted..]).count() as u64;
            if last {
                return Ok(res);
            }
            carry = rest.to_vec();
            carry_start = block_start + cut as u64;
            // A line longer than a few segments is searched in parts (its matches still counted).
            if carry.len() > 4 * SEGMENT {
                res.count += finder.find_iter(&carry).count() as u64;
                let drop = carry.len() - (needle.len() - 1);
                carry.drain(..drop);
                carry_start += drop as u64;
            }
        }
    }

    /// Remove every attempt's files of a job; returns the bytes freed.
    pub fn remove_job(&self, job_id: i64) -> io::Result<u64> {
        let dir = self.job_dir(job_id);
        let freed = dir_size(&dir);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(freed),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Bytes a job's logs take on disk.
    pub fn job_disk_use(&self, job_id: i64) -> u64 {
        dir_size(&self.job_dir(job_id))
    }
}

/// A file or folder another process removed or moved first: nothing left to do.
fn gone_is_done(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// Total size of the files under `dir` (0 if absent).
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else { return 0 };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

/// Reads an attempt's log piece by piece, one decompressed segment in memory at a time.
pub struct LogReader {
    files: AttemptFiles,
    entries: Vec<Entry>,
    end: u64,
    cached: Option<(usize, Vec<u8>)>,
}

impl LogReader {
    /// The bytes from `at` to the end of the segment holding it (empty at the end).
    pub fn piece(&mut self, at: u64) -> io::Result<&[u8]> {
        if at >= self.end {
            return Ok(&[]);
        }
        let sealed_len = self.entries.last().map_or(0, Entry::raw_end);
        if at >= sealed_len {
            let want = ((self.end - at) as usize).min(SEGMENT);
            let mut f = match File::open(self.files.path("open")) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(&[]),
                Err(e) => return Err(e),
            };
            f.seek(SeekFrom::Start(at - sealed_len))?;
            let mut buf = Vec::with_capacity(want);
            f.take(want as u64).read_to_end(&mut buf)?;
            self.cached = Some((usize::MAX, buf));
            return Ok(&self.cached.as_ref().unwrap().1);
        }
        let i = self.entries.partition_point(|e| e.raw_end() <= at);
        let e = self.entries[i];
        if self.cached.as_ref().map(|c| c.0) != Some(i) {
            let mut f = File::open(self.files.path("sealed"))?;
            f.seek(SeekFrom::Start(e.zst_start))?;
            let mut frame = vec![0u8; e.zst_len as usize];
            f.read_exact(&mut frame)?;
            let raw = zstd::bulk::decompress(&frame, e.raw_len as usize)?;
            if raw.len() != e.raw_len as usize {
                return Err(corrupt(format!("{}: segment at {} decompressed to {} bytes, not {}", self.files.path("sealed").display(), e.raw_start, raw.len(), e.raw_len)));
            }
            self.cached = Some((i, raw));
        }
        let raw = &self.cached.as_ref().unwrap().1;
        let from = (at - e.raw_start) as usize;
        let to = raw.len().min((self.end - e.raw_start) as usize);
        Ok(&raw[from..to])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize) -> Vec<u8> {
        let mut v = Vec::new();
        let mut i = 0;
        while v.len() < n {
            v.extend_from_slice(format!("line {i} of the log, with some text\n").as_bytes());
            i += 1;
        }
        v.truncate(n);
        v
    }

    #[test]
    fn logs_kept_a_folder_per_attempt_move_to_files_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let lf = LogFiles::new(dir.path());
        let data = sample(3 * SEGMENT / 2);
        lf.append(7, 1, 0, &data).unwrap();
        lf.append(7, 2, 0, b"second attempt\n").unwrap();
        lf.set_live(7, 2, 3, b"live tail\n").unwrap();
        // Put them back as the layout before kept them: <job>/<attempt>/<kind>.
        for (attempt, kinds) in [(1, &["open", "sealed", "index"][..]), (2, &["open", "live"][..])] {
            std::fs::create_dir(dir.path().join(format!("7/{attempt}"))).unwrap();
            for k in kinds {
                std::fs::rename(dir.path().join(format!("7/{attempt}.{k}")), dir.path().join(format!("7/{attempt}/{k}"))).unwrap();
            }
        }
        assert_eq!(lf.len(7, 1).unwrap(), 0, "the old layout is not read as it is");
        assert_eq!(lf.upgrade_layout().unwrap(), 2);
        assert_eq!(lf.read(7, 1, 0, data.len(), data.len() as u64).unwrap(), data);
        assert_eq!(lf.read(7, 2, 0, 100, 15).unwrap(), b"second attempt\n");
        assert_eq!(lf.live(7, 2).unwrap(), Some((3, b"live tail\n".to_vec())));
        assert!(!dir.path().join("7/1").exists() && !dir.path().join("7/2").exists());
        // Done once: a folder that looks old after the mark is left alone.
        std::fs::create_dir(dir.path().join("7/3")).unwrap();
        assert_eq!(lf.upgrade_layout().unwrap(), 0);
        assert!(dir.path().join("7/3").is_dir());
    }

    #[test]
    fn a_jobs_first_log_makes_one_folder_and_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let lf = LogFiles::new(dir.path());
        lf.append(9, 1, 0, b"kiln: job t\n").unwrap();
        let mut made: Vec<String> = Vec::new();
        for e in walk(dir.path()) {
            made.push(e.strip_prefix(dir.path()).unwrap().to_string_lossy().into_owned());
        }
        made.sort();
        assert_eq!(made, ["9", "9/1.open"]);
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            out.push(e.path());
            if e.file_type().unwrap().is_dir() {
                out.extend(walk(&e.path()));
            }
        }
        out
    }

    #[test]
    fn appends_in_odd_pieces_read_back_at_any_offset() {
        let dir = tempfile::tempdir().unwrap();
        let lf = LogFiles::new(dir.path());
        let data = sample(3 * SEGMENT + 12345);
        let mut at = 0;
        for size in [10, SEGMENT - 3, 7, 2 * SEGMENT + 5, 100_000] {
            let end = (at + size).min(data.len());
            lf.append(1, 1, at as u64, &data[at..end]).unwrap();
            at = end;
        }
        lf.append(1, 1, at as u64, &data[at..]).unwrap();
        let total = data.len() as u64;
        assert_eq!(lf.len(1, 1).unwrap(), total);
        for off in [0u64, 5, SEGMENT as u64 - 1, SEGMENT as u64, 3 * SEGMENT as u64 + 100] {
            let got = lf.read(1, 1, off, 2 * SEGMENT, total).unwrap();
            let want = &data[off as usize..(off as usize + 2 * SEGMENT).min(data.len())];
            assert_eq!(got, want, "read at {off}");
        }
        // Bounded by the accepted length.
        assert_eq!(lf.read(1, 1, 0, 100, 40).unwrap(), &data[..40]);
        // Line numbers agree with counting, both ways.
        for n in [1u64, 2, 30_000, 40_000] {
            let want = if n == 1 { 0 } else { data.iter().enumerate().filter(|(_, &b)| b == b'\n').nth(n as usize - 2).map(|(i, _)| i as u64 + 1).unwrap() };
            assert_eq!(lf.offset_of_line(1, 1, n, total).unwrap(), Some(want), "line {n}");
            assert_eq!(lf.line_at(1, 1, want, total).unwrap(), n);
        }
        assert_eq!(lf.offset_of_line(1, 1, 10_000_000, total).unwrap(), None);
        for off in [0u64, 1000, SEGMENT as u64 + 17, total] {
            let want = data[..off as usize].iter().filter(|&&b| b == b'\n').count() as u64 + 1;
            assert_eq!(lf.line_at(1, 1, off, total).unwrap(), want);
        }
        // The sealed part is compressed.
        assert!(std::fs::metadata(dir.path().join("1/1.sealed")).unwrap().len() < (SEGMENT as u64));
    }

    #[test]
    fn a_resent_chunk_after_an_interrupted_append_is_not_stored_twice() {
        let dir = tempfile::tempdir().unwrap();
        let lf = LogFiles::new(dir.path());
        let data = sample(SEGMENT + 500);
        lf.append(2, 1, 0, &data[..1000]).unwrap();
        // The files took bytes 1000..SEGMENT+100, but the database never learned it (a crash).
        lf.append(2, 1, 1000, &data[1000..SEGMENT + 100]).unwrap();
        // The agent resends from 1000.
        lf.append(2, 1, 1000, &data[1000..]).unwrap();
        assert_eq!(lf.len(2, 1).unwrap(), data.len() as u64);
        assert_eq!(lf.read(2, 1, 0, usize::MAX, data.len() as u64).unwrap(), data);
        // A torn index entry and a half-written frame are cut off on the next append.
        let mut idx = OpenOptions::new().append(true).open(dir.path().join("2/1.index")).unwrap();
        idx.write_all(&[1, 2, 3]).unwrap();
        let more = sample(2 * SEGMENT);
        lf.append(2, 1, data.len() as u64, &more).unwrap();
        let mut all = data.clone();
        all.extend_from_slice(&more);
        assert_eq!(lf.read(2, 1, 0, usize::MAX, all.len() as u64).unwrap(), all);
        // Files shorter than what the database accepted are an error, not a silent gap.
        assert!(lf.append(3, 1, 10, b"x").is_err());
    }

    /// `raw` as checked frames of one SEGMENT each, and their compressed bytes.
    fn frames(raw: &[u8]) -> (LogFrames, Vec<u8>) {
        let body: Vec<u8> = raw.chunks(SEGMENT).flat_map(|c| zstd::bulk::compress(c, 1).unwrap()).collect();
        (crate::DeclaredFrames::split(body.clone()).unwrap().check().unwrap(), body)
    }

    #[test]
    fn agent_frames_are_kept_as_they_came_where_a_segment_starts() {
        let dir = tempfile::tempdir().unwrap();
        let lf = LogFiles::new(dir.path());
        let data = sample(5 * SEGMENT + 777);
        let seg = SEGMENT as u64;
        let (two, body) = frames(&data[..2 * SEGMENT]);
        lf.append_frames(5, 1, 0, &two).unwrap();
        let sealed = std::fs::read(dir.path().join("5/1.sealed")).unwrap();
        assert_eq!(sealed, body, "the frames are the segments, byte for byte");
        // Raw bytes that end mid-segment, then frames that do not start a segment: their
        // bytes are stored all the same.
        lf.append(5, 1, 2 * seg, &data[2 * SEGMENT..2 * SEGMENT + 10]).unwrap();
        lf.append(5, 1, 2 * seg + 10, &data[2 * SEGMENT + 10..3 * SEGMENT]).unwrap(); // fills segment 3: sealed by the server
        let (fourth, _) = frames(&data[3 * SEGMENT..4 * SEGMENT]);
        lf.append_frames(5, 1, 3 * seg, &fourth).unwrap();
        // A frame resent over bytes the files hold is not stored twice.
        lf.append_frames(5, 1, 3 * seg, &fourth).unwrap();
        // Frames resent from before what the files hold: only their new bytes are stored.
        let (again, _) = frames(&data[2 * SEGMENT..4 * SEGMENT]);
        lf.append_frames(5, 1, 2 * seg, &again).unwrap();
        lf.append(5, 1, 4 * seg, &data[4 * SEGMENT..]).unwrap();
        let total = data.len() as u64;
        assert_eq!(lf.len(5, 1).unwrap(), total);
        assert_eq!(lf.read(5, 1, 0, usize::MAX, total).unwrap(), data);
        let want = data.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
        assert_eq!(lf.line_at(5, 1, total, total).unwrap(), want, "line counts of kept frames are right");
        // Frames past where the files end, or starting inside the open bytes, go through `append`.
        lf.append(6, 1, 0, &data[..100]).unwrap();
        let (f, _) = frames(&data[..2 * SEGMENT]);
        lf.append_frames(6, 1, 0, &f).unwrap();
        assert_eq!(lf.read(6, 1, 0, usize::MAX, 2 * seg).unwrap(), &data[..2 * SEGMENT]);
    }

    #[test]
    fn search_counts_every_occurrence_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let lf = LogFiles::new(dir.path());
        let data = sample(3 * SEGMENT);
        lf.append(4, 1, 0, &data).unwrap();
        let total = data.len() as u64;
        let text = String::from_utf8_lossy(&data);
        let want_lines: Vec<(u64, &str)> = text.lines().enumerate().filter(|(_, l)| l.contains("line 7")).map(|(i, l)| (i as u64 + 1, l)).collect();
        let r = lf.search(4, 1, b"line 7", 5, total).unwrap();
        assert_eq!(r.count, text.matches("line 7").count() as u64);
        assert_eq!(r.lines_matched, want_lines.len() as u64);
        assert_eq!(r.matches.len(), 5);
        for (m, (n, l)) in r.matches.iter().zip(&want_lines) {
            assert_eq!((m.line, m.text.as_str()), (*n, *l));
            assert_eq!(&data[m.offset as usize..m.offset as usize + l.len()], l.as_bytes());
        }
        assert_eq!(lf.search(4, 1, b"not there", 5, total).unwrap().count, 0);
    }
}
