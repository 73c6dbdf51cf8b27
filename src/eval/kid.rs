//! Kernel Inception Distance (Bińkowski et al. 2018): the squared maximum mean discrepancy between two feature
//! sets under the polynomial kernel k(x, y) = (x·y / d + 1)^3, with the unbiased estimator
//!
//! MMD² = Σ_{i≠j} k(x_i, x_j) / (m(m-1)) + Σ_{i≠j} k(y_i, y_j) / (m(m-1)) - 2 Σ_{i,j} k(x_i, y_j) / m²
//!
//! (the `unbiased` estimator of the reference code and torch-fidelity). Computed over `subsets` random pairs of
//! subsets of `subset_size` rows each (drawn without replacement within a subset, independently per subset, from a
//! seeded ChaCha8 stream); the result is the mean over subsets and their standard deviation (ddof 0, what
//! torch-fidelity reports as `kernel_inception_distance_std`). The literature's protocol is 100 subsets of 1000.
//! With fewer samples the subset size shrinks to the smaller set; when both sets are no larger than the subset
//! size every subset would be the whole set, so one subset is used.
//!
//! The Gram matrices are f32 products (faer); kernel values and sums are accumulated in f64.
use super::features::Features;
use anime_linalg::{matmul_f32, Mat, MatRef};
use anyhow::{bail, Result};
use rand::rngs::ChaCha8Rng;
use rand::SeedableRng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KidOptions {
    pub subsets: usize,
    pub subset_size: usize,
    pub seed: u64,
}

impl Default for KidOptions {
    fn default() -> Self {
        Self { subsets: 100, subset_size: 1000, seed: 0 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Kid {
    pub mean: f64,
    /// Standard deviation of the per-subset estimates (ddof 0).
    pub std: f64,
    pub subsets: usize,
    pub subset_size: usize,
}

/// KID between `x` and `y` (see the module docs).
pub fn kid(x: &Features, y: &Features, options: &KidOptions) -> Result<Kid> {
    if x.dim != y.dim {
        bail!("KID of feature sets of different widths ({} vs {})", x.dim, y.dim);
    }
    let m = options.subset_size.min(x.rows).min(y.rows);
    if m < 2 {
        bail!("KID needs at least 2 samples on each side (got {} and {})", x.rows, y.rows);
    }
    let subsets = if m == x.rows && m == y.rows { 1 } else { options.subsets.max(1) };
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let mut values = Vec::with_capacity(subsets);
    for _ in 0..subsets {
        let xi = subset(&mut rng, x.rows, m);
        let yi = subset(&mut rng, y.rows, m);
        values.push(mmd2_unbiased(&x.select(&xi), &y.select(&yi)));
    }
    let mean = values.iter().sum::<f64>() / subsets as f64;
    let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / subsets as f64;
    Ok(Kid { mean, std: var.sqrt(), subsets, subset_size: m })
}

/// `m` distinct indices below `n`, in sampling order; all of them, in order, when m == n.
fn subset(rng: &mut ChaCha8Rng, n: usize, m: usize) -> Vec<usize> {
    if m == n {
        return (0..n).collect();
    }
    rand::seq::index::sample(rng, n, m).into_vec()
}

/// The unbiased MMD² estimate between two equally sized sets under the cubic polynomial kernel.
pub fn mmd2_unbiased(x: &Features, y: &Features) -> f64 {
    assert_eq!(x.rows, y.rows, "the unbiased estimator here takes equal set sizes");
    let m = x.rows as f64;
    let d = x.dim;
    let kxx = kernel_sum(x, x, d, true);
    let kyy = kernel_sum(y, y, d, true);
    let kxy = kernel_sum(x, y, d, false);
    (kxx + kyy) / (m * (m - 1.0)) - 2.0 * kxy / (m * m)
}

/// Σ k(a_i, b_j) over all (i, j), or over i ≠ j when `skip_diagonal`.
fn kernel_sum(a: &Features, b: &Features, d: usize, skip_diagonal: bool) -> f64 {
    let am = MatRef::from_row_major_slice(&a.data, a.rows, d);
    let bm = MatRef::from_row_major_slice(&b.data, b.rows, d);
    let mut gram = Mat::<f32>::zeros(a.rows, b.rows);
    matmul_f32(gram.as_mut(), false, am, bm.transpose(), 1.0 / d as f32);
    let mut total = 0f64;
    for j in 0..b.rows {
        for (i, &g) in gram.col(j).iter().enumerate() {
            if skip_diagonal && i == j {
                continue;
            }
            total += (f64::from(g) + 1.0).powi(3);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn polynomial_kernel(a: &[f32], b: &[f32]) -> f64 {
        let dot: f64 = a.iter().zip(b).map(|(&x, &y)| f64::from(x) * f64::from(y)).sum();
        (dot / a.len() as f64 + 1.0).powi(3)
    }

    /// The estimator written out pair by pair, as in the formula.
    fn brute_force_mmd2(x: &Features, y: &Features) -> f64 {
        let m = x.rows;
        let mut same = 0.0;
        let mut cross = 0.0;
        for i in 0..m {
            for j in 0..m {
                if i != j {
                    same += polynomial_kernel(x.row(i), x.row(j)) + polynomial_kernel(y.row(i), y.row(j));
                }
                cross += polynomial_kernel(x.row(i), y.row(j));
            }
        }
        same / (m * (m - 1)) as f64 - 2.0 * cross / (m * m) as f64
    }

    fn grid(rows: usize, dim: usize, shift: f32) -> Features {
        Features { rows, dim, data: (0..rows * dim).map(|k| ((k * 37 % 101) as f32) / 50.0 + shift).collect() }
    }

    #[test]
    fn gram_based_estimate_matches_the_pairwise_formula() {
        let (x, y) = (grid(12, 5, 0.0), grid(12, 5, 0.3));
        let (fast, slow) = (mmd2_unbiased(&x, &y), brute_force_mmd2(&x, &y));
        assert!((fast - slow).abs() < 1e-5 * slow.abs().max(1.0), "{fast} vs {slow}");
    }

    #[test]
    fn whole_sets_use_one_subset_and_smaller_sets_shrink_the_subset() {
        let (x, y) = (grid(12, 5, 0.0), grid(20, 5, 0.3));
        let k = kid(&x, &x.clone(), &KidOptions { subsets: 10, subset_size: 1000, seed: 1 }).unwrap();
        assert_eq!((k.subsets, k.subset_size, k.std), (1, 12, 0.0));
        let k = kid(&x, &y, &KidOptions { subsets: 10, subset_size: 1000, seed: 1 }).unwrap();
        assert_eq!((k.subsets, k.subset_size), (10, 12));
        assert!(k.std > 0.0, "subsets of y differ, so the estimates vary");
    }

    #[test]
    fn same_seed_same_value_other_seed_other_subsets() {
        let (x, y) = (grid(40, 4, 0.0), grid(40, 4, 0.5));
        let o = KidOptions { subsets: 5, subset_size: 10, seed: 7 };
        assert_eq!(kid(&x, &y, &o).unwrap(), kid(&x, &y, &o).unwrap());
        assert_ne!(kid(&x, &y, &o).unwrap().mean, kid(&x, &y, &KidOptions { seed: 8, ..o }).unwrap().mean);
    }
}
