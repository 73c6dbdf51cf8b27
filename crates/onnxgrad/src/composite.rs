//! Operators built from primitives: training-mode batch normalisation, dropout with an explicit mask, and the
//! power iteration of spectral normalisation.
//!
//! Training-mode batch norm is written with `ReduceMean`/`Sub`/`Mul`/`Sqrt` rather than as
//! `BatchNormalization(training_mode=1)`: stock ONNX Runtime 1.31 accepts that node only with all three outputs
//! declared and defines its running-variance update with the biased batch variance, while this form needs no
//! hand-written backward (autodiff differentiates the primitives, including through the batch statistics), uses
//! PyTorch's running-statistics convention, and runs on any execution provider.
use crate::error::{invalid, Result};
use crate::ir::{FusedKind, FusedRegion, Graph, ValueId};

/// The values of a training-mode batch normalisation.
#[derive(Debug, Clone, Copy)]
pub struct BatchNormTrain {
    /// The normalised, scaled and shifted output.
    pub y: ValueId,
    /// `[C]` batch mean.
    pub batch_mean: ValueId,
    /// `[C]` biased batch variance (the one used to normalise).
    pub batch_var: ValueId,
    /// `[C]` updated running mean, gradient-free.
    pub running_mean: ValueId,
    /// `[C]` updated running variance (unbiased batch variance blended in), gradient-free.
    pub running_var: ValueId,
}

/// The values of one spectral normalisation ([`Graph::spectral_norm`]).
#[derive(Debug, Clone, Copy)]
pub struct SpectralNorm {
    /// `w / sigma`, `w`'s shape.
    pub weight: ValueId,
    /// `[]` the estimate of `w`'s largest singular value (gradients flow through it into `w`).
    pub sigma: ValueId,
    /// `[rows]` the left singular vector after this iteration, gradient-free: the next call's `u`.
    pub u: ValueId,
}

/// Keeps the power iteration's vector norms away from zero (PyTorch's `normalize` eps).
const SPECTRAL_EPS: f64 = 1e-12;

impl Graph {
    /// Spectral normalisation (Miyato et al. 2018, as `torch.nn.utils.spectral_norm`): `w` viewed as a
    /// `[rows, rest]` matrix `W` (rows = the first axis), one power iteration from the carried left vector `u`
    /// (`[rows]`), `v = normalize(W^T u)`, `u' = normalize(W v)`, `sigma = u'^T W v`, output `w / sigma`. As in
    /// PyTorch, `u'` and `v` are constants for the gradient: it flows through `sigma`'s `W` and the division.
    pub fn spectral_norm(&mut self, w: ValueId, u: ValueId) -> Result<SpectralNorm> {
        let shape = self.shape(w).to_vec();
        let rows = *shape.first().ok_or_else(|| invalid("spectral_norm", "a scalar weight"))?;
        let rest: usize = shape[1..].iter().product();
        if self.shape(u) != [rows] {
            return Err(invalid("spectral_norm", format!("u should be [{rows}] for a weight {shape:?}")));
        }
        let matrix = self.reshape_to(w, &[rows, rest])?;
        let u = self.stop_gradient(u)?;
        let u_row = self.reshape_to(u, &[1, rows])?;
        let v = self.matmul(u_row, matrix)?;
        let v = self.normalize_row(v)?;
        let v = self.stop_gradient(v)?;
        let wv = self.gemm(v, matrix, None, crate::ops::GemmSpec { trans_b: true, ..Default::default() })?;
        let u_new = self.normalize_row(wv)?;
        let u_new = self.stop_gradient(u_new)?;
        let utw = self.matmul(u_new, matrix)?;
        let uwv = self.mul(utw, v)?;
        let sigma = self.sum_all(uwv)?;
        let weight = self.div(w, sigma)?;
        let u = self.reshape_to(u_new, &[rows])?;
        Ok(SpectralNorm { weight, sigma, u })
    }

    /// `x / (||x|| + eps)` for a `[1, n]` row.
    fn normalize_row(&mut self, x: ValueId) -> Result<ValueId> {
        let squares = self.mul(x, x)?;
        let norm = self.sum_all(squares)?;
        let norm = self.sqrt(norm)?;
        let norm = self.add_scalar(norm, SPECTRAL_EPS)?;
        self.div(x, norm)
    }

    /// Batch normalisation with batch statistics over every axis but 1 (the channel axis), as PyTorch's
    /// `BatchNorm` in training mode: `y = (x - mean) / sqrt(var + eps) * scale + bias` with the biased variance,
    /// and running statistics `r' = (1 - momentum) * r + momentum * s` where `s` is the batch mean or the
    /// *unbiased* batch variance (`momentum` = PyTorch's, 0.1 by default; ONNX's attribute is `1 - momentum`).
    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm_train(
        &mut self,
        x: ValueId,
        scale: ValueId,
        bias: ValueId,
        running_mean: ValueId,
        running_var: ValueId,
        epsilon: f32,
        momentum: f32,
    ) -> Result<BatchNormTrain> {
        let shape = self.shape(x).to_vec();
        let count: usize = shape.iter().enumerate().filter(|&(i, _)| i != 1).map(|(_, &d)| d).product();
        if shape.len() < 2 || count < 2 {
            return Err(invalid("batch_norm_train", format!("input {shape:?} needs a channel axis and 2+ samples")));
        }
        let channels = shape[1];
        for p in [scale, bias, running_mean, running_var] {
            if self.shape(p) != [channels] || self.dtype(p) != self.dtype(x) {
                return Err(invalid("batch_norm_train", format!("{:?} should be [{channels}]", self.value_name(p))));
            }
        }
        let (y, mean, var) = self.batch_norm_batch_stats(x, scale, bias, epsilon)?;

        let batch_mean = self.reshape_to(mean, &[channels])?;
        let batch_var = self.reshape_to(var, &[channels])?;
        let mean_sg = self.stop_gradient(batch_mean)?;
        let var_sg = self.stop_gradient(batch_var)?;
        let unbiased = self.scale(var_sg, count as f64 / (count - 1) as f64)?;
        let new_mean = self.blend(running_mean, mean_sg, momentum)?;
        let new_var = self.blend(running_var, unbiased, momentum)?;
        Ok(BatchNormTrain { y, batch_mean, batch_var, running_mean: new_mean, running_var: new_var })
    }

    /// The normalisation half of [`Graph::batch_norm_train`]: `y` from batch statistics over every axis but 1,
    /// without reading or updating running statistics (a network run in training mode whose statistics another
    /// graph tracks). Returns `(y, mean, biased variance)`, the statistics with kept (size-1) reduced axes.
    pub fn batch_norm_batch_stats(
        &mut self,
        x: ValueId,
        scale: ValueId,
        bias: ValueId,
        epsilon: f32,
    ) -> Result<(ValueId, ValueId, ValueId)> {
        let shape = self.shape(x).to_vec();
        let count: usize = shape.iter().enumerate().filter(|&(i, _)| i != 1).map(|(_, &d)| d).product();
        if shape.len() < 2 || count < 2 {
            return Err(invalid("batch_norm", format!("input {shape:?} needs a channel axis and 2+ samples")));
        }
        let channels = shape[1];
        for p in [scale, bias] {
            if self.shape(p) != [channels] || self.dtype(p) != self.dtype(x) {
                return Err(invalid("batch_norm", format!("{:?} should be [{channels}]", self.value_name(p))));
            }
        }
        let mut per_channel = vec![1; shape.len()];
        per_channel[1] = channels;
        let axes: Vec<i64> = (0..shape.len() as i64).filter(|&a| a != 1).collect();

        let first = self.nodes().len();
        let mean = self.reduce_mean(x, &axes, true)?;
        let xc = self.sub(x, mean)?;
        let sq = self.mul(xc, xc)?;
        let var = self.reduce_mean(sq, &axes, true)?;
        let ve = self.add_scalar(var, epsilon as f64)?;
        let sd = self.sqrt(ve)?;
        let inv = self.reciprocal(sd)?;
        let xhat = self.mul(xc, inv)?;
        let scale_b = self.reshape_to(scale, &per_channel)?;
        let bias_b = self.reshape_to(bias, &per_channel)?;
        let scaled = self.mul(xhat, scale_b)?;
        let y = self.add(scaled, bias_b)?;
        let last = self.nodes().len() - 1;
        let kind = FusedKind::BatchNorm { x, scale, bias, mean, var, inv, xhat, y };
        self.fused.push(FusedRegion { first, last, kind });
        Ok((y, mean, var))
    }

    /// `(1 - w) * old + w * new`.
    fn blend(&mut self, old: ValueId, new: ValueId, w: f32) -> Result<ValueId> {
        let a = self.scale(old, 1.0 - w as f64)?;
        let b = self.scale(new, w as f64)?;
        self.add(a, b)
    }

    /// Inverted dropout with an explicit mask: `x * mask / (1 - p)`. `mask` holds 0/1 in `x`'s dtype and
    /// broadcasts to `x`; it is a graph input so each step feeds a fresh one (ONNX's random operators take only a
    /// fixed `seed` attribute, so in-graph masks would not be reproducible per step).
    pub fn dropout(&mut self, x: ValueId, mask: ValueId, p: f32) -> Result<ValueId> {
        if !(0.0..1.0).contains(&p) {
            return Err(invalid("dropout", format!("p = {p} must be in [0, 1)")));
        }
        let kept = self.mul(x, mask)?;
        self.scale(kept, 1.0 / (1.0 - p as f64))
    }
}
