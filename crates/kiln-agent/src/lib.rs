//! kiln-agent
