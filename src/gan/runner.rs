//! The step runner: ONNX Runtime sessions for the step graphs, the training state kept on the execution
//! provider's device, and one training iteration per call.
//!
//! **State on the device.** Every state tensor (parameters, Adam moments, batch-norm running statistics) has two
//! device buffers. A graph reads `X` from the current one and writes `X.new` into the other (ONNX Runtime I/O
//! binding, outputs bound to pre-allocated tensors), then the two swap roles. Which buffer is current is tracked
//! per tensor, and a graph's bindings are built once per arrangement of current buffers (at most two per graph:
//! the arrangement repeats with the iteration's parity), so a step only rebinds its per-step inputs (images,
//! latents, targets, dropout masks, hyperparameters: small host tensors written in place) and runs. Nothing is
//! copied into fresh host vectors between steps; metrics stay on the device until read (every
//! [`RunnerOptions::fetch_metrics_every`] steps, or on demand).
//!
//! **Randomness.** Latents, dropout masks and label flips come from a ChaCha8 generator owned by the runner, seeded
//! from the config's seed; its position is part of [`Progress`], so a resumed run draws what the uninterrupted one
//! would have. On CPU, two runners with the same config and thread count produce bit-identical states.
use super::augment::{self, DiffAugment};
use super::models::Arch;
use super::steps::{self, GanLoss, Optimizer, Role, StepGraph, StepKind, StepOptions};
use crate::runtime::{self, Device, Resolved, SessionOptions};
use anyhow::{anyhow, bail, ensure, Context, Result};
use onnxgrad::ema::warmed_up_decay;
use onnxgrad::nn::ParamStore;
use onnxgrad::Formulation;
use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{IoBinding, RunOptions, Session};
use ort::value::{DynTensor, Tensor, TensorElementType};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

/// Named tensors as (shape, row-major data): a checkpoint's content (same layout as `ParamStore::export`).
pub type StateTensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// One network's Adam/AdamW settings (inputs of the step graphs: change them between steps freely).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdamHyper {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

impl Default for AdamHyper {
    /// The DCGAN paper's: lr 2e-4, betas (0.5, 0.999), PyTorch's eps 1e-8, no weight decay.
    fn default() -> Self {
        AdamHyper { lr: 2e-4, beta1: 0.5, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }
}

/// The BCE targets the runner feeds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Labels {
    /// D's target for real images (0.9 = one-sided label smoothing).
    pub real: f32,
    /// D's target for generated images.
    pub fake: f32,
    /// G's target (what G wants D to say).
    pub gen: f32,
    /// Probability that each of D's per-sample targets is swapped (real <-> fake), drawn per step.
    pub flip: f32,
}

impl Default for Labels {
    fn default() -> Self {
        Labels { real: 1.0, fake: 0.0, gen: 1.0, flip: 0.0 }
    }
}

/// What a run trains: everything that defines its results (store it in the run's resolved config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GanConfig {
    pub arch: Arch,
    pub batch: usize,
    #[serde(default)]
    pub d_optimizer: Optimizer,
    #[serde(default)]
    pub g_optimizer: Optimizer,
    #[serde(default)]
    pub d: AdamHyper,
    #[serde(default)]
    pub g: AdamHyper,
    #[serde(default)]
    pub labels: Labels,
    /// Seeds the parameter initialisation and the runner's random stream.
    pub seed: u64,
    /// Decay of the moving average of G's weights (0: none), warmed up by [`warmed_up_decay`].
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ema: f32,
    /// The adversarial loss ([`Labels`] apply to BCE only).
    #[serde(default, skip_serializing_if = "GanLoss::is_bce")]
    pub loss: GanLoss,
    /// DiffAugment before every D application (its random inputs drawn from the runner's stream).
    #[serde(default, skip_serializing_if = "DiffAugment::is_off")]
    pub diffaugment: DiffAugment,
}

fn is_zero(x: &f32) -> bool {
    *x == 0.0
}

impl GanConfig {
    /// PyTorch-example defaults for `arch` at `batch`.
    pub fn new(arch: Arch, batch: usize, seed: u64) -> GanConfig {
        GanConfig {
            arch,
            batch,
            d_optimizer: Optimizer::Adam,
            g_optimizer: Optimizer::Adam,
            d: AdamHyper::default(),
            g: AdamHyper::default(),
            labels: Labels::default(),
            seed,
            ema: 0.0,
            loss: GanLoss::Bce,
            diffaugment: DiffAugment::default(),
        }
    }

    /// The structural part, for building the graphs.
    pub fn step_options(&self) -> StepOptions {
        StepOptions {
            arch: self.arch.clone(),
            batch: self.batch,
            d_optimizer: self.d_optimizer,
            g_optimizer: self.g_optimizer,
            output_gradients: false,
            primitive_backward: false,
            ema: self.ema > 0.0,
            loss: self.loss,
            diffaugment: self.diffaugment,
        }
    }
}

/// Which of G's weights an exported generator carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeneratorWeights {
    /// The moving average where the run keeps one ([`GanConfig::ema`]), else the trained weights.
    Average,
    /// The trained weights.
    Raw,
}

/// How the runner executes (does not change results beyond floating-point reassociation across thread counts).
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    pub device: Device,
    /// Intra-op threads; 0 lets ONNX Runtime decide (one per core).
    pub threads: usize,
    /// ONNX Runtime graph optimisations (level "all").
    pub optimize: bool,
    /// One graph per iteration ([`StepKind::Fused`]) instead of a D step then a G step. Same values; one G
    /// forward fewer. Requires one D step per G step.
    pub fused: bool,
    /// [`Runner::step`] returns metrics every this many iterations (1 = every step). Reading them is the only
    /// device-to-host transfer of a step.
    pub fetch_metrics_every: u64,
    /// Write ONNX Runtime profiles (Chrome trace JSON) with this path prefix, one per session.
    pub profile: Option<PathBuf>,
}

/// ONNX Runtime session knobs that only change speed. `None` keeps ONNX Runtime's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionTuning {
    /// Graph optimisation level 0 (off) ..= 3 (layout transformations, "all"); None: `optimize`'s choice.
    pub opt_level: Option<u8>,
    /// Memory-pattern planning (ONNX Runtime's default: on).
    pub memory_pattern: Option<bool>,
    /// Intra-op threads spin before sleeping (ONNX Runtime's default: on).
    pub spinning: Option<bool>,
    /// How operators are written out for the execution provider ([`onnxgrad::lower`]); None: the device's
    /// default, [`default_formulation`].
    pub formulation: Option<Formulation>,
    /// CUDA only: capture each state-buffer set's run as a CUDA graph (ONNX Runtime's `enable_cuda_graph`, one
    /// `gpu_graph_id` per binding) and replay it.
    pub cuda_graph: bool,
    /// CUDA only: TF32 math (None: the provider's default).
    pub tf32: Option<bool>,
    /// Build the graphs with batch norm's primitive backward ([`StepOptions::primitive_backward`]; benchmarks of
    /// the formulation before the closed form).
    pub primitive_backward: bool,
}

/// The formulation the step graphs are written in on `device` unless told otherwise: every operator as built,
/// on both providers. The sub-pixel `ConvTranspose` (`subpixel:64`) won on a loaded machine but lost by 10-12% on
/// a quiet one (`bench/train_step.sh`, BENCHMARKS.md "Training step: formulations"), and on CUDA cuDNN's
/// transposed convolution is not the slow per-image path it replaces; it stays selectable (`--formulation`).
pub fn default_formulation(device: Resolved) -> Formulation {
    match device {
        Resolved::Cpu | Resolved::Cuda(_) => Formulation::native(),
    }
}

/// Parses a formulation name: `native`, `subpixel` (wherever the geometry allows), `subpixel:N` (input maps of
/// at most N pixels), or `auto` (None: the device's default).
pub fn parse_formulation(s: &str) -> Result<Option<Formulation>> {
    Ok(match s {
        "auto" => None,
        "native" => Some(Formulation::native()),
        "subpixel" => Some(Formulation::subpixel()),
        _ => match s.strip_prefix("subpixel:").map(str::parse::<usize>) {
            Some(Ok(n)) => Some(Formulation::subpixel_up_to(n)),
            _ => bail!("formulation {s:?}: expected auto, native, subpixel or subpixel:N"),
        },
    })
}

/// The name [`parse_formulation`] reads back.
pub fn formulation_name(f: &Formulation) -> String {
    match f.subpixel_max_pixels {
        0 => "native".to_string(),
        usize::MAX => "subpixel".to_string(),
        n => format!("subpixel:{n}"),
    }
}

impl SessionTuning {
    /// What [`Runner::new`] uses: ONNX Runtime's defaults, except that idle intra-op threads sleep instead of
    /// spinning. A training step is ~1200 kernels; spinning saves a wake-up per parallel kernel (microseconds),
    /// but on a machine whose cores are shared (other jobs, data loading, a desktop) the spinning threads steal
    /// them: on the 2-core development machine under load, a 64x64 DCGAN iteration at batch 64 took 1.9-2.9 s
    /// without spinning and 5.0-5.6 s with it.
    pub fn training() -> SessionTuning {
        SessionTuning { spinning: Some(false), ..SessionTuning::default() }
    }
}

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            device: Device::Auto,
            threads: 0,
            optimize: true,
            fused: true,
            fetch_metrics_every: 1,
            profile: None,
        }
    }
}

/// Losses and discriminator outputs of the latest iteration (PyTorch example's log line).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Iterations done (1 after the first).
    pub iteration: u64,
    /// `BCE(D(x), real) + BCE(D(G(z)), fake)`.
    pub d_loss: f32,
    /// `BCE(D(G(z)), gen)`, D after its update.
    pub g_loss: f32,
    /// Mean `sigmoid(D(x))`.
    pub d_real: f32,
    /// Mean `sigmoid(D(G(z)))` before D's update.
    pub d_fake: f32,
    /// Mean `sigmoid(D(G(z)))` after D's update (the G step's).
    pub g_fake: f32,
}

/// The random inputs of one iteration. [`Runner::draw_noise`] makes them; tests and tools may pass their own.
#[derive(Debug, Clone, PartialEq)]
pub struct Noise {
    /// `[batch, nz]`, row-major.
    pub z: Vec<f32>,
    pub real_target: Vec<f32>,
    pub fake_target: Vec<f32>,
    pub gen_target: Vec<f32>,
    /// Dropout mask inputs by name (`d.drop_real.mask`, ...), 0/1 values, `[batch, features]`.
    pub masks: BTreeMap<String, Vec<f32>>,
    /// DiffAugment inputs by name (`aug_real.brightness`, ...; see [`augment`]).
    pub augment: BTreeMap<String, Vec<f32>>,
}

/// The non-tensor part of the training state, for checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Iterations done (G updates).
    pub iteration: u64,
    /// Adam's step counts `t` of each network.
    pub d_updates: u64,
    pub g_updates: u64,
    pub rng: RngState,
}

/// The runner's ChaCha8 stream position (the word position is a decimal string: it is a u128).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RngState {
    pub seed: u64,
    pub word_pos: String,
}

/// A state tensor's two device buffers and which one holds the current value.
struct Slot {
    shape: Vec<usize>,
    buffers: [DynTensor; 2],
    current: usize,
}

/// One graph's session and its I/O bindings.
struct Exec {
    spec: StepGraph,
    session: Session,
    /// State inputs (updated or frozen), in graph order: the binding cache key is their current buffers.
    state_inputs: Vec<String>,
    /// State inputs this graph updates.
    updated: Vec<String>,
    /// Per-step inputs, bound again before each run.
    feeds: Vec<String>,
    metrics: Vec<String>,
    bindings: HashMap<Vec<usize>, IoBinding>,
    /// CUDA graph id (1, 2, ...) of each binding.
    graph_ids: HashMap<Vec<usize>, usize>,
}

/// Runs GAN training iterations (see the module docs).
pub struct Runner {
    config: GanConfig,
    options: RunnerOptions,
    /// Layout and initial values; refreshed from the device when the generator is exported.
    store: ParamStore,
    resolved: Resolved,
    slots: BTreeMap<String, Slot>,
    /// Host tensors for the per-step inputs, shared by name between graphs.
    feeds: BTreeMap<String, DynTensor>,
    /// Device tensors receiving the metric outputs.
    metrics: BTreeMap<String, DynTensor>,
    execs: BTreeMap<StepKind, Exec>,
    rng: ChaCha8Rng,
    iteration: u64,
    d_updates: u64,
    g_updates: u64,
    /// The noise of the latest D step, reused by the G step that follows (the same z, as PyTorch's example).
    last_noise: Option<Noise>,
    /// Runs replay captured CUDA graphs ([`SessionTuning::cuda_graph`] on a CUDA device).
    cuda_graph: bool,
}

impl Runner {
    /// Builds the graphs for `config`, opens their sessions on `options.device` and uploads the seeded initial
    /// state.
    pub fn new(config: &GanConfig, options: &RunnerOptions) -> Result<Runner> {
        Runner::with_tuning(config, options, SessionTuning::training())
    }

    /// [`Runner::new`] with non-default ONNX Runtime session settings (benchmarks).
    pub fn with_tuning(config: &GanConfig, options: &RunnerOptions, tuning: SessionTuning) -> Result<Runner> {
        ensure!(options.fetch_metrics_every > 0, "fetch_metrics_every must be at least 1");
        let mut store = steps::init_store(&config.arch, config.seed)?;
        let opts = StepOptions { primitive_backward: tuning.primitive_backward, ..config.step_options() };
        let kinds: &[StepKind] = if options.fused { &[StepKind::Fused] } else { &[StepKind::DStep, StepKind::GStep] };
        let session_options =
            SessionOptions { device: options.device, threads: options.threads, optimize: options.optimize };
        let mut execs = BTreeMap::new();
        let mut resolved = None;
        for &kind in kinds {
            let spec = match kind {
                StepKind::DStep => steps::d_step(&opts, &mut store)?,
                StepKind::GStep => steps::g_step(&opts, &mut store)?,
                _ => steps::fused_step(&opts, &mut store)?,
            };
            let (session, got) = open_session(&spec, &session_options, options, tuning)?;
            if resolved.is_some_and(|r| r != got) {
                bail!("the step graphs resolved to different devices ({resolved:?} and {got:?})");
            }
            resolved = Some(got);
            execs.insert(kind, Exec::new(spec, session));
        }
        let resolved = resolved.expect("at least one graph");
        let allocator = device_allocator(&execs.values().next().expect("a session").session, resolved)?;
        let mut runner = Runner {
            config: config.clone(),
            options: options.clone(),
            store,
            resolved,
            slots: BTreeMap::new(),
            feeds: BTreeMap::new(),
            metrics: BTreeMap::new(),
            execs,
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            iteration: 0,
            d_updates: 0,
            g_updates: 0,
            last_noise: None,
            cuda_graph: tuning.cuda_graph && matches!(resolved, Resolved::Cuda(_)),
        };
        runner.allocate(&allocator)?;
        Ok(runner)
    }

    /// Device buffers for the state and metrics, host tensors for the feeds, initial state from the store.
    fn allocate(&mut self, allocator: &Allocator) -> Result<()> {
        let cpu = Allocator::default();
        for exec in self.execs.values() {
            for port in &exec.spec.inputs {
                let shape = port.shape.clone();
                match port.role {
                    Role::State | Role::FrozenState if !self.slots.contains_key(&port.name) => {
                        let buffers = [new_tensor(allocator, "f32", &shape)?, new_tensor(allocator, "f32", &shape)?];
                        self.slots.insert(port.name.clone(), Slot { shape, buffers, current: 0 });
                    }
                    Role::Batch | Role::Hyperparameter if !self.feeds.contains_key(&port.name) => {
                        self.feeds.insert(port.name.clone(), new_tensor(&cpu, &port.dtype, &shape)?);
                    }
                    _ => {}
                }
            }
            for port in exec.spec.outputs_with(Role::Metric) {
                if !self.metrics.contains_key(&port.name) {
                    self.metrics.insert(port.name.clone(), new_tensor(allocator, &port.dtype, &port.shape)?);
                }
            }
        }
        let initial: StateTensors = self
            .slots
            .iter()
            .map(|(name, slot)| {
                // A moving average starts at its parameter's value.
                let source = name.strip_prefix("ema.").unwrap_or(name);
                let data = match self.store.get(source) {
                    Some(t) => t.data.clone(),
                    None => vec![0.0; slot.shape.iter().product()], // Adam moments start at zero
                };
                (name.clone(), (slot.shape.clone(), data))
            })
            .collect();
        self.load_state(initial)
    }

    pub fn config(&self) -> &GanConfig {
        &self.config
    }

    /// The device the sessions run on.
    pub fn device(&self) -> Resolved {
        self.resolved
    }

    /// The graphs being run (their specs: inputs, outputs, roles).
    pub fn graphs(&self) -> impl Iterator<Item = &StepGraph> {
        self.execs.values().map(|e| &e.spec)
    }

    /// Changes the optimiser settings from the next step on (learning-rate schedules; no rebuild).
    pub fn set_hyper(&mut self, d: AdamHyper, g: AdamHyper) {
        self.config.d = d;
        self.config.g = g;
    }

    /// Changes the targets from the next step on.
    pub fn set_labels(&mut self, labels: Labels) {
        self.config.labels = labels;
    }

    /// Draws the next iteration's latents, D targets (with label flips) and dropout masks from the runner's stream.
    pub fn draw_noise(&mut self) -> Noise {
        let (b, nz) = (self.config.batch, self.config.arch.nz);
        let l = self.config.labels;
        let z: Vec<f32> = (0..b * nz).map(|_| self.rng.sample(StandardNormal)).collect();
        let mut real_target = vec![l.real; b];
        let mut fake_target = vec![l.fake; b];
        if l.flip > 0.0 {
            for t in real_target.iter_mut().chain(fake_target.iter_mut()) {
                if self.rng.random::<f32>() < l.flip {
                    *t = if *t == l.real { l.fake } else { l.real };
                }
            }
        }
        let mut masks = BTreeMap::new();
        let keep = 1.0 - self.config.arch.dropout;
        for (name, tensor) in &self.feeds {
            if name.ends_with(".mask") {
                let n = tensor.shape().num_elements();
                let mask = (0..n).map(|_| if self.rng.random::<f32>() < keep { 1.0 } else { 0.0 }).collect();
                masks.insert(name.clone(), mask);
            }
        }
        let augment = self.draw_augmentation();
        Noise { z, real_target, fake_target, gen_target: vec![l.gen; b], masks, augment }
    }

    /// DiffAugment's inputs for each D application the graphs have, in a fixed pass order.
    fn draw_augmentation(&mut self) -> BTreeMap<String, Vec<f32>> {
        let (policy, batch, size) = (self.config.diffaugment, self.config.batch, self.config.arch.image_size);
        let mut out = BTreeMap::new();
        for pass in ["real", "fake", "gen"] {
            let inputs = augment::inputs(policy, pass, batch, size);
            if inputs.first().is_some_and(|(name, _)| self.feeds.contains_key(name)) {
                let values = augment::draw(policy, batch, size, &mut self.rng);
                out.extend(inputs.into_iter().map(|(name, _)| name).zip(values));
            }
        }
        out
    }

    /// One iteration on a batch of real images (`u8 [batch, S, S, 3]`, NHWC as stored in the shards): a D update
    /// then a G update (one fused graph, or the two step graphs). Returns the metrics every
    /// `fetch_metrics_every` iterations.
    pub fn step(&mut self, real: &[u8]) -> Result<Option<Metrics>> {
        let noise = self.draw_noise();
        self.step_with(real, &noise)
    }

    /// [`Runner::step`] with given noise.
    pub fn step_with(&mut self, real: &[u8], noise: &Noise) -> Result<Option<Metrics>> {
        if self.execs.contains_key(&StepKind::Fused) {
            self.write_batch(Some(real), noise)?;
            self.write_hyper(true, true)?;
            self.run(StepKind::Fused)?;
            self.d_updates += 1;
            self.g_updates += 1;
        } else {
            self.d_step_with(real, noise)?;
            self.write_hyper(false, true)?;
            self.run(StepKind::GStep)?;
            self.g_updates += 1;
        }
        self.iteration += 1;
        self.metrics_due()
    }

    /// A D update alone (split graphs only; for several D steps per G step). Draws fresh noise.
    pub fn step_d(&mut self, real: &[u8]) -> Result<()> {
        let noise = self.draw_noise();
        self.d_step_with(real, &noise)
    }

    /// A G update alone, with the latents of the latest D step (split graphs only). Returns metrics when due.
    pub fn step_g(&mut self) -> Result<Option<Metrics>> {
        ensure!(self.execs.contains_key(&StepKind::GStep), "step_g needs the split graphs (RunnerOptions::fused off)");
        let noise = self.last_noise.clone().context("step_g before any step_d")?;
        self.write_batch(None, &noise)?;
        self.write_hyper(false, true)?;
        self.run(StepKind::GStep)?;
        self.g_updates += 1;
        self.iteration += 1;
        self.metrics_due()
    }

    fn d_step_with(&mut self, real: &[u8], noise: &Noise) -> Result<()> {
        ensure!(self.execs.contains_key(&StepKind::DStep), "step_d needs the split graphs (RunnerOptions::fused off)");
        self.write_batch(Some(real), noise)?;
        self.write_hyper(true, false)?;
        self.run(StepKind::DStep)?;
        self.d_updates += 1;
        self.last_noise = Some(noise.clone());
        Ok(())
    }

    fn metrics_due(&mut self) -> Result<Option<Metrics>> {
        match self.iteration % self.options.fetch_metrics_every {
            0 => self.metrics().map(Some),
            _ => Ok(None),
        }
    }

    /// The metrics of the latest iteration, read from the device now.
    pub fn metrics(&self) -> Result<Metrics> {
        let read = |name: &str| -> Result<f32> {
            let t = self.metrics.get(name).with_context(|| format!("no metric {name}"))?;
            Ok(download(t)?[0])
        };
        Ok(Metrics {
            iteration: self.iteration,
            d_loss: read(steps::D_LOSS)?,
            g_loss: read(steps::G_LOSS)?,
            d_real: read(steps::D_REAL)?,
            d_fake: read(steps::D_FAKE)?,
            g_fake: read(steps::G_FAKE)?,
        })
    }

    fn write_batch(&mut self, real: Option<&[u8]>, noise: &Noise) -> Result<()> {
        if let Some(real) = real {
            write_feed(&mut self.feeds, steps::REAL, real)?;
        }
        write_feed(&mut self.feeds, steps::Z, &noise.z)?;
        for (name, values) in [
            (steps::REAL_TARGET, &noise.real_target),
            (steps::FAKE_TARGET, &noise.fake_target),
            (steps::GEN_TARGET, &noise.gen_target),
        ] {
            if self.feeds.contains_key(name) {
                write_feed(&mut self.feeds, name, values)?;
            }
        }
        for (name, values) in noise.masks.iter().chain(&noise.augment) {
            write_feed(&mut self.feeds, name, values)?;
        }
        Ok(())
    }

    /// Writes the hyperparameter feeds; `t` is the update about to happen (1-based).
    fn write_hyper(&mut self, d: bool, g: bool) -> Result<()> {
        let sets = [
            (d, steps::D_ADAM, self.config.d, self.d_updates + 1),
            (g, steps::G_ADAM, self.config.g, self.g_updates + 1),
        ];
        for (wanted, prefix, h, t) in sets {
            if !wanted {
                continue;
            }
            for (field, value) in
                [("lr", h.lr), ("beta1", h.beta1), ("beta2", h.beta2), ("eps", h.eps), ("weight_decay", h.weight_decay)]
            {
                write_feed(&mut self.feeds, &format!("{prefix}.{field}"), &[value])?;
            }
            write_feed(&mut self.feeds, &format!("{prefix}.step"), &[t as i64])?;
        }
        if g && self.feeds.contains_key(steps::EMA_DECAY) {
            let decay = warmed_up_decay(self.config.ema as f64, self.g_updates + 1) as f32;
            write_feed(&mut self.feeds, steps::EMA_DECAY, &[decay])?;
        }
        Ok(())
    }

    fn run(&mut self, kind: StepKind) -> Result<()> {
        let exec = self.execs.get_mut(&kind).expect("graph exists");
        let key: Vec<usize> = exec.state_inputs.iter().map(|n| self.slots[n].current).collect();
        if !exec.bindings.contains_key(&key) {
            let binding = exec.bind_state(&mut self.slots, &mut self.metrics)?;
            exec.bindings.insert(key.clone(), binding);
        }
        let graph_id = exec.graph_ids.len() + 1;
        let graph_id = *exec.graph_ids.entry(key.clone()).or_insert(graph_id);
        let binding = exec.bindings.get_mut(&key).expect("binding exists");
        for name in &exec.feeds {
            binding.bind_input(name.as_str(), &self.feeds[name]).map_err(|e| anyhow!("binding {name}: {e}"))?;
        }
        if self.cuda_graph {
            // One captured graph per state-buffer set (the double-buffered state alternates between two).
            let mut run_options = RunOptions::new().map_err(|e| anyhow!("{e}"))?;
            run_options.set("gpu_graph_id", graph_id.to_string()).map_err(|e| anyhow!("{e}"))?;
            exec.session
                .run_binding_with_options(binding, &run_options)
                .map_err(|e| anyhow!("running {:?}: {e}", kind))?;
        } else {
            exec.session.run_binding(binding).map_err(|e| anyhow!("running {:?}: {e}", kind))?;
        }
        for name in &exec.updated {
            let slot = self.slots.get_mut(name).expect("slot exists");
            slot.current ^= 1;
        }
        Ok(())
    }

    /// Every state tensor (parameters `g.*`/`d.*`, running statistics, Adam moments `X.adam_m`/`X.adam_v`) as
    /// name -> (shape, data), copied from the device. With [`Runner::progress`] it is a complete checkpoint.
    pub fn state(&self) -> Result<StateTensors> {
        self.slots
            .iter()
            .map(|(name, slot)| Ok((name.clone(), (slot.shape.clone(), download(&slot.buffers[slot.current])?))))
            .collect()
    }

    /// Replaces the state with a checkpoint's: it must hold exactly the runner's tensors, with their shapes.
    pub fn load_state(&mut self, tensors: StateTensors) -> Result<()> {
        if let Some(missing) = self.slots.keys().find(|n| !tensors.contains_key(*n)) {
            bail!("checkpoint lacks {missing:?} (it has {} tensors, the model {})", tensors.len(), self.slots.len());
        }
        for (name, (shape, data)) in tensors {
            let slot =
                self.slots.get_mut(&name).with_context(|| format!("checkpoint tensor {name:?} is not in the model"))?;
            ensure!(shape == slot.shape, "{name}: checkpoint shape {shape:?}, model shape {:?}", slot.shape);
            ensure!(data.len() == shape.iter().product::<usize>(), "{name}: {} values for shape {shape:?}", data.len());
            upload(&mut slot.buffers[slot.current], &data).with_context(|| format!("uploading {name}"))?;
        }
        Ok(())
    }

    /// Step counts and the random stream's position.
    pub fn progress(&self) -> Progress {
        Progress {
            iteration: self.iteration,
            d_updates: self.d_updates,
            g_updates: self.g_updates,
            rng: RngState { seed: self.config.seed, word_pos: self.rng.get_word_pos().to_string() },
        }
    }

    /// Restores [`Runner::progress`] (with [`Runner::load_state`], a resume).
    pub fn set_progress(&mut self, p: &Progress) -> Result<()> {
        let pos: u128 = p.rng.word_pos.parse().with_context(|| format!("rng word_pos {:?}", p.rng.word_pos))?;
        self.rng = ChaCha8Rng::seed_from_u64(p.rng.seed);
        self.rng.set_word_pos(pos);
        self.iteration = p.iteration;
        self.d_updates = p.d_updates;
        self.g_updates = p.g_updates;
        self.last_noise = None;
        Ok(())
    }

    /// Whether the run keeps a moving average of G's weights.
    pub fn has_average(&self) -> bool {
        self.slots.keys().any(|n| n.starts_with("ema."))
    }

    /// The generator's inference model (`steps::generator_inference`) for `n` latents, with the current weights
    /// (`weights`: the moving average or the trained ones) and running statistics baked in.
    pub fn generator_onnx_bytes(&mut self, n: usize, weights: GeneratorWeights) -> Result<Vec<u8>> {
        let average = weights == GeneratorWeights::Average;
        let current: StateTensors = self
            .slots
            .iter()
            .filter(|(name, _)| name.starts_with("g.") && !name.ends_with(".adam_m") && !name.ends_with(".adam_v"))
            .map(|(name, slot)| {
                let slot = match self.slots.get(&format!("ema.{name}")) {
                    Some(avg) if average => avg,
                    _ => slot,
                };
                Ok((name.clone(), (slot.shape.clone(), download(&slot.buffers[slot.current])?)))
            })
            .collect::<Result<_>>()?;
        self.store.import(current)?;
        steps::generator_inference(&self.config.arch, &mut self.store, n)?.to_exported_bytes()
    }

    /// Ends ONNX Runtime profiling (when [`RunnerOptions::profile`] was set) and returns the written files.
    pub fn end_profiling(&mut self) -> Result<Vec<PathBuf>> {
        if self.options.profile.is_none() {
            return Ok(Vec::new());
        }
        self.execs
            .values_mut()
            .map(|e| Ok(PathBuf::from(e.session.end_profiling().map_err(|e| anyhow!("end profiling: {e}"))?)))
            .collect()
    }
}

impl Exec {
    fn new(spec: StepGraph, session: Session) -> Exec {
        let names = |roles: &[Role]| -> Vec<String> {
            spec.inputs.iter().filter(|p| roles.contains(&p.role)).map(|p| p.name.clone()).collect()
        };
        let state_inputs = names(&[Role::State, Role::FrozenState]);
        let updated = names(&[Role::State]);
        let feeds = names(&[Role::Batch, Role::Hyperparameter]);
        let metrics = spec.outputs_with(Role::Metric).map(|p| p.name.clone()).collect();
        Exec {
            spec,
            session,
            state_inputs,
            updated,
            feeds,
            metrics,
            bindings: HashMap::new(),
            graph_ids: HashMap::new(),
        }
    }

    /// A binding with the state inputs on their current buffers, the updates on the other ones and the metrics
    /// on their device tensors.
    fn bind_state(
        &self,
        slots: &mut BTreeMap<String, Slot>,
        metrics: &mut BTreeMap<String, DynTensor>,
    ) -> Result<IoBinding> {
        let mut binding = self.session.create_binding().map_err(|e| anyhow!("{e}"))?;
        for name in &self.state_inputs {
            let slot = &slots[name];
            binding
                .bind_input(name.as_str(), &slot.buffers[slot.current])
                .map_err(|e| anyhow!("binding {name}: {e}"))?;
        }
        for name in &self.updated {
            let slot = slots.get_mut(name).expect("slot exists");
            let out = onnxgrad::optim::updated_name(name);
            let target = &mut slot.buffers[1 - slot.current];
            binding.bind_output(out.as_str(), target).map_err(|e| anyhow!("binding {out}: {e}"))?;
        }
        for name in &self.metrics {
            let target = metrics.get_mut(name).expect("metric tensor exists");
            binding.bind_output(name.as_str(), target).map_err(|e| anyhow!("binding {name}: {e}"))?;
        }
        Ok(binding)
    }
}

fn open_session(
    spec: &StepGraph,
    session_options: &SessionOptions,
    options: &RunnerOptions,
    t: SessionTuning,
) -> Result<(Session, Resolved)> {
    let cuda = runtime::CudaOptions { cuda_graph: t.cuda_graph, tf32: t.tf32 };
    let (mut builder, resolved) = runtime::session_builder_with(session_options, cuda)?;
    if let Some(level) = t.opt_level {
        let level = match level {
            0 => GraphOptimizationLevel::Disable,
            1 => GraphOptimizationLevel::Level1,
            2 => GraphOptimizationLevel::Level2,
            _ => GraphOptimizationLevel::All,
        };
        builder = builder.with_optimization_level(level).map_err(|e| anyhow!("{e}"))?;
    }
    if let Some(on) = t.memory_pattern {
        builder = builder.with_memory_pattern(on).map_err(|e| anyhow!("{e}"))?;
    }
    if let Some(on) = t.spinning {
        builder = builder.with_intra_op_spinning(on).map_err(|e| anyhow!("{e}"))?;
    }
    if let Some(prefix) = &options.profile {
        let path = PathBuf::from(format!("{}{}", prefix.display(), spec.kind.file_name().trim_end_matches(".onnx")));
        builder = builder.with_profiling(path).map_err(|e| anyhow!("{e}"))?;
    }
    let formulation = t.formulation.unwrap_or_else(|| default_formulation(resolved));
    let model = spec.graph.lowered(&formulation)?.to_onnx_bytes();
    let session = builder
        .commit_from_memory(&model)
        .map_err(|e| anyhow!("ONNX Runtime rejected {}: {e}", spec.kind.file_name()))?;
    Ok((session, resolved))
}

/// The allocator for state living on the sessions' device.
fn device_allocator(session: &Session, resolved: Resolved) -> Result<Allocator> {
    match resolved {
        Resolved::Cpu => Ok(Allocator::default()),
        Resolved::Cuda(id) => {
            let info = MemoryInfo::new(AllocationDevice::CUDA, id, AllocatorType::Device, MemoryType::Default)
                .map_err(|e| anyhow!("{e}"))?;
            Allocator::new(session, info).map_err(|e| anyhow!("CUDA allocator: {e}"))
        }
    }
}

fn new_tensor(allocator: &Allocator, dtype: &str, shape: &[usize]) -> Result<DynTensor> {
    let ty = match dtype {
        "f32" => TensorElementType::Float32,
        "u8" => TensorElementType::Uint8,
        "i64" => TensorElementType::Int64,
        other => bail!("no feed support for dtype {other}"),
    };
    DynTensor::new(allocator, ty, shape.to_vec()).map_err(|e| anyhow!("allocating {shape:?}: {e}"))
}

/// Host values of a tensor on any device.
fn download(t: &DynTensor) -> Result<Vec<f32>> {
    if t.memory_info().is_cpu_accessible() {
        return Ok(t.try_extract_tensor::<f32>().map_err(|e| anyhow!("{e}"))?.1.to_vec());
    }
    let host = t.to(AllocationDevice::CPU, 0).map_err(|e| anyhow!("device to host: {e}"))?;
    Ok(host.try_extract_tensor::<f32>().map_err(|e| anyhow!("{e}"))?.1.to_vec())
}

/// Writes host values into a tensor on any device.
fn upload(t: &mut DynTensor, data: &[f32]) -> Result<()> {
    if t.memory_info().is_cpu_accessible() {
        t.try_extract_tensor_mut::<f32>().map_err(|e| anyhow!("{e}"))?.1.copy_from_slice(data);
        return Ok(());
    }
    let shape: Vec<i64> = t.shape().iter().copied().collect();
    let host = Tensor::from_array((shape, data.to_vec())).map_err(|e| anyhow!("{e}"))?.upcast();
    host.copy_into(t).map_err(|e| anyhow!("host to device: {e}"))
}

/// Copies `data` into the host feed tensor `name` (length-checked).
fn write_feed<T: ort::value::PrimitiveTensorElementType + Copy + std::fmt::Debug>(
    feeds: &mut BTreeMap<String, DynTensor>,
    name: &str,
    data: &[T],
) -> Result<()> {
    let t = feeds.get_mut(name).with_context(|| format!("no graph input {name:?}"))?;
    let (_, dst) = t.try_extract_tensor_mut::<T>().map_err(|e| anyhow!("{name}: {e}"))?;
    ensure!(dst.len() == data.len(), "{name}: {} values given, {} expected", data.len(), dst.len());
    dst.copy_from_slice(data);
    Ok(())
}
