//! `train` writes TensorBoard event files under runs/<name>/: read back with TensorBoard's own reader
//! (`EventAccumulator`), they hold every metrics row's scalars and each epoch's sample grid.
use crate::support::train::*;
use anime_pipe::rundir;
use std::process::Command;

const PYTHON: &str = r#"
import json, sys, io
from tensorboard.backend.event_processing import event_accumulator as ea
acc = ea.EventAccumulator(sys.argv[1], size_guidance={ea.SCALARS: 0, ea.IMAGES: 0})
acc.Reload()
tags = acc.Tags()
scalars = {t: [[e.step, e.value] for e in acc.Scalars(t)] for t in tags["scalars"]}
images = [[e.step, e.width, e.height, e.encoded_image_string[:8].hex()] for e in acc.Images("samples")]
print(json.dumps({"scalars": scalars, "images": images}))
"#;

fn tensorboard_ready() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import tensorboard.backend.event_processing.event_accumulator"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok && std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("CI=true: python3 with tensorboard is required (pip install -r requirements-dev.txt)");
    }
    if !ok {
        eprintln!("note: python3 with tensorboard not found; skipping the TensorBoard read-back");
    }
    ok
}

#[test]
fn train_writes_event_files_that_tensorboard_reads() {
    if !tensorboard_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path();
    write_dataset(w, 16, 256, 2);
    let mut cmd = anime_pipe_in(w);
    cmd.args(["-j", "1", "train"]).args(tiny_flags()).args(["--epochs", "2", "--name", "tb"]);
    ok(&mut cmd);
    let run = run_dir(w, "tb");
    let events: Vec<_> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("events.out.tfevents."))
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");

    let out = Command::new("python3").arg("-c").arg(PYTHON).arg(&run).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rundir::read_metrics(&run.join("metrics.parquet")).unwrap();
    let series = |tag: &str| -> Vec<(u64, f64)> {
        let s = v["scalars"][tag].as_array().unwrap_or_else(|| panic!("no scalar {tag:?}: {}", v["scalars"]));
        s.iter().map(|p| (p[0].as_u64().unwrap(), p[1].as_f64().unwrap())).collect()
    };
    for (tag, of) in [
        ("loss/D", (|r: &rundir::MetricRow| r.loss_d) as fn(&rundir::MetricRow) -> f64),
        ("loss/G", |r| r.loss_g),
        ("D/real (D(x))", |r| r.d_x),
        ("D/fake (D(G(z)))", |r| r.d_gz),
        ("lr/D", |r| r.lr_d),
        ("lr/G", |r| r.lr_g),
        ("perf/images_per_s", |r| r.images_per_s),
    ] {
        let got = series(tag);
        assert_eq!(got.len(), rows.len(), "{tag}: one point per metrics row");
        for ((step, value), row) in got.iter().zip(&rows) {
            assert_eq!(*step, row.step, "{tag}");
            assert!(
                (value - of(row)).abs() <= 1e-6 * of(row).abs().max(1.0),
                "{tag} at {step}: {value} vs {}",
                of(row)
            );
        }
    }
    // One grid per epoch (8x4 cells of 16 px, 2 px borders), PNG, at the epoch's last step (16 batches each).
    let side = |cells: u64| cells * 18 + 2;
    let images = v["images"].as_array().unwrap();
    let got: Vec<(u64, u64, u64, &str)> = images
        .iter()
        .map(|i| (i[0].as_u64().unwrap(), i[1].as_u64().unwrap(), i[2].as_u64().unwrap(), i[3].as_str().unwrap()))
        .collect();
    let png = "89504e470d0a1a0a";
    assert_eq!(got, [(16, side(8), side(4), png), (32, side(8), side(4), png)]);
}
