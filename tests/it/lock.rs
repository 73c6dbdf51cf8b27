//! `anime-pipe lock`, `run --locked` and `diff`, end to end through the binary on `sample-data` output: the lock
//! holds in another checkout of the same sources, and each kind of change fails naming the stage that changed.
use crate::support::anime_pipe;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// `sample-data` (12 faces, data stages only), run and locked once; each test works on a copy.
fn baseline() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("demo");
        ok(anime_pipe().arg("sample-data").arg(&d).args(["--count", "12"]));
        let yaml = std::fs::read_to_string(d.join("pipeline.yaml")).unwrap();
        let data_only =
            yaml.replace("stages: [ingest, dedup, clean, pack, train, eval]", "stages: [ingest, dedup, clean, pack]");
        assert_ne!(yaml, data_only, "the sample config lists train and eval");
        std::fs::write(d.join("pipeline.yaml"), data_only).unwrap();
        ok(&mut cmd(&d, &["run"]));
        ok(&mut cmd(&d, &["lock"]));
        (dir, d)
    })
    .1
}

/// A copy of the baseline (sources, workdir and pipeline.lock) in a new directory: another checkout.
fn checkout() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().join("checkout");
    for entry in walkdir::WalkDir::new(baseline()) {
        let entry = entry.unwrap();
        let target = to.join(entry.path().strip_prefix(baseline()).unwrap());
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
    (dir, to)
}

fn cmd(dir: &Path, args: &[&str]) -> std::process::Command {
    let mut c = anime_pipe();
    c.arg("--config").arg(dir.join("pipeline.yaml")).args(["-j", "2", "-q"]).args(args);
    c
}

fn ok(c: &mut std::process::Command) -> String {
    let out = c.output().unwrap();
    assert!(out.status.success(), "{c:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// `run --locked`: its exit status and stderr.
fn locked(dir: &Path) -> (i32, String) {
    let out = cmd(dir, &["run", "--locked"]).output().unwrap();
    (out.status.code().unwrap(), String::from_utf8_lossy(&out.stderr).to_string())
}

/// The stderr line about `stage` (`<stage>: ...`), if any.
fn line<'a>(stderr: &'a str, stage: &str) -> Option<&'a str> {
    stderr.lines().map(str::trim).find(|l| l.starts_with(&format!("{stage}: ")))
}

fn png(seed: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(96, 96, |x, y| image::Rgb([(x * 2) as u8 ^ seed, (y * 2) as u8, seed]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

#[test]
fn unchanged_sources_in_another_checkout_pass() {
    let (_keep, dir) = checkout();
    let (code, stderr) = locked(&dir);
    assert_eq!(code, 0, "{stderr}");
    let lock = std::fs::read_to_string(dir.join("pipeline.lock")).unwrap();
    for fact in
        ["anime_pipe = ", "onnxruntime = \"1.31.1\"", "dataset_digest = ", "[clean]", "status.rejected = ", "[shards]"]
    {
        assert!(lock.contains(fact), "{fact}: {lock}");
    }
}

#[test]
fn an_added_image_fails_naming_ingest() {
    let (_keep, dir) = checkout();
    std::fs::write(dir.join("images/new_face.png"), png(7)).unwrap();
    let (code, stderr) = locked(&dir);
    assert_eq!(code, 3, "{stderr}");
    let ingest = line(&stderr, "ingest").unwrap_or_else(|| panic!("{stderr}"));
    assert!(ingest.contains("1 more rows") && ingest.contains("manifest differs"), "{ingest}");
    assert!(stderr.contains("anime-pipe diff"), "names the command that shows the rows: {stderr}");
    // The rows: the new image is the one added row of ingest.
    let out = anime_pipe().arg("diff").arg(baseline()).arg(&dir).args(["--stage", "ingest"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("+ images/new_face.png  ok"), "{table}");
}

#[test]
fn a_removed_image_fails_naming_ingest() {
    let (_keep, dir) = checkout();
    std::fs::remove_file(dir.join("images/face_0004.png")).unwrap();
    let (code, stderr) = locked(&dir);
    assert_eq!(code, 3, "{stderr}");
    let ingest = line(&stderr, "ingest").unwrap_or_else(|| panic!("{stderr}"));
    assert!(ingest.contains("1 fewer rows"), "{ingest}");
    assert!(line(&stderr, "pack").is_some_and(|l| l.contains("1 fewer rows")), "{stderr}");
}

#[test]
fn a_modified_image_fails_and_diff_shows_its_row() {
    let (_keep, dir) = checkout();
    std::fs::write(dir.join("images/face_0004.png"), png(9)).unwrap();
    let (code, stderr) = locked(&dir);
    assert_eq!(code, 3, "{stderr}");
    let ingest = line(&stderr, "ingest").unwrap_or_else(|| panic!("{stderr}"));
    assert!(!ingest.contains("rows") && ingest.contains("manifest differs"), "same rows, other content: {ingest}");
    let out = anime_pipe().args(["--json", "diff"]).arg(baseline()).arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["identical"], false);
    let ingest = v["stages"].as_array().unwrap().iter().find(|s| s["stage"] == "ingest").unwrap();
    assert_eq!(ingest["changed"][0]["key"], "images/face_0004.png");
    let columns: Vec<&str> =
        ingest["changed"][0]["changes"].as_array().unwrap().iter().map(|c| c["column"].as_str().unwrap()).collect();
    assert!(columns.contains(&"object"), "{columns:?}");
    assert_eq!(ingest["added"].as_array().unwrap().len() + ingest["removed"].as_array().unwrap().len(), 0);
}

#[test]
fn a_changed_threshold_fails_naming_clean_and_not_the_stages_before() {
    let (_keep, dir) = checkout();
    let yaml = std::fs::read_to_string(dir.join("pipeline.yaml")).unwrap();
    std::fs::write(dir.join("pipeline.yaml"), format!("{yaml}clean:\n  min_size: 100\n")).unwrap();
    let (code, stderr) = locked(&dir);
    assert_eq!(code, 3, "{stderr}");
    let clean = line(&stderr, "clean").unwrap_or_else(|| panic!("{stderr}"));
    assert!(clean.contains("more rejected") && clean.contains("too_small +"), "{clean}");
    assert!(clean.contains("settings differ") && clean.contains("manifest differs"), "{clean}");
    assert!(line(&stderr, "pack").is_some_and(|l| l.contains("upstream manifest changed")), "{stderr}");
    assert!(line(&stderr, "ingest").is_none() && line(&stderr, "dedup").is_none(), "{stderr}");
    // The lock compared with the workdir says the same, without running anything.
    let out = cmd(&dir, &["diff"]).arg(dir.join("pipeline.lock")).arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).lines().any(|l| l.starts_with("clean: ")));
}

#[test]
fn diff_of_identical_manifests_exits_0_and_lock_refuses_stale_stages() {
    let (_keep, dir) = checkout();
    let clean = |d: &Path| d.join("manifests/clean.parquet");
    let out = anime_pipe().arg("diff").arg(clean(baseline())).arg(clean(&dir)).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no differences"));
    ok(&mut cmd(&dir, &["run"]));
    let yaml = std::fs::read_to_string(dir.join("pipeline.yaml")).unwrap();
    std::fs::write(dir.join("pipeline.yaml"), format!("{yaml}clean:\n  min_size: 100\n")).unwrap();
    let out = cmd(&dir, &["lock"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("clean is not up to date"));
}
