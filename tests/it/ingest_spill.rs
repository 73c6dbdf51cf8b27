//! Ingest sorts its rows through runs on disk once a collection is past what it holds in memory: forced to spill
//! every few rows, a real run writes the very manifest and re-run index of a run that held everything, including
//! repeated names whose keys are assigned across runs, removes its runs, and says where to point TMPDIR when it
//! cannot write them.
use crate::support::anime_pipe;
use crate::support::ingest_data::*;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A folder (pictures in reverse name order, a repeated content, an empty file, a non-UTF-8 name), a tar whose
/// entry names repeat (`a.png` three times, next to a file really named `a.png#2`) out of name order, and the
/// folder's subfolder as a third source.
fn sources(root: &Path) -> String {
    let folder = root.join("folder");
    fs::create_dir_all(folder.join("sub")).unwrap();
    for i in (0..23u32).rev() {
        fs::write(folder.join(format!("sub/p{i:02}.png")), png(&picture(24 + i, 24, u64::from(i)))).unwrap();
    }
    fs::write(folder.join("copy.png"), png(&picture(24, 24, 0))).unwrap();
    fs::write(folder.join("empty.jpg"), b"").unwrap();
    fs::write(folder.join(std::ffi::OsStr::from_bytes(b"bad\xffname.png")), png(&picture(30, 30, 99))).unwrap();
    let pictures: Vec<Vec<u8>> = (0..9).map(|i| png(&picture(20, 20 + i, 100 + u64::from(i)))).collect();
    let regular = tar::EntryType::Regular;
    let entries: Vec<(&[u8], &[u8], tar::EntryType)> = vec![
        (b"z.png", &pictures[0], regular),
        (b"a.png", &pictures[1], regular),
        (b"m.png", &pictures[2], regular),
        (b"a.png", &pictures[3], regular),
        (b"a.png#2", &pictures[4], regular),
        (b"b.png", &pictures[5], regular),
        (b"a.png", &pictures[6], regular),
        (b"c.txt", b"not a picture", regular),
        (b"y.png", &pictures[7], regular),
    ];
    fs::write(root.join("pack.tar"), tar_bytes(&entries)).unwrap();
    // The subfolder again as a source of its own: sources that overlap are read from the re-run index too.
    sources_yaml(&[("f", &folder), ("t", &root.join("pack.tar")), ("s", &folder.join("sub"))])
}

/// What one ingest wrote: the manifest, the re-run index, and the summary's (images decoded, reused).
struct Written {
    manifest: Vec<u8>,
    index: Vec<u8>,
    decoded_reused: (u64, u64),
}

/// Runs ingest in `workdir` with `env`: what it wrote, or its error output.
fn ingest(config: &Path, workdir: &Path, env: &[(&str, &Path)]) -> Result<Written, String> {
    let mut cmd = anime_pipe();
    cmd.args(["--json", "-q", "-j", "2", "--workdir"]).arg(workdir).arg("--config").arg(config).arg("ingest");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let read = |p: &str| fs::read(workdir.join(p)).unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let count = |what: &str| {
        let counts = summary["counts"].as_array().unwrap();
        counts.iter().find(|c| c[0] == what).and_then(|c| c[1].as_u64()).unwrap()
    };
    let decoded_reused = (count("images decoded"), count("reused"));
    Ok(Written {
        manifest: read("manifests/ingest.parquet"),
        index: read("cache/ingest-index.parquet"),
        decoded_reused,
    })
}

#[test]
fn ingest_through_runs_on_disk_writes_what_an_in_memory_ingest_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("pipeline.yaml");
    fs::write(&config, sources(tmp.path())).unwrap();
    let spill_dir = tmp.path().join("spill");
    fs::create_dir(&spill_dir).unwrap();
    let spilled: &[(&str, &Path)] = &[("ANIME_PIPE_INGEST_SPILL_ROWS", Path::new("4")), ("TMPDIR", &spill_dir)];

    let in_memory = ingest(&config, &tmp.path().join("memory"), &[]).unwrap();
    let through_runs = ingest(&config, &tmp.path().join("runs"), spilled).unwrap();
    assert!(in_memory.manifest == through_runs.manifest, "the same manifest bytes");
    assert!(in_memory.index == through_runs.index, "the same re-run index bytes");
    assert_eq!(in_memory.decoded_reused.1, 0);
    assert_eq!(fs::read_dir(&spill_dir).unwrap().count(), 0, "the runs are removed once merged");

    let rows = rows(&tmp.path().join("runs"), "ingest");
    assert_eq!(rows.len(), 26 + 9 + 23);
    let tar_keys: Vec<&str> = rows.iter().filter(|r| r.source == "t").map(|r| r.key.as_str()).collect();
    // Canonical order is by path then entry order; the third `a.png` skips `#2`, which a real file holds.
    assert_eq!(
        tar_keys,
        ["t/a.png", "t/a.png#3", "t/a.png#4", "t/a.png#2", "t/b.png", "t/c.txt", "t/m.png", "t/y.png", "t/z.png"]
    );

    // A re-run through runs reads every file's outcome from the index it wrote (the subfolder's files, visited
    // twice, included), decodes nothing, and writes the same manifest and index again.
    let again = ingest(&config, &tmp.path().join("runs"), spilled).unwrap();
    assert_eq!(again.decoded_reused, (0, 58));
    assert!(again.manifest == in_memory.manifest && again.index == in_memory.index);
}

#[test]
fn an_ingest_that_cannot_write_its_runs_names_tmpdir() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("pipeline.yaml");
    fs::write(&config, sources(tmp.path())).unwrap();
    let missing = tmp.path().join("no-such-folder");
    let env: &[(&str, &Path)] = &[("ANIME_PIPE_INGEST_SPILL_ROWS", Path::new("4")), ("TMPDIR", &missing)];
    let Err(err) = ingest(&config, &tmp.path().join("w"), env) else { panic!("ingest wrote its runs") };
    assert!(err.contains("TMPDIR"), "{err}");
    assert!(!tmp.path().join("w/manifests/ingest.parquet").exists(), "nothing published");
}
