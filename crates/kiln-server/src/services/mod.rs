//! Background services that run beside the HTTP server.

pub mod duties;
pub mod reaper;
pub mod notifier;
pub mod replicas;
pub mod retention;
