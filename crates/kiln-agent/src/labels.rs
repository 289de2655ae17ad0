//! The labels an agent offers: given ones, detected ones (os, arch, host), and
//! probed ones — a command run at start whose output becomes a label's value.

use std::collections::BTreeMap;

/// os, arch and host name of this machine.
pub fn detected() -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert("os".into(), std::env::consts::OS.to_string());
    m.insert("arch".into(), std::env::consts::ARCH.to_string());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::process::Command::new("hostname").output().ok().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()))
        .unwrap_or_default();
    if !host.trim().is_empty() {
        m.insert("host".into(), host.trim().to_string());
    }
    m
}

/// Run a probe (`key=command`): its trimmed stdout is the label's value. A
/// probe that fails or prints nothing adds no label, with a warning.
pub fn probe(spec: &str) -> Option<(String, String)> {
    let (key, cmd) = spec.split_once('=')?;
    let out = std::process::Command::new("/bin/sh").arg("-c").arg(cmd).output().ok()?;
    let value = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || value.is_empty() {
        tracing::warn!("label probe {key:?} ({cmd}) gave nothing; the label is left out");
        return None;
    }
    Some((key.trim().to_string(), value))
}
