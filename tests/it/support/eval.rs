//! Helpers shared by the eval tests: real images from ../shared, tiny generator graphs, a packed workdir built
//! through the CLI, and the Python cross-check.
use anime_pipe::eval::features::Features;
use onnxgrad::{DType, Graph, Tensor};
use rand::rngs::ChaCha8Rng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `count` JPEGs of getchu64.zip (64x64 anime faces), in archive order after skipping `skip`, as (name, bytes).
pub fn getchu_jpegs(shared: &Path, skip: usize, count: usize) -> Vec<(String, Vec<u8>)> {
    let file = std::fs::File::open(shared.join("data/getchu64.zip")).unwrap();
    let mut zip = zip::ZipArchive::new(file).unwrap();
    let mut out = Vec::new();
    let mut seen = 0;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).unwrap();
        let name = entry.name().unwrap().into_owned();
        if !name.ends_with(".jpg") {
            continue;
        }
        seen += 1;
        if seen <= skip {
            continue;
        }
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        out.push((name.rsplit('/').next().unwrap().to_string(), bytes));
        if out.len() == count {
            break;
        }
    }
    assert_eq!(out.len(), count, "getchu64.zip has enough images");
    out
}

/// Packed RGB8 pixels of 64x64 JPEGs.
pub fn decode_64(jpegs: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut pixels = Vec::new();
    for (_, bytes) in jpegs {
        let img = image::load_from_memory(bytes).unwrap().into_rgb8();
        assert_eq!(img.dimensions(), (64, 64));
        pixels.extend_from_slice(img.as_raw());
    }
    pixels
}

/// The FID Inception model in ../shared.
pub fn inception_path(shared: &Path) -> PathBuf {
    shared.join("models/fid_inception_v3_pool3.onnx")
}

/// A generator graph `z [batch, nz] -> image [batch, 3, side, side]` = tanh(z W + b) with W ~ N(0, scale²) and
/// b ~ N(0, bias_scale²) (seeded): scale 0 gives one constant image for every latent (total collapse); a large
/// scale gives per-sample colour noise. Float output only (no `image_u8`), like a plain PyTorch export.
pub fn linear_generator(batch: usize, nz: usize, side: usize, scale: f32, bias_scale: f32, seed: u64) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let pixels = 3 * side * side;
    let mut normal = |s: f32, n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| {
                let z: f32 = StandardNormal.sample(&mut rng);
                z * s
            })
            .collect()
    };
    let w = normal(scale, nz * pixels);
    let b = normal(bias_scale, pixels);
    let mut g = Graph::new("linear_generator");
    let z = g.input("z", DType::F32, &[batch, nz]).unwrap();
    let w = g.initializer("w", Tensor::f32(&[nz, pixels], w).unwrap()).unwrap();
    let b = g.initializer("b", Tensor::f32(&[1, pixels], b).unwrap()).unwrap();
    let h = g.matmul(z, w).unwrap();
    let h = g.add(h, b).unwrap();
    let h = g.tanh(h).unwrap();
    let image = g.reshape(h, &[batch as i64, 3, side as i64, side as i64]).unwrap();
    g.output(image, "image").unwrap();
    g.to_onnx_bytes()
}

/// Runs the CLI with `args`, asserting success; returns stdout.
pub fn cli(args: &[&str]) -> String {
    let out = super::anime_pipe().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "anime-pipe {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A workdir whose pack (size 64, split "train") holds the decoded `jpegs`, written in pack's documented format
/// (one shard `shards/64/train-00000.safetensors` from `stages::pack::shard_header`, and `manifests/pack.parquet`
/// with the columns eval reads), so the eval tests do not depend on the other stages' current behaviour.
pub fn packed_workdir(root: &Path, jpegs: &[(String, Vec<u8>)]) -> PathBuf {
    use anime_pipe::manifest::columns::{col, frame};
    let workdir = root.join("work");
    let wd = anime_pipe::workdir::Workdir::open(&workdir).unwrap();
    let keys: Vec<String> = jpegs.iter().map(|(name, _)| format!("faces/{name}")).collect();
    let shard = "shards/64/train-00000.safetensors";
    let mut bytes =
        anime_pipe::stages::pack::shard_header(64, "train", anime_pipe::stages::pack::Fit::Crop, &keys).unwrap();
    bytes.extend_from_slice(&decode_64(jpegs));
    anime_pipe::workdir::atomic_write(&wd.root().join(shard), &bytes).unwrap();
    let n = keys.len();
    let mut df = frame(
        n,
        vec![
            col("key", keys.clone()),
            col("size", vec![64u32; n]),
            col("split", vec!["train"; n]),
            col("shard", vec![shard; n]),
            col("index", (0..n as u32).collect::<Vec<_>>()),
            col("status", vec!["ok"; n]),
        ],
    )
    .unwrap();
    anime_pipe::manifest::write_parquet(&wd.manifest_path("pack"), &mut df).unwrap();
    workdir
}

/// Writes `f` as a float32 .npy file (format 1.0, C order).
pub fn write_npy(path: &Path, f: &Features) {
    std::fs::write(path, anime_pipe::train::sample::npy_bytes(&[f.rows, f.dim], &f.data)).unwrap();
}

/// Whether python3 with numpy and scipy can run; false (saying so) on a developer machine without them, a
/// panic under CI=true, where requirements-dev.txt is installed.
pub fn python_scipy_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import numpy, scipy.linalg, safetensors"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            panic!("python3 with numpy, scipy and safetensors is required under CI=true (pip install -r requirements-dev.txt)");
        }
        eprintln!("note: python3 with numpy + scipy + safetensors not found; skipping the Python cross-check");
    }
    ok
}

/// bench/fid_reference.py's JSON for two feature files, or None without Python (see [`python_scipy_available`]).
pub fn fid_reference_py(a: &Path, b: &Path) -> Option<serde_json::Value> {
    if !python_scipy_available() {
        return None;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/fid_reference.py");
    let out = Command::new("python3").arg(script).arg(a).arg(b).arg("--json").output().unwrap();
    assert!(out.status.success(), "fid_reference.py failed: {}", String::from_utf8_lossy(&out.stderr));
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

/// `(fid, fid_eigh, kid_mean)` from bench/fid_reference.py (numpy + scipy) on two feature sets written as .npy.
pub fn python_reference(a: &Features, b: &Features) -> Option<(f64, f64, f64)> {
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (dir.path().join("a.npy"), dir.path().join("b.npy"));
    write_npy(&pa, a);
    write_npy(&pb, b);
    let v = fid_reference_py(&pa, &pb)?;
    Some((v["fid"].as_f64().unwrap(), v["fid_eigh"].as_f64().unwrap(), v["kid_mean"].as_f64().unwrap()))
}
