//! Loss functions, built from primitives (so autodiff differentiates them like any other graph).
use crate::error::{invalid, Result};
use crate::ir::{Graph, ValueId};
use crate::shape::broadcast;

fn check_targets(g: &Graph, op: &str, pred: ValueId, targets: ValueId) -> Result<()> {
    if g.dtype(pred) != g.dtype(targets) || !g.dtype(pred).is_float() {
        return Err(invalid(op, "predictions and targets must share a float dtype"));
    }
    if broadcast(op, g.shape(pred), g.shape(targets))? != g.shape(pred) {
        return Err(invalid(op, format!("targets {:?} do not fit predictions {:?}", g.shape(targets), g.shape(pred))));
    }
    Ok(())
}

/// Mean binary cross-entropy between `sigmoid(logits)` and `targets` (probabilities, broadcast to the logits'
/// shape; feed them as a graph input to vary label smoothing or label noise per step without rebuilding).
///
/// Written in the stable form `max(x, 0) - x t + log(1 + exp(-|x|))`, with `-|x|` computed as `x - 2 max(x, 0)`:
/// the gradient is then exactly `sigmoid(x) - t` everywhere, including x = 0 (where `Abs` and `Relu` have kinks
/// whose one-sided derivatives would otherwise not cancel).
pub fn bce_with_logits(g: &mut Graph, logits: ValueId, targets: ValueId) -> Result<ValueId> {
    check_targets(g, "bce_with_logits", logits, targets)?;
    let mut g = g.scope("bce_loss");
    let relu = g.relu(logits)?;
    let two_relu = g.scale(relu, 2.0)?;
    let neg_abs = g.sub(logits, two_relu)?;
    let e = g.exp(neg_abs)?;
    let one_plus = g.add_scalar(e, 1.0)?;
    let log_term = g.log(one_plus)?;
    let xt = g.mul(logits, targets)?;
    let linear = g.sub(relu, xt)?;
    let per_element = g.add(linear, log_term)?;
    g.mean_all(per_element)
}

/// Mean squared error `mean((pred - target)^2)`.
pub fn mse(g: &mut Graph, pred: ValueId, target: ValueId) -> Result<ValueId> {
    check_targets(g, "mse", pred, target)?;
    let mut g = g.scope("mse_loss");
    let d = g.sub(pred, target)?;
    let sq = g.mul(d, d)?;
    g.mean_all(sq)
}

/// The discriminator's hinge loss on real or generated logits: `mean(relu(1 - x))` for real images
/// (`real = true`), `mean(relu(1 + x))` for generated ones (Lim & Ye 2017, as in SAGAN and BigGAN).
pub fn hinge(g: &mut Graph, logits: ValueId, real: bool) -> Result<ValueId> {
    if !g.dtype(logits).is_float() {
        return Err(invalid("hinge", "logits must be float"));
    }
    let mut g = g.scope("hinge_loss");
    let signed = if real { g.neg(logits)? } else { logits };
    let margin = g.add_scalar(signed, 1.0)?;
    let violated = g.relu(margin)?;
    g.mean_all(violated)
}

/// The generator's loss against a hinge-trained discriminator: `-mean(x)`.
pub fn negated_mean(g: &mut Graph, logits: ValueId) -> Result<ValueId> {
    let mut g = g.scope("negated_mean");
    let mean = g.mean_all(logits)?;
    g.neg(mean)
}
