//! In-graph optimisers: a training step as one ONNX graph.
//!
//! [`build_train_step`] takes a graph that computes a loss from parameters (graph inputs), appends the gradient
//! nodes and an Adam or AdamW update, and declares every output a trainer needs. The step's state (parameters,
//! moments, batch-norm running statistics registered with [`Graph::set_state_update`]) comes in as graph inputs
//! `X` and goes out as outputs `X.new`, so a runtime can keep it on the device and swap the two buffers between
//! steps. Hyperparameters are scalar graph inputs, so learning-rate schedules or beta changes need no rebuild:
//!
//! | input | dtype | meaning |
//! |---|---|---|
//! | `<prefix>.lr` | param dtype | learning rate |
//! | `<prefix>.beta1`, `<prefix>.beta2` | param dtype | moment decay rates |
//! | `<prefix>.eps` | param dtype | denominator epsilon |
//! | `<prefix>.weight_decay` | param dtype | L2 penalty (Adam) or decoupled decay (AdamW) |
//! | `<prefix>.step` | i64 | 1-based step number `t`, for the bias corrections |
//!
//! The update follows PyTorch's `torch.optim.Adam`/`AdamW` (single-tensor path):
//! `m' = b1 m + (1-b1) g`, `v' = b2 v + (1-b2) g^2`,
//! `p' = p - (lr / (1-b1^t)) m' / (sqrt(v') / sqrt(1-b2^t) + eps)`, with `g = grad + wd p` for Adam, and
//! `p` first scaled by `1 - lr wd` for AdamW.
use crate::autodiff::gradients;
use crate::error::{invalid, Error, Result};
use crate::ir::{DType, Graph, ValueId};

/// Which Adam variant, and how its graph inputs are named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdamOptions {
    /// AdamW (decoupled weight decay) instead of Adam's L2 penalty.
    pub decoupled_weight_decay: bool,
    /// Prefix of the hyperparameter inputs (`adam` -> `adam.lr`, ...).
    pub prefix: String,
    /// Also output each parameter's gradient as `<param>.grad` (for logging gradient norms).
    pub output_gradients: bool,
}

impl AdamOptions {
    /// `torch.optim.Adam`.
    pub fn adam() -> AdamOptions {
        AdamOptions { decoupled_weight_decay: false, prefix: "adam".into(), output_gradients: false }
    }

    /// `torch.optim.AdamW`.
    pub fn adamw() -> AdamOptions {
        AdamOptions { decoupled_weight_decay: true, ..AdamOptions::adam() }
    }
}

/// Names of the scalar hyperparameter inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HyperInputs {
    pub lr: String,
    pub beta1: String,
    pub beta2: String,
    pub eps: String,
    pub weight_decay: String,
    /// i64, 1 for the first step.
    pub step: String,
}

/// What a piece of step state is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateRole {
    /// A trained parameter.
    Parameter,
    /// Adam's first moment of a parameter (starts at zero).
    FirstMoment,
    /// Adam's second moment of a parameter (starts at zero).
    SecondMoment,
    /// Other state carried between steps (batch-norm running statistics).
    Buffer,
    /// A moving average of a parameter (starts equal to it; [`crate::ema`]).
    Average,
}

/// One piece of state: fed as `input`, returned updated as `output`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateSlot {
    pub input: String,
    pub output: String,
    pub role: StateRole,
    pub dtype: DType,
    pub shape: Vec<usize>,
}

/// The interface of a training-step graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainStep {
    /// Output holding the loss (before the update).
    pub loss: String,
    /// Every (input, updated output) pair, parameters first, then moments, then buffers.
    pub state: Vec<StateSlot>,
    pub hyper: HyperInputs,
    /// (parameter, gradient output) pairs when [`AdamOptions::output_gradients`] is set.
    pub gradients: Vec<(String, String)>,
    /// Every other graph input (data, labels, noise, dropout masks, a frozen network's weights), in graph order.
    pub other_inputs: Vec<(String, DType, Vec<usize>)>,
}

impl TrainStep {
    /// (state input name, updated output name) pairs, for binding buffers that swap between steps.
    pub fn state_pairs(&self) -> Vec<(String, String)> {
        self.state.iter().map(|s| (s.input.clone(), s.output.clone())).collect()
    }
}

/// Name of the updated value of state input `name`.
pub fn updated_name(name: &str) -> String {
    format!("{name}.new")
}

/// Turns `g` into a training step: gradients of `loss` with respect to `params` (graph inputs; other graph
/// inputs such as a frozen network's weights stay plain inputs), an Adam/AdamW update of each, and outputs for
/// the loss (`loss`, unless it is already an output), every updated state (`X.new`) and optionally the gradients.
pub fn build_train_step(g: &mut Graph, loss: ValueId, params: &[ValueId], opts: &AdamOptions) -> Result<TrainStep> {
    let dtype = check_params(g, params)?;
    let grads = gradients(g, loss, params)?;
    let hyper = declare_hyper_inputs(g, &opts.prefix, dtype)?;
    let loss_name = match g.outputs().contains(&loss) {
        true => g.value_name(loss).to_string(),
        false => {
            g.output(loss, "loss")?;
            "loss".to_string()
        }
    };
    let coeffs = g.with_scopes(vec![opts.prefix.clone()], |g| StepCoefficients::new(g, &hyper))?;
    let mut params_out = Vec::new();
    let mut moments_out = Vec::new();
    let mut gradient_outputs = Vec::new();
    for &p in params {
        let name = g.value_name(p).to_string();
        let grad =
            grads.get(p).ok_or_else(|| Error::Autodiff(format!("parameter {name:?} does not affect the loss")))?;
        let shape = g.shape(p).to_vec();
        let m = g.input(&format!("{name}.adam_m"), dtype, &shape)?;
        let v = g.input(&format!("{name}.adam_v"), dtype, &shape)?;
        let scopes = vec![format!("{name}.adam")];
        let (p_new, m_new, v_new) = g.with_scopes(scopes, |g| adam_update(g, &coeffs, opts, p, grad, m, v))?;
        params_out.push(declare_state(g, p, p_new, StateRole::Parameter)?);
        moments_out.push(declare_state(g, m, m_new, StateRole::FirstMoment)?);
        moments_out.push(declare_state(g, v, v_new, StateRole::SecondMoment)?);
        if opts.output_gradients {
            let out = format!("{name}.grad");
            g.output(grad, &out)?;
            gradient_outputs.push((name, out));
        }
    }
    let mut state = params_out;
    state.extend(moments_out);
    for (input, new_value) in g.state_updates().to_vec() {
        state.push(declare_state(g, input, new_value, StateRole::Buffer)?);
    }
    let other_inputs = other_inputs(g, &state, &hyper);
    Ok(TrainStep { loss: loss_name, state, hyper, gradients: gradient_outputs, other_inputs })
}

fn other_inputs(g: &Graph, state: &[StateSlot], h: &HyperInputs) -> Vec<(String, DType, Vec<usize>)> {
    let hyper = [&h.lr, &h.beta1, &h.beta2, &h.eps, &h.weight_decay, &h.step];
    let known = |n: &str| state.iter().any(|s| s.input == n) || hyper.iter().any(|h| *h == n);
    g.inputs()
        .iter()
        .map(|&v| (g.value_name(v).to_string(), g.dtype(v), g.shape(v).to_vec()))
        .filter(|(n, _, _)| !known(n))
        .collect()
}

fn check_params(g: &Graph, params: &[ValueId]) -> Result<DType> {
    let first = params.first().ok_or_else(|| invalid("build_train_step", "no parameters to train"))?;
    let dtype = g.dtype(*first);
    for &p in params {
        if !g.inputs().contains(&p) {
            return Err(invalid("build_train_step", format!("parameter {:?} is not a graph input", g.value_name(p))));
        }
        if g.dtype(p) != dtype || !dtype.is_float() {
            return Err(invalid("build_train_step", "parameters must share one float dtype"));
        }
    }
    let mut ids = params.to_vec();
    ids.sort();
    ids.dedup();
    if ids.len() != params.len() {
        return Err(invalid("build_train_step", "a parameter is listed twice"));
    }
    Ok(dtype)
}

fn declare_hyper_inputs(g: &mut Graph, prefix: &str, dtype: DType) -> Result<HyperInputs> {
    let mut scalar = |field: &str, dtype: DType| -> Result<String> {
        let name = format!("{prefix}.{field}");
        g.input(&name, dtype, &[])?;
        Ok(name)
    };
    Ok(HyperInputs {
        lr: scalar("lr", dtype)?,
        beta1: scalar("beta1", dtype)?,
        beta2: scalar("beta2", dtype)?,
        eps: scalar("eps", dtype)?,
        weight_decay: scalar("weight_decay", dtype)?,
        step: scalar("step", DType::I64)?,
    })
}

fn declare_state(g: &mut Graph, input: ValueId, new_value: ValueId, role: StateRole) -> Result<StateSlot> {
    let name = g.value_name(input).to_string();
    let output = updated_name(&name);
    g.output(new_value, &output)?;
    Ok(StateSlot { input: name, output, role, dtype: g.dtype(input), shape: g.shape(input).to_vec() })
}

/// Scalars shared by every parameter's update.
struct StepCoefficients {
    beta1: ValueId,
    beta2: ValueId,
    one_minus_beta1: ValueId,
    one_minus_beta2: ValueId,
    eps: ValueId,
    weight_decay: ValueId,
    /// `lr / (1 - beta1^t)`
    step_size: ValueId,
    /// `sqrt(1 - beta2^t)`
    bias_correction2_sqrt: ValueId,
    /// `1 - lr * weight_decay` (AdamW)
    decay_factor: ValueId,
}

impl StepCoefficients {
    fn new(g: &mut Graph, h: &HyperInputs) -> Result<StepCoefficients> {
        let get = |g: &Graph, n: &str| g.find(n).ok_or_else(|| Error::Autodiff(format!("missing input {n}")));
        let (lr, beta1, beta2) = (get(g, &h.lr)?, get(g, &h.beta1)?, get(g, &h.beta2)?);
        let (eps, weight_decay, step) = (get(g, &h.eps)?, get(g, &h.weight_decay)?, get(g, &h.step)?);
        let one = g.scalar_like(lr, 1.0);
        let t = g.cast(step, g.dtype(lr))?;
        let one_minus_beta1 = g.sub(one, beta1)?;
        let one_minus_beta2 = g.sub(one, beta2)?;
        let b1t = g.pow(beta1, t)?;
        let bc1 = g.sub(one, b1t)?;
        let b2t = g.pow(beta2, t)?;
        let bc2 = g.sub(one, b2t)?;
        let step_size = g.div(lr, bc1)?;
        let bias_correction2_sqrt = g.sqrt(bc2)?;
        let lr_wd = g.mul(lr, weight_decay)?;
        let decay_factor = g.sub(one, lr_wd)?;
        Ok(StepCoefficients {
            beta1,
            beta2,
            one_minus_beta1,
            one_minus_beta2,
            eps,
            weight_decay,
            step_size,
            bias_correction2_sqrt,
            decay_factor,
        })
    }
}

/// One parameter's Adam/AdamW update: returns (p', m', v').
fn adam_update(
    g: &mut Graph,
    c: &StepCoefficients,
    opts: &AdamOptions,
    p: ValueId,
    grad: ValueId,
    m: ValueId,
    v: ValueId,
) -> Result<(ValueId, ValueId, ValueId)> {
    let grad = match opts.decoupled_weight_decay {
        true => grad,
        false => {
            let decay = g.mul(p, c.weight_decay)?;
            g.add(grad, decay)?
        }
    };
    let m_old = g.mul(m, c.beta1)?;
    let m_in = g.mul(grad, c.one_minus_beta1)?;
    let m_new = g.add(m_old, m_in)?;
    let v_old = g.mul(v, c.beta2)?;
    let g2 = g.mul(grad, grad)?;
    let v_in = g.mul(g2, c.one_minus_beta2)?;
    let v_new = g.add(v_old, v_in)?;
    let root = g.sqrt(v_new)?;
    let corrected = g.div(root, c.bias_correction2_sqrt)?;
    let denom = g.add(corrected, c.eps)?;
    let ratio = g.div(m_new, denom)?;
    let update = g.mul(ratio, c.step_size)?;
    let base = match opts.decoupled_weight_decay {
        true => g.mul(p, c.decay_factor)?,
        false => p,
    };
    let p_new = g.sub(base, update)?;
    Ok((p_new, m_new, v_new))
}
