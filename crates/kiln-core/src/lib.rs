//! kiln's domain: everything about pipelines, jobs and tests that needs no I/O.
