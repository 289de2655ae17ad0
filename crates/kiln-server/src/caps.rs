//! Caps on what one build may ask for, checked before anything is queued. Each
//! refusal names the cap and how to raise it (or that it is fixed).

use kiln_core::pipeline::Pipeline;

/// Jobs one build may have unless `max_jobs_per_build` says otherwise.
pub const DEFAULT_MAX_JOBS_PER_BUILD: usize = 1000;
/// Largest pipeline file read from a repository (uploaded pipelines have the same cap).
pub const MAX_PIPELINE_BYTES: u64 = 1 << 20;

/// JUnit reports one job attempt may upload unless `max_junit_reports_per_job` says otherwise.
pub const DEFAULT_MAX_REPORTS_PER_JOB: u64 = 1000;
/// Test cases one job attempt may report, over all its reports, unless `max_test_cases_per_job` says otherwise.
pub const DEFAULT_MAX_CASES_PER_JOB: u64 = 100_000;

/// The caps on one job attempt's JUnit reports.
#[derive(Debug, Clone, Copy)]
pub struct ReportCaps {
    pub reports: u64,
    pub cases: u64,
}

/// Refuse a report that would take a job attempt past the report or case caps.
pub async fn check_report(store: &kiln_store::Store, caps: ReportCaps, job_id: i64, attempt: i64, path: &str, cases: usize) -> Result<(), crate::error::AppError> {
    let (reports, stored) = store.report_counts(job_id, attempt, path).await?;
    report_refusal(caps, path, reports.max(0) as u64, stored.max(0) as u64, cases).map_or(Ok(()), |m| Err(crate::error::AppError::TooLarge(m)))
}

/// Why a report is refused, given the other reports and cases the attempt has stored.
fn report_refusal(caps: ReportCaps, path: &str, reports: u64, stored: u64, cases: usize) -> Option<String> {
    if reports >= caps.reports {
        return Some(format!(
            "{path}: a job may upload at most {} JUnit reports; merge them, or raise the cap with `kiln server --max-junit-reports-per-job N` (max_junit_reports_per_job in kiln.toml)",
            caps.reports
        ));
    }
    if stored + cases as u64 > caps.cases {
        return Some(format!(
            "{path}: {cases} more test cases would take the job past the cap of {} test cases per job; shard the suite over more jobs, or raise the cap with `kiln server --max-test-cases-per-job N` (max_test_cases_per_job in kiln.toml)",
            caps.cases
        ));
    }
    None
}

/// How many jobs `p` expands to (job × matrix cell × shard), without expanding it.
pub fn planned_jobs(p: &Pipeline) -> usize {
    p.jobs
        .iter()
        .map(|j| {
            let cells = j.matrix.as_ref().map_or(1, |m| m.cells().len());
            let shards = j.tests.as_ref().map_or(1, |t| t.shards.max(1) as usize);
            cells.saturating_mul(shards)
        })
        .fold(0usize, usize::saturating_add)
}

/// Refuse a pipeline that expands to more jobs than `cap`.
pub fn check_jobs(file: &str, p: &Pipeline, cap: usize) -> Result<(), String> {
    let n = planned_jobs(p);
    if n > cap {
        return Err(format!(
            "{file}: the pipeline expands to {n} jobs (jobs × matrix cells × shards), more than the cap of {cap} jobs per build; \
             use fewer cells or shards, or raise the cap with `kiln server --max-jobs-per-build N` (max_jobs_per_build in kiln.toml)"
        ));
    }
    Ok(())
}

/// Refuse a pipeline file bigger than `MAX_PIPELINE_BYTES`.
pub fn check_pipeline_size(file: &str, bytes: u64) -> Result<(), String> {
    if bytes > MAX_PIPELINE_BYTES {
        return Err(format!("{file}: the pipeline file has {bytes} bytes, more than the fixed cap of {MAX_PIPELINE_BYTES} (1 MiB); split it or make it smaller"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn reports_and_cases_per_job_are_capped() {
        let caps = super::ReportCaps { reports: super::DEFAULT_MAX_REPORTS_PER_JOB, cases: super::DEFAULT_MAX_CASES_PER_JOB };
        assert!(super::report_refusal(caps, "r.xml", 999, 0, 10).is_none());
        assert!(super::report_refusal(caps, "r.xml", 1000, 0, 1).unwrap().contains("at most 1000 JUnit reports"));
        assert!(super::report_refusal(caps, "r.xml", 1, 99_990, 10).is_none());
        assert!(super::report_refusal(caps, "r.xml", 1, 99_990, 11).unwrap().contains("cap of 100000 test cases"));
    }

    #[test]
    fn a_matrix_of_shards_is_counted_without_expanding() {
        let p = kiln_core::pipeline::parse(
            ".kiln.yml",
            "jobs:\n  j:\n    matrix:\n      a: [1,2,3,4]\n      b: [1,2,3]\n    tests: { shards: 5, list: \"true\", run: \"true {tests}\" }\n  k:\n    steps: [\"true\"]\n",
        )
        .unwrap();
        assert_eq!(super::planned_jobs(&p), 61);
        assert_eq!(super::planned_jobs(&p), kiln_core::expand::expand(&p).len());
        let e = super::check_jobs(".kiln.yml", &p, 60).unwrap_err();
        assert!(e.contains("61 jobs") && e.contains("cap of 60") && e.contains("--max-jobs-per-build"), "{e}");
        assert!(super::check_jobs(".kiln.yml", &p, 61).is_ok());
    }
}
