//! Change sources: every way a change reaches kiln — webhooks from forges,
//! `kiln notify` from a post-receive hook, the poller, cron schedules, and
//! downstream builds after an upstream project's build passes. Each ends in
//! `app::trigger::start_build`.

pub mod forge;
pub mod hooks;
pub mod poller;
pub mod replay;
pub mod schedule;
