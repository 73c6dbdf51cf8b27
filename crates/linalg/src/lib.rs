//! Concrete f32/f64 entry points to faer's dense kernels, for `anime-pipe eval` (FID, KID).
//!
//! Why a crate of its own: faer is generic over the scalar type, and generic code is compiled in the crate that
//! instantiates it, with that crate's optimisation level. Called from the main crate, faer's eigensolver would
//! be built at `opt-level = 0` in debug builds and a 2048 x 2048 symmetric eigendecomposition would take minutes
//! instead of seconds. These non-generic wrappers instantiate faer here, and the workspace gives this crate
//! `opt-level = 3` in every profile, so debug builds of the main crate (and its tests) stay fast.
#![forbid(unsafe_code)]

use faer::linalg::matmul::matmul;
use faer::{Accum, Par, Side};
pub use faer::{Mat, MatMut, MatRef};

/// Why a decomposition failed (faer's eigensolver did not converge; does not happen for finite input).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoConvergence;

impl std::fmt::Display for NoConvergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the symmetric eigensolver did not converge")
    }
}

impl std::error::Error for NoConvergence {}

/// `dst = alpha * lhs * rhs` (or `dst += ...` when `accumulate`), f64, using all rayon threads.
pub fn matmul_f64(dst: MatMut<'_, f64>, accumulate: bool, lhs: MatRef<'_, f64>, rhs: MatRef<'_, f64>, alpha: f64) {
    let accum = if accumulate { Accum::Add } else { Accum::Replace };
    matmul(dst, accum, lhs, rhs, alpha, Par::rayon(0));
}

/// `dst = alpha * lhs * rhs` (or `dst += ...` when `accumulate`), f32, using all rayon threads.
pub fn matmul_f32(dst: MatMut<'_, f32>, accumulate: bool, lhs: MatRef<'_, f32>, rhs: MatRef<'_, f32>, alpha: f32) {
    let accum = if accumulate { Accum::Add } else { Accum::Replace };
    matmul(dst, accum, lhs, rhs, alpha, Par::rayon(0));
}

/// `out[i][j] = scale[i] * (m[i][j] + m[j][i]) / 2 * scale[j]` (all scales 1 when `scale` is None): the symmetric
/// part of a square matrix, optionally under a diagonal congruence, rounding asymmetries removed.
pub fn symmetrize_scaled(m: MatRef<'_, f64>, scale: Option<&[f64]>) -> Mat<f64> {
    let n = m.nrows();
    assert_eq!(n, m.ncols(), "square matrix");
    let s = |i: usize| scale.map_or(1.0, |s| s[i]);
    Mat::from_fn(n, n, |i, j| s(i) * 0.5 * (m[(i, j)] + m[(j, i)]) * s(j))
}

/// Eigenvalues (ascending) and eigenvectors (columns of the matrix, in the same order) of the symmetric matrix
/// `a`; only its lower triangle is read.
pub fn symmetric_eigen(a: MatRef<'_, f64>) -> Result<(Vec<f64>, Mat<f64>), NoConvergence> {
    let eig = a.self_adjoint_eigen(Side::Lower).map_err(|_| NoConvergence)?;
    let values = eig.S().column_vector().iter().copied().collect();
    Ok((values, eig.U().to_owned()))
}

/// Eigenvalues (ascending) of the symmetric matrix `a`; only its lower triangle is read.
pub fn symmetric_eigenvalues(a: MatRef<'_, f64>) -> Result<Vec<f64>, NoConvergence> {
    a.self_adjoint_eigenvalues(Side::Lower).map_err(|_| NoConvergence)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eigen_pairs_reconstruct_the_matrix() {
        let a = Mat::from_fn(3, 3, |i, j| [[4.0, 1.0, 0.5], [1.0, 3.0, 0.2], [0.5, 0.2, 2.0]][i][j]);
        let (values, vectors) = symmetric_eigen(a.as_ref()).unwrap();
        assert!(values.windows(2).all(|w| w[0] <= w[1]));
        for i in 0..3 {
            for j in 0..3 {
                let r: f64 = (0..3).map(|k| vectors[(i, k)] * values[k] * vectors[(j, k)]).sum();
                assert!((r - a[(i, j)]).abs() < 1e-12, "({i}, {j}): {r} vs {}", a[(i, j)]);
            }
        }
        let only = symmetric_eigenvalues(a.as_ref()).unwrap();
        assert!(only.iter().zip(&values).all(|(x, y)| (x - y).abs() < 1e-12));
        // Trace and determinant are the sum and product of the eigenvalues.
        assert!((values.iter().sum::<f64>() - 9.0).abs() < 1e-12);
    }

    #[test]
    fn symmetrize_scaled_averages_and_scales() {
        let m = Mat::from_fn(2, 2, |i, j| [[1.0, 2.0], [4.0, 3.0]][i][j]);
        let s = symmetrize_scaled(m.as_ref(), Some(&[2.0, 10.0]));
        assert_eq!((s[(0, 0)], s[(0, 1)], s[(1, 0)], s[(1, 1)]), (4.0, 60.0, 60.0, 300.0));
        assert_eq!(symmetrize_scaled(m.as_ref(), None)[(1, 0)], 3.0);
    }

    #[test]
    fn products_accumulate() {
        let a = Mat::from_fn(2, 3, |i, j| (i * 3 + j) as f64);
        let mut c = Mat::<f64>::zeros(2, 2);
        matmul_f64(c.as_mut(), false, a.as_ref(), a.transpose(), 1.0);
        matmul_f64(c.as_mut(), true, a.as_ref(), a.transpose(), 1.0);
        // Row 0 = (0, 1, 2), row 1 = (3, 4, 5): [[5, 14], [14, 50]], twice.
        assert_eq!((c[(0, 0)], c[(0, 1)], c[(1, 1)]), (10.0, 28.0, 100.0));
        let a32 = Mat::from_fn(1, 2, |_, j| [3.0f32, 4.0][j]);
        let mut c32 = Mat::<f32>::zeros(1, 1);
        matmul_f32(c32.as_mut(), false, a32.as_ref(), a32.transpose(), 0.5);
        assert_eq!(c32[(0, 0)], 12.5);
    }
}
