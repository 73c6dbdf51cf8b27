//! The GAN step graphs as standard ONNX: `anime-pipe graph`'s files pass `onnx.checker` (full check) and give in
//! Python onnxruntime the losses and updates of the Rust runner; the D step's and G step's gradients match
//! central finite differences of their losses, through ONNX Runtime.
use crate::support;
use anime_pipe::gan::augment::{self, DiffAugment};
use anime_pipe::gan::export::{write_graphs, ExportRequest};
use anime_pipe::gan::models::{Arch, Family};
use anime_pipe::gan::runner::{GanConfig, Noise, Runner, RunnerOptions};
use anime_pipe::gan::steps::{self, GanLoss, Optimizer, Role, StepGraph, StepOptions};
use anime_pipe::runtime::{session_from_bytes, Device, SessionOptions};
use anyhow::{bail, Context, Result};
use onnxgrad::Formulation;
use ort::session::Session;
use ort::value::{DynValue, Tensor};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

fn tiny_dcgan() -> Arch {
    Arch { family: Family::Dcgan, image_size: 16, nz: 8, ngf: 8, ndf: 8, dropout: 0.0, spectral_norm: false }
}

fn tiny_anime300() -> Arch {
    Arch { family: Family::Anime300, image_size: 16, nz: 12, ngf: 4, ndf: 4, dropout: 0.4, spectral_norm: false }
}

fn spectral(arch: Arch) -> Arch {
    Arch { spectral_norm: true, ..arch }
}

/// The step-graph variants the gradient checks cover: (architecture, loss, DiffAugment policy).
fn gradient_cases() -> Vec<(Arch, GanLoss, DiffAugment)> {
    let off = DiffAugment::default();
    vec![
        (tiny_dcgan(), GanLoss::Bce, off),
        (tiny_anime300(), GanLoss::Bce, off),
        (tiny_dcgan(), GanLoss::Hinge, off),
        (spectral(tiny_dcgan()), GanLoss::Hinge, DiffAugment::ALL),
        (spectral(tiny_anime300()), GanLoss::Bce, DiffAugment::ALL),
    ]
}

/// DiffAugment's inputs of a graph, as the runner draws them (seeded): one draw per D application.
fn augmentation_feeds(graph: &StepGraph, seed: u64) -> BTreeMap<String, Feed> {
    use rand::SeedableRng;
    let has =
        |suffix: &str| graph.inputs.iter().any(|p| p.name.starts_with(augment::PREFIX) && p.name.ends_with(suffix));
    let policy =
        DiffAugment { color: has(augment::BRIGHTNESS), translation: has(augment::ROWS), cutout: has(augment::CUTOUT) };
    let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(seed);
    let mut feeds = BTreeMap::new();
    for pass in ["real", "fake", "gen"] {
        let Some(port) = graph.inputs.iter().find(|p| p.name.starts_with(&format!("{}{pass}.", augment::PREFIX)))
        else {
            continue;
        };
        let (batch, size) = (port.shape[0], augment_size(graph));
        let values = augment::draw(policy, batch, size, &mut rng);
        for ((name, shape), data) in augment::inputs(policy, pass, batch, size).into_iter().zip(values) {
            feeds.insert(name, Feed::F32(shape, data));
        }
    }
    feeds
}

/// The image side of a step graph (from its `real` input, or G's output side in the G step: the `rows` input).
fn augment_size(graph: &StepGraph) -> usize {
    graph
        .inputs
        .iter()
        .find(|p| p.name.ends_with(augment::ROWS) || p.name.ends_with(augment::CUTOUT))
        .map_or(0, |p| p.shape[2])
}

/// The top left singular vector of `w` as a `[rows, rest]` matrix (300 power iterations in f64).
fn top_singular_vector(w: &[f32], rows: usize) -> Vec<f32> {
    let cols = w.len() / rows;
    let mut u = vec![1.0f64; rows];
    for _ in 0..300 {
        let v: Vec<f64> = (0..cols).map(|j| (0..rows).map(|i| w[i * cols + j] as f64 * u[i]).sum()).collect();
        let wv: Vec<f64> = (0..rows).map(|i| (0..cols).map(|j| w[i * cols + j] as f64 * v[j]).sum()).collect();
        let norm = wv.iter().map(|x| x * x).sum::<f64>().sqrt();
        u = wv.iter().map(|x| x / norm).collect();
    }
    u.into_iter().map(|x| x as f32).collect()
}

/// Deterministic uniform numbers in [0, 1) (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next() * 256.0) as u8).collect()
    }

    fn floats(&mut self, n: usize, lo: f64, hi: f64) -> Vec<f32> {
        (0..n).map(|_| (lo + (hi - lo) * self.next()) as f32).collect()
    }
}

/// A host tensor to feed.
#[derive(Clone)]
enum Feed {
    F32(Vec<usize>, Vec<f32>),
    U8(Vec<usize>, Vec<u8>),
    I64(Vec<usize>, Vec<i64>),
}

impl Feed {
    fn to_ort(&self) -> Result<DynValue> {
        Ok(match self {
            Feed::F32(s, d) => Tensor::from_array((s.clone(), d.clone()))?.into_dyn(),
            Feed::U8(s, d) => Tensor::from_array((s.clone(), d.clone()))?.into_dyn(),
            Feed::I64(s, d) => Tensor::from_array((s.clone(), d.clone()))?.into_dyn(),
        })
    }
}

/// Runs a session on named feeds; returns every f32 output.
fn run(session: &mut Session, feeds: &BTreeMap<String, Feed>) -> Result<BTreeMap<String, Vec<f32>>> {
    let inputs: Vec<(String, DynValue)> =
        feeds.iter().map(|(n, f)| Ok((n.clone(), f.to_ort()?))).collect::<Result<_>>()?;
    let outputs = session.run(inputs)?;
    let mut out = BTreeMap::new();
    for (name, value) in outputs.iter() {
        if let Ok((_, data)) = value.try_extract_tensor::<f32>() {
            out.insert(name.to_string(), data.to_vec());
        }
    }
    Ok(out)
}

/// Feeds for every input of a step graph: state from the seeded store (moments zero), random images, latents,
/// targets and dropout masks, and Adam's settings for step 1.
fn step_feeds(graph: &StepGraph, store: &onnxgrad::nn::ParamStore, rng: &mut Rng) -> Result<BTreeMap<String, Feed>> {
    let mut feeds = BTreeMap::new();
    for p in &graph.inputs {
        let n: usize = p.shape.iter().product();
        let shape = p.shape.clone();
        let feed = match (p.role, p.dtype.as_str()) {
            (_, "u8") => Feed::U8(shape, rng.bytes(n)),
            (_, "i64") => Feed::I64(shape, vec![1]),
            (Role::State | Role::FrozenState, _) => match store.get(&p.name) {
                Some(t) => Feed::F32(shape, t.data.clone()),
                None => Feed::F32(shape, vec![0.0; n]),
            },
            (Role::Hyperparameter, _) => Feed::F32(shape, vec![1e-3]),
            _ if p.name == steps::Z => Feed::F32(shape, rng.floats(n, -2.0, 2.0)),
            _ if p.name.starts_with(augment::PREFIX) => continue, // drawn below, per D application
            _ if p.name.ends_with(".mask") => {
                Feed::F32(shape, rng.floats(n, 0.0, 1.0).iter().map(|&u| if u < 0.6 { 1.0 } else { 0.0 }).collect())
            }
            _ => Feed::F32(shape, rng.floats(n, 0.0, 1.0)), // per-sample BCE targets
        };
        feeds.insert(p.name.clone(), feed);
    }
    feeds.extend(augmentation_feeds(graph, rng.next().to_bits()));
    Ok(feeds)
}

/// Checks the gradient outputs `<param>.grad` of a step graph against central differences of `loss` through
/// ONNX Runtime, as directional derivatives: for every trained tensor, along its gradient `g` and along `g`
/// restricted to a random half of its coordinates (so an error that keeps the gradient's norm but moves it,
/// like a transposed kernel, shows), and along the gradient of all parameters together. Returns the worst
/// relative error `|fd - g.v| / |g.v|`.
///
/// Why this form and these numbers: convolutions have no double kernels in ONNX Runtime, so the check is f32,
/// where a loss value carries ~1e-6 of rounding noise; and ReLU / leaky ReLU are piecewise linear, so a
/// difference quotient whose interval contains a kink is off by up to half the slope change, however small eps
/// is (single coordinates fail that way at any eps f32 allows: against PyTorch autograd in float64 these graphs'
/// gradients agree to 6e-7, but float64 central differences of single weights only converge below eps = 1e-5).
/// Directions along the gradient carry the most signal per unit step, and a small step in a unit direction moves
/// each pre-activation by very little, so few kinks are crossed. The test point has DCGAN's weights scaled 10x
/// (std 0.2, as after some training): at the N(0, 0.02) initialisation D is nearly constant, the losses barely
/// depend on the parameters and differences drown in rounding. With eps = 3e-4 (the step's length in parameter
/// space) the errors here are at most 5e-3 (and at most 1.1e-2 over other seeds and directions tried while
/// choosing the method: a batch-norm shift moves a whole channel across kinks at once); the bound is 3e-2. A wrong rule (a sign, a transposed kernel, a missing
/// batch-statistics term) is off by tens of percent.
fn check_step_gradients(graph: &StepGraph, store: &onnxgrad::nn::ParamStore, loss: &str, seed: u64) -> Result<f64> {
    const EPS: f64 = 3e-4;
    let options = SessionOptions { device: Device::Cpu, threads: 1, optimize: false };
    let (mut session, _) = session_from_bytes(&graph.to_onnx_bytes(), &options)?;
    let mut rng = Rng(seed);
    let mut feeds = step_feeds(graph, store, &mut rng)?;
    for (name, feed) in feeds.iter_mut() {
        if let (Feed::F32(_, data), true) = (feed, name.ends_with("weight") && !name.contains(".bn")) {
            data.iter_mut().for_each(|w| *w *= 10.0);
        }
    }
    // Cutout and translation feed D exact zeros, which a zero bias would leave exactly on leaky ReLU's kink: start
    // D's (zero-initialised) layer biases away from it.
    for (name, feed) in feeds.iter_mut() {
        if let (Feed::F32(_, data), true) =
            (feed, name.starts_with("d.") && name.ends_with(".bias") && !name.contains(".bn"))
        {
            let values = rng.floats(data.len(), 0.05, 0.2);
            data.iter_mut().zip(values).for_each(|(b, v)| *b = if rng.next() < 0.5 { v } else { -v });
        }
    }
    // Spectral norm's gradient holds u and v constant: it is the derivative of the loss only where u is the top
    // singular vector (sigma is stationary there), so each vector starts converged for its weight.
    let vectors: Vec<String> = feeds.keys().filter(|n| n.ends_with(".weight_u")).cloned().collect();
    for name in vectors {
        let Some(Feed::F32(shape, w)) = feeds.get(name.trim_end_matches("_u")).cloned() else {
            bail!("no weight for {name}")
        };
        feeds.insert(name, Feed::F32(vec![shape[0]], top_singular_vector(&w, shape[0])));
    }
    let base = run(&mut session, &feeds)?;
    let trained: Vec<String> =
        graph.outputs_with(Role::Metric).filter_map(|p| p.name.strip_suffix(".grad").map(String::from)).collect();
    assert!(!trained.is_empty(), "{:?} has no gradient outputs", graph.kind);
    let grads: BTreeMap<String, Vec<f64>> =
        trained.iter().map(|n| (n.clone(), base[&format!("{n}.grad")].iter().map(|&g| g as f64).collect())).collect();
    let mut directions: Vec<(String, BTreeMap<String, Vec<f64>>)> = Vec::new();
    for (name, g) in &grads {
        directions.push((format!("{name} along its gradient"), BTreeMap::from([(name.clone(), g.clone())])));
        let half: Vec<f64> = g.iter().map(|&x| if rng.next() < 0.5 { x } else { 0.0 }).collect();
        if half.iter().any(|&x| x != 0.0) {
            directions.push((format!("{name} along half its gradient"), BTreeMap::from([(name.clone(), half)])));
        }
    }
    directions.push(("all parameters along the gradient".into(), grads.clone()));

    let mut worst = 0.0f64;
    for (label, mut v) in directions {
        let norm = v.values().flatten().map(|x| x * x).sum::<f64>().sqrt();
        assert!(norm > 0.0, "{:?}: {label}: zero gradient", graph.kind);
        v.values_mut().flatten().for_each(|x| *x /= norm);
        let analytic: f64 = v.iter().map(|(n, d)| d.iter().zip(&grads[n]).map(|(a, b)| a * b).sum::<f64>()).sum();
        let mut loss_at = |step: f64| -> Result<f64> {
            let mut moved = feeds.clone();
            for (name, d) in &v {
                let Some(Feed::F32(_, data)) = moved.get_mut(name) else { bail!("{name} is not an f32 input") };
                for (w, x) in data.iter_mut().zip(d) {
                    *w = (*w as f64 + step * x) as f32;
                }
            }
            Ok(run(&mut session, &moved)?[loss][0] as f64)
        };
        let fd = (loss_at(EPS)? - loss_at(-EPS)?) / (2.0 * EPS);
        let err = (fd - analytic).abs() / analytic.abs();
        assert!(err < 3e-2, "{:?} {label}: central difference {fd:.6e}, graph {analytic:.6e}", graph.kind);
        worst = worst.max(err);
    }
    Ok(worst)
}

#[test]
fn d_step_and_g_step_gradients_match_finite_differences() -> Result<()> {
    // BCE on both layouts, the hinge loss (no target inputs; G's loss -mean D(G(z))), and spectrally normalised
    // discriminators behind every DiffAugment transform.
    for (arch, loss, diffaugment) in gradient_cases() {
        let mut store = steps::init_store(&arch, 4)?;
        let opts = StepOptions { output_gradients: true, loss, diffaugment, ..StepOptions::new(arch.clone(), 4) };
        let d = steps::d_step(&opts, &mut store)?;
        let worst_d = check_step_gradients(&d, &store, steps::D_LOSS, 1)?;
        let g = steps::g_step(&opts, &mut store)?;
        let worst_g = check_step_gradients(&g, &store, steps::G_LOSS, 2)?;
        eprintln!(
            "{} {loss:?} sn={} diffaugment={diffaugment:?}: worst relative error of directional derivatives: D step \
             {worst_d:.2e}, G step {worst_g:.2e}",
            arch.name(),
            arch.spectral_norm
        );
        let has_targets = d.inputs.iter().any(|p| p.name == steps::REAL_TARGET);
        assert_eq!(has_targets, loss == GanLoss::Bce, "{loss:?}: target inputs");
        // The D step differentiates D only; the G step G only (D frozen, gradients through it).
        assert!(d.outputs.iter().filter(|p| p.name.ends_with(".grad")).all(|p| p.name.starts_with("d.")));
        assert!(g.outputs.iter().filter(|p| p.name.ends_with(".grad")).all(|p| p.name.starts_with("g.")));
    }
    Ok(())
}

fn python_ready() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import onnx, onnxruntime, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok && std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("CI=true: python3 with onnx, onnxruntime and numpy is required (pip install -r requirements-dev.txt)");
    }
    if !ok {
        eprintln!("note: python3 with onnx + onnxruntime + numpy not found; skipping the Python checks");
    }
    ok
}

/// Loads the graphs in `dir`, runs `onnx.checker.check_model(full_check=True)` on each, then: the D step then the G
/// step (state chained through `X.new`), the fused step, and the generator, on the feeds in `dir/feeds.json`.
/// Prints the metrics, `sum|X.new|` of every updated state, and the generator's image sum, as JSON.
const PYTHON_CHECK: &str = r#"
import json, sys, numpy as np, onnx, onnxruntime as ort
d = sys.argv[1]
index = json.load(open(f"{d}/feeds.json"))
feeds = {k: np.fromfile(f"{d}/{v['file']}", dtype=v["dtype"]).reshape(v["shape"]) for k, v in index.items()}
def session(name):
    m = onnx.load(f"{d}/{name}.onnx")
    onnx.checker.check_model(m, full_check=True)
    return ort.InferenceSession(f"{d}/{name}.onnx", providers=["CPUExecutionProvider"])
def run(s, state):
    out = s.run(None, {i.name: state[i.name] for i in s.get_inputs()})
    return dict(zip([o.name for o in s.get_outputs()], out))
result = {}
state = dict(feeds)
out_d = run(session("d_step"), state)
state.update({k[:-4]: v for k, v in out_d.items() if k.endswith(".new")})
out_g = run(session("g_step"), state)
state.update({k[:-4]: v for k, v in out_g.items() if k.endswith(".new")})
result["split"] = {k: float(v) for k, v in {**out_d, **out_g}.items() if v.ndim == 0}
result["split_state"] = {k: float(np.abs(v).astype(np.float64).sum()) for k, v in state.items() if k.startswith(("g.", "d."))}
out_f = run(session("gan_step"), dict(feeds))
result["fused"] = {k: float(v) for k, v in out_f.items() if v.ndim == 0}
out_gen = run(session("generator"), {"z": feeds["gen_z"]})
result["generator"] = float(out_gen["image"].astype(np.float64).sum())
result["generator_u8"] = int(out_gen["image_u8"].astype(np.int64).sum())
print(json.dumps(result))
"#;

fn write_feed(
    dir: &Path,
    index: &mut serde_json::Map<String, serde_json::Value>,
    name: &str,
    feed: &Feed,
) -> Result<()> {
    let file = format!("{}.bin", name.replace('/', "_"));
    let (dtype, shape, bytes): (&str, &Vec<usize>, Vec<u8>) = match feed {
        Feed::F32(s, d) => ("<f4", s, d.iter().flat_map(|x| x.to_le_bytes()).collect()),
        Feed::U8(s, d) => ("u1", s, d.clone()),
        Feed::I64(s, d) => ("<i8", s, d.iter().flat_map(|x| x.to_le_bytes()).collect()),
    };
    std::fs::write(dir.join(&file), bytes)?;
    index.insert(name.to_string(), serde_json::json!({"file": file, "dtype": dtype, "shape": shape}));
    Ok(())
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1e-6)
}

#[test]
fn written_graphs_pass_the_onnx_checker_and_match_the_runner_in_python() -> Result<()> {
    if !python_ready() {
        return Ok(());
    }
    // Written as built, and with every ConvTranspose in sub-pixel form (`graph --formulation subpixel`): both are
    // standard ONNX that Python onnxruntime runs to the runner's values.
    let cases = [
        (tiny_dcgan(), Formulation::native()),
        (tiny_anime300(), Formulation::native()),
        (tiny_dcgan(), Formulation::subpixel()),
    ];
    for (arch, formulation) in cases {
        let (batch, seed, samples) = (4, 9, 3);
        let dir = tempfile::tempdir()?;
        let req = ExportRequest {
            arch: arch.clone(),
            batch,
            samples,
            seed,
            d_optimizer: Optimizer::Adam,
            g_optimizer: Optimizer::Adam,
            formulation,
            ema: false,
            loss: GanLoss::Bce,
            diffaugment: Default::default(),
        };
        let report = write_graphs(dir.path(), &req)?;
        assert!(report.files.iter().any(|f| f.path.ends_with("generator.onnx")), "no generator.onnx written");
        for f in &report.files {
            let bytes = std::fs::read(&f.path)?;
            let has = |op: &str| bytes.windows(op.len()).any(|w| w == op.as_bytes());
            let lowered = !formulation.is_native();
            assert_eq!(has("DepthToSpace"), lowered, "{}: DepthToSpace iff sub-pixel", f.path.display());
            // The step graphs' backward of a strided Conv is a ConvTranspose in either formulation; the generator
            // alone is forward-only, so there every strided ConvTranspose is rewritten (the stride-1 projection
            // from the latent has no sub-pixel form and stays).
            if f.path.ends_with("generator.onnx") {
                let model = onnxgrad::decode_model(&bytes)?;
                let strided = model.graph.as_ref().expect("a graph").node.iter().filter(|n| {
                    n.op_type == "ConvTranspose"
                        && n.attribute.iter().any(|a| a.name == "strides" && a.ints.iter().any(|&s| s > 1))
                });
                assert_eq!(strided.count() == 0, lowered, "{}: strided ConvTranspose iff native", f.path.display());
            }
        }

        // The Rust runner, one iteration from the seeded state, split and fused, on the same inputs.
        let config = GanConfig::new(arch.clone(), batch, seed);
        let options = |fused| RunnerOptions { device: Device::Cpu, threads: 1, fused, ..RunnerOptions::default() };
        let mut split = Runner::new(&config, &options(false))?;
        let mut fused = Runner::new(&config, &options(true))?;
        let initial = split.state()?;
        let mut noise: Noise = split.draw_noise();
        noise.real_target = vec![0.9, 1.0, 0.8, 1.0]; // per-sample targets (label smoothing), fed as data
        let real = Rng(5).bytes(batch * arch.image_size * arch.image_size * 3);
        let m_split = split.step_with(&real, &noise)?.expect("metrics");
        let m_fused = fused.step_with(&real, &noise)?.expect("metrics");
        let after = split.state()?;
        let gen_z = Rng(6).floats(samples * arch.nz, -2.0, 2.0);
        let (mut generator, _) = session_from_bytes(
            &std::fs::read(dir.path().join("generator.onnx"))?,
            &SessionOptions { device: Device::Cpu, threads: 1, optimize: true },
        )?;
        let gen_feed = BTreeMap::from([(steps::GEN_Z.to_string(), Feed::F32(vec![samples, arch.nz], gen_z.clone()))]);
        let gen_sum: f64 = run(&mut generator, &gen_feed)?[steps::GEN_IMAGE].iter().map(|&x| x as f64).sum();

        let mut index = serde_json::Map::new();
        for (name, (shape, data)) in &initial {
            write_feed(dir.path(), &mut index, name, &Feed::F32(shape.clone(), data.clone()))?;
        }
        let s = arch.image_size;
        write_feed(dir.path(), &mut index, steps::REAL, &Feed::U8(vec![batch, s, s, 3], real))?;
        write_feed(dir.path(), &mut index, steps::Z, &Feed::F32(vec![batch, arch.nz], noise.z.clone()))?;
        for (name, v) in [
            (steps::REAL_TARGET, &noise.real_target),
            (steps::FAKE_TARGET, &noise.fake_target),
            (steps::GEN_TARGET, &noise.gen_target),
        ] {
            write_feed(dir.path(), &mut index, name, &Feed::F32(vec![batch], v.clone()))?;
        }
        for (name, mask) in &noise.masks {
            write_feed(dir.path(), &mut index, name, &Feed::F32(vec![batch, mask.len() / batch], mask.clone()))?;
        }
        for (prefix, h) in [(steps::D_ADAM, config.d), (steps::G_ADAM, config.g)] {
            for (field, v) in
                [("lr", h.lr), ("beta1", h.beta1), ("beta2", h.beta2), ("eps", h.eps), ("weight_decay", h.weight_decay)]
            {
                write_feed(dir.path(), &mut index, &format!("{prefix}.{field}"), &Feed::F32(vec![], vec![v]))?;
            }
            write_feed(dir.path(), &mut index, &format!("{prefix}.step"), &Feed::I64(vec![], vec![1]))?;
        }
        write_feed(dir.path(), &mut index, "gen_z", &Feed::F32(vec![samples, arch.nz], gen_z))?;
        std::fs::write(dir.path().join("feeds.json"), serde_json::to_string(&index)?)?;

        let out = Command::new("python3").arg("-c").arg(PYTHON_CHECK).arg(dir.path()).output().context("python3")?;
        if !out.status.success() {
            bail!("{}: python failed:\n{}", arch.name(), String::from_utf8_lossy(&out.stderr));
        }
        let py: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let rust_metrics = [
            (steps::D_LOSS, m_split.d_loss, m_fused.d_loss),
            (steps::D_REAL, m_split.d_real, m_fused.d_real),
            (steps::D_FAKE, m_split.d_fake, m_fused.d_fake),
            (steps::G_LOSS, m_split.g_loss, m_fused.g_loss),
            (steps::G_FAKE, m_split.g_fake, m_fused.g_fake),
        ];
        for (name, split_value, fused_value) in rust_metrics {
            let (p_split, p_fused) = (py["split"][name].as_f64().unwrap(), py["fused"][name].as_f64().unwrap());
            assert!(
                close(p_split, split_value as f64, 1e-4),
                "{}: {name}: python {p_split} vs rust {split_value}",
                arch.name()
            );
            assert!(
                close(p_fused, fused_value as f64, 1e-4),
                "{}: fused {name}: python {p_fused} vs rust {fused_value}",
                arch.name()
            );
        }
        for (name, (_, data)) in after.iter().filter(|(n, _)| !n.contains(".adam_")) {
            let rust: f64 = data.iter().map(|x| x.abs() as f64).sum();
            let python = py["split_state"][name].as_f64().with_context(|| format!("python lacks {name}"))?;
            assert!(
                close(python, rust, 1e-4),
                "{}: sum|{name}| after one iteration: python {python} vs rust {rust}",
                arch.name()
            );
        }
        let py_gen = py["generator"].as_f64().unwrap();
        assert!(
            (py_gen - gen_sum).abs() <= 1e-4 * gen_sum.abs().max(1.0),
            "generator: python {py_gen} vs rust {gen_sum}"
        );
        // The generator's u8 output is its float output rescaled: 0 <= sum <= 255 per pixel.
        let u8_sum = py["generator_u8"].as_i64().unwrap();
        let expected = (gen_sum + (samples * 3 * s * s) as f64) * 127.5;
        assert!(
            (u8_sum as f64 - expected).abs() <= 0.5 * (samples * 3 * s * s) as f64,
            "u8 sum {u8_sum} vs {expected}"
        );
    }
    Ok(())
}

#[test]
fn graph_command_writes_four_models_and_describes_them() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = support::anime_pipe()
        .args(["graph", "--arch", "dcgan64", "--batch", "8", "--ngf", "8", "--ndf", "8", "--json", "--out"])
        .arg(dir.path())
        .output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let files = report["files"].as_array().unwrap();
    let names: Vec<&str> = files.iter().map(|f| f["kind"].as_str().unwrap()).collect();
    assert_eq!(names, ["d_step", "g_step", "fused", "generator"]);
    for f in files {
        let path = f["path"].as_str().unwrap();
        let bytes = std::fs::read(path)?;
        assert_eq!(bytes.len() as u64, f["bytes"].as_u64().unwrap());
        // Each declared input is in the model file (the decoder reads the file back).
        let model = onnxgrad::decode_model(&bytes)?;
        let graph_inputs: Vec<String> = model.graph.unwrap().input.into_iter().map(|i| i.name).collect();
        let declared: Vec<&str> = f["inputs"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert_eq!(graph_inputs, declared, "{path}");
    }
    // The D step: real images as NHWC uint8 of the batch size, per-sample targets, every D tensor updated.
    let d = &files[0];
    let real = d["inputs"].as_array().unwrap().iter().find(|p| p["name"] == "real").unwrap();
    assert_eq!(real["dtype"], "u8");
    assert_eq!(real["shape"], serde_json::json!([8, 64, 64, 3]));
    let role = |name: &str| {
        d["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["role"].as_str().unwrap().to_string())
    };
    assert_eq!(role("real_target").as_deref(), Some("batch"));
    assert_eq!(role("d_adam.lr").as_deref(), Some("hyperparameter"));
    assert_eq!(role("d.conv2.weight.adam_m").as_deref(), Some("state"));
    assert_eq!(role("g.convt1.weight").as_deref(), Some("frozen_state"));
    assert_eq!(role("g.bn1.running_mean"), None, "the D step neither reads nor updates G's running statistics");

    // The same command writes the same bytes (seeded weights, deterministic names and node order).
    let again = tempfile::tempdir()?;
    let status = support::anime_pipe()
        .args(["graph", "--arch", "dcgan64", "--batch", "8", "--ngf", "8", "--ndf", "8", "-q", "--out"])
        .arg(again.path())
        .status()?;
    assert!(status.success());
    for f in ["d_step.onnx", "g_step.onnx", "gan_step.onnx", "generator.onnx"] {
        assert!(std::fs::read(dir.path().join(f))? == std::fs::read(again.path().join(f))?, "{f} differs between runs");
    }

    let help = support::anime_pipe().args(["graph", "--help"]).output()?;
    let help = String::from_utf8_lossy(&help.stdout);
    for needle in ["d_step.onnx", "g_step.onnx", "gan_step.onnx", "generator.onnx", "InferenceSession", "X.new"] {
        assert!(help.contains(needle), "--help lacks {needle}");
    }

    // `--formulation subpixel:64` writes the sub-pixel form on maps of up to 8x8 and says so.
    let cpu = tempfile::tempdir()?;
    let out = support::anime_pipe()
        .args(["graph", "--arch", "dcgan64", "--batch", "8", "--ngf", "8", "--ndf", "8", "--json"])
        .args(["--formulation", "subpixel:64", "--out"])
        .arg(cpu.path())
        .output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lowered: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(lowered["formulation"], "subpixel:64");
    assert_eq!(report["formulation"], "native");
    let nodes = |r: &serde_json::Value| r["files"][2]["nodes"].as_u64().unwrap();
    assert!(nodes(&lowered) > nodes(&report), "the sub-pixel fused step has more (smaller) nodes");
    let bad = support::anime_pipe().args(["graph", "--formulation", "auto", "-q", "--out"]).arg(cpu.path()).output()?;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--formulation"), "the error names the flag");
    Ok(())
}

/// The step graph's gradients (ONNX Runtime, f32) against PyTorch autograd in float64 on an independent PyTorch
/// definition of the same model (read from `dir`: graph.onnx, feeds.json). Prints per-tensor normalised errors.
const PYTORCH_REFERENCE: &str = r#"
import json, sys, numpy as np, onnxruntime as ort, torch, torch.nn.functional as F
d, kind, family, L, p_drop = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
sn = sys.argv[6] == "sn"
idx = json.load(open(f"{d}/feeds.json"))
feeds = {k: np.fromfile(f"{d}/{v['file']}", dtype=v["dtype"]).reshape(v["shape"]) for k, v in idx.items()}
so = ort.SessionOptions(); so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
s = ort.InferenceSession(f"{d}/graph.onnx", so, providers=["CPUExecutionProvider"])
out = dict(zip([o.name for o in s.get_outputs()], s.run(None, {i.name: feeds[i.name] for i in s.get_inputs()})))
t = lambda n: torch.tensor(feeds[n].astype(np.float64))
P = {k: t(k).requires_grad_() for k in feeds if k.startswith(("g.", "d.")) and not k.endswith((".mask", "_u"))}
def W(name):  # a D weight, spectrally normalised as torch.nn.utils.spectral_norm does (u, v without gradient)
    w = P[name]
    if not sn:
        return w
    m = w.reshape(w.shape[0], -1)
    with torch.no_grad():
        v = F.normalize(m.T @ t(name + "_u"), dim=0, eps=1e-12)
        u = F.normalize(m @ v, dim=0, eps=1e-12)
    return w / torch.dot(u, m @ v)
def augment(x, tag):  # DiffAugment_pytorch.py, its random draws read from the graph's inputs
    a = lambda what: t(f"aug_{tag}.{what}") if f"aug_{tag}.{what}" in feeds else None
    if a("brightness") is not None:
        x = x + a("brightness")
        m = x.mean(dim=1, keepdim=True); x = (x - m) * a("saturation") + m
        m = x.mean(dim=[1, 2, 3], keepdim=True); x = (x - m) * a("contrast") + m
    if a("rows") is not None:
        B, C, H, Wd = x.shape
        rows, cols = a("rows")[:, 0], a("cols")[:, 0]
        # the shifts the one-hot matrices encode: rows[b, i, i + dy] = 1, cols[j + dx, j] = 1
        dy = [int(torch.nonzero(rows[b])[0, 1] - torch.nonzero(rows[b])[0, 0]) for b in range(B)]
        dx = [int(torch.nonzero(cols[b].T)[0, 1] - torch.nonzero(cols[b].T)[0, 0]) for b in range(B)]
        ty = torch.tensor(dy).view(B, 1, 1); tx = torch.tensor(dx).view(B, 1, 1)
        gb, gy, gx = torch.meshgrid(torch.arange(B), torch.arange(H), torch.arange(Wd), indexing="ij")
        gy = torch.clamp(gy + ty + 1, 0, H + 1); gx = torch.clamp(gx + tx + 1, 0, Wd + 1)
        x = F.pad(x, [1, 1, 1, 1]).permute(0, 2, 3, 1)[gb, gy, gx].permute(0, 3, 1, 2)
    if a("cutout") is not None:
        x = x * a("cutout")
    return x
def bn(x, name):
    axes = [a for a in range(x.dim()) if a != 1]
    m = x.mean(dim=axes, keepdim=True); v = ((x - m) ** 2).mean(dim=axes, keepdim=True)
    shape = [1, -1] + [1] * (x.dim() - 2)
    return (x - m) / torch.sqrt(v + 1e-5) * P[name + ".weight"].view(shape) + P[name + ".bias"].view(shape)
lrelu = lambda x: F.leaky_relu(x, 0.2)
def G(z):
    B = z.shape[0]
    if family == "dcgan":
        h = z.view(B, -1, 1, 1)
        for i in range(L):
            h = F.conv_transpose2d(h, P[f"g.convt{i+1}.weight"], stride=1 if i == 0 else 2, padding=0 if i == 0 else 1)
            h = F.relu(bn(h, f"g.bn{i+1}"))
        return torch.tanh(F.conv_transpose2d(h, P[f"g.convt{L+1}.weight"], stride=2, padding=1))
    h = (z @ P["g.project.weight"].T).view(B, -1, 8, 8)
    h = lrelu(bn(h, "g.bn0"))
    for i in range(L):
        h = lrelu(bn(F.conv_transpose2d(h, P[f"g.convt{i+1}.weight"], stride=2, padding=1), f"g.bn{i+1}"))
    return torch.tanh(F.conv2d(h, P["g.to_rgb.weight"], P["g.to_rgb.bias"], padding=1))
def D(x, tag):
    h = augment(x, tag)
    if family == "dcgan":
        for i in range(L):
            h = F.conv2d(h, W(f"d.conv{i+1}.weight"), stride=2, padding=1)
            h = lrelu(bn(h, f"d.bn{i+1}") if i > 0 and not sn else h)
        return F.conv2d(h, W(f"d.conv{L+1}.weight")).view(-1)
    for i in range(L):
        h = F.max_pool2d(lrelu(F.conv2d(h, W(f"d.conv{i+1}.weight"), P[f"d.conv{i+1}.bias"], padding=1)), 2)
    h = lrelu(h.flatten(1) @ W("d.fc1.weight").T + P["d.fc1.bias"])
    h = h * t(f"d.drop_{tag}.mask") / (1 - p_drop)
    return (h @ W("d.fc2.weight").T + P["d.fc2.bias"]).view(-1)
bce = F.binary_cross_entropy_with_logits
hinge = "real_target" not in feeds and "gen_target" not in feeds  # the hinge graphs take no targets
if kind == "DStep":
    real = torch.tensor(feeds["real"].astype(np.float64) / 127.5 - 1).permute(0, 3, 1, 2)
    fake = G(t("z")).detach()
    if hinge:
        loss = F.relu(1 - D(real, "real")).mean() + F.relu(1 + D(fake, "fake")).mean()
    else:
        loss = bce(D(real, "real"), t("real_target")) + bce(D(fake, "fake"), t("fake_target"))
    name = "d_loss"
else:
    logits = D(G(t("z")), "gen")
    loss, name = (-logits.mean() if hinge else bce(logits, t("gen_target"))), "g_loss"
loss.backward()
errors = {}
for o in out:
    if o.endswith(".grad"):
        ref = P[o[:-5]].grad.numpy()
        errors[o[:-5]] = float(np.abs(ref - out[o]).max() / np.abs(ref).max())
print(json.dumps({"loss": [float(loss), float(out[name])], "errors": errors}))
"#;

#[test]
fn step_gradients_match_pytorch_autograd_in_float64() -> Result<()> {
    let torch_ok = Command::new("python3")
        .args(["-c", "import torch, onnxruntime, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !torch_ok {
        // PyTorch is not in requirements-dev.txt (it is large): this check runs where bench/torch_dcgan.py does.
        eprintln!("note: python3 with torch + onnxruntime + numpy not found; skipping the PyTorch reference check");
        return Ok(());
    }
    // The same cases as the finite differences: BCE, hinge, spectral norm behind DiffAugment.
    for (arch, loss, diffaugment) in gradient_cases() {
        let mut store = steps::init_store(&arch, 4)?;
        let opts = StepOptions { output_gradients: true, loss, diffaugment, ..StepOptions::new(arch.clone(), 4) };
        let (family, levels) = match arch.family {
            Family::Dcgan => ("dcgan", (arch.image_size / 4).trailing_zeros()),
            Family::Anime300 => ("anime300", (arch.image_size / 8).trailing_zeros()),
        };
        let graphs = [steps::d_step(&opts, &mut store)?, steps::g_step(&opts, &mut store)?];
        for (k, graph) in graphs.iter().enumerate() {
            let dir = tempfile::tempdir()?;
            std::fs::write(dir.path().join("graph.onnx"), graph.to_onnx_bytes())?;
            let mut index = serde_json::Map::new();
            for (name, feed) in step_feeds(graph, &store, &mut Rng(10 + k as u64))? {
                write_feed(dir.path(), &mut index, &name, &feed)?;
            }
            std::fs::write(dir.path().join("feeds.json"), serde_json::to_string(&index)?)?;
            let out = Command::new("python3")
                .arg("-c")
                .arg(PYTORCH_REFERENCE)
                .arg(dir.path())
                .arg(format!("{:?}", graph.kind))
                .arg(family)
                .arg(levels.to_string())
                .arg(arch.dropout.to_string())
                .arg(if arch.spectral_norm { "sn" } else { "bn" })
                .output()?;
            if !out.status.success() {
                bail!("{}: python failed:\n{}", arch.name(), String::from_utf8_lossy(&out.stderr));
            }
            let r: serde_json::Value = serde_json::from_slice(&out.stdout)?;
            let (torch_loss, ort_loss) = (r["loss"][0].as_f64().unwrap(), r["loss"][1].as_f64().unwrap());
            assert!(close(ort_loss, torch_loss, 1e-5), "{:?}: loss {ort_loss} vs PyTorch {torch_loss}", graph.kind);
            let errors = r["errors"].as_object().unwrap();
            assert_eq!(errors.len(), graph.outputs.iter().filter(|p| p.name.ends_with(".grad")).count());
            for (name, err) in errors {
                // f32 gradients vs float64 ones: rounding leaves ~1e-6 of the largest component (observed <= 9e-7).
                let err = err.as_f64().unwrap();
                assert!(err < 1e-5, "{} {:?} {name}: normalised error {err:.2e} vs PyTorch", arch.name(), graph.kind);
            }
            let worst = errors.values().map(|e| e.as_f64().unwrap()).fold(0.0, f64::max);
            eprintln!(
                "{} {loss:?} {:?}: worst normalised error vs PyTorch float64 {worst:.1e}",
                arch.name(),
                graph.kind
            );
        }
    }
    Ok(())
}
