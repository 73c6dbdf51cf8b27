//! `anime-pipe train` / `sample` end to end on tiny packed datasets (16x16 synthetic faces, widths 8): the run
//! directory contract, exact resume, the divergence stop, the CUDA error, and agreement of the exported generator
//! with Python's onnxruntime.
use crate::support;
use crate::support::train::*;
use anime_pipe::rundir;
use anime_pipe::train::checkpoint;
use std::collections::BTreeMap;
use std::path::Path;

/// 256 images of 16x16 in two shards: 16 batches of 16 per epoch.
fn dataset() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_dataset(dir.path(), 16, 256, 2);
    dir
}

fn train(dir: &Path, extra: &str) -> std::process::Command {
    let mut cmd = anime_pipe_in(dir);
    cmd.args(["-j", "1", "train"]).args(tiny_flags()).args(extra.split_whitespace());
    cmd
}

fn decode(path: &Path) -> image::RgbImage {
    image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).to_rgb8()
}

/// Grid side for `cells` cells of 16 px with the documented 2 px border.
fn grid_side(cells: u32) -> u32 {
    cells * (16 + 2) + 2
}

#[test]
fn short_run_writes_the_documented_run_directory() {
    let data = dataset();
    let w = data.path();
    ok(&mut train(w, "--epochs 3 --checkpoint-every 2 --name tiny"));
    let run = run_dir(w, "tiny");

    // config.json: the resolved config, the architecture as built, the data used.
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["train"]["image_size"], 16);
    assert_eq!(config["arch"]["nz"], 16);
    assert_eq!(config["dataset"]["images"], 256);
    assert_eq!(config["dataset"]["batches_per_epoch"], 16);
    assert_eq!(config["dataset"]["digest"].as_str().unwrap().len(), 64);

    // Metrics: every 4th step, and each epoch end (16, 32, 48 are multiples of 4 already).
    let rows = rundir::read_metrics(&run.join("metrics.parquet")).unwrap();
    let steps: Vec<u64> = rows.iter().map(|r| r.step).collect();
    assert_eq!(steps, (1..=12).map(|i| i * 4).collect::<Vec<u64>>());
    for r in &rows {
        assert!(r.loss_d.is_finite() && r.loss_g.is_finite() && r.loss_d > 0.0 && r.loss_g > 0.0, "{r:?}");
        assert!((0.0..=1.0).contains(&r.d_x) && (0.0..=1.0).contains(&r.d_gz), "{r:?}");
        assert_eq!(u64::from(r.epoch), (r.step - 1) / 16 + 1, "step {} belongs to epoch {}", r.step, r.epoch);
        assert_eq!((r.lr_d, r.lr_g), (2e-4, 2e-4));
        assert!(r.images_per_s > 0.0);
    }

    // Pictures: curves, one 8x4 grid per epoch, the progression (first grid row of each epoch).
    assert_eq!(decode(&run.join("loss.png")).dimensions(), (1000, 700));
    assert_eq!(files_in(&run.join("samples")), ["epoch-0001.png", "epoch-0002.png", "epoch-0003.png"]);
    for name in files_in(&run.join("samples")) {
        assert_eq!(decode(&run.join("samples").join(name)).dimensions(), (grid_side(8), grid_side(4)));
    }
    let progress = decode(&run.join("progress.png"));
    assert_eq!(progress.dimensions(), (grid_side(8), 3 * 18 + 2));
    for (row, epoch) in [(0u32, 1), (1, 2), (2, 3)] {
        // Row r of the progression is the first grid row (border above it included) of the r-th sampled epoch.
        let grid = decode(&run.join(format!("samples/epoch-{epoch:04}.png")));
        let strip = |img: &image::RgbImage, y0: u32| image::imageops::crop_imm(img, 0, y0, grid_side(8), 18).to_image();
        assert!(strip(&progress, row * 18) == strip(&grid, 0), "progress row {row} is epoch {epoch}'s first row");
    }

    // Checkpoints every 2 epochs and at the end, each with its generator; generator.onnx = the latest.
    assert_eq!(
        files_in(&run.join("checkpoints")),
        ["epoch-0002.generator.onnx", "epoch-0002.safetensors", "epoch-0003.generator.onnx", "epoch-0003.safetensors"]
    );
    assert_eq!(
        std::fs::read(run.join("generator.onnx")).unwrap(),
        std::fs::read(run.join("checkpoints/epoch-0003.generator.onnx")).unwrap()
    );
    let ckpt = checkpoint::read(&run.join("checkpoints/epoch-0003.safetensors")).unwrap();
    let p = &ckpt.meta.progress;
    assert_eq!((p.step(), p.epoch, p.runner.d_updates, p.runner.g_updates), (48, 3, 48, 48));
    assert_eq!((p.loader.epoch, p.loader.batch), (3, 0));
    // The 16x16 DCGAN of the gan module docs (L = 2 blocks), nz 16, ngf = ndf = 8: parameters, moments, BN stats.
    let expected: BTreeMap<&str, Vec<usize>> = BTreeMap::from([
        ("g.convt1.weight", vec![16, 16, 4, 4]),
        ("g.bn1.weight", vec![16]),
        ("g.convt2.weight", vec![16, 8, 4, 4]),
        ("g.bn2.weight", vec![8]),
        ("g.convt3.weight", vec![8, 3, 4, 4]),
        ("d.conv1.weight", vec![8, 3, 4, 4]),
        ("d.conv2.weight", vec![16, 8, 4, 4]),
        ("d.bn2.bias", vec![16]),
        ("d.conv3.weight", vec![1, 16, 4, 4]),
    ]);
    for (name, shape) in &expected {
        assert_eq!(&ckpt.tensors[*name].0, shape, "{name}");
        for moment in ["adam_m", "adam_v"] {
            let (s, data) = &ckpt.tensors[&format!("{name}.{moment}")];
            assert_eq!(s, shape);
            assert!(data.iter().any(|v| *v != 0.0), "{name}.{moment} never updated");
        }
    }
    let (_, var) = &ckpt.tensors["g.bn1.running_var"];
    assert!(var.iter().any(|v| (v - 1.0).abs() > 1e-3), "running variance still at its initial 1");
    assert!(ckpt.tensors.values().all(|(_, d)| d.iter().all(|v| v.is_finite())));

    // The loader alone, as `--bench-loader` measures it.
    let out = anime_pipe_in(w).args(["--json", "train", "--bench-loader", "40"]).args(tiny_flags()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let facts: BTreeMap<String, String> = serde_json::from_value(summary["facts"].clone())
        .map(|v: Vec<(String, String)>| v.into_iter().collect())
        .unwrap();
    let rate: f64 = facts["batches/s"].parse().unwrap();
    eprintln!("loader: {rate} batches/s of 16 images at 16x16");
    assert!(rate > 0.0);
}

#[test]
fn sample_writes_grids_and_walks_whose_ends_are_the_random_points() {
    let data = dataset();
    let w = data.path();
    ok(&mut train(w, "--epochs 1 --name s"));
    let model = run_dir(w, "s").join("generator.onnx");
    let sample = |args: &str, out: &str| {
        let mut cmd = anime_pipe_in(w);
        cmd.args(["sample", "--model"]).arg(&model).arg("--out").arg(w.join(out)).args(args.split_whitespace());
        ok(&mut cmd);
        decode(&w.join(out))
    };
    let grid = sample("-n 6 --grid 6x1 --seed 5", "grid.png");
    assert_eq!(grid.dimensions(), (grid_side(6), grid_side(1)));
    assert_eq!(sample("-n 64 --grid 8x8 --seed 5", "g8.png").dimensions(), (grid_side(8), grid_side(8)));
    assert_eq!(sample("-n 10 --seed 5 --scale 2", "auto.png").dimensions(), (2 * grid_side(4), 2 * grid_side(3)));
    // Three walks of 5 from the same seed: walk r runs from random point 2r to point 2r+1, i.e. from cell 2r to
    // cell 2r+1 of the 6-image grid above (same latents: ChaCha8(seed), standard normal, row-major).
    let walk = sample("--interpolate 5 --rows 3 --seed 5", "walk.png");
    assert_eq!(walk.dimensions(), (grid_side(5), grid_side(3)));
    let cell = |img: &image::RgbImage, col: u32, row: u32| {
        image::imageops::crop_imm(img, 2 + col * 18, 2 + row * 18, 16, 16).to_image().into_raw()
    };
    for r in 0..3 {
        assert_eq!(cell(&walk, 0, r), cell(&grid, 2 * r, 0), "walk {r} starts at point {}", 2 * r);
        assert_eq!(cell(&walk, 4, r), cell(&grid, 2 * r + 1, 0), "walk {r} ends at point {}", 2 * r + 1);
        assert_ne!(cell(&walk, 2, r), cell(&walk, 0, r), "walk {r} moves");
    }
}

/// Runs a `--json` train command that must succeed; returns its "steps this session" count.
fn steps_this_session(cmd: &mut std::process::Command) -> u64 {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let counts: Vec<(String, u64)> = serde_json::from_value(summary["counts"].clone()).unwrap();
    counts.into_iter().find(|(k, _)| k == "steps this session").expect("count present").1
}

/// Every tensor of two checkpoints, compared bit for bit.
fn assert_same_state(a: &Path, b: &Path) {
    let (a, b) = (checkpoint::read(a).unwrap(), checkpoint::read(b).unwrap());
    assert_eq!(a.meta, b.meta);
    assert_eq!(a.tensors.keys().collect::<Vec<_>>(), b.tensors.keys().collect::<Vec<_>>());
    for (name, (shape, data)) in &a.tensors {
        let (s, d) = &b.tensors[name];
        assert_eq!(shape, s, "{name}");
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert!(bits(data) == bits(d), "{name} differs after resume");
    }
}

/// Trains `steps` straight, and `cut` steps + resume to `steps` with `resume_threads` threads; the final states
/// must be identical.
fn check_resume(extra: &str, cut: u64, steps: u64, resume_threads: &str) {
    let data = dataset();
    let w = data.path();
    ok(&mut train(w, &format!("{extra} --steps {steps} --name straight")));
    ok(&mut train(w, &format!("{extra} --steps {cut} --name cut")));
    let cut_dir = run_dir(w, "cut");
    let mid = cut_dir.join(format!("checkpoints/step-{cut:08}.safetensors"));
    assert!(mid.exists(), "a run stopped inside an epoch leaves a step checkpoint: {:?}", files_in(&cut_dir));
    let mut resume = anime_pipe_in(w);
    resume.args(["-j", resume_threads, "--json", "train", "--resume"]).arg(&cut_dir);
    resume.args(["--steps", &steps.to_string()]);
    assert_eq!(steps_this_session(&mut resume), steps - cut, "the resumed run starts at the cut");
    let last = format!("checkpoints/step-{steps:08}.safetensors");
    assert_same_state(&run_dir(w, "straight").join(&last), &cut_dir.join(&last));
    assert_eq!(
        std::fs::read(run_dir(w, "straight").join("generator.onnx")).unwrap(),
        std::fs::read(cut_dir.join("generator.onnx")).unwrap()
    );
    // The logged losses agree wherever both runs logged, and the resumed log has no step twice.
    let straight = rundir::read_metrics(&run_dir(w, "straight").join("metrics.parquet")).unwrap();
    let resumed = rundir::read_metrics(&cut_dir.join("metrics.parquet")).unwrap();
    assert!(resumed.windows(2).all(|p| p[0].step < p[1].step));
    let mut common = 0;
    for r in &resumed {
        if let Some(s) = straight.iter().find(|s| s.step == r.step) {
            assert_eq!((s.loss_d, s.loss_g, s.d_x, s.d_gz), (r.loss_d, r.loss_g, r.d_x, r.d_gz), "step {}", r.step);
            common += 1;
        }
    }
    assert!(common >= 3, "{common} common rows");
}

#[test]
fn resume_mid_epoch_is_bit_identical_with_augmentation_noisy_labels_and_other_threads() {
    // 24 steps cross the epoch boundary at 16; the cut at 11 is mid-epoch. Flips, translations, crops, rotations
    // and label flips exercise every random stream. The resumed part runs on 2 threads: the result does not
    // depend on the thread count.
    check_resume("--translate 2 --crop 0.15 --rotate 8 --label-flip 0.1", 11, 24, "2");
}

#[test]
fn with_a_moving_average_g_exports_both_weights_and_resumes_bit_identically() {
    // The average (generator.onnx) and the trained weights (generator.raw.onnx), per checkpoint too; the
    // average is checkpointed state, so a resumed run ends on the same bits (check_resume compares both).
    check_resume("--ema 0.99", 5, 12, "1");
    let data = dataset();
    let w = data.path();
    ok(&mut train(w, "--ema 0.99 --steps 6 --name ema"));
    let dir = run_dir(w, "ema");
    let (average, raw) =
        (std::fs::read(dir.join("generator.onnx")).unwrap(), std::fs::read(dir.join("generator.raw.onnx")).unwrap());
    assert!(average != raw, "the exported average equals the trained weights");
    assert_eq!(std::fs::read(dir.join("checkpoints/step-00000006.raw.generator.onnx")).unwrap(), raw);
    assert_eq!(std::fs::read(dir.join("checkpoints/step-00000006.generator.onnx")).unwrap(), average);
    // Without --ema there is one generator.
    ok(&mut train(w, "--steps 2 --name plain"));
    assert!(!run_dir(w, "plain").join("generator.raw.onnx").exists());
}

#[test]
fn the_hinge_loss_trains_from_the_command_line_and_refuses_bce_label_options() {
    let data = dataset();
    let w = data.path();
    ok(&mut train(w, "--loss hinge --steps 4 --name hinge"));
    let config = std::fs::read_to_string(run_dir(w, "hinge").join("config.json")).unwrap();
    assert!(config.contains("\"hinge\""), "the resolved config records the loss: {config}");
    let rows = rundir::read_metrics(&run_dir(w, "hinge").join("metrics.parquet")).unwrap();
    assert!(!rows.is_empty() && rows.iter().all(|r| r.loss_d.is_finite() && r.loss_g.is_finite()));
    let (success, stderr) = run(&mut train(w, "--loss hinge --label-flip 0.1 --steps 1 --name bad"));
    assert!(!success && stderr.contains("train.label_flip"), "{stderr}");
}

#[test]
fn diffaugment_and_spectral_norm_train_from_the_command_line_and_resume_bit_identically() {
    // The checkpoint carries the spectral-norm vectors; DiffAugment's draws follow the resumed random stream.
    check_resume("--diffaugment color,translation,cutout --spectral-norm --loss hinge", 5, 12, "2");
    let data = dataset();
    let w = data.path();
    ok(&mut train(w, "--diffaugment translation,cutout --spectral-norm --steps 3 --checkpoint-every 1 --name sn"));
    let dir = run_dir(w, "sn");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["train"]["diffaugment"], "translation,cutout", "{config}");
    assert_eq!(config["train"]["spectral_norm"], true, "{config}");
    let state = checkpoint::read(&dir.join("checkpoints/step-00000003.safetensors")).unwrap();
    assert!(state.tensors.keys().any(|n| n == "d.conv1.weight_u"), "the vectors are checkpointed");
    // A policy with an unknown transform names the flag and the choices.
    let (success, stderr) = run(&mut train(w, "--diffaugment color,blur --steps 1 --name bad"));
    assert!(!success && stderr.contains("blur") && stderr.contains("translation"), "{stderr}");
}

#[test]
fn eval_every_scores_ema_and_raw_keeps_the_best_generator_and_eval_and_its_report_show_both() {
    let Some(shared) = support::shared_dir() else { return };
    let data = dataset();
    let w = data.path();
    let inception = shared.join("models/fid_inception_v3_pool3.onnx");
    // A small reference (the first 32 training images) and few samples keep the Inception's work to seconds.
    let config =
        format!("models:\n  fid_inception: {}\neval:\n  max_reference: 32\n  batch_size: 8\n", inception.display());
    std::fs::write(w.join("pipeline.yaml"), config).unwrap();
    ok(&mut train(w, "--ema 0.9 --eval-every 3 --eval-samples 8 --steps 7 --checkpoint-every 1 --name scored"));
    let dir = run_dir(w, "scored");
    // Scored at steps 3 and 6 and at the end (7), both weights each time, into metrics.parquet.
    let rows = rundir::read_metrics(&dir.join("metrics.parquet")).unwrap();
    let scored: Vec<(u64, f64, f64)> =
        rows.iter().filter_map(|r| Some((r.step, r.fid?, r.fid_raw.expect("raw scored beside the average")))).collect();
    assert_eq!(scored.iter().map(|s| s.0).collect::<Vec<_>>(), [3, 6, 7], "{rows:?}");
    assert!(scored.iter().all(|s| s.1.is_finite() && s.1 > 0.0 && s.2.is_finite() && s.2 > 0.0), "{scored:?}");
    assert!(scored.iter().any(|s| s.1 != s.2), "the average and the raw weights score differently: {scored:?}");
    // best.json names the lowest score of all, and best.generator.onnx holds those weights.
    let best: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("best.json")).unwrap()).unwrap();
    let lowest = scored
        .iter()
        .flat_map(|s| [(s.1, s.0, "ema"), (s.2, s.0, "raw")])
        .fold((f64::INFINITY, 0, ""), |a, b| if b.0 < a.0 { b } else { a });
    assert_eq!(
        (best["fid"].as_f64().unwrap(), best["step"].as_u64().unwrap(), best["weights"].as_str().unwrap()),
        lowest
    );
    assert_eq!(best["samples"], 8);
    assert_eq!(best["reference"], "32 train images");
    let best_onnx = std::fs::read(dir.join("best.generator.onnx")).unwrap();
    if lowest.1 == 7 {
        let final_file = if lowest.2 == "raw" { "generator.raw.onnx" } else { "generator.onnx" };
        assert_eq!(best_onnx, std::fs::read(dir.join(final_file)).unwrap(), "the best is the final {final_file}");
    }

    // eval --run scores both weights of every checkpoint; the report shows both series and the best.
    let out = anime_pipe_in(w)
        .args(["--json", "-j", "1", "eval", "--run", "scored", "-n", "8", "--batch-size", "8"])
        .args(["--kid-subsets", "2", "--kid-subset-size", "4"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = json["rows"].as_array().unwrap();
    let labels: Vec<(&str, &str)> =
        rows.iter().map(|r| (r["label"].as_str().unwrap(), r["weights"].as_str().unwrap_or("-"))).collect();
    assert_eq!(labels, [("step-00000007", "ema"), ("step-00000007.raw", "raw")], "{json}");
    let report = std::fs::read_to_string(dir.join("report.html")).unwrap();
    for needle in ["FID (EMA)", "FID (raw)", "Best during training", "In-training FID (best"] {
        assert!(report.contains(needle), "report.html lacks {needle:?}");
    }
    // Without the Inception model, --eval-every is refused before training, naming the key.
    std::fs::write(w.join("pipeline.yaml"), "models:\n  fid_inception: /nowhere/inception.onnx\n").unwrap();
    let (success, stderr) = run(&mut train(w, "--eval-every 2 --steps 2 --name unscored"));
    assert!(!success && stderr.contains("train.eval_every") && stderr.contains("models.fid_inception"), "{stderr}");
    assert!(!run_dir(w, "unscored").exists(), "a refused run leaves no directory");
}

#[test]
fn every_preset_trains_a_short_run_with_finite_losses() {
    // Each preset's own optimiser, loss, labels and additions at the tiny sizes of these tests (image size, widths,
    // latent, batch, logging overridden): 3 steps.
    let data = dataset();
    let w = data.path();
    for preset in anime_pipe::train::presets::PRESETS {
        // The architecture stays the preset's (dcgan128 at 16 px is its family at 16 px; anime300 needs >= 16).
        ok(&mut train(w, &format!("--preset {preset} --steps 3 --name p-{preset}")));
        let dir = run_dir(w, &format!("p-{preset}"));
        let rows = rundir::read_metrics(&dir.join("metrics.parquet")).unwrap();
        assert_eq!(rows.last().map(|r| r.step), Some(3), "{preset}: the last step is logged");
        assert!(rows.iter().all(|r| r.loss_d.is_finite() && r.loss_g.is_finite()), "{preset}: {rows:?}");
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
        assert_eq!(config["train"]["preset"], *preset);
        assert!(dir.join("generator.onnx").is_file(), "{preset}");
    }
    // faces64 carries its moving average into the run.
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir(w, "p-faces64").join("config.json")).unwrap()).unwrap();
    assert_eq!(config["train"]["ema"], 0.999);
    assert!(run_dir(w, "p-faces64").join("generator.raw.onnx").is_file(), "faces64 keeps a moving average");
}

#[test]
fn resume_is_bit_identical_for_anime300_with_dropout_and_two_d_steps() {
    // anime300 at 16x16 (dropout masks from the runner's stream), two D steps per G step on the split graphs:
    // 8 steps per epoch, cut at 5, end at 12.
    check_resume("--arch anime300 --d-steps 2 --real-label 0.9", 5, 12, "1");
}

#[test]
fn ctrl_c_finishes_the_step_checkpoints_and_the_resumed_run_matches_an_uninterrupted_one() {
    use std::io::{BufRead, BufReader, Read};
    let data = dataset();
    let w = data.path();
    // Not quiet: without a terminal the trainer logs one line per epoch, which tells us it is inside its loop
    // (the Ctrl-C handler is installed) without any timing assumption.
    let mut cmd = support::anime_pipe();
    cmd.current_dir(w).arg("--workdir").arg(w).args(["-j", "1", "train"]).args(tiny_flags());
    cmd.args(["--epochs", "100000", "--checkpoint-every", "100000", "--name", "int"]);
    let mut child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("epoch 1/100000 done") {
        assert!(stderr.read_line(&mut seen).unwrap() > 0, "the run ended before its first epoch: {seen}");
    }
    // SAFETY: kill(2) on our own child's pid, which has not been waited for, so it cannot have been reused.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    stderr.read_to_string(&mut seen).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "a clean Ctrl-C stop exits 130: {seen}");
    assert!(seen.contains("Ctrl-C: finishing this step and writing a checkpoint"), "{seen}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("interrupted") && stdout.contains("train --resume"), "summary says how to go on: {stdout}");

    let run = run_dir(w, "int");
    let checkpoints: Vec<String> =
        files_in(&run.join("checkpoints")).into_iter().filter(|f| f.ends_with(".safetensors")).collect();
    assert_eq!(checkpoints.len(), 1, "exactly the Ctrl-C checkpoint: {checkpoints:?}");
    let cut = checkpoint::read(&run.join("checkpoints").join(&checkpoints[0])).unwrap().meta.progress.step();
    assert!((16..1_600_000).contains(&cut), "stopped after epoch 1, long before the end: step {cut}");

    // Resuming to cut + 20 steps equals a run that went straight there.
    let end = cut + 20;
    let mut resume = anime_pipe_in(w);
    resume.args(["-j", "1", "--json", "train", "--resume"]).arg(&run).args(["--steps", &end.to_string()]);
    assert_eq!(steps_this_session(&mut resume), 20);
    ok(&mut train(w, &format!("--checkpoint-every 100000 --steps {end} --name straight")));
    // 16 steps per epoch: a run that ends on an epoch boundary names its checkpoint after the epoch.
    let last = match end % 16 {
        0 => format!("checkpoints/epoch-{:04}.safetensors", end / 16),
        _ => format!("checkpoints/step-{end:08}.safetensors"),
    };
    assert_same_state(&run_dir(w, "straight").join(&last), &run.join(&last));
}

#[test]
fn nan_stops_the_run_and_keeps_the_last_good_checkpoint() {
    let data = dataset();
    let w = data.path();
    let (success, stderr) = run(&mut train(w, "--epochs 3 --checkpoint-every 1 --name nan --debug-nan-at-step 20"));
    assert!(!success, "a NaN loss must fail the run");
    assert!(stderr.contains("diverged at step 20"), "{stderr}");
    assert!(stderr.contains("epoch-0001.safetensors"), "names the last good checkpoint: {stderr}");
    let run = run_dir(w, "nan");
    assert_eq!(files_in(&run.join("checkpoints")), ["epoch-0001.generator.onnx", "epoch-0001.safetensors"]);
    let rows = rundir::read_metrics(&run.join("metrics.parquet")).unwrap();
    let last = rows.last().unwrap();
    assert_eq!(last.step, 20);
    assert!(last.loss_d.is_nan());
    assert!(rows[..rows.len() - 1].iter().all(|r| r.loss_d.is_finite()));
    // The run continues from the good checkpoint.
    let mut resume = anime_pipe_in(w);
    resume.args(["-j", "1", "--json", "train", "--resume"]).arg(&run).args(["--epochs", "2"]);
    assert_eq!(steps_this_session(&mut resume), 16, "resumed from epoch 1, not from scratch");
    let ckpt = checkpoint::read(&run.join("checkpoints/epoch-0002.safetensors")).unwrap();
    assert_eq!(ckpt.meta.progress.step(), 32);
    let rows = rundir::read_metrics(&run.join("metrics.parquet")).unwrap();
    assert!(rows.iter().all(|r| r.loss_d.is_finite()), "the NaN row past the checkpoint was dropped on resume");
}

#[test]
fn resume_refuses_flags_that_change_results_and_cuda_errors_clearly() {
    let data = dataset();
    let w = data.path();
    ok(&mut train(w, "--steps 2 --name r"));
    let mut cmd = anime_pipe_in(w);
    cmd.args(["train", "--resume"]).arg(run_dir(w, "r")).args(["--lr-g", "0.1", "--steps", "4"]);
    let (success, stderr) = run(&mut cmd);
    assert!(!success && stderr.contains("--lr-g"), "{stderr}");

    let (success, stderr) = run(&mut train(w, "--steps 2 --name gpu --device cuda"));
    if !success {
        assert!(stderr.contains("CUDA") && stderr.contains("--device cpu"), "{stderr}");
        assert!(!run_dir(w, "gpu").exists(), "a run that cannot start leaves no directory");
    }
    // Pairs and enums from the command line land in the resolved config.
    ok(&mut train(w, "--steps 1 --name flags --betas-g 0.6,0.99 --optimizer adamw --weight-decay 0.01"));
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir(w, "flags").join("config.json")).unwrap()).unwrap();
    assert_eq!(
        (config["train"]["g"]["beta1"].as_f64(), config["train"]["g"]["beta2"].as_f64()),
        (Some(0.6), Some(0.99))
    );
    assert_eq!(
        (config["train"]["d"]["beta1"].as_f64(), config["gan"]["g_optimizer"].as_str()),
        (Some(0.5), Some("adamw"))
    );
    let (success, stderr) = run(&mut train(w, "--steps 1 --name bad --betas-g 0.6"));
    assert!(!success && stderr.contains("0.5,0.999"), "{stderr}");

    let (success, stderr) = run(&mut train(w, "--steps 2 --name big --batch-size 512"));
    assert!(!success && stderr.contains("batch"), "{stderr}");
    assert!(!run_dir(w, "big").exists());
}

#[test]
fn exported_generator_matches_python_onnxruntime() {
    let python_ok = std::process::Command::new("python3")
        .args(["-c", "import onnxruntime, numpy, safetensors"])
        .status()
        .is_ok_and(|s| s.success());
    if !python_ok {
        if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            panic!(
                "CI=true needs python3 with onnxruntime, numpy and safetensors (pip install -r requirements-dev.txt)"
            );
        }
        eprintln!("note: python3 + onnxruntime not importable; skipping the cross-check");
        return;
    }
    let data = dataset();
    let w = data.path();
    ok(&mut train(w, "--epochs 1 --name py"));
    let run = run_dir(w, "py");
    let mut cmd = anime_pipe_in(w);
    cmd.args(["sample", "--model"]).arg(run.join("generator.onnx"));
    cmd.args(["-n", "70", "--seed", "11", "--out"]).arg(w.join("grid.png"));
    cmd.arg("--separate").arg(w.join("each")).arg("--save-latents").arg(w.join("z.npy"));
    ok(&mut cmd);
    // Python: the same latents through the same file (its batch is symbolic; fed in the chunks of 64 that
    // `sample` uses, so both run the same batches), and the checkpoint read with the reference safetensors reader.
    let script = r#"
import sys, json, numpy as np, onnxruntime as ort
from safetensors.numpy import load_file
from safetensors import safe_open
model, zfile, out, ckpt = sys.argv[1:5]
z = np.load(zfile)
sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
assert sess.get_inputs()[0].shape[0] == "batch", sess.get_inputs()[0].shape
images = [sess.run(["image_u8"], {"z": z[i:i + 64]})[0] for i in range(0, len(z), 64)]
np.concatenate(images).tofile(out)
tensors = load_file(ckpt)
with safe_open(ckpt, "np") as f:
    meta = f.metadata()
print(json.dumps({"count": len(tensors), "step": meta["step"], "sum": float(tensors["g.convt1.weight"].astype(np.float64).sum())}))
"#;
    let ckpt = run.join("checkpoints/epoch-0001.safetensors");
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(run.join("generator.onnx"))
        .arg(w.join("z.npy"))
        .arg(w.join("python.u8"))
        .arg(&ckpt)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let python = std::fs::read(w.join("python.u8")).unwrap();
    assert_eq!(python.len(), 70 * 16 * 16 * 3);
    let ours: Vec<u8> = (0..70).flat_map(|i| decode(&w.join(format!("each/{i:05}.png"))).into_raw()).collect();
    let differing = ours.iter().zip(&python).filter(|(a, b)| a != b).count();
    assert_eq!(differing, 0, "{differing} of {} pixel values differ from Python onnxruntime", ours.len());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ours_ckpt = checkpoint::read(&ckpt).unwrap();
    assert_eq!(report["count"].as_u64().unwrap() as usize, ours_ckpt.tensors.len());
    assert_eq!(report["step"], "16");
    let sum: f64 = ours_ckpt.tensors["g.convt1.weight"].1.iter().map(|&v| f64::from(v)).sum();
    assert!((report["sum"].as_f64().unwrap() - sum).abs() < 1e-9, "{report} vs {sum}");
}
