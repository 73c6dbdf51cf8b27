//! Shared helpers for the integration tests (`shared_dir`, `anime_pipe`) and, one submodule per family of tests,
//! their fixtures.
pub mod dataset;
pub mod eval;
pub mod faces;
pub mod ingest_data;
pub mod train;

use std::path::PathBuf;

/// `../shared` beside the checkout, when present. Tests that need it call this: without it they return early
/// (saying so) on a developer machine, and FAIL in CI (`CI=true`), where the shared data must be present.
pub fn shared_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared");
    if dir.join("data").is_dir() {
        return Some(dir.canonicalize().unwrap());
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("../shared/data is missing, and CI=true requires it (shared data must sit beside the checkout)");
    }
    eprintln!("note: ../shared not found; skipping the parts of this test that need it");
    None
}

/// The built `anime-pipe` binary, for end-to-end tests of the command line.
pub fn anime_pipe() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_anime-pipe"))
}
