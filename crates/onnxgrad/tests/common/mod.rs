//! Test helpers: loading ONNX Runtime, running graphs, and finite-difference gradient checks through ONNX Runtime.
#![allow(dead_code)]
use anyhow::{anyhow, bail, Context, Result};
use onnxgrad::{gradients, DType, Formulation, Graph, Tensor, TensorData, ValueId};
use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::DynValue;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

static ENV: OnceLock<Environment> = OnceLock::new();
static INIT: Mutex<()> = Mutex::new(());

/// `$ORT_DYLIB_PATH`, else the newest `.ort/lib/libonnxruntime.so*` in this crate's directory or an ancestor.
pub fn ort_library() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        return Some(PathBuf::from(p));
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().find_map(|dir| {
        let mut libs: Vec<PathBuf> = std::fs::read_dir(dir.join(".ort/lib"))
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("libonnxruntime.so")))
            .collect();
        libs.sort();
        libs.pop()
    })
}

/// The process-wide ONNX Runtime environment (loaded once).
pub fn env() -> &'static Environment {
    if let Some(e) = ENV.get() {
        return e;
    }
    let _guard = INIT.lock().unwrap_or_else(|p| p.into_inner());
    ENV.get_or_init(|| {
        let path = ort_library()
            .expect("ONNX Runtime not found: run scripts/install-ort.sh in the checkout or set ORT_DYLIB_PATH");
        ort::init_from(&path)
            .unwrap_or_else(|e| panic!("cannot load {}: {e}", path.display()))
            .with_name("onnxgrad-tests")
            .build()
            .expect("ONNX Runtime environment")
    })
}

/// A CPU session over the serialised graph (from memory), optimisations off so kernels run as written.
pub fn session(g: &Graph) -> Result<Session> {
    session_with(g, GraphOptimizationLevel::Disable)
}

pub fn session_with(g: &Graph, level: GraphOptimizationLevel) -> Result<Session> {
    let bytes = g.to_onnx_bytes();
    Session::builder(env())
        .map_err(|e| anyhow!("{e}"))?
        .with_optimization_level(level)
        .map_err(|e| anyhow!("{e}"))?
        .with_intra_threads(1)
        .map_err(|e| anyhow!("{e}"))?
        .commit_from_memory(&bytes)
        .map_err(|e| anyhow!("ONNX Runtime rejected graph {:?}: {e}", g.name()))
}

fn to_ort(t: &Tensor) -> Result<DynValue> {
    let shape: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
    let v = match &t.data {
        TensorData::F32(d) => ort::value::Tensor::from_array((shape, d.clone()))?.into_dyn(),
        TensorData::F64(d) => ort::value::Tensor::from_array((shape, d.clone()))?.into_dyn(),
        TensorData::I64(d) => ort::value::Tensor::from_array((shape, d.clone()))?.into_dyn(),
        TensorData::Bool(d) => ort::value::Tensor::from_array((shape, d.clone()))?.into_dyn(),
        TensorData::U8(d) => ort::value::Tensor::from_array((shape, d.clone()))?.into_dyn(),
    };
    Ok(v)
}

fn from_ort(v: &ort::value::Value) -> Result<Tensor> {
    if let Ok((s, d)) = v.try_extract_tensor::<f32>() {
        return Ok(Tensor::f32(&s.iter().map(|&x| x as usize).collect::<Vec<_>>(), d.to_vec())?);
    }
    if let Ok((s, d)) = v.try_extract_tensor::<f64>() {
        return Ok(Tensor::f64(&s.iter().map(|&x| x as usize).collect::<Vec<_>>(), d.to_vec())?);
    }
    if let Ok((s, d)) = v.try_extract_tensor::<i64>() {
        return Ok(Tensor::i64(&s.iter().map(|&x| x as usize).collect::<Vec<_>>(), d.to_vec())?);
    }
    bail!("unsupported output type {:?}", v.dtype())
}

/// Runs `session` and returns every output by name.
pub fn run(session: &mut Session, inputs: &[(&str, &Tensor)]) -> Result<HashMap<String, Tensor>> {
    let feeds: Vec<(String, DynValue)> =
        inputs.iter().map(|(n, t)| Ok((n.to_string(), to_ort(t)?))).collect::<Result<_>>()?;
    let outputs = session.run(feeds).map_err(|e| anyhow!("run failed: {e}"))?;
    outputs.iter().map(|(name, v)| Ok((name.to_string(), from_ort(&v)?))).collect()
}

/// Elements as f64, whatever the float dtype.
pub fn values(t: &Tensor) -> Vec<f64> {
    match &t.data {
        TensorData::F32(d) => d.iter().map(|&x| x as f64).collect(),
        TensorData::F64(d) => d.clone(),
        TensorData::I64(d) => d.iter().map(|&x| x as f64).collect(),
        _ => panic!("not numeric"),
    }
}

/// A float tensor of `dtype` from f64 elements.
pub fn tensor(dtype: DType, shape: &[usize], data: &[f64]) -> Tensor {
    let d = match dtype {
        DType::F32 => TensorData::F32(data.iter().map(|&x| x as f32).collect()),
        DType::F64 => TensorData::F64(data.to_vec()),
        _ => panic!("float dtypes only"),
    };
    Tensor::new(shape, d).unwrap()
}

/// Deterministic pseudo-random numbers (splitmix64), uniform in [lo, hi).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn vec(&mut self, n: usize, lo: f64, hi: f64) -> Vec<f64> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }

    /// Uniform in ±[min_abs, max_abs]: kept away from 0, where ReLU-like functions have a kink.
    pub fn away_from_zero(&mut self, n: usize, min_abs: f64, max_abs: f64) -> Vec<f64> {
        (0..n)
            .map(|_| {
                let m = self.uniform(min_abs, max_abs);
                if self.next_u64() & 1 == 0 {
                    m
                } else {
                    -m
                }
            })
            .collect()
    }
}

/// One graph input of a gradient check.
pub struct Arg {
    pub name: &'static str,
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

pub fn arg(name: &'static str, shape: &[usize], data: Vec<f64>) -> Arg {
    assert_eq!(shape.iter().product::<usize>(), data.len(), "{name}");
    Arg { name, shape: shape.to_vec(), data }
}

/// Finite-difference settings: central-difference step and the bound on the normalised error
/// `|analytic - numeric| / max(1, |analytic|, |numeric|)`.
#[derive(Clone, Copy, Debug)]
pub struct Tol {
    pub eps: f64,
    pub bound: f64,
}

/// For f64 graphs: step 1e-6, error bound 1e-6.
pub const F64_TOL: Tol = Tol { eps: 1e-6, bound: 1e-6 };
/// For f32 graphs (kernels without a double version): step 1e-2, error bound 2e-3 (observed: below 3e-4).
pub const F32_TOL: Tol = Tol { eps: 1e-2, bound: 2e-3 };

/// How many elements of each input are perturbed at most (spread evenly over the tensor).
const MAX_PROBES: usize = 48;

/// Checks the gradient graph of `f(x) = sum(op(x) * R)` (R a fixed random tensor) against central differences,
/// both computed by ONNX Runtime: the analytic gradients by running the gradient graph, the numeric ones by
/// running the forward graph with each probed element moved by ±eps. `build` makes `op(x)` from the inputs.
/// Returns the largest normalised error seen.
pub fn check_gradients(
    name: &str,
    dtype: DType,
    args: &[Arg],
    tol: Tol,
    build: impl FnOnce(&mut Graph, &[ValueId]) -> onnxgrad::Result<ValueId>,
) -> Result<f64> {
    check_gradients_with(name, dtype, args, tol, &Formulation::native(), build)
}

/// [`check_gradients`] with both the forward and the gradient graph written in `formulation`
/// ([`Graph::lowered`]) before they run: checks an alternative formulation against finite differences.
pub fn check_gradients_with(
    name: &str,
    dtype: DType,
    args: &[Arg],
    tol: Tol,
    formulation: &Formulation,
    build: impl FnOnce(&mut Graph, &[ValueId]) -> onnxgrad::Result<ValueId>,
) -> Result<f64> {
    let mut g = Graph::new(name);
    let xs: Vec<ValueId> = args.iter().map(|a| g.input(a.name, dtype, &a.shape)).collect::<Result<_, _>>()?;
    let y = build(&mut g, &xs).with_context(|| format!("{name}: building"))?;
    let r_shape = g.shape(y).to_vec();
    let r_data = Rng::new(0xC0FFEE).vec(r_shape.iter().product(), -1.0, 1.0);
    let r = g.constant("R", tensor(dtype, &r_shape, &r_data));
    let weighted = g.mul(y, r)?;
    let f = g.sum_all(weighted)?;
    g.output(f, "f")?;
    let forward = g.clone();
    let grads = gradients(&mut g, f, &xs)?;
    for (a, &x) in args.iter().zip(&xs) {
        let grad = grads.get(x).ok_or_else(|| anyhow!("{name}: no gradient for {}", a.name))?;
        g.output(grad, &format!("{}.grad", a.name))?;
    }
    let mut grad_session = session(&g.lowered(formulation)?)?;
    let mut fwd_session = session(&forward.lowered(formulation)?)?;
    let base: Vec<Tensor> = args.iter().map(|a| tensor(dtype, &a.shape, &a.data)).collect();
    let feeds = |ts: &[Tensor]| args.iter().zip(ts).map(|(a, t)| (a.name, t.clone())).collect::<Vec<_>>();
    let analytic = run_owned(&mut grad_session, &feeds(&base))?;

    let mut worst = 0.0f64;
    for (i, a) in args.iter().enumerate() {
        let got = values(&analytic[&format!("{}.grad", a.name)]);
        let n = a.data.len();
        let probes: Vec<usize> =
            if n <= MAX_PROBES { (0..n).collect() } else { (0..MAX_PROBES).map(|k| k * n / MAX_PROBES).collect() };
        for j in probes {
            let mut at = |delta: f64| -> Result<f64> {
                let mut ts = base.clone();
                let mut d = a.data.clone();
                d[j] += delta;
                ts[i] = tensor(dtype, &a.shape, &d);
                Ok(values(&run_owned(&mut fwd_session, &feeds(&ts))?["f"])[0])
            };
            // The perturbation actually applied, after rounding to the graph's dtype.
            let h = match dtype {
                DType::F32 => ((a.data[j] + tol.eps) as f32 as f64) - ((a.data[j] - tol.eps) as f32 as f64),
                _ => 2.0 * tol.eps,
            };
            let numeric = (at(tol.eps)? - at(-tol.eps)?) / h;
            let err = (got[j] - numeric).abs() / 1f64.max(got[j].abs()).max(numeric.abs());
            worst = worst.max(err);
            if err > tol.bound {
                bail!(
                    "{name}: d f / d {}[{j}]: analytic {} vs numeric {numeric} (normalised error {err:.3e} > {:.0e})",
                    a.name,
                    got[j],
                    tol.bound
                );
            }
        }
    }
    eprintln!("{name}: max normalised error {worst:.2e} (bound {:.0e}, {dtype:?})", tol.bound);
    Ok(worst)
}

fn run_owned(session: &mut Session, feeds: &[(&str, Tensor)]) -> Result<HashMap<String, Tensor>> {
    let refs: Vec<(&str, &Tensor)> = feeds.iter().map(|(n, t)| (*n, t)).collect();
    run(session, &refs)
}

/// Adam hyperparameters for one step.
#[derive(Clone, Copy, Debug)]
pub struct Hyper {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for Hyper {
    fn default() -> Self {
        Hyper { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }
}

/// Runs a training-step graph repeatedly, feeding each step's `X.new` outputs back as the next step's `X`, the way
/// a trainer with I/O binding swaps device buffers.
pub struct StepRunner {
    session: Session,
    pub step: onnxgrad::optim::TrainStep,
    pub state: HashMap<String, Tensor>,
    pub t: i64,
    dtype: DType,
}

impl StepRunner {
    /// `initial` gives the starting value of parameters and buffers by name; moments start at zero.
    pub fn new(g: &Graph, step: onnxgrad::optim::TrainStep, initial: &HashMap<String, Tensor>) -> Result<StepRunner> {
        use onnxgrad::optim::StateRole;
        let mut state = HashMap::new();
        for s in &step.state {
            let t = match s.role {
                StateRole::FirstMoment | StateRole::SecondMoment => Tensor::full(s.dtype, &s.shape, 0.0),
                _ => initial.get(&s.input).cloned().ok_or_else(|| anyhow!("no initial value for {}", s.input))?,
            };
            state.insert(s.input.clone(), t);
        }
        let dtype = state.values().next().map(|t| t.dtype()).unwrap_or(DType::F32);
        Ok(StepRunner { session: session(g)?, step, state, t: 0, dtype })
    }

    /// One step with `data` inputs; returns the loss (computed before the update).
    pub fn run(&mut self, h: Hyper, data: &[(&str, Tensor)]) -> Result<f64> {
        self.t += 1;
        let hy = &self.step.hyper;
        let scalar = |v: f64| tensor(self.dtype, &[], &[v]);
        let mut feeds: Vec<(String, Tensor)> = vec![
            (hy.lr.clone(), scalar(h.lr)),
            (hy.beta1.clone(), scalar(h.beta1)),
            (hy.beta2.clone(), scalar(h.beta2)),
            (hy.eps.clone(), scalar(h.eps)),
            (hy.weight_decay.clone(), scalar(h.weight_decay)),
            (hy.step.clone(), Tensor::i64(&[], vec![self.t])?),
        ];
        feeds.extend(self.state.iter().map(|(n, t)| (n.clone(), t.clone())));
        feeds.extend(data.iter().map(|(n, t)| (n.to_string(), t.clone())));
        let refs: Vec<(&str, &Tensor)> = feeds.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let mut out = run(&mut self.session, &refs)?;
        for s in &self.step.state {
            let new = out.remove(&s.output).ok_or_else(|| anyhow!("missing output {}", s.output))?;
            self.state.insert(s.input.clone(), new);
        }
        Ok(values(&out[&self.step.loss])[0])
    }
}
