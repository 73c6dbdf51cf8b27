//! Layers with named, seeded parameters kept in a [`ParamStore`].
//!
//! A [`Net`] binds a store to a graph in a [`Mode`] (training: batch-norm batch statistics and running-statistic
//! updates, dropout masks; evaluation: running statistics, no dropout) and a [`Binding`] (parameters as graph
//! inputs for training steps, or baked in as initializers for a standalone inference model). The same store thus
//! builds the training-step graphs and the inference graph. Parameter names follow the graph's scopes and the
//! layer name: `d.conv2.weight`, `g.bn1.running_mean`.
//!
//! Initialisation is deterministic and independent of creation order: each tensor draws from a ChaCha8 stream
//! seeded by the store's seed and a hash of the tensor's name. Defaults follow DCGAN: convolution and linear
//! weights N(0, 0.02), batch-norm scale N(1, 0.02), biases and shifts 0, running mean 0 and variance 1.
use crate::composite::BatchNormTrain;
use crate::error::{Error, Result};
use crate::ir::{DType, Graph, Tensor, ValueId};
use crate::ops::ConvSpec;
use rand::rngs::ChaCha8Rng;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use std::collections::BTreeMap;

/// A stored tensor: shape and row-major f32 data.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Whether a stored tensor is trained or carried (batch-norm running statistics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    Trainable,
    Buffer,
}

/// How a new tensor is filled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    Normal { mean: f32, std: f32 },
    Constant(f32),
}

/// Named parameters and buffers, created on first use with a seeded initialisation.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamStore {
    seed: u64,
    entries: BTreeMap<String, (ParamKind, StoredTensor)>,
}

impl ParamStore {
    /// An empty store whose initialisations derive from `seed`.
    pub fn new(seed: u64) -> ParamStore {
        ParamStore { seed, entries: BTreeMap::new() }
    }

    pub fn get(&self, name: &str) -> Option<&StoredTensor> {
        self.entries.get(name).map(|(_, t)| t)
    }

    pub fn kind(&self, name: &str) -> Option<ParamKind> {
        self.entries.get(name).map(|(k, _)| *k)
    }

    /// All names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    /// Names of the trainable tensors, sorted.
    pub fn trainable_names(&self) -> Vec<String> {
        self.entries.iter().filter(|(_, (k, _))| *k == ParamKind::Trainable).map(|(n, _)| n.clone()).collect()
    }

    /// Replaces a tensor's data (e.g. with a training step's `X.new` output); the length must match.
    pub fn set(&mut self, name: &str, data: Vec<f32>) -> Result<()> {
        let (_, t) = self.entries.get_mut(name).ok_or_else(|| Error::Store(format!("no tensor named {name:?}")))?;
        if t.data.len() != data.len() {
            return Err(Error::Store(format!("{name}: {} values given, {} expected", data.len(), t.data.len())));
        }
        t.data = data;
        Ok(())
    }

    /// Every tensor as name -> (shape, data), for checkpoints.
    pub fn export(&self) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
        self.entries.iter().map(|(n, (_, t))| (n.clone(), (t.shape.clone(), t.data.clone()))).collect()
    }

    /// Loads tensors from a checkpoint. Existing entries keep their kind and must keep their shape; new names are
    /// added (as trainable until a layer claims them as buffers).
    pub fn import(&mut self, tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>) -> Result<()> {
        for (name, (shape, data)) in tensors {
            if shape.iter().product::<usize>() != data.len() {
                return Err(Error::Store(format!("{name}: shape {shape:?} does not hold {} values", data.len())));
            }
            match self.entries.get_mut(&name) {
                Some((_, t)) if t.shape != shape => {
                    return Err(Error::Store(format!("{name}: checkpoint shape {shape:?}, model shape {:?}", t.shape)))
                }
                Some((_, t)) => t.data = data,
                None => {
                    self.entries.insert(name, (ParamKind::Trainable, StoredTensor { shape, data }));
                }
            }
        }
        Ok(())
    }

    /// The tensor called `name`, created with `init` when missing; its shape must be `shape`.
    pub fn get_or_init(&mut self, name: &str, shape: &[usize], kind: ParamKind, init: Init) -> Result<&StoredTensor> {
        let seed = self.seed ^ fnv1a(name);
        let entry = self.entries.entry(name.to_string()).or_insert_with(|| (kind, initial_tensor(shape, init, seed)));
        if entry.1.shape != shape {
            return Err(Error::Store(format!("{name}: stored shape {:?}, layer wants {shape:?}", entry.1.shape)));
        }
        entry.0 = kind;
        Ok(&entry.1)
    }
}

/// 64-bit FNV-1a: a stable hash of a name (std's hasher may change between Rust releases).
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3))
}

fn initial_tensor(shape: &[usize], init: Init, seed: u64) -> StoredTensor {
    let n = shape.iter().product();
    let data = match init {
        Init::Constant(c) => vec![c; n],
        Init::Normal { mean, std } => {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let dist = Normal::new(mean, std).expect("a finite, non-negative std");
            (0..n).map(|_| dist.sample(&mut rng)).collect()
        }
    };
    StoredTensor { shape: shape.to_vec(), data }
}

/// Training or evaluation behaviour of batch norm and dropout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Train,
    Eval,
}

/// How stored tensors enter the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// As graph inputs named like the tensor (training steps: the runtime feeds and updates them).
    Inputs,
    /// As initializers holding the store's current values (a self-contained inference model).
    Constants,
}

/// DCGAN's weight initialisation.
pub const WEIGHT_INIT: Init = Init::Normal { mean: 0.0, std: 0.02 };
/// DCGAN's batch-norm scale initialisation.
pub const BN_SCALE_INIT: Init = Init::Normal { mean: 1.0, std: 0.02 };
/// Batch-norm epsilon (PyTorch's default).
pub const BN_EPSILON: f32 = 1e-5;
/// Batch-norm running-statistics momentum, PyTorch's convention (weight of the new batch statistic).
pub const BN_MOMENTUM: f32 = 0.1;

/// What a [`Net`] put into its graph.
#[derive(Debug, Clone, Default)]
pub struct NetIo {
    /// Trainable parameters in first-use order (graph inputs with [`Binding::Inputs`]).
    pub params: Vec<ValueId>,
    /// Their names.
    pub param_names: Vec<String>,
    /// Buffer inputs whose updates were registered with [`Graph::set_state_update`] (training mode, inputs).
    pub buffers: Vec<String>,
    /// Dropout mask inputs (name, shape): feed 0/1 f32 values each step.
    pub masks: Vec<(String, Vec<usize>)>,
}

/// Builds layers into a graph, drawing parameters from a store.
pub struct Net<'a> {
    graph: &'a mut Graph,
    store: &'a mut ParamStore,
    mode: Mode,
    binding: Binding,
    io: NetIo,
    /// Buffer name -> its current value (the running statistics after the latest batch-norm call).
    buffer_values: BTreeMap<String, ValueId>,
    /// Whether training-mode batch norm reads and updates running statistics (see [`Net::set_running_stat_updates`]).
    running_stat_updates: bool,
    /// Full tensor name -> value used instead of the stored tensor (see [`Net::bind_tensors`]).
    bound: BTreeMap<String, ValueId>,
    /// Whether layers normalise their weights spectrally (see [`Net::set_spectral_norm`]).
    spectral_norm: bool,
    /// Whether a spectral norm's power iteration updates its carried vector (see
    /// [`Net::set_power_iteration_updates`]).
    power_iteration_updates: bool,
    /// `<layer>.weight_u` -> (the weight it normalised, the normalised weight): a layer applied twice to the same
    /// weights in one graph shares one power iteration.
    spectral: BTreeMap<String, (ValueId, ValueId)>,
}

impl<'a> Net<'a> {
    pub fn new(graph: &'a mut Graph, store: &'a mut ParamStore, mode: Mode, binding: Binding) -> Net<'a> {
        Net {
            graph,
            store,
            mode,
            binding,
            io: NetIo::default(),
            buffer_values: BTreeMap::new(),
            running_stat_updates: true,
            bound: BTreeMap::new(),
            spectral_norm: false,
            power_iteration_updates: true,
            spectral: BTreeMap::new(),
        }
    }

    /// Whether the convolutions and linear layers built after it use spectrally normalised weights
    /// ([`Graph::spectral_norm`]), each with its carried vector `<layer>.weight_u` (a buffer, initialised
    /// N(0, 1)). One power iteration runs per weight value per graph: applying the layer again to the same
    /// weights reuses it, applying it to other weights (after an in-graph update) runs one from the latest vector.
    pub fn set_spectral_norm(&mut self, on: bool) {
        self.spectral_norm = on;
    }

    /// In [`Mode::Train`] with [`Binding::Inputs`], whether the first power iteration of each carried vector is
    /// registered as its state update (the default). Off, the vectors are read only: a graph that runs a network
    /// whose updates another graph owns (a GAN's discriminator inside the generator's step).
    pub fn set_power_iteration_updates(&mut self, on: bool) {
        self.power_iteration_updates = on;
    }

    /// In [`Mode::Train`], whether batch norm also reads and updates its running statistics (the default). Off,
    /// layers normalise with batch statistics only and add no running-statistic inputs or updates: for a network
    /// run in training mode in a graph that does not own its statistics (a GAN's generator inside the
    /// discriminator's step, when the generator's step tracks them). Takes effect for the layers built after it.
    pub fn set_running_stat_updates(&mut self, on: bool) {
        self.running_stat_updates = on;
    }

    /// Uses the given values (by full name, e.g. `d.conv1.weight`) instead of the stored tensors for the layers
    /// built after it; replaces earlier bindings. A network can thus be applied with computed parameters, such as
    /// its weights after an in-graph optimiser update. Bound tensors are not reported in [`NetIo::params`], and
    /// must have the stored tensor's shape.
    pub fn bind_tensors(&mut self, values: BTreeMap<String, ValueId>) {
        self.bound = values;
    }

    /// The graph, for operators without parameters (`net.graph().tanh(x)`).
    pub fn graph(&mut self) -> &mut Graph {
        self.graph
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Runs `f` inside the name scope `name` (`net.scoped("d", |n| ...)` names parameters `d.*`).
    pub fn scoped<T>(&mut self, name: &str, f: impl FnOnce(&mut Net<'a>) -> Result<T>) -> Result<T> {
        self.graph.push_scope(name);
        let out = f(self);
        self.graph.pop_scope();
        out
    }

    /// The stored tensor `<scope>.<name>` as a graph value (created on first use; reused when asked again, so a
    /// network applied twice in one graph shares its weights).
    pub fn tensor(&mut self, name: &str, shape: &[usize], kind: ParamKind, init: Init) -> Result<ValueId> {
        let full = self.graph.scoped_name(name);
        let stored = self.store.get_or_init(&full, shape, kind, init)?.clone();
        if let Some(&v) = self.bound.get(&full) {
            if self.graph.shape(v) != shape {
                return Err(Error::Store(format!("{full}: bound value has shape {:?}", self.graph.shape(v))));
            }
            return Ok(v);
        }
        if let Some(v) = self.graph.find(&full) {
            if self.graph.shape(v) != shape {
                return Err(Error::Store(format!("{full}: already in the graph with shape {:?}", self.graph.shape(v))));
            }
            return Ok(v);
        }
        let v = match self.binding {
            Binding::Inputs => self.graph.input(&full, DType::F32, shape)?,
            Binding::Constants => self.graph.initializer(&full, Tensor::f32(shape, stored.data)?)?,
        };
        if kind == ParamKind::Trainable {
            self.io.params.push(v);
            self.io.param_names.push(full);
        }
        Ok(v)
    }

    fn param(&mut self, name: &str, shape: &[usize], init: Init) -> Result<ValueId> {
        self.tensor(name, shape, ParamKind::Trainable, init)
    }

    fn channels(&self, x: ValueId) -> Result<usize> {
        self.graph.shape(x).get(1).copied().ok_or_else(|| crate::error::invalid("layer", "input has no channel axis"))
    }

    /// `Conv2d(in, out, kernel, stride, pad)`: weight `[out, in, k, k]` ~ N(0, 0.02), optional zero bias.
    #[allow(clippy::too_many_arguments)]
    pub fn conv2d(
        &mut self,
        name: &str,
        x: ValueId,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        pad: usize,
        bias: bool,
    ) -> Result<ValueId> {
        let in_channels = self.channels(x)?;
        self.scoped(name, |n| {
            let w = n.param("weight", &[out_channels, in_channels, kernel, kernel], WEIGHT_INIT)?;
            let w = n.normalized(w)?;
            let b = if bias { Some(n.param("bias", &[out_channels], Init::Constant(0.0))?) } else { None };
            n.graph.conv(x, w, b, &ConvSpec::new2d(stride, pad))
        })
    }

    /// `ConvTranspose2d(in, out, kernel, stride, pad, output_padding)`: weight `[in, out, k, k]` ~ N(0, 0.02).
    #[allow(clippy::too_many_arguments)]
    pub fn conv_transpose2d(
        &mut self,
        name: &str,
        x: ValueId,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        pad: usize,
        output_padding: usize,
        bias: bool,
    ) -> Result<ValueId> {
        let in_channels = self.channels(x)?;
        self.scoped(name, |n| {
            let w = n.param("weight", &[in_channels, out_channels, kernel, kernel], WEIGHT_INIT)?;
            let w = n.normalized(w)?;
            let b = if bias { Some(n.param("bias", &[out_channels], Init::Constant(0.0))?) } else { None };
            let spec = ConvSpec::new2d(stride, pad).with_output_padding(output_padding);
            n.graph.conv_transpose(x, w, b, &spec)
        })
    }

    /// `Linear(in, out)` on `[N, in]`: `x W^T + b` with weight `[out, in]` ~ N(0, 0.02), optional zero bias.
    pub fn linear(&mut self, name: &str, x: ValueId, out_features: usize, bias: bool) -> Result<ValueId> {
        let in_features = self.channels(x)?;
        self.scoped(name, |n| {
            let w = n.param("weight", &[out_features, in_features], WEIGHT_INIT)?;
            let w = n.normalized(w)?;
            let b = if bias { Some(n.param("bias", &[out_features], Init::Constant(0.0))?) } else { None };
            let spec = crate::ops::GemmSpec { trans_b: true, ..Default::default() };
            n.graph.gemm(x, w, b, spec)
        })
    }

    /// The layer weight `w` (in the layer's scope), spectrally normalised when [`Net::set_spectral_norm`] is on.
    fn normalized(&mut self, w: ValueId) -> Result<ValueId> {
        if !self.spectral_norm {
            return Ok(w);
        }
        let full = self.graph.scoped_name("weight_u");
        if let Some(&(source, normalized)) = self.spectral.get(&full) {
            if source == w {
                return Ok(normalized);
            }
        }
        let rows = self.graph.shape(w)[0];
        let stored = self.buffer_values.get(&full).copied();
        let u = match stored {
            Some(u) => u,
            None => self.tensor("weight_u", &[rows], ParamKind::Buffer, Init::Normal { mean: 0.0, std: 1.0 })?,
        };
        let sn = self.graph.spectral_norm(w, u)?;
        let first = stored.is_none();
        if first && self.mode == Mode::Train && self.binding == Binding::Inputs && self.power_iteration_updates {
            self.graph.set_state_update(u, sn.u)?;
            self.buffer_values.insert(full.clone(), sn.u);
            self.io.buffers.push(full.clone());
        } else if first {
            self.buffer_values.insert(full.clone(), u);
        }
        self.spectral.insert(full, (w, sn.weight));
        Ok(sn.weight)
    }

    /// Batch norm over axis 1: batch statistics and running-statistic updates in [`Mode::Train`], running
    /// statistics in [`Mode::Eval`]. Scale ~ N(1, 0.02), shift 0.
    pub fn batch_norm(&mut self, name: &str, x: ValueId) -> Result<ValueId> {
        self.batch_norm_with(name, x, BN_EPSILON, BN_MOMENTUM)
    }

    /// [`Net::batch_norm`] with a chosen epsilon and (PyTorch-convention) momentum.
    pub fn batch_norm_with(&mut self, name: &str, x: ValueId, epsilon: f32, momentum: f32) -> Result<ValueId> {
        let c = self.channels(x)?;
        self.scoped(name, |n| {
            let scale = n.param("weight", &[c], BN_SCALE_INIT)?;
            let shift = n.param("bias", &[c], Init::Constant(0.0))?;
            if n.mode == Mode::Train && !n.running_stat_updates {
                return Ok(n.graph.batch_norm_batch_stats(x, scale, shift, epsilon)?.0);
            }
            let mean = n.buffer("running_mean", c, 0.0)?;
            let var = n.buffer("running_var", c, 1.0)?;
            match n.mode {
                Mode::Eval => n.graph.batch_norm_inference(x, scale, shift, mean, var, epsilon),
                Mode::Train => {
                    let bn = n.graph.batch_norm_train(x, scale, shift, mean, var, epsilon, momentum)?;
                    n.advance_buffers(&bn)?;
                    Ok(bn.y)
                }
            }
        })
    }

    /// The current value of a running statistic: the graph input (or constant) on first use, the updated value
    /// of the previous call after that.
    fn buffer(&mut self, name: &str, channels: usize, init: f32) -> Result<ValueId> {
        let full = self.graph.scoped_name(name);
        if let Some(&v) = self.buffer_values.get(&full) {
            return Ok(v);
        }
        let v = self.tensor(name, &[channels], ParamKind::Buffer, Init::Constant(init))?;
        self.buffer_values.insert(full, v);
        Ok(v)
    }

    fn advance_buffers(&mut self, bn: &BatchNormTrain) -> Result<()> {
        for (name, new_value) in [("running_mean", bn.running_mean), ("running_var", bn.running_var)] {
            let full = self.graph.scoped_name(name);
            self.buffer_values.insert(full.clone(), new_value);
            if self.binding == Binding::Inputs {
                let input = self.graph.find(&full).expect("buffer input exists");
                self.graph.set_state_update(input, new_value)?;
                if !self.io.buffers.contains(&full) {
                    self.io.buffers.push(full);
                }
            }
        }
        Ok(())
    }

    /// Dropout with probability `p`: in training mode, multiplies by the graph input `<scope>.<name>.mask`
    /// (0/1 values, x's shape) and by `1/(1-p)`; in evaluation mode, the identity.
    pub fn dropout(&mut self, name: &str, x: ValueId, p: f32) -> Result<ValueId> {
        if self.mode == Mode::Eval || p == 0.0 {
            return Ok(x);
        }
        let mask_name = self.graph.scoped_name(&format!("{name}.mask"));
        let shape = self.graph.shape(x).to_vec();
        let mask = self.graph.input(&mask_name, self.graph.dtype(x), &shape)?;
        self.io.masks.push((mask_name, shape));
        self.graph.dropout(x, mask, p)
    }

    /// What the net has added to the graph so far (for graphs that keep building after an optimiser step).
    pub fn io(&self) -> &NetIo {
        &self.io
    }

    /// What the net added to the graph.
    pub fn finish(self) -> NetIo {
        self.io
    }
}
