//! Response bodies streamed in bounded pieces, never read whole into memory: a file
//! (an uploaded run's package) from disk. A job's raw log is streamed from its log
//! files by `api/logread.rs` (with Range).

use axum::body::{Body, Bytes};
use std::path::Path;
use tokio::io::AsyncReadExt;

/// Bytes read from the store or the disk at a time.
pub const PIECE: usize = 256 * 1024;

/// A file, read `PIECE` bytes at a time as the client takes it.
pub async fn file(path: &Path) -> std::io::Result<Body> {
    let f = tokio::fs::File::open(path).await?;
    let pieces = futures::stream::unfold(Some(f), |f| async move {
        let mut f = f?;
        let mut buf = vec![0u8; PIECE];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), Some(f)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    Ok(Body::from_stream(pieces))
}
