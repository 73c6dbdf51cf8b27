//! Two processes in one workdir: a stage holds its workdir lock, a second process of the same stage waits (and
//! says so), and two concurrent packs leave a workdir that `verify` accepts. Real processes, no sleeps.
use crate::support::anime_pipe;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;

/// sample-data + ingest, dedup and clean through the binary: a workdir ready for `pack`.
fn ready_for_pack(dir: &Path) -> std::path::PathBuf {
    let data = dir.join("data");
    assert!(anime_pipe().args(["-q", "sample-data"]).arg(&data).args(["--count", "24"]).status().unwrap().success());
    let config = data.join("pipeline.yaml");
    for stage in ["ingest", "dedup", "clean"] {
        let status = anime_pipe().args(["-q", "-j", "1", "--config"]).arg(&config).arg(stage).status().unwrap();
        assert!(status.success(), "{stage}");
    }
    config
}

#[test]
fn a_second_process_of_the_same_stage_waits_for_the_lock_holder() {
    let dir = tempfile::tempdir().unwrap();
    let config = ready_for_pack(dir.path());
    let workdir = config.parent().unwrap();
    // This test process plays the first `pack`: it holds the lock the stage takes.
    let lock_path = workdir.join("locks/pack.lock");
    std::fs::create_dir_all(lock_path.parent().unwrap()).unwrap();
    let held = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).unwrap();
    held.lock().unwrap();
    let mut second = anime_pipe()
        .args(["-j", "1", "--config"])
        .arg(&config)
        .arg("pack")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(second.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains("waiting for another process running `pack`"), "{line:?}");
    // It waits: nothing published yet.
    assert!(!workdir.join("manifests/pack.parquet").exists());
    assert!(second.try_wait().unwrap().is_none(), "the second pack must still be waiting");
    drop(held);
    assert!(second.wait().unwrap().success());
    assert!(workdir.join("manifests/pack.parquet").exists());
}

#[test]
fn two_packs_started_at_once_leave_a_workdir_that_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let config = ready_for_pack(dir.path());
    let workdir = config.parent().unwrap();
    let spawn = |size: &str| {
        anime_pipe().args(["-q", "-j", "1", "--config"]).arg(&config).args(["pack", "--size", size]).spawn().unwrap()
    };
    let (mut a, mut b) = (spawn("64"), spawn("32"));
    assert!(a.wait().unwrap().success() && b.wait().unwrap().success());
    // Whichever ran second wrote the manifest; every shard it lists is there and intact, none is missing.
    let verify = anime_pipe().args(["-q", "--config"]).arg(&config).arg("verify").output().unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
    let shards = anime_pipe::digest::shard_paths(&anime_pipe::workdir::Workdir::open(workdir).unwrap()).unwrap();
    assert!(!shards.is_empty());
    for shard in shards {
        assert!(workdir.join(&shard).is_file(), "{shard} listed but missing");
    }
}
