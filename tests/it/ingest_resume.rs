//! A killed ingest loses only what it had not finished: it saves its outcomes as it goes, so the re-run reads and
//! decodes only the rest, and writes the manifest a fresh run writes. Tested with a real process killed (SIGKILL)
//! once its first progress files exist.
use crate::support::ingest_data::count;
use crate::support::{anime_pipe, Ctx};
use anime_pipe::stages::Stage;
use std::path::Path;
use std::process::Stdio;

fn progress_files(workdir: &Path) -> usize {
    std::fs::read_dir(workdir.join("cache/ingest-index")).map_or(0, |entries| {
        entries.filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().starts_with("progress-"))).count()
    })
}

#[test]
fn a_killed_ingest_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let sample = dir.path().join("sample");
    anime_pipe::sample_data::write(&sample, 600, 4).unwrap();
    let config = sample.join("pipeline.yaml");
    let work = dir.path().join("work");
    let mut child = anime_pipe()
        .args(["-q", "-j", "1", "--workdir"])
        .arg(&work)
        .arg("--config")
        .arg(&config)
        .arg("ingest")
        .env("ANIME_PIPE_INGEST_CHECKPOINT", "16")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Wait (polling the workdir, no timer) until two chunks of 16 files are saved, then kill the process.
    while progress_files(&work) < 2 {
        assert!(child.try_wait().unwrap().is_none(), "ingest finished before it could be killed: use more files");
        std::thread::yield_now();
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!work.join("manifests/ingest.parquet").exists(), "killed before it published");

    let yaml = std::fs::read_to_string(&config).unwrap();
    let resumed = Ctx::new(&work, &sample, &yaml, 2).run(Stage::Ingest).unwrap();
    assert!(count(&resumed, "reused") >= 32, "the saved chunks are reused: {resumed:?}");
    assert_eq!(progress_files(&work), 0, "the finished run's index replaces the progress files");

    let fresh = Ctx::new(&dir.path().join("fresh"), &sample, &yaml, 2).run(Stage::Ingest).unwrap();
    // Fewer decodes than a fresh run by about the saved files (a few of them repeat other files' bytes).
    assert!(count(&resumed, "images decoded") + 16 <= count(&fresh, "images decoded"), "{resumed:?} {fresh:?}");
    let manifest = |ctx_root: &Path| std::fs::read(ctx_root.join("manifests/ingest.parquet")).unwrap();
    assert!(manifest(&work) == manifest(&dir.path().join("fresh")), "same manifest as a run never killed");
}
