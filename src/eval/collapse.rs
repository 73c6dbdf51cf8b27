//! Mode-collapse signals that need no model beyond Inception:
//!
//! - **feature spread ratio**: the mean pairwise Euclidean distance between generated Inception features divided
//!   by the same quantity for the real features. A generator covering the data has a ratio near 1; one that
//!   collapsed onto a few modes has a ratio well below 1 (its samples sit close together in feature space). Each
//!   side uses at most [`SPREAD_MAX_SAMPLES`] rows (a seeded subset beyond that), i.e. up to ~2M pairs: the mean
//!   is then known to well under 1%, and the cost stays a few seconds.
//! - **near-duplicate count**: generated samples that `anime-pipe dedup` would mark as near duplicates of another
//!   generated sample: 64-bit DCT perceptual hashes ([`crate::imagehash::phash`]) within
//!   `dedup.phash_threshold` bits, grouped transitively (union-find, like dedup's groups); the count is
//!   samples minus groups, i.e. every sample beyond the first of its group.
use super::features::Features;
use crate::imagehash::{near_pairs, phash};
use anime_linalg::{matmul_f64, Mat, MatRef};
use rand::rngs::ChaCha8Rng;
use rand::SeedableRng;

/// Rows used per side for the mean pairwise distance.
pub const SPREAD_MAX_SAMPLES: usize = 2000;

/// Mean Euclidean distance over all unordered pairs of rows of `features` (at most [`SPREAD_MAX_SAMPLES`] rows,
/// a seeded subset when there are more). 0 for fewer than 2 rows.
pub fn mean_pairwise_distance(features: &Features, seed: u64) -> f64 {
    let picked;
    let f = if features.rows > SPREAD_MAX_SAMPLES {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut indices = rand::seq::index::sample(&mut rng, features.rows, SPREAD_MAX_SAMPLES).into_vec();
        indices.sort_unstable();
        picked = features.select(&indices);
        &picked
    } else {
        features
    };
    let n = f.rows;
    if n < 2 {
        return 0.0;
    }
    // |a - b|² = |a|² + |b|² - 2 a·b, in f64: near-identical rows would lose their distance to cancellation in f32.
    let data: Vec<f64> = f.data.iter().map(|&v| f64::from(v)).collect();
    let x = MatRef::from_row_major_slice(&data, n, f.dim);
    let mut gram = Mat::<f64>::zeros(n, n);
    matmul_f64(gram.as_mut(), false, x, x.transpose(), 1.0);
    let mut total = 0f64;
    for j in 1..n {
        for i in 0..j {
            total += (gram[(i, i)] + gram[(j, j)] - 2.0 * gram[(i, j)]).max(0.0).sqrt();
        }
    }
    total / (n * (n - 1) / 2) as f64
}

/// Generated-to-real ratio of mean pairwise feature distances (NaN when the real spread is 0).
pub fn feature_spread_ratio(generated: &Features, real: &Features, seed: u64) -> f64 {
    mean_pairwise_distance(generated, seed) / mean_pairwise_distance(real, seed)
}

/// Perceptual hashes of packed RGB8 images (`side` x `side`, HWC), in order.
pub fn phashes(pixels: &[u8], side: u32) -> Vec<u64> {
    let len = (side * side * 3) as usize;
    pixels
        .chunks_exact(len)
        .map(|p| phash(&image::RgbImage::from_raw(side, side, p.to_vec()).expect("buffer size matches")))
        .collect()
}

/// Samples beyond the first of each near-duplicate group (hashes within `threshold` bits, transitively).
pub fn near_duplicate_count(hashes: &[u64], threshold: u32) -> usize {
    let mut parent: Vec<usize> = (0..hashes.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let mut merged = 0;
    for (a, b) in near_pairs(hashes, threshold) {
        let (ra, rb) = (root(&mut parent, a as usize), root(&mut parent, b as usize));
        if ra != rb {
            parent[ra.max(rb)] = ra.min(rb);
            merged += 1;
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_pairwise_distance_of_a_right_triangle() {
        // Points (0,0), (3,0), (0,4): distances 3, 4, 5.
        let f = Features { rows: 3, dim: 2, data: vec![0., 0., 3., 0., 0., 4.] };
        assert!((mean_pairwise_distance(&f, 0) - 4.0).abs() < 1e-12);
    }

    #[test]
    fn collapsed_features_have_a_small_spread_ratio() {
        let spread = Features { rows: 50, dim: 3, data: (0..150).map(|k| ((k * 17 % 23) as f32) - 11.0).collect() };
        let collapsed = Features { rows: 50, dim: 3, data: (0..150).map(|k| ((k * 17 % 23) as f32) * 0.01).collect() };
        let r = feature_spread_ratio(&collapsed, &spread, 0);
        assert!((r - 0.01).abs() < 1e-6, "{r}");
    }

    #[test]
    fn near_duplicates_chain_into_groups() {
        // 0 ~ 1 (1 bit), 1 ~ 2 (1 bit), 0 vs 2 two bits; 3 far away; 4 == 3.
        let hashes = [0b000u64, 0b001, 0b011, u64::MAX, u64::MAX];
        assert_eq!(near_duplicate_count(&hashes, 1), 3, "groups {{0,1,2}}, {{3,4}}");
        assert_eq!(near_duplicate_count(&hashes, 0), 1, "only the identical pair");
    }

    #[test]
    fn identical_images_hash_alike() {
        let img: Vec<u8> = (0..16 * 16 * 3).map(|k| (k * 7 % 256) as u8).collect();
        let two = [img.clone(), img].concat();
        let h = phashes(&two, 16);
        assert_eq!(h[0], h[1]);
        assert_eq!(near_duplicate_count(&h, 0), 1);
    }
}
