//! kiln's domain: everything about pipelines, jobs and tests that needs no I/O.
pub mod diag;
pub mod duration;
pub mod labels;
pub mod state;
pub mod mask;
pub mod cron;
pub mod junit;
pub mod shards;
pub mod batchplan;
pub mod testrun;
pub mod quarantine;
pub mod pipeline;
pub mod expand;
mod template;
pub mod notify;
pub mod paths;
pub mod retention;
pub mod waiting;
