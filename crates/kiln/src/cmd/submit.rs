//! `kiln submit PROJECT FILES… [--pipeline FILE] [--wait]`: an uploaded test run
//! from local files (folders are walked; .zip/.tar/.tar.gz/.tgz files are sent
//! as archives the server unpacks). Exit code with --wait: 0 passed, 1 failed, 2 error.

use super::builds::follow_to_end;
use super::{api, print_json};
use crate::api_client::{seg, Exit};
use crate::ClientOpts;
use clap::Args;
use kiln_wire::api::Build;
use reqwest::multipart::{Form, Part};
use std::path::{Component, Path, PathBuf};

#[derive(Args)]
pub struct SubmitArgs {
    /// The project whose pipeline runs the files (and whose visibility the run has).
    project: String,
    /// Files, folders or archives (.zip, .tar, .tar.gz, .tgz) to upload.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// A pipeline file to run instead of the project's (default: a .kiln.yml among the files, else the project's).
    #[arg(long)]
    pipeline: Option<PathBuf>,
    /// Follow the run live and exit with its result (0 passed, 1 failed, 2 error).
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    client: ClientOpts,
}

fn is_archive(p: &Path) -> bool {
    let n = p.to_string_lossy().to_ascii_lowercase();
    [".zip", ".tar", ".tar.gz", ".tgz"].iter().any(|s| n.ends_with(s))
}

/// The name a file is uploaded under: its path as given when that is relative and
/// stays below the current folder, else its file name.
fn upload_name(given: &Path) -> String {
    let plain = given.is_relative() && given.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    let p = if plain { given.to_path_buf() } else { PathBuf::from(given.file_name().unwrap_or_default()) };
    p.components().filter(|c| matches!(c, Component::Normal(_))).map(|c| c.as_os_str().to_string_lossy().into_owned()).collect::<Vec<_>>().join("/")
}

/// (upload name, path) of every file under `root`, named relative to `base`.
fn walk(root: &Path, base: &str, out: &mut Vec<(String, PathBuf)>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(root)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = format!("{base}/{}", e.file_name().to_string_lossy());
        let t = e.file_type()?;
        if t.is_dir() {
            if e.file_name() != ".git" {
                walk(&e.path(), &name, out)?;
            }
        } else if t.is_file() {
            out.push((name.trim_start_matches('/').to_string(), e.path()));
        }
    }
    Ok(())
}

async fn part(path: &Path, name: String) -> anyhow::Result<Part> {
    let data = tokio::fs::read(path).await.map_err(|e| Exit(2, format!("failed to read {}: {e}", path.display())))?;
    Ok(Part::bytes(data).file_name(name))
}

pub async fn run(a: SubmitArgs) -> anyhow::Result<i32> {
    let mut form = Form::new();
    let mut count = 0;
    for f in &a.files {
        let meta = std::fs::metadata(f).map_err(|e| Exit(2, format!("failed to read {}: {e}", f.display())))?;
        if meta.is_dir() {
            let mut files = Vec::new();
            walk(f, &upload_name(f), &mut files).map_err(|e| Exit(2, format!("failed to read the folder {}: {e}", f.display())))?;
            for (name, path) in files {
                form = form.part("file", part(&path, name).await?);
                count += 1;
            }
        } else if is_archive(f) {
            let name = f.file_name().unwrap_or_default().to_string_lossy().into_owned();
            form = form.part("archive", part(f, name).await?);
            count += 1;
        } else {
            form = form.part("file", part(f, upload_name(f)).await?);
            count += 1;
        }
    }
    if count == 0 {
        return Err(Exit(2, "nothing to upload: the folders given hold no file".into()).into());
    }
    if let Some(p) = &a.pipeline {
        form = form.part("pipeline", part(p, ".kiln.yml".into()).await?);
    }
    let api = api(&a.client);
    let b: Build = api.post_multipart(&format!("/api/v1/projects/{}/runs", seg(&a.project)), form).await?;
    if !a.wait {
        if a.client.json {
            print_json(&b)
        } else {
            println!("created test run #{} of {} ({} upload{}): {}/builds/{}", b.id, b.project, count, if count == 1 { "" } else { "s" }, a.client.server.trim_end_matches('/'), b.id);
        }
        return Ok(0);
    }
    if !a.client.json {
        println!("created test run #{} of {} — following it", b.id, b.project);
    }
    follow_to_end(&api, b.id, a.client.json).await
}

#[cfg(test)]
mod tests {
    use super::upload_name;
    use std::path::Path;

    #[test]
    fn names_stay_relative() {
        assert_eq!(upload_name(Path::new("tests/test_a.py")), "tests/test_a.py");
        assert_eq!(upload_name(Path::new("./t.py")), "t.py");
        assert_eq!(upload_name(Path::new("../x/t.py")), "t.py");
        assert_eq!(upload_name(Path::new("/tmp/t.py")), "t.py");
    }
}
