//! Receiving an upload: a multipart body streamed into a staging folder under
//! DATA/packages, counted against the size limit as it arrives (413 past it),
//! with archives unpacked safely (400 for an entry that would leave the folder).

use super::extract::{self, Budget, ExtractError, Kind};
use crate::auth::{Credential, Page};
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use axum::extract::multipart::{Field, MultipartError};
use axum::extract::Multipart;
use axum::http::HeaderMap;
use kiln_core::paths::safe_relative;
use std::collections::HashMap;
use std::path::PathBuf;
use tokio::io::AsyncWriteExt;

/// Most bytes a `pipeline` part may have.
const PIPELINE_MAX: usize = 1 << 20;
/// Most files one upload may hold, unpacked.
const FILES_MAX: u64 = 20_000;

/// An upload received into its staging folder (removed when dropped).
pub struct Staged {
    pub dir: PathBuf,
    /// The files as they will be packed.
    pub files_dir: PathBuf,
    /// An uploaded pipeline file's text.
    pub pipeline: Option<String>,
    /// Small text fields (project, _csrf…).
    pub fields: HashMap<String, String>,
    pub bytes_received: u64,
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn too_large(limit: u64) -> AppError {
    AppError::TooLarge(format!("the upload passes the server's limit of {limit} bytes (upload_limit in kiln.toml, --upload-limit)"))
}

/// Refuse at once a request that says it is too big.
pub fn check_length(st: &AppState, headers: &HeaderMap) -> AppResult<()> {
    let len = headers.get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    match len {
        Some(n) if n > st.cfg.upload_limit + 64 * 1024 => Err(too_large(st.cfg.upload_limit)),
        _ => Ok(()),
    }
}

fn multipart_error(e: MultipartError, limit: u64) -> AppError {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        too_large(limit)
    } else {
        AppError::BadRequest(format!("failed to read the upload: {e}"))
    }
}

fn extract_error(e: ExtractError) -> AppError {
    match e {
        ExtractError::TooLarge(_) => AppError::TooLarge(e.to_string()),
        ExtractError::Bad(ref m) if m.contains("No space") => AppError::Internal(e.to_string()),
        _ => AppError::BadRequest(e.to_string()),
    }
}

/// Read a whole small part as text.
async fn text(field: &mut Field<'_>, max: usize, received: &mut u64, limit: u64) -> AppResult<String> {
    let mut buf = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(e, limit))? {
        *received += chunk.len() as u64;
        if *received > limit {
            return Err(too_large(limit));
        }
        buf.extend_from_slice(&chunk);
        if buf.len() > max {
            return Err(AppError::TooLarge(format!("field {:?} passes {max} bytes", field.name().unwrap_or(""))));
        }
    }
    String::from_utf8(buf).map_err(|_| AppError::BadRequest(format!("field {:?} is not UTF-8 text", field.name().unwrap_or(""))))
}

/// Receive a multipart upload: `file` parts (kept at their file name, which may be a
/// relative path), `archive` parts (.zip, .tar, .tar.gz, unpacked), an optional
/// `pipeline` part, and small text fields. With a console page signed in by cookie,
/// the first part must be `_csrf` with the session's token.
pub async fn receive(st: &AppState, mut mp: Multipart, page: Option<&Page>) -> AppResult<Staged> {
    let limit = st.cfg.upload_limit;
    let root = st.cfg.data.join(crate::datafiles::PACKAGES);
    let dir = root.join(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
    let files_dir = dir.join("files");
    tokio::fs::create_dir_all(&files_dir).await.map_err(|e| AppError::Internal(format!("failed to create {}: {e}", files_dir.display())))?;
    let mut staged = Staged { dir, files_dir, pipeline: None, fields: HashMap::new(), bytes_received: 0 };
    let mut budget = Budget { bytes: limit.saturating_mul(4), files: FILES_MAX };
    let mut first = true;
    let mut archives = 0;
    while let Some(mut field) = mp.next_field().await.map_err(|e| multipart_error(e, limit))? {
        let name = field.name().unwrap_or("").to_string();
        if first {
            first = false;
            if let Some(p) = page.filter(|p| matches!(p.cred, Credential::Session { .. })) {
                let given = if name == "_csrf" { text(&mut field, 256, &mut staged.bytes_received, limit).await? } else { String::new() };
                p.check_csrf(&given)?;
                continue;
            }
        }
        let file_name = field.file_name().map(str::to_string);
        match (name.as_str(), file_name) {
            ("file", Some(f)) if f.is_empty() => text(&mut field, 0, &mut staged.bytes_received, limit).await.map(drop)?,
            ("archive", Some(f)) if f.is_empty() => text(&mut field, 0, &mut staged.bytes_received, limit).await.map(drop)?,
            ("pipeline", Some(f)) if f.is_empty() => text(&mut field, 0, &mut staged.bytes_received, limit).await.map(drop)?,
            ("file", Some(f)) => {
                let rel = safe_relative(&f).ok_or_else(|| AppError::BadRequest(format!("file name {f:?} would leave the upload's folder; use a relative path without '..'")))?;
                if budget.files == 0 {
                    return Err(AppError::TooLarge(format!("an upload may hold at most {FILES_MAX} files")));
                }
                budget.files -= 1;
                let path = staged.files_dir.join(rel);
                let n = save(&mut field, path, &mut staged.bytes_received, limit).await?;
                budget.bytes = budget.bytes.saturating_sub(n);
            }
            ("archive", Some(f)) => {
                let kind = Kind::from_name(&f).ok_or_else(|| AppError::BadRequest(format!("archive {f:?}: use .zip, .tar, .tar.gz or .tgz")))?;
                archives += 1;
                let path = staged.dir.join(format!("archive-{archives}"));
                save(&mut field, path.clone(), &mut staged.bytes_received, limit).await?;
                let dest = staged.files_dir.clone();
                let mut b = budget;
                budget = tokio::task::spawn_blocking(move || extract::unpack(&path, kind, &dest, &mut b).map(|_| b))
                    .await
                    .map_err(|e| AppError::Internal(format!("unpacking task: {e}")))?
                    .map_err(extract_error)?;
            }
            ("pipeline", _) => staged.pipeline = Some(text(&mut field, PIPELINE_MAX, &mut staged.bytes_received, limit).await?),
            (other, _) => {
                let v = text(&mut field, 4096, &mut staged.bytes_received, limit).await?;
                staged.fields.insert(other.to_string(), v);
            }
        }
    }
    if staged.pipeline.as_deref().is_some_and(|p| p.trim().is_empty()) {
        staged.pipeline = None;
    }
    Ok(staged)
}

/// Stream one part into a file, counting against the limit. Returns its size.
async fn save(field: &mut Field<'_>, path: PathBuf, received: &mut u64, limit: u64) -> AppResult<u64> {
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(|e| AppError::BadRequest(format!("failed to place {}: {e}", path.display())))?;
    }
    let mut out = tokio::fs::File::create(&path).await.map_err(|e| AppError::BadRequest(format!("failed to place {}: {e}", path.display())))?;
    let mut n = 0u64;
    while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(e, limit))? {
        *received += chunk.len() as u64;
        if *received > limit {
            return Err(too_large(limit));
        }
        n += chunk.len() as u64;
        out.write_all(&chunk).await.map_err(|e| AppError::Internal(format!("failed to write the upload: {e}")))?;
    }
    out.flush().await.map_err(|e| AppError::Internal(format!("failed to write the upload: {e}")))?;
    Ok(n)
}
