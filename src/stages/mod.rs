//! One module per pipeline stage. Each stage exposes
//! `fingerprint(ctx) -> String` (blake3 over everything its output depends on: upstream manifests, its settings,
//! source state) and `run(ctx) -> Summary` (which publishes its manifest via `manifest::publish_stage` with that
//! fingerprint). `pipeline` runs the configured stages, skipping those whose stamp matches their fingerprint.
pub mod clean;
pub mod dedup;
pub mod ingest;
pub mod pack;
pub mod pipeline;
pub mod stats;
pub mod verify;
