//! The step graphs: a discriminator step, a generator step, both fused into one graph, and the generator's
//! inference graph. Each is a standard ONNX model (see the `gan` module docs for the I/O naming convention).
use super::augment::{self, DiffAugment};
use super::models::{self, Arch};
use anyhow::{bail, Context, Result};
use onnxgrad::ema::append_ema;
pub use onnxgrad::ema::EMA_DECAY;
use onnxgrad::nn::{Binding, Mode, Net, ParamStore};
use onnxgrad::optim::{build_train_step, updated_name, AdamOptions, TrainStep};
use onnxgrad::{loss, DType, Graph, ValueId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Batch input: real images, `u8 [B, S, S, 3]` (NHWC, as stored in the shards).
pub const REAL: &str = "real";
/// Batch input: latent vectors, `f32 [B, nz]`.
pub const Z: &str = "z";
/// Batch input (D step): per-sample BCE targets for real images, `f32 [B]` (1, or less for label smoothing).
pub const REAL_TARGET: &str = "real_target";
/// Batch input (D step): per-sample BCE targets for generated images, `f32 [B]` (usually 0).
pub const FAKE_TARGET: &str = "fake_target";
/// Batch input (G step): per-sample BCE targets of the generator's loss, `f32 [B]` (usually 1).
pub const GEN_TARGET: &str = "gen_target";
/// Prefix of the discriminator's Adam hyperparameter inputs (`d_adam.lr`, ...).
pub const D_ADAM: &str = "d_adam";
/// Prefix of the generator's Adam hyperparameter inputs (`g_adam.lr`, ...).
pub const G_ADAM: &str = "g_adam";
/// Metric: the discriminator's loss, `BCE(D(x), real_target) + BCE(D(G(z)), fake_target)`.
pub const D_LOSS: &str = "d_loss";
/// Metric: mean of `sigmoid(D(x))` over the batch.
pub const D_REAL: &str = "d_real";
/// Metric: mean of `sigmoid(D(G(z)))` in the D step (before D's update).
pub const D_FAKE: &str = "d_fake";
/// Metric: the generator's loss `BCE(D(G(z)), gen_target)` (with D after its update).
pub const G_LOSS: &str = "g_loss";
/// Metric: mean of `sigmoid(D(G(z)))` in the G step (after D's update).
pub const G_FAKE: &str = "g_fake";
/// Inference input: latent vectors `f32 [N, nz]`.
pub const GEN_Z: &str = "z";
/// Inference output: images `f32 [N, 3, S, S]` (NCHW, RGB) in [-1, 1].
pub const GEN_IMAGE: &str = "image";
/// Inference output: the same images as `u8 [N, S, S, 3]` (NHWC, RGB), `round((x + 1) * 127.5)`.
pub const GEN_IMAGE_U8: &str = "image_u8";

/// Which graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// Discriminator update (G runs forward, frozen).
    DStep,
    /// Generator update through a frozen D.
    GStep,
    /// One whole iteration: G forward once, D update, G update through the updated D.
    Fused,
    /// Generator inference, parameters baked in.
    Generator,
}

impl StepKind {
    /// The file name `anime-pipe graph` writes.
    pub fn file_name(self) -> &'static str {
        match self {
            StepKind::DStep => "d_step.onnx",
            StepKind::GStep => "g_step.onnx",
            StepKind::Fused => "gan_step.onnx",
            StepKind::Generator => "generator.onnx",
        }
    }

    fn graph_name(self) -> &'static str {
        match self {
            StepKind::DStep => "anime_pipe_d_step",
            StepKind::GStep => "anime_pipe_g_step",
            StepKind::Fused => "anime_pipe_gan_step",
            StepKind::Generator => "anime_pipe_generator",
        }
    }
}

/// What a graph input or output is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Changes every step: images, latents, targets, dropout masks.
    Batch,
    /// A scalar optimiser setting (learning rate, betas, eps, weight decay, step number).
    Hyperparameter,
    /// Carried state updated by this graph: fed as `X`, returned as `X.new`.
    State,
    /// Carried state this graph reads but does not update (the other network's weights).
    FrozenState,
    /// An updated state output `X.new`.
    StateOut,
    /// A scalar for logging.
    Metric,
    /// Inference output.
    Output,
}

/// One graph input or output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Port {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<usize>,
    pub role: Role,
}

/// Settings that change the step graphs' structure (everything else is an input).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepOptions {
    pub arch: Arch,
    /// Batch size (shapes are static).
    pub batch: usize,
    /// The discriminator's optimiser variant.
    #[serde(default)]
    pub d_optimizer: Optimizer,
    /// The generator's optimiser variant.
    #[serde(default)]
    pub g_optimizer: Optimizer,
    /// Also output every trained parameter's gradient as `<param>.grad` (for gradient checks and norms).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub output_gradients: bool,
    /// Differentiate batch norm's primitives one by one instead of its closed-form backward
    /// ([`onnxgrad::Graph::set_primitive_backward`]; same values, more nodes: the formulation before it existed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub primitive_backward: bool,
    /// Also carry an exponential moving average of G's parameters (`ema.g.*`, decay input [`EMA_DECAY`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ema: bool,
    /// The adversarial loss (the BCE graphs take per-sample targets as inputs; the hinge graphs have none).
    #[serde(default, skip_serializing_if = "GanLoss::is_bce")]
    pub loss: GanLoss,
    /// DiffAugment on every image D sees (per-step inputs `aug_<pass>.*`, see [`augment`]).
    #[serde(default, skip_serializing_if = "DiffAugment::is_off")]
    pub diffaugment: DiffAugment,
}

/// `torch.optim.Adam` (L2 penalty in the gradient) or `torch.optim.AdamW` (decoupled weight decay).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Optimizer {
    #[default]
    Adam,
    Adamw,
}

impl crate::named::Named for Optimizer {
    const ALL: &'static [Self] = &[Optimizer::Adam, Optimizer::Adamw];
    const WHAT: &'static str = "optimizer";
    fn name(self) -> &'static str {
        match self {
            Optimizer::Adam => "adam",
            Optimizer::Adamw => "adamw",
        }
    }
}
crate::impl_named_str!(Optimizer);

/// The adversarial loss: DCGAN's binary cross-entropy on D's logits (targets fed per step: label smoothing and
/// flips), or the hinge loss (D: `relu(1 - D(x)) + relu(1 + D(G(z)))`, G: `-D(G(z))`; no targets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GanLoss {
    #[default]
    Bce,
    Hinge,
}

impl crate::named::Named for GanLoss {
    const ALL: &'static [Self] = &[GanLoss::Bce, GanLoss::Hinge];
    const WHAT: &'static str = "loss";
    fn name(self) -> &'static str {
        match self {
            GanLoss::Bce => "bce",
            GanLoss::Hinge => "hinge",
        }
    }
}
crate::impl_named_str!(GanLoss);

impl GanLoss {
    /// For `skip_serializing_if`: configs without a loss read as BCE, so the default is left out.
    pub fn is_bce(&self) -> bool {
        *self == GanLoss::Bce
    }
}

impl StepOptions {
    pub fn new(arch: Arch, batch: usize) -> StepOptions {
        StepOptions {
            arch,
            batch,
            d_optimizer: Optimizer::Adam,
            g_optimizer: Optimizer::Adam,
            output_gradients: false,
            primitive_backward: false,
            ema: false,
            loss: GanLoss::Bce,
            diffaugment: DiffAugment::default(),
        }
    }

    fn adam(&self, prefix: &str) -> AdamOptions {
        let optimizer = if prefix == D_ADAM { self.d_optimizer } else { self.g_optimizer };
        let base = match optimizer {
            Optimizer::Adam => AdamOptions::adam(),
            Optimizer::Adamw => AdamOptions::adamw(),
        };
        AdamOptions { prefix: prefix.to_string(), output_gradients: self.output_gradients, ..base }
    }

    fn check(&self) -> Result<()> {
        self.arch.validate()?;
        if self.batch < 2 {
            bail!("batch {} is too small: batch norm needs at least 2 samples", self.batch);
        }
        Ok(())
    }
}

/// A built graph and its interface.
#[derive(Debug, Clone)]
pub struct StepGraph {
    pub kind: StepKind,
    pub graph: Graph,
    pub inputs: Vec<Port>,
    pub outputs: Vec<Port>,
}

impl StepGraph {
    /// The serialised ONNX model, with the static shapes it was built with (what the runner and tests run).
    pub fn to_onnx_bytes(&self) -> Vec<u8> {
        self.graph.to_onnx_bytes()
    }

    /// The model as written for users (`graph`, `generator.onnx`, checkpoints): a generator declares a symbolic
    /// batch ([`GEN_BATCH`] on `z`, `image` and `image_u8`), like PyTorch exports, so any number of latents can be
    /// fed; the training-step graphs keep their static batch.
    pub fn to_exported_bytes(&self) -> Result<Vec<u8>> {
        if self.kind != StepKind::Generator {
            return Ok(self.to_onnx_bytes());
        }
        let z = self.graph.find(GEN_Z).ok_or_else(|| anyhow::anyhow!("the generator graph has no {GEN_Z:?} input"))?;
        let batch = self.graph.shape(z)[0];
        Ok(self.graph.to_onnx_bytes_symbolic_batch(batch, GEN_BATCH)?)
    }

    /// `(X, X.new)` for every state this graph updates.
    pub fn state_pairs(&self) -> Vec<(String, String)> {
        self.inputs.iter().filter(|p| p.role == Role::State).map(|p| (p.name.clone(), updated_name(&p.name))).collect()
    }

    /// Inputs with the given role.
    pub fn inputs_with(&self, role: Role) -> impl Iterator<Item = &Port> {
        self.inputs.iter().filter(move |p| p.role == role)
    }

    /// Outputs with the given role.
    pub fn outputs_with(&self, role: Role) -> impl Iterator<Item = &Port> {
        self.outputs.iter().filter(move |p| p.role == role)
    }

    fn new(kind: StepKind, graph: Graph) -> StepGraph {
        let (inputs, outputs) = classify(&graph);
        StepGraph { kind, graph, inputs, outputs }
    }
}

/// Roles from the naming convention: `X` with an output `X.new` is state; `d_adam.*`/`g_adam.*` and `ema.decay`
/// are hyperparameters; other float inputs named like a parameter, buffer or moment (`g.*`, `d.*` but not a dropout
/// mask) are frozen state; the rest is batch data.
fn classify(g: &Graph) -> (Vec<Port>, Vec<Port>) {
    let port = |v: ValueId, role: Role| Port {
        name: g.value_name(v).to_string(),
        dtype: g.dtype(v).short_name().to_string(),
        shape: g.shape(v).to_vec(),
        role,
    };
    let outputs: BTreeSet<&str> = g.outputs().iter().map(|&v| g.value_name(v)).collect();
    let inputs = g
        .inputs()
        .iter()
        .map(|&v| {
            let name = g.value_name(v);
            let role = if outputs.contains(updated_name(name).as_str()) {
                Role::State
            } else if name.starts_with(&format!("{D_ADAM}."))
                || name.starts_with(&format!("{G_ADAM}."))
                || name == EMA_DECAY
            {
                Role::Hyperparameter
            } else if (name.starts_with("g.") || name.starts_with("d.")) && !name.ends_with(".mask") {
                Role::FrozenState
            } else {
                Role::Batch
            };
            port(v, role)
        })
        .collect();
    let metrics = [D_LOSS, D_REAL, D_FAKE, G_LOSS, G_FAKE];
    let outputs = g
        .outputs()
        .iter()
        .map(|&v| {
            let name = g.value_name(v);
            let role = if name.ends_with(".new") {
                Role::StateOut
            } else if metrics.contains(&name) || name.ends_with(".grad") {
                Role::Metric
            } else {
                Role::Output
            };
            port(v, role)
        })
        .collect();
    (inputs, outputs)
}

/// A parameter store holding every tensor of `arch` (both networks' parameters and running statistics), seeded.
pub fn init_store(arch: &Arch, seed: u64) -> Result<ParamStore> {
    let mut store = ParamStore::new(seed);
    let mut g = Graph::new("init");
    let z = g.input(Z, DType::F32, &[2, arch.nz])?;
    let mut net = Net::new(&mut g, &mut store, Mode::Train, Binding::Inputs);
    let fake = models::generator(&mut net, arch, z)?;
    models::discriminator(&mut net, arch, fake, "init")?;
    Ok(store)
}

/// `u8 [B, S, S, 3]` in 0..=255 -> `f32 [B, 3, S, S]` in [-1, 1].
fn images_to_nchw(g: &mut Graph, images: ValueId) -> Result<ValueId> {
    let mut g = g.scope("preprocess");
    let x = g.cast(images, DType::F32)?;
    let x = g.scale(x, 1.0 / 127.5)?;
    let x = g.add_scalar(x, -1.0)?;
    Ok(g.transpose(x, &[0, 3, 1, 2])?)
}

/// `mean(sigmoid(logits))`.
fn mean_probability(g: &mut Graph, logits: ValueId) -> Result<ValueId> {
    let p = g.sigmoid(logits)?;
    Ok(g.mean_all(p)?)
}

fn declare_real(g: &mut Graph, o: &StepOptions) -> Result<ValueId> {
    let s = o.arch.image_size;
    Ok(g.input(REAL, DType::U8, &[o.batch, s, s, 3])?)
}

fn declare_z(g: &mut Graph, o: &StepOptions) -> Result<ValueId> {
    Ok(g.input(Z, DType::F32, &[o.batch, o.arch.nz])?)
}

/// Trained parameters of one network (`prefix` = "g." or "d.") among a net's parameters.
fn params_of(g: &Graph, params: &[ValueId], prefix: &str) -> Vec<ValueId> {
    params.iter().copied().filter(|&p| g.value_name(p).starts_with(prefix)).collect()
}

/// The discriminator's update: G forward on `z` in training mode (batch statistics; its running statistics are
/// the G step's), its output detached; D on the real images, then on the generated ones (two forward passes,
/// two sets of batch statistics, D's running statistics updated twice, as PyTorch's example does); loss
/// `BCE(D(x), real_target) + BCE(D(G(z)), fake_target)`; Adam on D's parameters.
pub fn d_step(opts: &StepOptions, store: &mut ParamStore) -> Result<StepGraph> {
    opts.check()?;
    let mut g = Graph::new(StepKind::DStep.graph_name());
    g.set_primitive_backward(opts.primitive_backward);
    let real = declare_real(&mut g, opts)?;
    let z = declare_z(&mut g, opts)?;
    let real_t = declare_target(&mut g, opts, REAL_TARGET)?;
    let fake_t = declare_target(&mut g, opts, FAKE_TARGET)?;
    let x_real = images_to_nchw(&mut g, real)?;
    let mut net = Net::new(&mut g, store, Mode::Train, Binding::Inputs);
    net.set_running_stat_updates(false);
    let fake = models::generator(&mut net, &opts.arch, z)?;
    let fake = net.graph().stop_gradient(fake)?;
    net.set_running_stat_updates(true);
    let d = discriminator_loss(&mut net, opts, x_real, fake, real_t, fake_t)?;
    let params = net.finish().params;
    let d_params = params_of(&g, &params, "d.");
    build_train_step(&mut g, d, &d_params, &opts.adam(D_ADAM)).context("building the D step")?;
    Ok(StepGraph::new(StepKind::DStep, g))
}

/// A per-sample BCE target input `f32 [B]`; the hinge loss has none.
fn declare_target(g: &mut Graph, opts: &StepOptions, name: &str) -> Result<Option<ValueId>> {
    match opts.loss {
        GanLoss::Bce => Ok(Some(g.input(name, DType::F32, &[opts.batch])?)),
        GanLoss::Hinge => Ok(None),
    }
}

/// `opts.loss` of one batch of D's logits: BCE against `target`, or the hinge on the real or generated side.
fn adversarial_loss(g: &mut Graph, logits: ValueId, target: Option<ValueId>, real: bool) -> Result<ValueId> {
    Ok(match target {
        Some(t) => loss::bce_with_logits(g, logits, t)?,
        None => loss::hinge(g, logits, real)?,
    })
}

/// D on real and generated images, the D loss and its metrics as outputs; returns the loss.
fn discriminator_loss(
    net: &mut Net,
    opts: &StepOptions,
    x_real: ValueId,
    fake: ValueId,
    real_t: Option<ValueId>,
    fake_t: Option<ValueId>,
) -> Result<ValueId> {
    let x_real = augment::apply(net.graph(), opts.diffaugment, x_real, "real")?;
    let fake = augment::apply(net.graph(), opts.diffaugment, fake, "fake")?;
    let real_logits = models::discriminator(net, &opts.arch, x_real, "real")?;
    let fake_logits = models::discriminator(net, &opts.arch, fake, "fake")?;
    let g = net.graph();
    let mut s = g.scope("d_loss");
    let l_real = adversarial_loss(&mut s, real_logits, real_t, true)?;
    let l_fake = adversarial_loss(&mut s, fake_logits, fake_t, false)?;
    let d_loss = s.add(l_real, l_fake)?;
    let d_real = mean_probability(&mut s, real_logits)?;
    let d_fake = mean_probability(&mut s, fake_logits)?;
    drop(s);
    g.output(d_loss, D_LOSS)?;
    g.output(d_real, D_REAL)?;
    g.output(d_fake, D_FAKE)?;
    Ok(d_loss)
}

/// D on generated images with gradients flowing through D into G, the G loss and its metric as outputs.
fn generator_loss(net: &mut Net, opts: &StepOptions, fake: ValueId, gen_t: Option<ValueId>) -> Result<ValueId> {
    let fake = augment::apply(net.graph(), opts.diffaugment, fake, "gen")?;
    let logits = models::discriminator(net, &opts.arch, fake, "gen")?;
    let g = net.graph();
    let mut s = g.scope("g_loss");
    let g_loss = match gen_t {
        Some(t) => loss::bce_with_logits(&mut s, logits, t)?,
        None => loss::negated_mean(&mut s, logits)?,
    };
    let g_fake = mean_probability(&mut s, logits)?;
    drop(s);
    g.output(g_loss, G_LOSS)?;
    g.output(g_fake, G_FAKE)?;
    Ok(g_loss)
}

/// The generator's update: G forward on `z` (training mode; G's running statistics are updated here, once per
/// iteration like PyTorch's single G forward), D forward on the result with D's parameters as plain inputs
/// (frozen: no weight gradients, no update; gradients flow through D into G; D's running statistics are updated,
/// as PyTorch's `netD(fake)` in training mode does), loss `BCE(D(G(z)), gen_target)`, Adam on G's parameters.
pub fn g_step(opts: &StepOptions, store: &mut ParamStore) -> Result<StepGraph> {
    opts.check()?;
    let mut g = Graph::new(StepKind::GStep.graph_name());
    g.set_primitive_backward(opts.primitive_backward);
    let z = declare_z(&mut g, opts)?;
    let gen_t = declare_target(&mut g, opts, GEN_TARGET)?;
    let mut net = Net::new(&mut g, store, Mode::Train, Binding::Inputs);
    let fake = models::generator(&mut net, &opts.arch, z)?;
    // The D step owns D's spectral-norm vectors: here they are read, as its weights are.
    net.set_power_iteration_updates(false);
    let l = generator_loss(&mut net, opts, fake, gen_t)?;
    let params = net.finish().params;
    let g_params = params_of(&g, &params, "g.");
    let step = build_train_step(&mut g, l, &g_params, &opts.adam(G_ADAM)).context("building the G step")?;
    average_generator(&mut g, opts, &step)?;
    Ok(StepGraph::new(StepKind::GStep, g))
}

/// One whole PyTorch-example iteration in one graph: G forward once (its running statistics updated), the D step
/// on `x` and the detached `G(z)`, the D update, then D with its *updated* parameters on the same `G(z)` and the
/// G update through it. Identical in value to [`d_step`] followed by [`g_step`] on the same `z`, with one G
/// forward fewer.
pub fn fused_step(opts: &StepOptions, store: &mut ParamStore) -> Result<StepGraph> {
    opts.check()?;
    let mut g = Graph::new(StepKind::Fused.graph_name());
    g.set_primitive_backward(opts.primitive_backward);
    let real = declare_real(&mut g, opts)?;
    let z = declare_z(&mut g, opts)?;
    let real_t = declare_target(&mut g, opts, REAL_TARGET)?;
    let fake_t = declare_target(&mut g, opts, FAKE_TARGET)?;
    let gen_t = declare_target(&mut g, opts, GEN_TARGET)?;
    let x_real = images_to_nchw(&mut g, real)?;
    let mut net = Net::new(&mut g, store, Mode::Train, Binding::Inputs);
    let fake = models::generator(&mut net, &opts.arch, z)?;
    let fake_detached = net.graph().stop_gradient(fake)?;
    let d_loss = discriminator_loss(&mut net, opts, x_real, fake_detached, real_t, fake_t)?;
    let so_far = net.io().params.clone();
    let d_params = params_of(net.graph(), &so_far, "d.");
    // The D update declares its parameters' and moments' outputs; the running statistics advance once more in
    // the G half, so their outputs are declared by the G update, with the final values.
    let pending = net.graph().take_state_updates();
    let d_step = build_train_step(net.graph(), d_loss, &d_params, &opts.adam(D_ADAM)).context("D update")?;
    for (state, value) in pending {
        net.graph().set_state_update(state, value)?;
    }
    let updated: BTreeMap<String, ValueId> = d_step
        .state
        .iter()
        .filter(|s| s.role == onnxgrad::optim::StateRole::Parameter)
        .map(|s| Ok((s.input.clone(), net.graph().find(&s.output).context("updated D parameter")?)))
        .collect::<Result<_>>()?;
    net.bind_tensors(updated);
    let g_loss = generator_loss(&mut net, opts, fake, gen_t)?;
    let params = net.finish().params;
    let g_params = params_of(&g, &params, "g.");
    let step = build_train_step(&mut g, g_loss, &g_params, &opts.adam(G_ADAM)).context("G update")?;
    average_generator(&mut g, opts, &step)?;
    Ok(StepGraph::new(StepKind::Fused, g))
}

/// With [`StepOptions::ema`], the moving average of G's updated parameters (its running statistics are not
/// averaged: an exported average uses the raw generator's, as StyleGAN's EMA copies buffers).
fn average_generator(g: &mut Graph, opts: &StepOptions, step: &TrainStep) -> Result<()> {
    if opts.ema {
        append_ema(g, step, "g.").context("G's moving average")?;
    }
    Ok(())
}

/// The generator alone for inference: `z f32 [n, nz]` -> `image f32 [n, 3, S, S]` in [-1, 1] and
/// `image_u8 u8 [n, S, S, 3]`; batch norm in evaluation mode (running statistics), every tensor from `store`
/// baked in as an initializer.
/// The symbolic batch dimension of exported generators.
pub const GEN_BATCH: &str = "batch";

pub fn generator_inference(arch: &Arch, store: &mut ParamStore, n: usize) -> Result<StepGraph> {
    arch.validate()?;
    let mut g = Graph::new(StepKind::Generator.graph_name());
    let z = g.input(GEN_Z, DType::F32, &[n, arch.nz])?;
    let mut net = Net::new(&mut g, store, Mode::Eval, Binding::Constants);
    let image = models::generator(&mut net, arch, z)?;
    let u8_image = {
        let mut s = g.scope("to_u8");
        // tanh keeps x in [-1, 1], so (x + 1) * 127.5 + 0.5 is in [0.5, 255.5] and Cast's truncation rounds.
        let x = s.add_scalar(image, 1.0)?;
        let x = s.scale(x, 127.5)?;
        let x = s.add_scalar(x, 0.5)?;
        let x = s.transpose(x, &[0, 2, 3, 1])?;
        s.cast(x, DType::U8)?
    };
    g.output(image, GEN_IMAGE)?;
    g.output(u8_image, GEN_IMAGE_U8)?;
    Ok(StepGraph::new(StepKind::Generator, g))
}
