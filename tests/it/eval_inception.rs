//! FID/KID on real Inception features of getchu64 faces (../shared): disjoint halves of the same data are close,
//! noise and blurred faces are far, and the numbers agree with an independent numpy/scipy computation.
//! Inception on CPU costs ~0.1-0.3 s per image, so this embeds 96 faces + 48 noise + 48 blurred images once.

use crate::support;
use crate::support::eval::*;
use anime_pipe::eval::features::{Features, Inception};
use anime_pipe::eval::fid::{fid, GaussianStats};
use anime_pipe::eval::kid::mmd2_unbiased;
use anime_pipe::runtime::{Device, SessionOptions};
use rand::rngs::ChaCha8Rng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use std::sync::OnceLock;

const HALF: usize = 48;

struct Embedded {
    faces: Features,
    noise: Features,
    blurred: Features,
}

/// Embeds everything once for all tests of this file (None without ../shared).
fn embedded() -> Option<&'static Embedded> {
    static CELL: OnceLock<Option<Embedded>> = OnceLock::new();
    CELL.get_or_init(|| {
        let shared = support::shared_dir()?;
        let options = SessionOptions { device: Device::Cpu, threads: 0, optimize: true };
        let mut inception = Inception::load(&inception_path(&shared), &options).unwrap();
        let faces = decode_64(&getchu_jpegs(&shared, 0, 2 * HALF));
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let noise: Vec<u8> = (0..HALF * 64 * 64 * 3).map(|_| rng.random::<u8>()).collect();
        let blurred = box_blur_64(&faces[..HALF * 64 * 64 * 3], 6);
        let mut embed = |pixels: &[u8]| {
            let n = pixels.len() / (64 * 64 * 3);
            let mut all = Features::empty(2048);
            for chunk in pixels.chunks(16 * 64 * 64 * 3) {
                all.push_rows(&inception.embed(chunk, chunk.len() / (64 * 64 * 3), 64, 64).unwrap().data);
            }
            assert_eq!(all.rows, n);
            all
        };
        let e = Embedded { faces: embed(&faces), noise: embed(&noise), blurred: embed(&blurred) };
        assert_eq!(inception.images_embedded(), (4 * HALF) as u64);
        Some(e)
    })
    .as_ref()
}

/// A (2r+1)² box blur of each 64x64 image (edges clamped): the faces' content survives, their detail does not.
fn box_blur_64(pixels: &[u8], r: i64) -> Vec<u8> {
    let mut out = vec![0u8; pixels.len()];
    for (src, dst) in pixels.chunks_exact(64 * 64 * 3).zip(out.chunks_exact_mut(64 * 64 * 3)) {
        for y in 0..64i64 {
            for x in 0..64i64 {
                for c in 0..3 {
                    let mut sum = 0u32;
                    for dy in -r..=r {
                        for dx in -r..=r {
                            let (sy, sx) = ((y + dy).clamp(0, 63), (x + dx).clamp(0, 63));
                            sum += u32::from(src[((sy * 64 + sx) * 3 + c) as usize]);
                        }
                    }
                    dst[((y * 64 + x) * 3 + c) as usize] = (sum / ((2 * r + 1) * (2 * r + 1)) as u32) as u8;
                }
            }
        }
    }
    out
}

/// The faces split into two disjoint random halves by `seed`.
fn halves(faces: &Features, seed: u64) -> (Features, Features) {
    let mut order: Vec<usize> = (0..faces.rows).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    (faces.select(&order[..HALF]), faces.select(&order[HALF..]))
}

fn fid_of(a: &Features, b: &Features) -> f64 {
    fid(&GaussianStats::of(a).unwrap(), &GaussianStats::of(b).unwrap()).unwrap()
}

#[test]
fn pool3_features_are_non_negative_and_image_dependent() {
    let Some(e) = embedded() else { return };
    assert!(e.faces.data.iter().all(|v| v.is_finite() && *v >= 0.0), "pool3 follows a ReLU + average pool");
    assert_ne!(e.faces.row(0), e.faces.row(1));
}

#[test]
fn real_halves_are_close_and_stable_while_noise_and_blur_are_far() {
    let Some(e) = embedded() else { return };
    let same: Vec<f64> = (0..3)
        .map(|seed| {
            let (a, b) = halves(&e.faces, seed);
            fid_of(&a, &b)
        })
        .collect();
    let (a, _) = halves(&e.faces, 0);
    let (noise, blurred) = (fid_of(&a, &e.noise), fid_of(&a, &e.blurred));
    let worst_same = same.iter().cloned().fold(0.0, f64::max);
    let best_same = same.iter().cloned().fold(f64::MAX, f64::min);
    eprintln!("FID real/real {same:?}, real/blurred {blurred:.2}, real/noise {noise:.2}");
    // With 48 samples per side FID carries a large positive bias (rank-47 covariances in 2048 dimensions), so
    // the comparison is relative: other content must be clearly further than any split of the same faces.
    assert!(worst_same - best_same < 0.25 * best_same, "stable across splits: {same:?}");
    assert!(blurred > 1.3 * worst_same, "blurred {blurred} vs same {same:?}");
    assert!(noise > 2.0 * worst_same, "noise {noise} vs same {same:?}");
    assert!(noise > blurred, "noise is further from faces than blurred faces ({noise} vs {blurred})");
}

#[test]
fn fid_and_kid_match_numpy_scipy_on_the_same_features() {
    let Some(e) = embedded() else { return };
    let (a, b) = halves(&e.faces, 0);
    for (name, other) in [("faces", &b), ("noise", &e.noise)] {
        let ours = fid_of(&a, other);
        let kid = mmd2_unbiased(&a, other);
        let Some((scipy_fid, eigh_fid, py_kid)) = python_reference(&a, other) else { return };
        eprintln!("{name}: ours {ours}, scipy sqrtm {scipy_fid}, numpy eigh {eigh_fid}; KID {kid} vs {py_kid}");
        assert!((ours - scipy_fid).abs() < 1e-3 * scipy_fid, "{name}: FID {ours} vs scipy {scipy_fid}");
        // numpy's eigh form takes square roots of ~2000 eigenvalues that are 0 up to rounding (rank 47 of 2048),
        // each ~sqrt(1e-16 * l_max): a few 1e-7 of relative error that our low-rank form does not have.
        assert!((ours - eigh_fid).abs() < 1e-5 * eigh_fid, "{name}: FID {ours} vs numpy eigh {eigh_fid}");
        // KID from f32 Gram products vs numpy's f64: equal to ~1e-5 of the kernel scale (values ~1).
        assert!((kid - py_kid).abs() < 1e-4 * py_kid.abs().max(1e-2), "{name}: KID {kid} vs {py_kid}");
    }
}
