//! Exported generators (`generator.onnx`, checkpoints' `.generator.onnx`, `anime-pipe graph`) declare a symbolic
//! batch, like PyTorch exports: Python onnxruntime runs them on any number of latents.
use crate::support::anime_pipe;
use std::path::Path;
use std::process::Command;

/// Checks `generator.onnx` in `argv[1]`: the ONNX checker, `batch` as the leading dim_param of `z`, `image` and
/// `image_u8`, and runs at two batch sizes (3 and 250): the shapes follow, and the first 3 images of the 250 equal
/// the 3 run alone (inference-mode batch norm: samples are independent). Prints the shapes as JSON.
const PYTHON: &str = r#"
import json, sys, numpy as np, onnx, onnxruntime as ort
path = sys.argv[1]
m = onnx.load(path)
onnx.checker.check_model(m, full_check=True)
lead = lambda vi: vi.type.tensor_type.shape.dim[0].dim_param
params = {vi.name: lead(vi) for vi in list(m.graph.input) + list(m.graph.output)}
s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
nz = s.get_inputs()[0].shape[1]
z = np.random.default_rng(0).standard_normal((250, nz)).astype(np.float32)
big = dict(zip([o.name for o in s.get_outputs()], s.run(None, {"z": z})))
small = dict(zip([o.name for o in s.get_outputs()], s.run(None, {"z": z[:3]})))
assert np.allclose(big["image"][:3], small["image"], atol=1e-5), "batch changes the samples"
print(json.dumps({"params": params, "big": list(big["image"].shape), "small_u8": list(small["image_u8"].shape)}))
"#;

fn python_ready() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import onnx, onnxruntime, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok && std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("CI=true: python3 with onnx, onnxruntime and numpy is required (pip install -r requirements-dev.txt)");
    }
    ok
}

fn check_in_python(model: &Path) -> serde_json::Value {
    let out = Command::new("python3").arg("-c").arg(PYTHON).arg(model).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn exported_generators_take_any_batch_in_python_onnxruntime_and_in_sample() {
    if !python_ready() {
        eprintln!("note: python3 with onnx + onnxruntime + numpy not found; skipping");
        return;
    }
    for (arch, side) in [("dcgan64", 64), ("anime300", 64)] {
        let dir = tempfile::tempdir().unwrap();
        let out = anime_pipe()
            .args(["-q", "graph", "--arch", arch, "--ngf", "8", "--ndf", "8", "--batch", "4", "--out"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let model = dir.path().join("generator.onnx");
        let v = check_in_python(&model);
        assert_eq!(v["params"], serde_json::json!({"z": "batch", "image": "batch", "image_u8": "batch"}), "{arch}");
        assert_eq!(v["big"], serde_json::json!([250, 3, side, side]), "{arch}");
        assert_eq!(v["small_u8"], serde_json::json!([3, side, side, 3]), "{arch}");

        // `sample` runs it at a count that is no multiple of the export's batch.
        let png = dir.path().join("grid.png");
        let out = anime_pipe()
            .args(["-q", "--device", "cpu", "sample", "-n", "5", "--grid", "5x1", "--model"])
            .arg(&model)
            .arg("--out")
            .arg(&png)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let (w, h) = image::image_dimensions(&png).unwrap();
        assert!(w >= 5 * side && h >= side && w < 6 * side && h < 2 * side, "{w}x{h}: a 5x1 grid of {side} px");
    }
}
