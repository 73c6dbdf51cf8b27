//! A real batch engine: a single-node Slurm cluster (scripts/slurm-up.sh, Debian's slurm-wlm and munge) runs the
//! pipeline as the shipped `examples/slurm/pipeline.sh` submits it, jobs chained with `--dependency=afterok`:
//! ingest, crop, clean and pack as job arrays, dedup as one job, and a last `merge pack`; the dataset digest must
//! equal the one a single `anime-pipe run` gives. Runs wherever Slurm can be started (root with the packages, or a
//! cluster already up); fails under CI=true when it cannot.
use crate::support::{anime_pipe, shared_dir};
use std::path::Path;
use std::process::Command;

/// True when `sinfo` answers (starting the local cluster if this machine can).
fn slurm_available() -> bool {
    let up = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/slurm-up.sh");
    let ok = Command::new("bash").arg(&up).output().is_ok_and(|o| o.status.success());
    if !ok && std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("CI=true requires a Slurm cluster: scripts/slurm-up.sh failed (see /var/log/slurm/)");
    }
    if !ok {
        eprintln!("note: no Slurm cluster here (scripts/slurm-up.sh failed); skipping the Slurm test");
    }
    ok
}

/// The dataset digest `run` prints, and how many stages it had to run.
fn digest(config: &Path) -> (String, u64) {
    let out = anime_pipe().args(["--json", "-q", "--config"]).arg(config).arg("run").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let last: serde_json::Value =
        serde_json::from_slice(out.stdout.split(|&b| b == b'\n').rfind(|l| !l.is_empty()).unwrap()).unwrap();
    let facts = last["facts"].as_array().unwrap();
    let digest = facts.iter().find(|f| f[0] == "dataset digest").unwrap();
    let ran = last["counts"].as_array().unwrap().iter().find(|c| c[0] == "stages run").unwrap()[1].as_u64().unwrap();
    (digest[1].as_str().unwrap().to_string(), ran)
}

fn workdir(dir: &Path, shared: &Path) -> std::path::PathBuf {
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    let names = [
        "ao7108__Emilia__Emilia_11.jpg",
        "ao7108__Emilia__Emilia_12.jpg",
        "ao7108__Emilia__Emilia_2.jpg",
        "ao7108__Emilia__Emilia_3.jpg",
        "demo__touhou_banner.jpg",
        "ao7108__Emilia__Emilia_20.jpg",
    ];
    for name in names {
        std::fs::copy(shared.join("data/illust").join(name), images.join(name)).unwrap();
    }
    let config = dir.join("pipeline.yaml");
    let yaml = format!(
        "sources: [{{name: illust, path: images}}]\nstages: [ingest, dedup, crop, clean, pack]\n\
         models: {{face_detector: {}}}\n",
        shared.join("models/anime_faceboxes.onnx").display()
    );
    std::fs::write(&config, yaml).unwrap();
    config
}

#[test]
fn a_slurm_job_array_gives_the_single_process_digest() {
    let Some(shared) = shared_dir() else { return };
    if !slurm_available() {
        return;
    }
    let single = tempfile::tempdir().unwrap();
    let (expected, _) = digest(&workdir(single.path(), &shared));

    let cluster = tempfile::tempdir().unwrap();
    let config = workdir(cluster.path(), &shared);
    let dir = config.parent().unwrap();
    // The shipped example submits the chain: ingest, crop, clean and pack as 4-task arrays, dedup as one job, then
    // `merge pack`; WAIT=1 blocks until the merge ends.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/slurm/pipeline.sh");
    let chain = Command::new("bash")
        .arg(&script)
        .current_dir(dir)
        .envs([("PARTITIONS", "4"), ("CPUS", "1"), ("WAIT", "1"), ("ANIME_PIPE", env!("CARGO_BIN_EXE_anime-pipe"))])
        .output()
        .unwrap();
    let logs: String = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("slurm-"))
        .map(|e| format!("{}:\n{}", e.file_name().to_string_lossy(), std::fs::read_to_string(e.path()).unwrap()))
        .collect();
    let submitted = String::from_utf8_lossy(&chain.stderr);
    assert!(chain.status.success(), "the job chain failed:\n{submitted}\n{logs}");
    // Every array task left its part with a completion marker.
    for (stage, tasks) in [("ingest", 4), ("crop", 4), ("clean", 4), ("pack", 4)] {
        let parts: Vec<_> =
            walk(&dir.join("manifests/parts").join(stage)).into_iter().filter(|p| p.ends_with(".done.json")).collect();
        assert_eq!(parts.len(), tasks, "{stage}: {parts:?}\n{logs}");
    }
    // `run` finds every stage up to date (nothing recomputed) and prints the digest of what the jobs wrote.
    assert_eq!(digest(&config), (expected, 0), "{logs}");
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path.to_string_lossy().to_string());
        }
    }
    out
}
