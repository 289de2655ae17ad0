//! The application layer: each use case of kiln's server, written once. A use case takes
//! typed input (and the caller, when a person or an agent asks), decides permission through
//! `access` (and nowhere else), writes through the store, and is the only place that emits
//! events and wakes agents. The adapters
//! (the JSON API in `api/`, the console in `console/`, webhooks in `sources/hooks.rs`, the
//! agent protocol and `kiln up`) only decode a request, call one use case and encode its
//! answer; the poller and cron (`sources/`) call `trigger` the same way.
//!
//! ```text
//!  api/  console/  sources/  agent_api  kiln up
//!     └──────┬───────┴──────────┴──────────┘
//!            ▼
//!   app::{projects, builds, agents, enrolment, jobs, users, runs, quarantine,
//!         trigger, downstream}  ──► access (who may)
//!            │
//!            ├──► materialize ──► store (uploads/: the packages of uploaded runs)
//!            └──► events + wake-ups (AppState)
//! ```

pub mod access;
pub mod agents;
pub mod builds;
pub mod downstream;
pub mod enrolment;
pub mod jobs;
pub mod projects;
pub mod quarantine;
pub mod runs;
pub mod trigger;
pub mod users;
pub mod waiting;

pub use access::{Need, Reached, Sight};
