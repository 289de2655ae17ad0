//! Response bodies streamed in bounded pieces, never read whole into memory:
//! a job's log from the store, and a file (an uploaded run's package) from disk.
//! Where logs live is the store's business (`Store::read_log`); only this module
//! knows how they are cut into pieces for a response.

use axum::body::{Body, Bytes};
use kiln_store::Store;
use std::path::Path;
use tokio::io::AsyncReadExt;

/// Bytes read from the store or the disk at a time.
pub const PIECE: usize = 256 * 1024;

/// A job attempt's whole log, read `PIECE` bytes at a time as the client takes it.
pub fn log(store: Store, job_id: i64, attempt: i64) -> Body {
    let pieces = futures::stream::unfold(Some(0u64), move |offset| {
        let store = store.clone();
        async move {
            let offset = offset?;
            match store.read_log(job_id, attempt, offset, PIECE).await {
                Ok(r) if r.data.is_empty() => None,
                Ok(r) => Some((Ok(Bytes::from(r.data)), Some(r.next_offset))),
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
            }
        }
    });
    Body::from_stream(pieces)
}

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
