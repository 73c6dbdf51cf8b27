//! Latent-space walks for `anime-pipe sample --interpolate K`: each row goes from one random latent point to
//! another in K evenly spaced steps, both ends included.
//!
//! Spherical interpolation by default (slerp: `sin((1-t)w)/sin(w) a + sin(t w)/sin(w) b`, w the angle between a
//! and b), because Gaussian latents concentrate near a sphere of radius sqrt(nz) and the straight line between two
//! of them passes through the low-norm interior G never saw; `--lerp` gives the straight line for comparison.
use crate::gan::generator::latents;

/// Spherical interpolation between `a` and `b` at `t` in [0, 1]; linear where they are (anti)parallel.
pub fn slerp(a: &[f32], b: &[f32], t: f32) -> Vec<f32> {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let cos = (dot / (norm(a) * norm(b)).max(f64::MIN_POSITIVE)).clamp(-1.0, 1.0);
    let omega = cos.acos();
    if omega.sin().abs() < 1e-6 {
        return lerp(a, b, t);
    }
    let t = f64::from(t);
    let (wa, wb) = (((1.0 - t) * omega).sin() / omega.sin(), (t * omega).sin() / omega.sin());
    a.iter().zip(b).map(|(x, y)| (wa * f64::from(*x) + wb * f64::from(*y)) as f32).collect()
}

pub fn lerp(a: &[f32], b: &[f32], t: f32) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x + (y - x) * t).collect()
}

/// `rows` walks of `steps` latents each (row-major: row r is walk r), between random endpoints drawn with
/// [`latents`] (`2 * rows` points: row r goes from point 2r to point 2r+1).
pub fn walk_latents(seed: u64, rows: usize, steps: usize, nz: usize, spherical: bool) -> Vec<f32> {
    let ends = latents(seed, 2 * rows, nz);
    let mut out = Vec::with_capacity(rows * steps * nz);
    for r in 0..rows {
        let (a, b) = (&ends[2 * r * nz..(2 * r + 1) * nz], &ends[(2 * r + 1) * nz..(2 * r + 2) * nz]);
        for k in 0..steps {
            let t = if steps == 1 { 0.0 } else { k as f32 / (steps - 1) as f32 };
            out.extend(if spherical { slerp(a, b, t) } else { lerp(a, b, t) });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slerp_keeps_the_norm_of_equal_norm_endpoints_and_hits_both_ends() {
        let a = [3.0f32, 0.0, 0.0];
        let b = [0.0f32, 3.0, 0.0];
        assert_eq!(slerp(&a, &b, 0.0), a.to_vec());
        let end = slerp(&a, &b, 1.0);
        assert!(end.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-6), "{end:?}");
        let mid = slerp(&a, &b, 0.5);
        let norm = mid.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 3.0).abs() < 1e-5, "slerp midpoint norm {norm}");
        // The straight line's midpoint is shorter: 3 / sqrt(2).
        let l = lerp(&a, &b, 0.5);
        assert!((l.iter().map(|x| x * x).sum::<f32>().sqrt() - 3.0 / 2f32.sqrt()).abs() < 1e-5);
    }

    #[test]
    fn walks_start_and_end_at_the_drawn_points() {
        let (rows, steps, nz) = (3, 5, 4);
        let ends = latents(7, 2 * rows, nz);
        let walk = walk_latents(7, rows, steps, nz, true);
        assert_eq!(walk.len(), rows * steps * nz);
        for r in 0..rows {
            let first = &walk[(r * steps) * nz..(r * steps + 1) * nz];
            let last = &walk[(r * steps + steps - 1) * nz..(r * steps + steps) * nz];
            assert_eq!(first, &ends[2 * r * nz..(2 * r + 1) * nz]);
            assert!(last.iter().zip(&ends[(2 * r + 1) * nz..]).all(|(x, y)| (x - y).abs() < 1e-5));
        }
    }
}
