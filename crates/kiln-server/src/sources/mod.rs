//! Change sources: the ways a change reaches kiln from outside — webhooks from forges,
//! `kiln notify` from a post-receive hook, the poller and cron schedules. Each ends in
//! `app::trigger::start_build` (the builds after an upstream project's build passes are a use
//! case of their own, `app::downstream`).

pub mod forge;
pub mod hooks;
pub mod poller;
pub mod replay;
pub mod schedule;
