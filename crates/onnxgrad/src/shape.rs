//! Static shape rules shared by the builder and the gradient rules.
use crate::error::{invalid, Result};

/// numpy-style broadcast of two shapes (right-aligned; a dimension of 1 stretches).
pub fn broadcast(op: &str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let rank = a.len().max(b.len());
    let dim = |s: &[usize], i: usize| if i + s.len() >= rank { s[i + s.len() - rank] } else { 1 };
    (0..rank)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (x, y) if x == y => Ok(x),
            (1, y) => Ok(y),
            (x, 1) => Ok(x),
            (x, y) => Err(invalid(op, format!("shapes {a:?} and {b:?} do not broadcast (axis {i}: {x} vs {y})"))),
        })
        .collect()
}

/// The axes of `full` that a value of shape `small` was broadcast over: every leading axis `small` lacks, and
/// every axis where `small` has 1 and `full` does not.
pub fn broadcast_axes(small: &[usize], full: &[usize]) -> Vec<usize> {
    let lead = full.len() - small.len();
    (0..full.len()).filter(|&i| i < lead || (small[i - lead] == 1 && full[i] != 1)).collect()
}

/// Output length of a convolution along one axis.
pub fn conv_out(input: usize, kernel: usize, stride: usize, pads: (usize, usize), dilation: usize) -> Option<usize> {
    let span = dilation * (kernel - 1) + 1;
    let padded = input + pads.0 + pads.1;
    (padded >= span && stride > 0).then(|| (padded - span) / stride + 1)
}

/// Output length of a transposed convolution along one axis.
pub fn conv_transpose_out(
    input: usize,
    kernel: usize,
    stride: usize,
    pads: (usize, usize),
    dilation: usize,
    output_padding: usize,
) -> Option<usize> {
    let full = stride * (input - 1) + output_padding + dilation * (kernel - 1) + 1;
    full.checked_sub(pads.0 + pads.1).filter(|&n| n > 0)
}

/// An axis given numpy-style (negative counts from the end), checked against `rank`.
pub fn normalize_axis(op: &str, axis: i64, rank: usize) -> Result<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if a < 0 || a >= rank as i64 {
        return Err(invalid(op, format!("axis {axis} is out of range for rank {rank}")));
    }
    Ok(a as usize)
}

/// Axes normalised, sorted and free of duplicates; an empty list means every axis.
pub fn normalize_axes(op: &str, axes: &[i64], rank: usize) -> Result<Vec<usize>> {
    if axes.is_empty() {
        return Ok((0..rank).collect());
    }
    let mut out = axes.iter().map(|&a| normalize_axis(op, a, rank)).collect::<Result<Vec<_>>>()?;
    out.sort_unstable();
    let n = out.len();
    out.dedup();
    if out.len() != n {
        return Err(invalid(op, format!("axes {axes:?} repeat an axis")));
    }
    Ok(out)
}

/// `shape` after reducing `axes` (kept as 1 with `keepdims`, removed otherwise).
pub fn reduced(shape: &[usize], axes: &[usize], keepdims: bool) -> Vec<usize> {
    let kept = shape.iter().enumerate().filter_map(|(i, &d)| match axes.contains(&i) {
        true if keepdims => Some(1),
        true => None,
        false => Some(d),
    });
    kept.collect()
}
