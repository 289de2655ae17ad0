//! zstd log frames as an agent uploads them (`POST …/log/zstd`), checked in two steps so
//! that nothing is decompressed before it is known to be allowed:
//!
//! ```text
//!   DeclaredFrames::split  by the frames' headers alone: at most LOG_FRAMES_MAX frames, each
//!         │                declaring its size, at most LOG_FRAME raw bytes (nothing decoded)
//!         │  the caller checks that the agent holds the attempt and the log limit (raw_len)
//!         ▼
//!   DeclaredFrames::check  each frame decoded as a stream (a window of at most LOG_FRAME,
//!                          64 KiB read at a time): it must hold what it declared; only its
//!                          length and line count are kept, never its raw bytes
//! ```
//!
//! The store then keeps each frame as it came (`LogFiles::append_frames`).

use kiln_wire::agent::{LOG_FRAME, LOG_FRAMES_MAX};
use std::io::Read;
use std::ops::Range;

/// One frame of an upload: where it is in the body and what it decompresses to.
#[derive(Debug, Clone)]
pub struct LogFrame {
    zst: Range<usize>,
    /// Raw bytes it decompresses to (as declared; equal once checked).
    pub raw_len: u32,
    /// Newlines in those bytes (known once checked).
    pub lines: u64,
}

/// Back-to-back zstd frames of one upload, with the body they are in, as their headers
/// declare them (not decoded yet).
#[derive(Debug)]
pub struct DeclaredFrames {
    body: Vec<u8>,
    frames: Vec<LogFrame>,
}

/// [`DeclaredFrames`] that decode to what they declare: what the store keeps.
#[derive(Debug)]
pub struct LogFrames {
    body: Vec<u8>,
    frames: Vec<LogFrame>,
}

/// `LOG_FRAME` as a zstd window log (the most a frame's window may ask for).
const WINDOW_LOG_MAX: u32 = LOG_FRAME.trailing_zeros();

impl DeclaredFrames {
    /// Split `body` into frames by their headers alone; every frame must declare its size,
    /// at most `LOG_FRAME` bytes, and there may be at most `LOG_FRAMES_MAX` of them.
    pub fn split(body: Vec<u8>) -> Result<DeclaredFrames, String> {
        let mut frames = Vec::new();
        let mut at = 0;
        while at < body.len() {
            let n = frames.len() + 1;
            if frames.len() == LOG_FRAMES_MAX {
                return Err(format!("more than {LOG_FRAMES_MAX} zstd frames in one upload (kiln_wire::agent::LOG_FRAMES_MAX)"));
            }
            let rest = &body[at..];
            let declared = match zstd::zstd_safe::get_frame_content_size(rest) {
                Ok(Some(d)) => d,
                Ok(None) => return Err(format!("frame {n} does not declare its size (the agent sends frames of at most {LOG_FRAME} bytes, each with its size)")),
                Err(_) => return Err(format!("frame {n} is not a zstd frame")),
            };
            if declared == 0 || declared > LOG_FRAME as u64 {
                return Err(format!("frame {n} declares {declared} bytes: a frame holds 1 to {LOG_FRAME} raw bytes (kiln_wire::agent::LOG_FRAME)"));
            }
            let len = zstd::zstd_safe::find_frame_compressed_size(rest).map_err(|_| format!("frame {n} is not a whole zstd frame"))?;
            frames.push(LogFrame { zst: at..at + len, raw_len: declared as u32, lines: 0 });
            at += len;
        }
        if frames.is_empty() {
            return Err("no zstd frames in the upload".into());
        }
        Ok(DeclaredFrames { body, frames })
    }

    /// Raw bytes the frames declare.
    pub fn raw_len(&self) -> u64 {
        raw_len(&self.frames)
    }

    /// Decode every frame as a stream, in bounded memory: each must decompress to exactly the
    /// size it declared, within a window of at most `LOG_FRAME`. Counts its lines.
    pub fn check(mut self) -> Result<LogFrames, String> {
        let mut buf = vec![0u8; 64 << 10];
        for (i, f) in self.frames.iter_mut().enumerate() {
            let bad = |e: &dyn std::fmt::Display| format!("frame {} does not decompress to the {} bytes it declares: {e}", i + 1, f.raw_len);
            let mut d = zstd::stream::read::Decoder::with_buffer(&self.body[f.zst.clone()]).map_err(|e| bad(&e))?.single_frame();
            d.window_log_max(WINDOW_LOG_MAX).map_err(|e| bad(&e))?;
            let (mut got, mut lines) = (0u64, 0u64);
            loop {
                let n = d.read(&mut buf).map_err(|e| bad(&e))?;
                if n == 0 {
                    break;
                }
                got += n as u64;
                if got > f.raw_len as u64 {
                    return Err(bad(&"it holds more"));
                }
                lines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
            }
            if got != f.raw_len as u64 {
                return Err(bad(&format!("it holds {got}")));
            }
            f.lines = lines;
        }
        Ok(LogFrames { body: self.body, frames: self.frames })
    }
}

impl LogFrames {
    /// Raw bytes the frames hold.
    pub fn raw_len(&self) -> u64 {
        raw_len(&self.frames)
    }

    /// The frames with their compressed bytes, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &LogFrame)> {
        self.frames.iter().map(|f| (&self.body[f.zst.clone()], f))
    }
}

fn raw_len(frames: &[LogFrame]) -> u64 {
    frames.iter().map(|f| f.raw_len as u64).sum()
}

/// What a checked frame decompresses to (one frame: at most `LOG_FRAME` bytes in memory).
pub fn decompress(zst: &[u8], f: &LogFrame) -> std::io::Result<Vec<u8>> {
    zstd::bulk::decompress(zst, f.raw_len as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(raw: &[u8]) -> Vec<u8> {
        zstd::bulk::compress(raw, 1).unwrap()
    }

    #[test]
    fn good_frames_are_counted_and_kept_as_they_came() {
        let mut body = frame(b"a\nb\n");
        body.extend(frame(b"c"));
        let f = DeclaredFrames::split(body.clone()).unwrap();
        assert_eq!(f.raw_len(), 5);
        let f = f.check().unwrap();
        let got: Vec<(Vec<u8>, u32, u64)> = f.iter().map(|(z, f)| (z.to_vec(), f.raw_len, f.lines)).collect();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].1, got[0].2, got[1].1, got[1].2), (4, 2, 1, 0));
        assert_eq!([got[0].0.clone(), got[1].0.clone()].concat(), body);
        assert_eq!(decompress(&got[0].0, &f.frames[0]).unwrap(), b"a\nb\n");
    }

    #[test]
    fn sizes_are_refused_from_the_headers() {
        let e = DeclaredFrames::split(frame(&vec![0u8; LOG_FRAME + 1])).unwrap_err();
        assert!(e.contains(&format!("declares {} bytes", LOG_FRAME + 1)) && e.contains(&LOG_FRAME.to_string()), "{e}");
        let e = DeclaredFrames::split(Vec::from(b"not zstd at all")).unwrap_err();
        assert!(e.contains("not a zstd frame"), "{e}");
        let mut whole = frame(b"hello");
        whole.pop();
        let e = DeclaredFrames::split(whole).unwrap_err();
        assert!(e.contains("not a whole zstd frame"), "{e}");
        assert!(DeclaredFrames::split(Vec::new()).unwrap_err().contains("no zstd frames"));
    }

    #[test]
    fn a_frame_that_lies_about_its_size_is_refused_when_checked() {
        // "hello" in a frame whose header is changed to declare 4 bytes.
        let mut z = frame(b"hello");
        // Frame header: magic (4), descriptor (1), [window], content size. With Single_Segment
        // and a 1-byte size field (FCS flag 0), the size is the byte after the descriptor.
        assert_eq!(z[4] & 0xC0, 0, "a one-byte content size");
        assert_eq!(z[4] & 0x20, 0x20, "single segment");
        z[5] = 4;
        let f = DeclaredFrames::split(z).unwrap();
        assert_eq!(f.raw_len(), 4);
        assert!(f.check().is_err());
    }
}
