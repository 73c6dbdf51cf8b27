//! Fréchet Inception Distance between two Gaussian fits of feature sets:
//!
//! FID = |mu1 - mu2|^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^(1/2))
//!
//! ## The matrix square root
//! S1 S2 is not symmetric, so its square root is usually taken with scipy's `sqrtm` (a Schur method in complex
//! arithmetic whose result picks up a small imaginary part that callers drop). Only the trace is needed, and it
//! has a symmetric form: with A = S1^(1/2) (the PSD root), S1 S2 = A (A S2 A) A^(-1) is similar to A S2 A,
//! which is symmetric PSD, so the eigenvalues of S1 S2 are those of A S2 A (real, >= 0) and
//! Tr((S1 S2)^(1/2)) = sum_i sqrt(lambda_i(A S2 A)). (When S1 is singular the identity still holds by continuity:
//! S1 S2 and A (A S2) have the same non-zero eigenvalues as (A S2) A.)
//!
//! Computed in f64, by whichever of two exact forms is cheaper:
//! - **full rank** (both sets have more samples than dimensions, the usual 10k-vs-train protocol): two symmetric
//!   eigendecompositions (faer's `self_adjoint_eigen`, divide and conquer):
//!   1. S1 = U diag(l) U^T, so A = U diag(sqrt l) U^T;
//!   2. A S2 A = U D (U^T S2 U) D U^T with D = diag(sqrt l), which has the eigenvalues of M = D (U^T S2 U) D:
//!      one congruence U^T S2 U (two matrix products) and a diagonal scaling, then eigenvalues of M only.
//! - **low rank** (a set of n <= d samples, so its covariance has rank < n): write that covariance as
//!   S1 = C^T C with C = (X - mu1) / sqrt(n - 1), n x d. S1 S2 = C^T (C S2), and C^T (C S2) has the same non-zero
//!   eigenvalues as (C S2) C^T = C S2 C^T, an n x n symmetric PSD matrix: one n x n eigenvalue problem instead of
//!   two d x d decompositions (for n = 50 and d = 2048, milliseconds instead of seconds). The trace is symmetric
//!   in S1 and S2, so the smaller set plays S1.
//!
//! Both covariances are PSD by construction (Gram matrices of centred features), but rounding makes the
//! eigenvalues that should be 0 (rank < d when there are fewer than d + 1 samples, or dead features) come out as
//! tiny values of either sign, of order d * eps * lambda_max. Those are clamped to 0 before the square roots;
//! clamping changes the trace by at most sqrt(d * eps * lambda_max) per eigenvalue, far below FID's sampling noise.
//! A clamped value larger than 1e-6 of the largest eigenvalue would mean the input is not a covariance and is
//! logged as a warning.
use super::features::Features;
use anime_linalg::{matmul_f64, symmetric_eigen, symmetric_eigenvalues, symmetrize_scaled, Mat, MatRef};
use anyhow::{bail, Context, Result};

/// Gaussian fit of a feature set: mean and unbiased sample covariance (divided by n - 1, like `numpy.cov`).
#[derive(Debug, Clone)]
pub struct GaussianStats {
    pub count: usize,
    pub mean: Vec<f64>,
    /// d x d, symmetric.
    pub cov: Mat<f64>,
    /// When count <= d: C = (X - mean) / sqrt(count - 1), count x d, so that cov = C^T C (see the module docs).
    pub factor: Option<Mat<f64>>,
}

/// Rows per block when accumulating the covariance: bounds the f64 copy of the centred features.
const COV_BLOCK_ROWS: usize = 1024;

impl GaussianStats {
    /// Mean and covariance in f64 of the rows of `features` (at least 2 rows), plus the factor when rows <= dim.
    pub fn of(features: &Features) -> Result<Self> {
        let (n, d) = (features.rows, features.dim);
        if n < 2 {
            bail!("a covariance needs at least 2 feature vectors, got {n}");
        }
        let mut mean = vec![0f64; d];
        for row in features.data.chunks_exact(d) {
            for (m, &x) in mean.iter_mut().zip(row) {
                *m += f64::from(x);
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let scale = 1.0 / ((n - 1) as f64).sqrt();
        let centred = |block: &[f32]| -> Vec<f64> {
            block
                .chunks_exact(d)
                .flat_map(|row| row.iter().zip(&mean).map(|(&x, m)| (f64::from(x) - m) * scale))
                .collect()
        };
        let mut cov = Mat::<f64>::zeros(d, d);
        let mut factor = None;
        if n <= d {
            let c = centred(&features.data);
            let c = MatRef::from_row_major_slice(&c, n, d).to_owned();
            matmul_f64(cov.as_mut(), false, c.transpose(), c.as_ref(), 1.0);
            factor = Some(c);
        } else {
            for block in features.data.chunks(COV_BLOCK_ROWS * d) {
                let c = centred(block);
                let x = MatRef::from_row_major_slice(&c, block.len() / d, d);
                matmul_f64(cov.as_mut(), true, x.transpose(), x, 1.0);
            }
        }
        let cov = symmetrize_scaled(cov.as_ref(), None);
        Ok(Self { count: n, mean, cov, factor })
    }

    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    pub fn trace(&self) -> f64 {
        (0..self.dim()).map(|i| self.cov[(i, i)]).sum()
    }
}

/// The parts of an FID value, for reports and tests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FidParts {
    /// |mu1 - mu2|^2
    pub mean_term: f64,
    pub trace1: f64,
    pub trace2: f64,
    /// Tr((S1 S2)^(1/2))
    pub trace_sqrt: f64,
}

impl FidParts {
    pub fn fid(&self) -> f64 {
        self.mean_term + self.trace1 + self.trace2 - 2.0 * self.trace_sqrt
    }
}

/// FID between two Gaussian fits (see the module docs for the method).
pub fn fid(a: &GaussianStats, b: &GaussianStats) -> Result<f64> {
    Ok(fid_parts(a, b)?.fid())
}

pub fn fid_parts(a: &GaussianStats, b: &GaussianStats) -> Result<FidParts> {
    if a.dim() != b.dim() {
        bail!("FID of feature sets of different widths ({} vs {})", a.dim(), b.dim());
    }
    let mean_term = a.mean.iter().zip(&b.mean).map(|(x, y)| (x - y) * (x - y)).sum();
    let trace_sqrt = match (&a.factor, &b.factor) {
        (Some(c), Some(other)) if other.nrows() < c.nrows() => trace_sqrt_product_low_rank(other.as_ref(), &a.cov)?,
        (Some(c), _) => trace_sqrt_product_low_rank(c.as_ref(), &b.cov)?,
        (None, Some(c)) => trace_sqrt_product_low_rank(c.as_ref(), &a.cov)?,
        (None, None) => trace_sqrt_product(&a.cov, &b.cov)?,
    };
    Ok(FidParts { mean_term, trace1: a.trace(), trace2: b.trace(), trace_sqrt })
}

/// Tr((S1 S2)^(1/2)) with S1 = C^T C (C: n x d): the sum of the square roots of the eigenvalues of the n x n
/// matrix C S2 C^T (see the module docs).
pub fn trace_sqrt_product_low_rank(c: MatRef<'_, f64>, s2: &Mat<f64>) -> Result<f64> {
    let (n, d) = (c.nrows(), c.ncols());
    let mut cs2 = Mat::<f64>::zeros(n, d);
    matmul_f64(cs2.as_mut(), false, c, s2.as_ref(), 1.0);
    let mut m = Mat::<f64>::zeros(n, n);
    matmul_f64(m.as_mut(), false, cs2.as_ref(), c.transpose(), 1.0);
    let m = symmetrize_scaled(m.as_ref(), None);
    let eigenvalues = symmetric_eigenvalues(m.as_ref()).context("FID: eigenvalues of C S2 C^T")?;
    Ok(clamp_psd(eigenvalues.into_iter(), "C S2 C^T").map(f64::sqrt).sum())
}

/// Tr((S1 S2)^(1/2)) for symmetric PSD S1, S2: the sum of the square roots of the eigenvalues of
/// S1^(1/2) S2 S1^(1/2), computed as described in the module docs.
pub fn trace_sqrt_product(s1: &Mat<f64>, s2: &Mat<f64>) -> Result<f64> {
    let d = s1.nrows();
    let (values, u) = symmetric_eigen(s1.as_ref()).context("FID: eigendecomposition of S1")?;
    let root: Vec<f64> = clamp_psd(values.into_iter(), "S1").map(f64::sqrt).collect();
    // B = U^T S2 U, then M = D B D (symmetrised against rounding).
    let mut s2u = Mat::<f64>::zeros(d, d);
    matmul_f64(s2u.as_mut(), false, s2.as_ref(), u.as_ref(), 1.0);
    let mut b = Mat::<f64>::zeros(d, d);
    matmul_f64(b.as_mut(), false, u.transpose(), s2u.as_ref(), 1.0);
    let m = symmetrize_scaled(b.as_ref(), Some(&root));
    let eigenvalues = symmetric_eigenvalues(m.as_ref()).context("FID: eigenvalues of S1^(1/2) S2 S1^(1/2)")?;
    Ok(clamp_psd(eigenvalues.into_iter(), "S1^(1/2) S2 S1^(1/2)").map(f64::sqrt).sum())
}

/// The eigenvalues with negative rounding noise set to 0; warns when a clamped value is not plausibly noise.
fn clamp_psd(eigenvalues: impl Iterator<Item = f64>, what: &str) -> impl Iterator<Item = f64> {
    let values: Vec<f64> = eigenvalues.collect();
    let largest = values.iter().fold(0f64, |m, &v| m.max(v.abs()));
    let most_negative = values.iter().fold(0f64, |m, &v| m.min(v));
    if most_negative < -1e-6 * largest {
        tracing::warn!("FID: {what} has eigenvalue {most_negative:e} (largest {largest:e}); clamped to 0");
    }
    values.into_iter().map(|v| v.max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features(rows: usize, dim: usize, f: impl Fn(usize, usize) -> f32) -> Features {
        Features { rows, dim, data: (0..rows * dim).map(|k| f(k / dim, k % dim)).collect() }
    }

    #[test]
    fn mean_and_covariance_match_hand_computed_values() {
        // Rows (1, 2), (3, 6), (5, 10): mean (3, 6); var x = 4, var y = 16, cov = 8 (n - 1 = 2).
        let f = Features { rows: 3, dim: 2, data: vec![1., 2., 3., 6., 5., 10.] };
        let s = GaussianStats::of(&f).unwrap();
        assert_eq!(s.mean, vec![3.0, 6.0]);
        let got = [s.cov[(0, 0)], s.cov[(0, 1)], s.cov[(1, 0)], s.cov[(1, 1)]];
        for (g, e) in got.iter().zip([4.0, 8.0, 8.0, 16.0]) {
            assert!((g - e).abs() < 1e-12 * e, "{got:?}");
        }
    }

    #[test]
    fn trace_sqrt_of_commuting_diagonals_is_sum_of_sqrt_products() {
        let s1 = Mat::from_fn(3, 3, |i, j| if i == j { [4.0, 9.0, 0.0][i] } else { 0.0 });
        let s2 = Mat::from_fn(3, 3, |i, j| if i == j { [1.0, 4.0, 7.0][i] } else { 0.0 });
        let t = trace_sqrt_product(&s1, &s2).unwrap();
        assert!((t - (2.0 + 6.0)).abs() < 1e-12, "{t}");
    }

    #[test]
    fn trace_sqrt_of_non_commuting_pair_matches_2x2_closed_form() {
        // For 2x2 PSD P = S1 S2 with eigenvalues a, b >= 0: Tr(P^(1/2)) = sqrt(a) + sqrt(b)
        // = sqrt(Tr P + 2 sqrt(det P)).
        let s1 = Mat::from_fn(2, 2, |i, j| [[2.0, 1.0], [1.0, 3.0]][i][j]);
        let s2 = Mat::from_fn(2, 2, |i, j| [[1.0, -0.5], [-0.5, 4.0]][i][j]);
        let p: [[f64; 2]; 2] = [[2.0 - 0.5, -1.0 + 4.0], [1.0 - 1.5, -0.5 + 12.0]];
        let (tr, det) = (p[0][0] + p[1][1], p[0][0] * p[1][1] - p[0][1] * p[1][0]);
        let expected = (tr + 2.0 * det.sqrt()).sqrt();
        let t = trace_sqrt_product(&s1, &s2).unwrap();
        assert!((t - expected).abs() < 1e-12, "{t} vs {expected}");
    }

    #[test]
    fn fid_of_a_set_with_itself_is_zero_even_when_rank_deficient() {
        // 10 samples in 16 dimensions: rank 9 covariance, so 7 eigenvalues are rounding noise around 0.
        let f = features(10, 16, |i, j| ((i * 7 + j * 3) % 11) as f32 * 0.37 + (i as f32).sin());
        let s = GaussianStats::of(&f).unwrap();
        let v = fid(&s, &s).unwrap();
        assert!(v.abs() < 1e-6 * s.trace(), "FID(x, x) = {v}, trace {}", s.trace());
    }

    #[test]
    fn mean_shift_adds_its_squared_norm() {
        let a = features(50, 4, |i, j| ((i * 13 + j * 5) % 17) as f32);
        let b = features(50, 4, |i, j| ((i * 13 + j * 5) % 17) as f32 + [1.0, 2.0, 0.0, -2.0][j]);
        let (sa, sb) = (GaussianStats::of(&a).unwrap(), GaussianStats::of(&b).unwrap());
        let v = fid(&sa, &sb).unwrap();
        assert!((v - 9.0).abs() < 1e-9, "{v}");
    }

    #[test]
    fn low_rank_and_full_rank_forms_agree() {
        // 5 samples in 8 dimensions (factor path) against 12 samples (full path: n > d).
        let a = features(5, 8, |i, j| ((i * 5 + j * 3) % 7) as f32 * 0.5 + (j as f32).cos());
        let b = features(12, 8, |i, j| ((i * 11 + j * 7) % 13) as f32 * 0.25 - (i as f32).sin());
        let (sa, sb) = (GaussianStats::of(&a).unwrap(), GaussianStats::of(&b).unwrap());
        assert!(sa.factor.is_some() && sb.factor.is_none());
        let full = trace_sqrt_product(&sa.cov, &sb.cov).unwrap();
        let low = trace_sqrt_product_low_rank(sa.factor.as_ref().unwrap().as_ref(), &sb.cov).unwrap();
        // The full-rank form takes square roots of S1's 4 zero eigenvalues, which rounding makes ~1e-16 * l_max:
        // each can add ~sqrt(1e-16) = 1e-8 of relative error. The low-rank form never sees them.
        assert!((full - low).abs() < 1e-7 * full, "{full} vs {low}");
        let reversed = trace_sqrt_product(&sb.cov, &sa.cov).unwrap();
        assert!((full - reversed).abs() < 1e-7 * full, "symmetric in S1, S2: {full} vs {reversed}");
        assert!((fid(&sa, &sb).unwrap() - fid(&sb, &sa).unwrap()).abs() < 1e-9);
    }

    #[test]
    fn different_widths_are_an_error() {
        let a = GaussianStats::of(&features(3, 2, |i, j| (i + j) as f32)).unwrap();
        let b = GaussianStats::of(&features(3, 3, |i, j| (i * j) as f32)).unwrap();
        assert!(fid(&a, &b).is_err());
    }
}
