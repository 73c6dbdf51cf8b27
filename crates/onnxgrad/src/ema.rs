//! Weight averaging in the step graph: an exponential moving average (EMA) of trained parameters, kept as
//! carried state beside them (what `torch.optim.swa_utils.AveragedModel` with an EMA function keeps in Python).
//!
//! [`append_ema`] takes a [`TrainStep`] and, for each of its parameters `p` (updated to `p.new` by the step),
//! adds the state `ema.p` -> `ema.p.new` with
//!
//! `ema.p.new = p.new + decay * (ema.p - p.new)`  (= `decay * ema.p + (1 - decay) * p.new`)
//!
//! `decay` is one scalar graph input (default name [`EMA_DECAY`]), so a trainer can warm it up (small at first,
//! so the average does not remember the random initial weights for thousands of steps) without a rebuild. The
//! average starts equal to the parameters (a trainer initialises `ema.p` with `p`).
use crate::error::{invalid, Result};
use crate::ir::Graph;
use crate::optim::{updated_name, StateRole, StateSlot, TrainStep};

/// The decay input's name.
pub const EMA_DECAY: &str = "ema.decay";

/// The state name of `param`'s average.
pub fn ema_name(param: &str) -> String {
    format!("ema.{param}")
}

/// Appends the averages of `step`'s parameters whose names start with `prefix` (all of them for ""); returns
/// their state slots (role [`StateRole::Average`]).
pub fn append_ema(g: &mut Graph, step: &TrainStep, prefix: &str) -> Result<Vec<StateSlot>> {
    let params: Vec<&StateSlot> =
        step.state.iter().filter(|s| s.role == StateRole::Parameter && s.input.starts_with(prefix)).collect();
    let first = params.first().ok_or_else(|| invalid("append_ema", format!("no parameters named {prefix}*")))?;
    let decay = g.input(EMA_DECAY, first.dtype, &[])?;
    let mut slots = Vec::with_capacity(params.len());
    for p in params {
        let name = ema_name(&p.input);
        let p_new = g.find(&p.output).ok_or_else(|| invalid("append_ema", format!("no output {:?}", p.output)))?;
        let avg = g.input(&name, p.dtype, &p.shape)?;
        let new = g.with_scopes(vec![format!("{name}.update")], |g| -> Result<_> {
            let gap = g.sub(avg, p_new)?;
            let pulled = g.mul(gap, decay)?;
            g.add(p_new, pulled)
        })?;
        let output = updated_name(&name);
        g.output(new, &output)?;
        slots.push(StateSlot { input: name, output, role: StateRole::Average, dtype: p.dtype, shape: p.shape.clone() });
    }
    Ok(slots)
}

/// The decay after `updates` parameter updates (1-based) for a target `decay`: `min(decay, (1 + t) / (10 + t))`,
/// TensorFlow's `ExponentialMovingAverage(num_updates=t)` warm-up: 0.18 at the first update, 0.9 by the 80th.
pub fn warmed_up_decay(decay: f64, updates: u64) -> f64 {
    let t = updates as f64;
    decay.min((1.0 + t) / (10.0 + t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_up_starts_small_and_reaches_the_target() {
        assert!((warmed_up_decay(0.999, 1) - 2.0 / 11.0).abs() < 1e-12);
        assert!((warmed_up_decay(0.999, 80) - 0.9).abs() < 1e-12);
        assert_eq!(warmed_up_decay(0.999, 1_000_000), 0.999);
        assert_eq!(warmed_up_decay(0.0, 5), 0.0);
    }
}
