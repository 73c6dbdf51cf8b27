//! Helpers for the training tests: tiny packed datasets written directly (shards + pack.parquet, as `pack` writes
//! them), and the run-directory readers.
use anime_pipe::manifest::columns::{col, frame};
use anime_pipe::stages::pack::Fit;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A synthetic face-like image: a coloured disk (varying centre, radius, hue) with two dark "eyes" on a
/// gradient background, from a small LCG so the test data needs no RNG crate.
pub fn synthetic_image(size: usize, index: u64) -> Vec<u8> {
    let mut state = index.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) as f64 / (1u64 << 31) as f64
    };
    let s = size as f64;
    let (cx, cy, r) = (s * (0.4 + 0.2 * next()), s * (0.4 + 0.2 * next()), s * (0.25 + 0.1 * next()));
    let color = [80.0 + 170.0 * next(), 80.0 + 170.0 * next(), 80.0 + 170.0 * next()];
    let bg = 255.0 * next();
    let mut out = Vec::with_capacity(size * size * 3);
    for y in 0..size {
        for x in 0..size {
            let (fx, fy) = (x as f64 + 0.5, y as f64 + 0.5);
            let inside = (fx - cx).powi(2) + (fy - cy).powi(2) < r * r;
            let eye = [(cx - r * 0.4, cy - r * 0.2), (cx + r * 0.4, cy - r * 0.2)]
                .iter()
                .any(|(ex, ey)| (fx - ex).powi(2) + (fy - ey).powi(2) < (r * 0.18).powi(2));
            let px = match (inside, eye) {
                (true, true) => [20.0, 20.0, 40.0],
                (true, false) => color,
                _ => [bg * fy / s, 0.5 * bg, 255.0 - bg * fx / s],
            };
            out.extend(px.iter().map(|v| v.clamp(0.0, 255.0) as u8));
        }
    }
    out
}

/// Writes `count` synthetic images at `size` as `shards` train shards plus `manifests/pack.parquet` into
/// `workdir`, with pack's layout and header.
pub fn write_dataset(workdir: &Path, size: u32, count: usize, shards: usize) {
    let dir = workdir.join("shards").join(size.to_string());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(workdir.join("manifests")).unwrap();
    let per_shard = count.div_ceil(shards);
    let mut rows: Vec<(String, String, u32, String)> = Vec::new(); // key, shard, index, blake3
    for (s, first) in (0..count).step_by(per_shard).enumerate() {
        let n = per_shard.min(count - first);
        let keys: Vec<String> = (first..first + n).map(|i| format!("synthetic/{i:05}.png")).collect();
        let rel = format!("shards/{size}/train-{s:05}.safetensors");
        let path = workdir.join(&rel);
        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(&anime_pipe::stages::pack::shard_header(size, "train", Fit::Crop, &keys).unwrap()).unwrap();
        for i in first..first + n {
            file.write_all(&synthetic_image(size as usize, i as u64)).unwrap();
        }
        drop(file);
        let hash = anime_pipe::manifest::file_blake3(&path).unwrap();
        for (index, key) in keys.into_iter().enumerate() {
            rows.push((key, rel.clone(), index as u32, hash.clone()));
        }
    }
    let n = rows.len();
    let mut df = frame(
        n,
        vec![
            col("key", rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>()),
            col("object", rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>()),
            col("size", vec![size; n]),
            col("split", vec!["train"; n]),
            col("shard", rows.iter().map(|r| Some(r.1.as_str())).collect::<Vec<_>>()),
            col("index", rows.iter().map(|r| Some(r.2)).collect::<Vec<_>>()),
            col("shard_blake3", rows.iter().map(|r| Some(r.3.as_str())).collect::<Vec<_>>()),
            col("status", vec!["ok"; n]),
            col("reason", vec![None::<&str>; n]),
            col("error", vec![None::<&str>; n]),
        ],
    )
    .unwrap();
    anime_pipe::manifest::write_parquet(&workdir.join("manifests/pack.parquet"), &mut df).unwrap();
}

/// The `anime-pipe` binary, run in `dir` (so no pipeline.yaml of the checkout is picked up) on workdir `dir`.
pub fn anime_pipe_in(dir: &Path) -> std::process::Command {
    let mut cmd = super::anime_pipe();
    cmd.current_dir(dir).arg("--workdir").arg(dir).arg("-q");
    cmd
}

/// Runs a command, returning (success, stderr); prints both streams when it fails unexpectedly.
pub fn run(cmd: &mut std::process::Command) -> (bool, String) {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    (out.status.success(), stderr)
}

/// Runs a command that must succeed.
pub fn ok(cmd: &mut std::process::Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The flags of a tiny, fast configuration: 16x16 DCGAN with widths 8, latent 16, batch 16.
pub fn tiny_flags() -> Vec<String> {
    "--image-size 16 --g-width 8 --d-width 8 --latent 16 --batch-size 16 --log-every 4"
        .split(' ')
        .map(String::from)
        .collect()
}

pub fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().to_string()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

pub fn run_dir(workdir: &Path, name: &str) -> PathBuf {
    workdir.join("runs").join(name)
}
