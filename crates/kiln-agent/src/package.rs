//! An uploaded test run's package: fetched from the server with the agent's
//! token and unpacked (a .tar.gz) into the job's folder. Only regular files and
//! folders whose paths stay inside it are written; anything else fails the job.

use crate::client::{backoff, CallError, Client};
use kiln_core::paths::safe_relative;
use std::io::Read;
use std::path::Path;

/// Download `url` (a path on the server) and unpack it at `dest`, retrying while the server is unreachable.
pub async fn fetch(client: &Client, url: &str, dest: &Path) -> Result<(), String> {
    let mut tries = 0;
    let bytes = loop {
        match client.download(url).await {
            Ok(b) => break b,
            Err(CallError::Unreachable(e)) if tries < 8 => {
                tries += 1;
                tracing::warn!("failed to fetch the package {url} ({e}); retrying");
                tokio::time::sleep(backoff(tries)).await;
            }
            Err(e) => return Err(format!("failed to fetch the uploaded package {url}: {e}")),
        }
    };
    let dest = dest.to_path_buf();
    tokio::task::spawn_blocking(move || unpack(&bytes, &dest))
        .await
        .map_err(|e| format!("unpacking task: {e}"))?
        .map_err(|e| format!("failed to unpack the uploaded package: {e}"))
        .map(drop)
}

/// Unpack a .tar.gz held in memory into `dest` (created if missing).
pub fn unpack(tar_gz: &[u8], dest: &Path) -> Result<usize, String> {
    std::fs::create_dir_all(dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tar_gz));
    let mut files = 0;
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let rel = safe_relative(&name).ok_or_else(|| format!("entry {name:?} would leave the job's folder"))?;
        let path = dest.join(rel);
        match entry.header().entry_type() {
            tar::EntryType::Directory => std::fs::create_dir_all(&path).map_err(|e| format!("{name}: {e}"))?,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| format!("{name}: {e}"))?;
                }
                let mut data = Vec::new();
                entry.read_to_end(&mut data).map_err(|e| format!("{name}: {e}"))?;
                std::fs::write(&path, data).map_err(|e| format!("{name}: {e}"))?;
                #[cfg(unix)]
                if let Ok(mode) = entry.header().mode() {
                    use std::os::unix::fs::PermissionsExt;
                    let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o755 | 0o600));
                }
                files += 1;
            }
            t if t.is_symlink() || t.is_hard_link() => return Err(format!("entry {name:?} is a link; packages hold only files")),
            _ => {}
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::unpack;

    fn tar_gz(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let gz = flate2::write::GzEncoder::new(&mut out, flate2::Compression::fast());
            let mut b = tar::Builder::new(gz);
            for (name, data) in entries {
                let mut h = tar::Header::new_old();
                h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
                h.set_size(data.len() as u64);
                h.set_mode(0o755);
                h.set_entry_type(tar::EntryType::Regular);
                h.set_cksum();
                b.append(&h, *data).unwrap();
            }
            b.into_inner().unwrap().finish().unwrap();
        }
        out
    }

    #[test]
    fn unpacks_files_and_refuses_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("src");
        let n = unpack(&tar_gz(&[("tests/a.sh", b"echo hi\n"), ("b.txt", b"x")]), &dest).unwrap();
        assert_eq!(n, 2);
        assert_eq!(std::fs::read_to_string(dest.join("tests/a.sh")).unwrap(), "echo hi\n");
        let err = unpack(&tar_gz(&[("../escape.txt", b"x")]), &dir.path().join("other")).unwrap_err();
        assert!(err.contains("leave"), "{err}");
        assert!(!dir.path().join("escape.txt").exists());
    }
}
