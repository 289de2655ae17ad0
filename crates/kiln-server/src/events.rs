//! One stream of build events feeding the console, `kiln up`'s summary, notifications and
//! metrics. The event type and its kinds live in `kiln_wire::events`.

pub use kiln_wire::events::{Event, EventKind};

pub type EventSender = tokio::sync::broadcast::Sender<Event>;
