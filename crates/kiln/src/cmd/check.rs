//! `kiln check`: validate a pipeline file without a server.

use std::path::Path;

pub fn run(file: &Path) -> anyhow::Result<i32> {
    let name = file.display().to_string();
    let text = std::fs::read_to_string(file).map_err(|e| crate::api_client::Exit(2, format!("failed to read {name}: {e}")))?;
    match kiln_core::pipeline::parse(&name, &text) {
        Ok(p) => {
            let jobs = kiln_core::expand::expand(&p);
            println!("{name}: ok — {} job(s): {}", jobs.len(), jobs.iter().map(|j| j.key.as_str()).collect::<Vec<_>>().join(", "));
            Ok(0)
        }
        Err(diags) => {
            for d in &diags {
                eprintln!("{d}");
            }
            eprintln!("{name}: {} error(s)", diags.len());
            Ok(1)
        }
    }
}
