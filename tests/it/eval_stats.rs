//! FID and KID on synthetic features whose answers are known independently: Gaussians with diagonal
//! covariances (FID has a closed form), identical sets (FID 0), same-distribution sets (KID unbiased at 0).
use anime_pipe::eval::features::Features;
use anime_pipe::eval::fid::{fid, GaussianStats};
use anime_pipe::eval::kid::{kid, mmd2_unbiased, KidOptions};
use rand::rngs::ChaCha8Rng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

/// n samples of N(mean, diag(sd²)).
fn gaussian(n: usize, mean: &[f64], sd: &[f64], seed: u64) -> Features {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let d = mean.len();
    let data = (0..n * d)
        .map(|k| {
            let z: f64 = StandardNormal.sample(&mut rng);
            (mean[k % d] + sd[k % d] * z) as f32
        })
        .collect();
    Features { rows: n, dim: d, data }
}

/// FID between N(m1, diag(s1²)) and N(m2, diag(s2²)): |m1 - m2|² + Σ (s1 - s2)², since for commuting diagonal
/// covariances Tr(S1 + S2 - 2 (S1 S2)^(1/2)) = Σ (s1² + s2² - 2 s1 s2).
fn closed_form_fid(m1: &[f64], s1: &[f64], m2: &[f64], s2: &[f64]) -> f64 {
    let means: f64 = m1.iter().zip(m2).map(|(a, b)| (a - b).powi(2)).sum();
    let sds: f64 = s1.iter().zip(s2).map(|(a, b)| (a - b).powi(2)).sum();
    means + sds
}

const D: usize = 32;

fn dist_a() -> (Vec<f64>, Vec<f64>) {
    ((0..D).map(|_| 0.0).collect(), (0..D).map(|i| 1.0 + i as f64 / D as f64).collect())
}

fn dist_b() -> (Vec<f64>, Vec<f64>) {
    ((0..D).map(|i| if i % 2 == 0 { 0.5 } else { -0.25 }).collect(), (0..D).map(|i| 2.5 - i as f64 / 20.0).collect())
}

#[test]
fn fid_of_a_feature_set_with_itself_is_zero_at_inception_width() {
    // 300 samples of 2048 features: the covariance has rank 299, so ~1750 eigenvalues are rounding noise that the
    // clamping must absorb.
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let data: Vec<f32> = (0..300 * 2048)
        .map(|k| {
            let z: f32 = StandardNormal.sample(&mut rng);
            (z * (1.0 + (k % 2048) as f32 / 512.0)).abs() // pool3 features are non-negative
        })
        .collect();
    let f = Features { rows: 300, dim: 2048, data };
    let s = GaussianStats::of(&f).unwrap();
    let v = fid(&s, &s).unwrap();
    assert!(v.abs() < 1e-6 * s.trace(), "FID(x, x) = {v}, trace {}", s.trace());
}

#[test]
fn fid_matches_the_closed_form_for_diagonal_gaussians() {
    let ((ma, sa), (mb, sb)) = (dist_a(), dist_b());
    let expected = closed_form_fid(&ma, &sa, &mb, &sb);
    let n = 20_000;
    let a = GaussianStats::of(&gaussian(n, &ma, &sa, 1)).unwrap();
    let b = GaussianStats::of(&gaussian(n, &mb, &sb, 2)).unwrap();
    let v = fid(&a, &b).unwrap();
    // Sampling error: the mean term's noise is ~ (tr Sa + tr Sb) / n ≈ 0.01, the covariance term's of the same
    // order; 2% of the ~20-unit answer is far above both and far below any method error.
    assert!((v - expected).abs() < 0.02 * expected, "sample FID {v} vs closed form {expected}");
}

#[test]
fn fid_between_halves_of_one_distribution_is_small_and_stable_across_seeds() {
    let (ma, sa) = dist_a();
    let (mb, sb) = dist_b();
    let different = closed_form_fid(&ma, &sa, &mb, &sb);
    let n = 4000;
    let halves: Vec<f64> = (0..5)
        .map(|seed| {
            let x = GaussianStats::of(&gaussian(n, &ma, &sa, 100 + seed)).unwrap();
            let y = GaussianStats::of(&gaussian(n, &ma, &sa, 200 + seed)).unwrap();
            fid(&x, &y).unwrap()
        })
        .collect();
    // Expected value of the finite-sample FID between two same-distribution sets of n: the mean term alone is
    // 2 tr(S) / n ≈ 0.036 here, the covariance term adds about as much; an order of magnitude above that is
    // still < 2% of the FID between the two distributions.
    let tr: f64 = sa.iter().map(|s| s * s).sum();
    let bound = 10.0 * 2.0 * tr / n as f64;
    for v in &halves {
        assert!(*v > 0.0 && *v < bound, "same-distribution FID {v} (bound {bound}); halves {halves:?}");
    }
    assert!(bound < 0.05 * different, "the test separates the two cases ({bound} vs {different})");
    let mean = halves.iter().sum::<f64>() / halves.len() as f64;
    let (lo, hi) = halves.iter().fold((f64::MAX, f64::MIN), |(l, h), &v| (l.min(v), h.max(v)));
    assert!(hi - lo < mean, "stable across seeds: {halves:?}");
}

#[test]
fn kid_is_unbiased_for_samples_of_one_distribution() {
    // 200 independent pairs of sets of 40: the mean of the estimates must be within 3 standard errors of 0.
    let (ma, sa) = dist_a();
    let values: Vec<f64> = (0..200)
        .map(|seed| mmd2_unbiased(&gaussian(40, &ma, &sa, 1000 + seed), &gaussian(40, &ma, &sa, 5000 + seed)))
        .collect();
    let k = values.len() as f64;
    let mean = values.iter().sum::<f64>() / k;
    let se = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (k - 1.0)).sqrt() / k.sqrt();
    assert!(mean.abs() < 3.0 * se, "mean {mean}, standard error {se}");
    assert!(values.iter().any(|v| *v < 0.0), "an unbiased estimator of 0 must go negative sometimes");

    // And the subset protocol on one pair of larger sets: mean within a few std of 0.
    let x = gaussian(600, &ma, &sa, 7);
    let y = gaussian(600, &ma, &sa, 8);
    let same = kid(&x, &y, &KidOptions { subsets: 50, subset_size: 200, seed: 1 }).unwrap();
    assert!(same.mean.abs() < 3.0 * same.std, "{same:?}");
    let (mb, sb) = dist_b();
    let z = gaussian(600, &mb, &sb, 9);
    let different = kid(&x, &z, &KidOptions { subsets: 50, subset_size: 200, seed: 1 }).unwrap();
    assert!(different.mean > 10.0 * different.std.max(same.std), "{different:?} vs {same:?}");
}
