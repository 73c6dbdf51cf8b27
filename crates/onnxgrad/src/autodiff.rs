//! Reverse-mode automatic differentiation over a [`Graph`].
//!
//! [`gradients`] appends the gradient nodes of a scalar loss with respect to chosen values. Only the part of the
//! graph that lies on a path from one of those values to the loss is differentiated, and only the inputs of a
//! node that depend on one of them get a gradient. So a parameter that is not asked for (a frozen
//! discriminator's weights in a generator step) still passes gradient through to what is before it, but no
//! weight-gradient nodes are emitted for it. `StopGradient`, comparisons and other non-differentiable operators
//! end every path.
//!
//! Nodes are visited in reverse topological order (the reverse of creation order), so when a node is visited
//! every consumer of its outputs has already contributed: a value used several times (fan-out) gets the sum of
//! its contributions (one `Sum` node), named `<value>.grad`.
use crate::error::{Error, Result};
use crate::ir::{FusedKind, FusedRegion, Graph, Tensor, ValueId};
use crate::vjp::vjp;
use std::collections::{HashMap, HashSet};

/// Gradient values of one [`gradients`] call, by the value they differentiate.
#[derive(Debug, Clone, Default)]
pub struct Gradients {
    order: Vec<ValueId>,
    grads: HashMap<ValueId, ValueId>,
}

impl Gradients {
    /// The gradient of the loss with respect to `v`; None when `v` does not influence the loss.
    pub fn get(&self, v: ValueId) -> Option<ValueId> {
        self.grads.get(&v).copied()
    }

    /// (value, gradient) pairs in the order asked for, leaving out values with no influence on the loss.
    pub fn iter(&self) -> impl Iterator<Item = (ValueId, ValueId)> + '_ {
        self.order.iter().filter_map(|v| self.grads.get(v).map(|g| (*v, *g)))
    }
}

/// Appends to `g` the nodes computing d`loss`/d`v` for each `v` in `wrt`. `loss` must be a float tensor with one
/// element; each `wrt` value must be a float tensor (a graph input, an initializer or any computed value).
pub fn gradients(g: &mut Graph, loss: ValueId, wrt: &[ValueId]) -> Result<Gradients> {
    if !g.dtype(loss).is_float() || g.value(loss).numel() != 1 {
        return Err(Error::Autodiff(format!(
            "the loss {:?} must be a float tensor with one element, it is {:?} {:?}",
            g.value_name(loss),
            g.dtype(loss),
            g.shape(loss)
        )));
    }
    if let Some(&bad) = wrt.iter().find(|&&v| !g.dtype(v).is_float()) {
        return Err(Error::Autodiff(format!("{:?} is not a float tensor", g.value_name(bad))));
    }
    let depends = depends_on(g, wrt);
    let reaches = reaches_loss(g, loss);
    let mut acc = Accumulator { first_new_value: g.values().len(), ..Accumulator::default() };
    acc.seed(g, loss)?;
    let regions: HashMap<usize, FusedRegion> =
        if g.primitive_backward { HashMap::new() } else { g.fused.iter().map(|r| (r.last, r.clone())).collect() };
    let mut skip_down_to: Option<usize> = None;
    for index in (0..g.nodes().len()).rev() {
        if let Some(first) = skip_down_to {
            if index >= first {
                continue;
            }
            skip_down_to = None;
        }
        if let Some(region) = regions.get(&index) {
            if fused_vjp(g, region, &depends, &mut acc)? {
                skip_down_to = Some(region.first);
                continue;
            }
        }
        let node = g.nodes()[index].clone();
        if !node.outputs.iter().any(|o| depends[o.0] && reaches[o.0]) {
            continue;
        }
        let needs: Vec<bool> = node.inputs.iter().map(|i| depends[i.0]).collect();
        let dys = node.outputs.iter().map(|&o| acc.total(g, o)).collect::<Result<Vec<_>>>()?;
        if dys.iter().all(Option::is_none) {
            continue;
        }
        let scopes = vec![format!("{}.bwd", node.name)];
        let dxs = g.with_scopes(scopes, |g| vjp(g, &node, &dys, &needs))?;
        for ((&input, dx), &need) in node.inputs.iter().zip(dxs).zip(&needs) {
            if let (Some(dx), true) = (dx, need) {
                check_gradient_type(g, &node.name, input, dx)?;
                acc.pending.entry(input).or_default().push(dx);
            }
        }
    }
    let mut out = Gradients { order: wrt.to_vec(), grads: HashMap::new() };
    for &v in wrt {
        if let Some(grad) = acc.total(g, v)? {
            out.grads.insert(v, grad);
        }
    }
    Ok(out)
}

/// Applies a fused region's backward rule when only its main output has a gradient; returns false (nothing done)
/// otherwise, and the caller differentiates the region's nodes one by one.
fn fused_vjp(g: &mut Graph, region: &FusedRegion, depends: &[bool], acc: &mut Accumulator) -> Result<bool> {
    match region.kind {
        FusedKind::BatchNorm { x, scale, bias, mean, var, inv, xhat, y } => {
            if [mean, var, inv, xhat].iter().any(|v| acc.pending.contains_key(v) || acc.totals.contains_key(v)) {
                return Ok(false);
            }
            let Some(dy) = acc.total(g, y)? else {
                return Ok(true); // no gradient reaches the output: nothing to propagate
            };
            let node_name = g.producer(y).map(|n| n.name.clone()).unwrap_or_default();
            let grads =
                g.with_scopes(vec![format!("{node_name}.bwd")], |g| batch_norm_train_vjp(g, x, scale, dy, inv, xhat))?;
            let (dx, dscale, dbias) = grads;
            for (v, d) in [(x, dx), (scale, dscale), (bias, dbias)] {
                if depends[v.0] {
                    check_gradient_type(g, &node_name, v, d)?;
                    acc.pending.entry(v).or_default().push(d);
                }
            }
            Ok(true)
        }
    }
}

/// The closed form of training-mode batch norm's gradient (statistics over the `n` elements of each channel):
/// `dbias = sum(dy)`, `dscale = sum(dy * xhat)`, `dx = scale * inv * (dy - sum(dy)/n - xhat * sum(dy * xhat)/n)`;
/// two reductions and four elementwise passes, where differentiating the primitives through the batch mean and
/// variance takes about twice as many.
fn batch_norm_train_vjp(
    g: &mut Graph,
    x: ValueId,
    scale: ValueId,
    dy: ValueId,
    inv: ValueId,
    xhat: ValueId,
) -> Result<(ValueId, ValueId, ValueId)> {
    let shape = g.shape(x).to_vec();
    let axes: Vec<i64> = (0..shape.len() as i64).filter(|&a| a != 1).collect();
    let count: usize = shape.iter().enumerate().filter(|&(i, _)| i != 1).map(|(_, &d)| d).product();
    let per_channel = g.shape(inv).to_vec();
    let dbias = g.reduce_sum(dy, &axes, false)?;
    let dy_xhat = g.mul(dy, xhat)?;
    let dscale = g.reduce_sum(dy_xhat, &axes, false)?;
    let scale_b = g.reshape_to(scale, &per_channel)?;
    let gain = g.mul(scale_b, inv)?; // [1, C, 1, ...]
    let mean_dy = g.reshape_to(dbias, &per_channel)?;
    let mean_dy = g.scale(mean_dy, 1.0 / count as f64)?;
    let mean_dy_xhat = g.reshape_to(dscale, &per_channel)?;
    let mean_dy_xhat = g.scale(mean_dy_xhat, 1.0 / count as f64)?;
    let t = g.mul(xhat, mean_dy_xhat)?;
    let t = g.sub(dy, t)?;
    let t = g.sub(t, mean_dy)?;
    let dx = g.mul(t, gain)?;
    Ok((dx, dscale, dbias))
}

/// Values that depend on any of `wrt` through differentiable float edges.
fn depends_on(g: &Graph, wrt: &[ValueId]) -> Vec<bool> {
    let mut depends = vec![false; g.values().len()];
    for v in wrt {
        depends[v.0] = true;
    }
    for node in g.nodes() {
        if node.op.is_differentiable() && node.inputs.iter().any(|i| depends[i.0]) {
            for o in &node.outputs {
                depends[o.0] = g.dtype(*o).is_float();
            }
        }
    }
    depends
}

/// Values the loss depends on.
fn reaches_loss(g: &Graph, loss: ValueId) -> Vec<bool> {
    let mut reaches = vec![false; g.values().len()];
    reaches[loss.0] = true;
    for node in g.nodes().iter().rev() {
        if node.outputs.iter().any(|o| reaches[o.0]) {
            for i in &node.inputs {
                reaches[i.0] = true;
            }
        }
    }
    reaches
}

fn check_gradient_type(g: &Graph, node: &str, input: ValueId, grad: ValueId) -> Result<()> {
    if g.shape(grad) != g.shape(input) || g.dtype(grad) != g.dtype(input) {
        return Err(Error::Autodiff(format!(
            "internal: the gradient rule of {node:?} gave {:?} {:?} for {:?} {:?}",
            g.dtype(grad),
            g.shape(grad),
            g.dtype(input),
            g.shape(input)
        )));
    }
    Ok(())
}

/// Gradient contributions per value, summed once the value's consumers have all been visited.
#[derive(Default)]
struct Accumulator {
    pending: HashMap<ValueId, Vec<ValueId>>,
    totals: HashMap<ValueId, ValueId>,
    /// Values already carrying a gradient's name (must not be renamed again).
    named: HashSet<ValueId>,
    first_new_value: usize,
}

impl Accumulator {
    /// d loss / d loss = 1.
    fn seed(&mut self, g: &mut Graph, loss: ValueId) -> Result<()> {
        let name = g.fresh_value_name(&format!("{}.grad", g.value_name(loss)));
        let one = g.initializer(&name, Tensor::full(g.dtype(loss), g.shape(loss), 1.0))?;
        self.named.insert(one);
        self.totals.insert(loss, one);
        Ok(())
    }

    /// The summed gradient of `v`, created on first request and named `<v>.grad`.
    fn total(&mut self, g: &mut Graph, v: ValueId) -> Result<Option<ValueId>> {
        if let Some(&t) = self.totals.get(&v) {
            return Ok(Some(t));
        }
        let Some(parts) = self.pending.remove(&v) else {
            return Ok(None);
        };
        let name = g.fresh_value_name(&format!("{}.grad", g.value_name(v)));
        let total = match parts[..] {
            [single] if self.renamable(single) => {
                g.rename(single, &name)?;
                single
            }
            [single] => single,
            _ => {
                let sum = g.with_scopes(vec![name.clone()], |g| g.sum(&parts))?;
                g.rename(sum, &name)?;
                sum
            }
        };
        self.named.insert(total);
        self.totals.insert(v, total);
        Ok(Some(total))
    }

    /// A fresh node output of a gradient rule, not yet named as some value's gradient.
    fn renamable(&self, v: ValueId) -> bool {
        v.0 >= self.first_new_value && !self.named.contains(&v)
    }
}
