//! kiln-wire
