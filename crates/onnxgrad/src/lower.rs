//! Formulations: how some operators are written out as ONNX, chosen per execution provider after the graph (and
//! its gradients) is built. The IR and autodiff keep the plain operator; [`Graph::lowered`] returns a copy of the
//! graph in which the selected nodes are replaced by an equivalent subgraph of standard operators. What is fastest
//! differs by provider (ONNX Runtime's CPU `ConvTranspose` is a per-image GEMM + col2im, slow on small maps;
//! cuDNN's is not), so the runner picks a [`Formulation`] per device.
//!
//! ## Sub-pixel `ConvTranspose`
//! A transposed convolution with stride `s` whose kernel is `t * s` long and whose output is exactly `s` times
//! its input (`k - p_begin - p_end + output_padding = s`, e.g. the DCGAN's k4 s2 p1) is `s * s` ordinary stride-1
//! convolutions with `t x t` kernels, one per output phase, interleaved (the "sub-pixel" or depth-to-space form).
//! Output row `o = s m + r` gathers kernel taps `kk = s j + b` from input rows `m + a - j` (`j < t`), with
//! `r + p_begin = s a + b`; as a correlation over increasing input offset that is a `Conv` with pads
//! `(t - 1 - a, a)` and the taps reversed, `ker[u] = w[s (t - 1 - u) + b]`. The phase kernels come from `w` by one
//! `MatMul` with a constant 0/1 selection matrix (exact in floating point: each output is one weight times 1 plus
//! zeros), so `w` may be a computed value (a parameter input, an updated weight). The phases are concatenated on
//! the channel axis and interleaved by `DepthToSpace` ("DCR" order; `Reshape`/`Transpose` when the strides differ).
//!
//! On ONNX Runtime's CPU provider the phase `Conv`s run as NCHWc convolutions (the layout transformer at the
//! highest optimisation level), which on maps of up to 8x8 is faster than its `ConvTranspose` kernel; on larger
//! maps it is slower (`bench/conv_grad_formulations.py` measures both per layer), hence
//! [`Formulation::subpixel_max_pixels`].
use crate::error::{invalid, Result};
use crate::ir::{Graph, Source, Tensor, TensorData, ValueId};
use crate::ops::{ConvSpec, Op};
use std::collections::HashSet;

/// Which operators are rewritten, and when, by [`Graph::lowered`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Formulation {
    /// Write a `ConvTranspose` whose input maps have at most this many pixels (`H * W`) in the sub-pixel form
    /// (when its geometry allows; see the module docs). 0: never (plain `ConvTranspose`, the default).
    pub subpixel_max_pixels: usize,
}

impl Formulation {
    /// Every operator as built (plain `ConvTranspose`).
    pub fn native() -> Formulation {
        Formulation::default()
    }

    /// Sub-pixel `ConvTranspose` wherever the geometry allows.
    pub fn subpixel() -> Formulation {
        Formulation { subpixel_max_pixels: usize::MAX }
    }

    /// Sub-pixel `ConvTranspose` on maps of up to `max_pixels` input pixels.
    pub fn subpixel_up_to(max_pixels: usize) -> Formulation {
        Formulation { subpixel_max_pixels: max_pixels }
    }

    /// Whether [`Graph::lowered`] would change anything at all.
    pub fn is_native(&self) -> bool {
        self.subpixel_max_pixels == 0
    }
}

/// Per spatial axis of a sub-pixel `ConvTranspose`: for each output phase `r < s`, the phase's `Conv` pads
/// `(begin, end)` and its kernel taps `kk` (in correlation order).
#[derive(Debug, Clone, PartialEq, Eq)]
struct AxisPhases {
    stride: usize,
    taps: usize,
    pads: Vec<(usize, usize)>,
    kernel_index: Vec<Vec<usize>>,
}

/// The sub-pixel decomposition of one axis, or None when the geometry does not allow it.
fn axis_phases(
    in_len: usize,
    k: usize,
    s: usize,
    pb: usize,
    pe: usize,
    op: usize,
    dilation: usize,
) -> Option<AxisPhases> {
    if s < 2 || dilation != 1 || !k.is_multiple_of(s) || k + op != s + pb + pe || in_len == 0 {
        return None;
    }
    let t = k / s;
    let mut pads = Vec::with_capacity(s);
    let mut kernel_index = Vec::with_capacity(s);
    for r in 0..s {
        let (a, b) = ((r + pb) / s, (r + pb) % s);
        if a > t - 1 {
            return None;
        }
        pads.push((t - 1 - a, a));
        kernel_index.push((0..t).map(|u| s * (t - 1 - u) + b).collect());
    }
    Some(AxisPhases { stride: s, taps: t, pads, kernel_index })
}

/// The sub-pixel plan of a 2-D `ConvTranspose` node (`x [N, C, H, W]`, `w [C, M, kh, kw]`), when it applies.
fn subpixel_plan(g: &Graph, x: ValueId, w: ValueId, spec: &ConvSpec, max_pixels: usize) -> Option<[AxisPhases; 2]> {
    let (sx, sw) = (g.shape(x), g.shape(w));
    if spec.rank() != 2 || sx.len() != 4 || sx[2] * sx[3] > max_pixels {
        return None;
    }
    let axis = |i: usize| {
        axis_phases(
            sx[i + 2],
            sw[i + 2],
            spec.strides[i],
            spec.pad_begin(i),
            spec.pad_end(i),
            spec.output_padding[i],
            spec.dilations[i],
        )
    };
    Some([axis(0)?, axis(1)?])
}

impl Graph {
    /// A copy of this graph with the operators [`Formulation`] selects written in their alternative form. Inputs,
    /// outputs, initializers, state updates and every other node keep their names, so a runner binds the lowered
    /// graph exactly like the original; new nodes and values are named `<node>.subpixel.*`.
    pub fn lowered(&self, f: &Formulation) -> Result<Graph> {
        if f.is_native() {
            return Ok(self.clone());
        }
        let mut out = Graph::new(self.name());
        let mut map: Vec<Option<ValueId>> = vec![None; self.values().len()];
        for &v in self.inputs() {
            let val = self.value(v);
            map[v.0] = Some(out.input(&val.name, val.dtype, &val.shape)?);
        }
        for (i, val) in self.values().iter().enumerate() {
            if let Source::Initializer(t) = &val.source {
                map[i] = Some(out.initializer(&val.name, t.clone())?);
            }
        }
        let get = |map: &[Option<ValueId>], v: ValueId| {
            map[v.0].ok_or_else(|| {
                invalid("lowered", format!("lowering: {:?} used before it is defined", self.value_name(v)))
            })
        };
        for node in self.nodes() {
            let inputs = node.inputs.iter().map(|&v| get(&map, v)).collect::<Result<Vec<_>>>()?;
            if let Op::ConvTranspose(spec) = &node.op {
                if let Some(plan) = subpixel_plan(self, node.inputs[0], node.inputs[1], spec, f.subpixel_max_pixels) {
                    let y = out.with_scopes(vec![format!("{}.subpixel", node.name)], |g| {
                        g.conv_transpose_subpixel(inputs[0], inputs[1], inputs.get(2).copied(), &plan)
                    })?;
                    let old = node.outputs[0];
                    if out.shape(y) != self.shape(old) {
                        return Err(invalid(
                            "lowered",
                            format!(
                                "lowering {}: sub-pixel form gives {:?}, not {:?}",
                                node.name,
                                out.shape(y),
                                self.shape(old)
                            ),
                        ));
                    }
                    out.rename(y, self.value_name(old))?;
                    map[old.0] = Some(y);
                    continue;
                }
            }
            let outs = node.outputs.iter().map(|&o| {
                let v = self.value(o);
                (v.name.clone(), v.dtype, v.shape.clone())
            });
            let new_outs = out.add_node_named(node.name.clone(), node.op.clone(), inputs, outs.collect());
            for (&o, n) in node.outputs.iter().zip(new_outs) {
                map[o.0] = Some(n);
            }
        }
        for &o in self.outputs() {
            let v = get(&map, o)?;
            out.push_output(v);
        }
        for &(state, new_value) in self.state_updates() {
            let (s, n) = (get(&map, state)?, get(&map, new_value)?);
            out.set_state_update(s, n)?;
        }
        let mut seen = HashSet::new();
        if let Some(dup) = out.values().iter().find(|v| !seen.insert(v.name.as_str())) {
            return Err(invalid("lowered", format!("two values are called {:?}", dup.name)));
        }
        Ok(out)
    }

    /// `ConvTranspose(x, w, bias)` as `s_h * s_w` phase `Conv`s and a depth-to-space interleave (module docs).
    fn conv_transpose_subpixel(
        &mut self,
        x: ValueId,
        w: ValueId,
        bias: Option<ValueId>,
        plan: &[AxisPhases; 2],
    ) -> Result<ValueId> {
        let (sx, sw) = (self.shape(x).to_vec(), self.shape(w).to_vec());
        let (n, c, h, wd) = (sx[0], sx[1], sx[2], sx[3]);
        let (m, kh, kw) = (sw[1], sw[2], sw[3]);
        let [ph, pw] = plan;
        let (sh, sv) = (ph.stride, pw.stride);
        let (th, tw) = (ph.taps, pw.taps);
        let phases = sh * sv;
        // Selection matrix [kh*kw, phases*th*tw]: column ((rh*sv + rw)*th + u)*tw + v picks tap (kk_h, kk_w).
        let cols = phases * th * tw;
        let dtype = self.dtype(w);
        let mut sel = vec![0.0f64; kh * kw * cols];
        for rh in 0..sh {
            for rw in 0..sv {
                for u in 0..th {
                    for v in 0..tw {
                        let col = ((rh * sv + rw) * th + u) * tw + v;
                        let row = ph.kernel_index[rh][u] * kw + pw.kernel_index[rw][v];
                        sel[row * cols + col] = 1.0;
                    }
                }
            }
        }
        let data = match dtype {
            crate::DType::F32 => TensorData::F32(sel.iter().map(|&x| x as f32).collect()),
            crate::DType::F64 => TensorData::F64(sel),
            other => {
                return Err(invalid("ConvTranspose", format!("sub-pixel form needs a float weight, not {other:?}")))
            }
        };
        let sel = self.constant("taps", Tensor::new(&[kh * kw, cols], data)?);
        let w2 = self.reshape_to(w, &[c * m, kh * kw])?;
        let picked = self.matmul(w2, sel)?;
        let picked = self.reshape_to(picked, &[c, m, phases, th, tw])?;
        let kernels = self.transpose(picked, &[2, 1, 0, 3, 4])?; // [phases, M, C, th, tw]
        let mut outs = Vec::with_capacity(phases);
        for rh in 0..sh {
            for rw in 0..sv {
                let i = rh * sv + rw;
                let k = self.slice(kernels, &[0], &[i], &[i + 1])?;
                let k = self.reshape_to(k, &[m, c, th, tw])?;
                let spec = ConvSpec {
                    strides: vec![1, 1],
                    pads: vec![ph.pads[rh].0, pw.pads[rw].0, ph.pads[rh].1, pw.pads[rw].1],
                    dilations: vec![1, 1],
                    output_padding: vec![0, 0],
                };
                outs.push(self.conv(x, k, bias, &spec)?);
            }
        }
        let stacked = if outs.len() == 1 { outs[0] } else { self.concat(&outs, 1)? }; // [N, phases*M, H, W]
        if sh == sv {
            // ONNX Runtime's DepthToSpace kernel is ~2x faster than the generic 6-D Transpose below.
            return self.depth_to_space(stacked, sh);
        }
        let blocks = self.reshape_to(stacked, &[n, sh, sv, m, h, wd])?;
        let inter = self.transpose(blocks, &[0, 3, 4, 1, 5, 2])?; // [N, M, H, sh, W, sv]
        self.reshape_to(inter, &[n, m, h * sh, wd * sv])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dcgan_geometry_has_two_taps_per_phase() {
        // k4 s2 p1: phase 0 uses taps 3, 1 with pads (1, 0); phase 1 taps 2, 0 with pads (0, 1).
        let p = axis_phases(4, 4, 2, 1, 1, 0, 1).unwrap();
        assert_eq!(p.pads, vec![(1, 0), (0, 1)]);
        assert_eq!(p.kernel_index, vec![vec![3, 1], vec![2, 0]]);
        // Output not s times the input, stride 1, dilation: no sub-pixel form.
        assert!(axis_phases(4, 3, 2, 1, 1, 0, 1).is_none());
        assert!(axis_phases(1, 4, 1, 0, 0, 0, 1).is_none());
        assert!(axis_phases(4, 4, 2, 1, 1, 0, 2).is_none());
        // k6 s3 p? : 6 - pb - pe + op = 3 with p = (1, 2).
        let p = axis_phases(5, 6, 3, 1, 2, 0, 1).unwrap();
        assert_eq!(p.taps, 2);
        assert_eq!(p.kernel_index.len(), 3);
    }
}
