//! What the server keeps on disk, kept private: the data folder 0700, the SQLite
//! database (and its -wal/-shm) 0600, generated secrets written 0600 from the first byte,
//! and the key that seals project secrets in the database (`KILN_SECRET_KEY`,
//! `--secret-key-file`, or DATA/secret-key made at first start).

use crate::config::ServerConfig;
use anyhow::Context;
use kiln_store::{SecretKey, Store};
use std::io::Write;
use std::path::{Path, PathBuf};

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}
#[cfg(not(unix))]
fn set_mode(_: &Path, _: u32) -> std::io::Result<()> {
    Ok(())
}

/// Create the data folder (or tighten it) to 0700.
pub fn private_data_folder(data: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(data).with_context(|| format!("failed to create the data folder {}", data.display()))?;
    set_mode(data, 0o700).with_context(|| format!("failed to make the data folder {} private (0700)", data.display()))
}

/// The SQLite database file of `url`, if it is one on disk.
pub fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

/// Make the SQLite database 0600 before SQLite opens it (its -wal and -shm files take
/// the database's mode), and tighten files left wider by older versions.
pub fn private_database(url: &str) -> anyhow::Result<()> {
    let Some(db) = sqlite_file(url) else { return Ok(()) };
    if !db.exists() {
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        o.open(&db).with_context(|| format!("failed to create the database {}", db.display()))?;
    }
    for suffix in ["", "-wal", "-shm"] {
        let f = PathBuf::from(format!("{}{suffix}", db.display()));
        if f.exists() {
            set_mode(&f, 0o600).with_context(|| format!("failed to make {} private (0600)", f.display()))?;
        }
    }
    Ok(())
}

/// Write `text` to `path` readable by this user only (a temporary file is made 0600),
/// atomically: never a moment at a wider mode or half written.
pub fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut f = tempfile::NamedTempFile::new_in(dir).with_context(|| format!("failed to write {}", path.display()))?;
    f.write_all(text.as_bytes()).and_then(|_| f.as_file().sync_all()).with_context(|| format!("failed to write {}", path.display()))?;
    f.persist(path).map_err(|e| e.error).with_context(|| format!("failed to write {}", path.display()))?;
    Ok(())
}

/// Read a secret kept in the data folder, or make one and keep it there (0600). Returns it
/// and whether it was just made.
pub fn kept_secret(path: &Path) -> anyhow::Result<(String, bool)> {
    if let Ok(s) = std::fs::read_to_string(path) {
        if !s.trim().is_empty() {
            return Ok((s.trim().to_string(), false));
        }
    }
    let s = kiln_store::random_token();
    write_private(path, &s)?;
    Ok((s, true))
}

/// The key that seals project secrets: `KILN_SECRET_KEY`, else `--secret-key-file`, else
/// DATA/secret-key — made at first start, but only while the database holds no sealed
/// secret (a lost key is not silently replaced).
pub async fn secret_key(cfg: &ServerConfig, store: &Store) -> anyhow::Result<SecretKey> {
    if let Some(k) = &cfg.secret_key {
        return SecretKey::parse(k).map_err(|e| anyhow::anyhow!("KILN_SECRET_KEY is not a valid key: {e}"));
    }
    let (path, given) = match &cfg.secret_key_file {
        Some(p) => (p.clone(), true),
        None => (cfg.data.join(crate::datafiles::SECRET_KEY), false),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => SecretKey::parse(&text).map_err(|e| anyhow::anyhow!("{} is not a valid secret key: {e}", path.display())),
        Err(e) if given || e.kind() != std::io::ErrorKind::NotFound => Err(anyhow::anyhow!(
            "failed to read the secret key {}: {e} (a key is 64 hex digits, made for example with \
             `head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n' > FILE; chmod 600 FILE`)",
            path.display()
        )),
        Err(_) if store.has_sealed_secrets().await? => anyhow::bail!(
            "the database holds encrypted project secrets but the key to open them is missing: restore {} (0600), \
             or give the key with KILN_SECRET_KEY or --secret-key-file",
            path.display()
        ),
        Err(_) => {
            let key = SecretKey::generate();
            write_private(&path, &key.to_text())?;
            tracing::info!("made the key that seals project secrets: {} (back it up with the database)", path.display());
            Ok(key)
        }
    }
}

/// Open the key, use it, and seal secrets a database from before sealing holds in clear.
pub async fn seal_secrets(cfg: &ServerConfig, store: &Store) -> anyhow::Result<()> {
    store.use_secret_key(secret_key(cfg, store).await?);
    let n = store.seal_plain_secrets().await?;
    if n > 0 {
        tracing::info!("encrypted the secrets of {n} project(s) that were stored in clear");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(sqlite_file("sqlite:/d/kiln.db"), Some(PathBuf::from("/d/kiln.db")));
        assert_eq!(sqlite_file("sqlite:///d/kiln.db?mode=rwc"), Some(PathBuf::from("/d/kiln.db")));
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://h/db"), None);
    }
}
