//! `anime-pipe eval` end to end: a packed workdir of 40 real faces (../shared), a run directory with three
//! generators whose behaviour is known by construction, and the outputs (JSON, eval.parquet, grids, report.html,
//! the reference cache) checked against those facts.

use crate::support;
use crate::support::eval::*;
use anime_pipe::gan::models::Arch;
use anime_pipe::gan::steps;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

const N: usize = 20;
const REALS: usize = 40;

/// A checkpoint-state stand-in: a safetensors file whose metadata records the step (what the trainer writes).
fn write_checkpoint_state(path: &Path, step: u64) {
    let meta = std::collections::HashMap::from([("step".to_string(), step.to_string())]);
    let data = [0u8; 4];
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1], &data).unwrap();
    std::fs::write(path, safetensors::serialize([("x", view)], Some(meta)).unwrap()).unwrap();
}

fn write_metrics(path: &Path) {
    use polars::prelude::*;
    let steps: Vec<u64> = (1..=300).collect();
    let epochs: Vec<u32> = steps.iter().map(|s| ((s - 1) / 100 + 1) as u32).collect();
    let loss_d: Vec<f64> = steps.iter().map(|s| 1.4 - (*s as f64) / 600.0).collect();
    let loss_g: Vec<f64> = steps.iter().map(|s| 0.7 + (*s as f64) / 300.0).collect();
    let d_x: Vec<f64> = steps.iter().map(|s| 0.5 + (*s as f64) / 1000.0).collect();
    let d_gz: Vec<f64> = steps.iter().map(|s| 0.5 - (*s as f64) / 1000.0).collect();
    let mut df = df!("step" => steps, "epoch" => epochs, "loss_d" => loss_d, "loss_g" => loss_g, "d_x" => d_x,
        "d_gz" => d_gz)
    .unwrap();
    anime_pipe::manifest::write_parquet(path, &mut df).unwrap();
}

/// runs/demo with: epoch 1 = one constant image for every latent (tanh(0) = 0 -> grey 128), epoch 2 = per-latent
/// colour noise (both float-output graphs with a fixed batch of 8, so 20 samples need a padded last batch),
/// epoch 3 = a small DCGAN generator at initialisation exported by `gan` (u8 output, batch 16).
fn make_run(workdir: &Path) -> std::path::PathBuf {
    let run = workdir.join("runs/demo");
    let ck = run.join("checkpoints");
    std::fs::create_dir_all(&ck).unwrap();
    std::fs::write(ck.join("epoch-0001.generator.onnx"), linear_generator(8, 16, 64, 0.0, 0.0, 1)).unwrap();
    std::fs::write(ck.join("epoch-0002.generator.onnx"), linear_generator(8, 16, 64, 1.0, 0.5, 2)).unwrap();
    let arch = Arch { ngf: 16, ..Arch::dcgan64() };
    let mut store = steps::init_store(&arch, 3).unwrap();
    let dcgan = steps::generator_inference(&arch, &mut store, 16).unwrap().to_onnx_bytes();
    std::fs::write(ck.join("epoch-0003.generator.onnx"), &dcgan).unwrap();
    std::fs::write(run.join("generator.onnx"), &dcgan).unwrap();
    write_checkpoint_state(&ck.join("epoch-0001.safetensors"), 100);
    write_checkpoint_state(&ck.join("epoch-0002.safetensors"), 200);
    // epoch 3 has no state file: its step comes from metrics.parquet (last step of epoch 3 = 300).
    write_metrics(&run.join("metrics.parquet"));
    std::fs::write(run.join("config.json"), r#"{"arch": "dcgan64", "image_size": 64, "seed": 1}"#).unwrap();
    run
}

fn eval_json(workdir: &Path, extra: &[&str]) -> Value {
    let w = workdir.to_str().unwrap();
    let mut args = vec!["--workdir", w, "--json", "-j", "2", "eval", "-n", "20", "--batch-size", "8"];
    args.extend_from_slice(&["--kid-subsets", "10", "--kid-subset-size", "10"]);
    args.extend_from_slice(extra);
    serde_json::from_str(cli(&args).trim()).unwrap()
}

fn counts(v: &Value) -> BTreeMap<String, u64> {
    v["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c[0].as_str().unwrap().to_string(), c[1].as_u64().unwrap()))
        .collect()
}

#[test]
fn eval_of_a_run_writes_rows_grids_and_report_and_reuses_the_cached_reference() {
    let Some(shared) = support::shared_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let workdir = packed_workdir(tmp.path(), &getchu_jpegs(&shared, 0, REALS));
    let run = make_run(&workdir);
    let inception = inception_path(&shared);
    let inception = inception.to_str().unwrap();
    let run_arg = run.to_str().unwrap();

    // 1. First evaluation: everything computed.
    let first = eval_json(&workdir, &["--run", run_arg, "--inception", inception]);
    let c = counts(&first);
    assert_eq!(c["reference images embedded"], REALS as u64, "{first}");
    assert_eq!(c["generated images embedded"], 3 * N as u64);
    let rows = first["rows"].as_array().unwrap();
    let labels: Vec<&str> = rows.iter().map(|r| r["label"].as_str().unwrap()).collect();
    assert_eq!(
        labels,
        ["epoch-0001", "epoch-0002", "epoch-0003"],
        "generator.onnx = epoch 3's bytes: not listed again"
    );
    let steps: Vec<u64> = rows.iter().map(|r| r["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [100, 200, 300], "from checkpoint metadata, then metrics.parquet");
    for r in rows {
        assert_eq!(r["n"], N);
        assert!(r["fid"].as_f64().unwrap() > 0.0 && r["kid_std"].as_f64().unwrap() >= 0.0, "{r}");
        assert_eq!((r["kid_subsets"].as_u64(), r["kid_subset_size"].as_u64()), (Some(10), Some(10)));
        assert_eq!(r["reference_count"], REALS);
    }
    // Collapse signals, known by construction: 20 identical images are 19 duplicates of the first, with zero
    // feature spread; independent noise images have no near duplicates.
    assert_eq!(rows[0]["near_dup_count"], N - 1);
    assert!(rows[0]["feature_spread_ratio"].as_f64().unwrap() < 1e-3, "{}", rows[0]);
    assert_eq!(rows[1]["near_dup_count"], 0);
    assert!(rows[1]["feature_spread_ratio"].as_f64().unwrap() > 0.1, "{}", rows[1]);

    // eval.parquet: the documented columns, one row per generator.
    let df = anime_pipe::manifest::read_parquet(&run.join("eval.parquet")).unwrap();
    assert_eq!(df.height(), 3);
    let names: Vec<String> = df.get_column_names().iter().map(|n| n.to_string()).collect();
    for column in
        ["epoch", "step", "n", "fid", "kid_mean", "kid_std", "feature_spread_ratio", "near_dup_count", "seconds"]
    {
        assert!(names.iter().any(|n| n == column), "eval.parquet lacks {column}: {names:?}");
    }

    // The grid of epoch 1: 20 cells in 5 columns x 4 rows of 64 px + 2 px gaps, every cell grey 128.
    let grid = image::open(run.join("eval/epoch-0001.png")).unwrap().into_rgb8();
    assert_eq!(grid.dimensions(), (5 * 66 + 2, 4 * 66 + 2));
    assert_eq!(grid.get_pixel(2, 2).0, [128, 128, 128]);
    assert_eq!(grid.get_pixel(4 * 66 + 2 + 63, 3 * 66 + 2 + 63).0, [128, 128, 128]);

    // report.html: self-contained (images inlined, charts inline SVG, nothing fetched).
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(html.matches("data:image/png;base64,").count() >= 4, "real grid + 3 generator grids");
    assert!(html.matches("<svg").count() >= 5, "FID, KID, spread, losses, D outputs");
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http") && !html.contains("<script"));
    assert!(html.contains("epoch-0003") && html.contains("dcgan64"));

    // 2. Same command again: the reference comes from cache/fid/, every generator from eval.parquet.
    let cache: Vec<_> = std::fs::read_dir(workdir.join("cache/fid")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(cache.len(), 1, "{cache:?}");
    let second = eval_json(&workdir, &["--run", run_arg, "--inception", inception]);
    let c = counts(&second);
    assert_eq!(c["reference images embedded"], 0, "no Inception run on the reals: {second}");
    assert_eq!((c["generated images embedded"], c["generators reused from eval.parquet"]), (0, 3));
    for (a, b) in rows.iter().zip(second["rows"].as_array().unwrap()) {
        assert_eq!(a["fid"], b["fid"]);
    }

    // 3. One epoch with its features saved (which recomputes it): identical result (same latents), reference
    // still cached, eval.parquet still holds all three generators.
    let features = tmp.path().join("features");
    let third = eval_json(
        &workdir,
        &[
            "--run",
            run_arg,
            "--inception",
            inception,
            "--checkpoints",
            "2",
            "--save-features",
            features.to_str().unwrap(),
        ],
    );
    let c = counts(&third);
    assert_eq!((c["reference images embedded"], c["generated images embedded"]), (0, N as u64));
    let (before, after) = (rows[1]["fid"].as_f64().unwrap(), third["rows"][0]["fid"].as_f64().unwrap());
    assert!((before - after).abs() < 1e-9 * before, "deterministic: {before} vs {after}");
    assert_eq!(anime_pipe::manifest::read_parquet(&run.join("eval.parquet")).unwrap().height(), 3);

    // The same FID from numpy/scipy (bench/fid_reference.py) on the saved features and the cached reference.
    if let Some(py) = fid_reference_py(&features.join("epoch-0002.safetensors"), &cache[0]) {
        let scipy = py["fid"].as_f64().unwrap();
        assert!((after - scipy).abs() < 1e-3 * scipy, "eval {after} vs numpy/scipy {scipy}");
    }

    // 4. --model: one generator, printed, reference still cached.
    let model = run.join("checkpoints/epoch-0001.generator.onnx");
    let fourth = eval_json(&workdir, &["--model", model.to_str().unwrap(), "--inception", inception]);
    assert_eq!(counts(&fourth)["reference images embedded"], 0);
    assert_eq!(fourth["rows"][0]["near_dup_count"], N - 1);
    assert_eq!(fourth["rows"][0]["fid"], rows[0]["fid"]);
}

#[test]
fn a_missing_inception_model_says_how_to_provide_it() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("g.onnx");
    std::fs::write(&model, linear_generator(2, 4, 8, 1.0, 0.0, 1)).unwrap();
    let missing = tmp.path().join("nowhere/fid_inception_v3_pool3.onnx");
    let out = support::anime_pipe()
        .args(["--workdir", tmp.path().join("w").to_str().unwrap(), "eval", "--model"])
        .arg(&model)
        .arg("--inception")
        .arg(&missing)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nowhere/fid_inception_v3_pool3.onnx"), "{err}");
    assert!(err.contains("models:") && err.contains("fid_inception:") && err.contains("--inception"), "{err}");
}

#[test]
fn a_workdir_without_a_pack_is_refused_with_the_command_to_run() {
    let Some(shared) = support::shared_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("g.onnx");
    std::fs::write(&model, linear_generator(4, 8, 64, 1.0, 0.0, 1)).unwrap();
    let out = support::anime_pipe()
        .args(["--workdir", tmp.path().join("w").to_str().unwrap(), "eval", "-n", "8", "--model"])
        .arg(&model)
        .arg("--inception")
        .arg(inception_path(&shared))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("anime-pipe pack"), "{err}");
}

#[test]
fn sample_accepts_the_generators_eval_accepts_such_as_a_float_output_export_with_a_fixed_batch() {
    // Float NCHW output, no image_u8, a fixed batch of 4 (so 6 samples take two runs, the second padded), and
    // W = 0: every latent gives the same image, so every cell of the grid must be identical.
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("plain.onnx");
    std::fs::write(&model, linear_generator(4, 8, 8, 0.0, 1.0, 5)).unwrap();
    let out = tmp.path().join("grid.png");
    cli(&["sample", "--model", model.to_str().unwrap(), "-n", "6", "--grid", "3x2", "--out", out.to_str().unwrap()]);
    let grid = image::open(&out).unwrap().to_rgb8();
    assert_eq!(grid.dimensions(), (3 * 10 + 2, 2 * 10 + 2), "3x2 cells of 8 px with 2 px borders");
    let grid = &grid;
    let cell = |c: u32, r: u32| -> Vec<u8> {
        let (x0, y0) = (2 + c * 10, 2 + r * 10);
        (0..8).flat_map(|y| (0..8).flat_map(move |x| grid.get_pixel(x0 + x, y0 + y).0)).collect()
    };
    let first = cell(0, 0);
    assert!(first.iter().collect::<std::collections::BTreeSet<_>>().len() > 3, "a bias image, not a flat cell");
    for (c, r) in [(1, 0), (2, 0), (0, 1), (1, 1), (2, 1)] {
        assert_eq!(cell(c, r), first, "cell ({c}, {r})");
    }
}
