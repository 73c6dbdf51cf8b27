//! The 64-bit DCT perceptual hash, the 4x4 colour thumbnail that confirms its candidates, and the exact pixel
//! hash: what one decode of an image yields for duplicate search (see the module docs of `imagehash`).
const THUMB_SIDE: usize = 4;
/// Bytes of a colour thumbnail (4x4 RGB).
pub const THUMB_LEN: usize = THUMB_SIDE * THUMB_SIDE * 3;

/// A pHash candidate pair is a near duplicate only if the mean absolute difference of the two 4x4 RGB thumbnails
/// is at most this (0..255 scale). pHash sees luma structure only, and aligned face crops share it: on the 64x64
/// Getchu faces, pairs within 6 bits are the same picture (re-encoded, retouched: difference < 10) or different
/// characters in the same pose (typically > 15, e.g. other hair colours). Resizes, re-encodes and crops of a few
/// percent stay well below it.
pub const NEAR_MAX_COLOUR_DIFFERENCE: f64 = 10.0;

pub(super) const PHASH_SIDE: usize = 32;
const PHASH_LOW: usize = 8;
/// Larger images are first reduced to at most this size in 8-bit, so the f32 resize touches few pixels.
const PRE_REDUCE: u32 = 128;

/// 64-bit DCT perceptual hash (see the module docs).
pub fn phash(img: &image::RgbImage) -> u64 {
    let rgb = pre_reduce(img.clone());
    phash_of(&reduce32(&rgb))
}

/// The image as f32 RGB, first reduced to at most 128x128 in 8-bit when larger, so the f32 resizes touch few
/// pixels. The resize uses image's triangle filter, whose support grows with the scale factor (so downscaling
/// anti-aliases), and runs inside the image crate, which is compiled optimised even in debug builds; scalar
/// arithmetic, so the result is the same on every machine.
pub(super) fn pre_reduce(img: image::RgbImage) -> image::Rgb32FImage {
    use image::imageops::FilterType::Triangle;
    let (w, h) = img.dimensions();
    let mut img = image::DynamicImage::ImageRgb8(img);
    if w > PRE_REDUCE || h > PRE_REDUCE {
        img = img.resize_exact(w.min(PRE_REDUCE), h.min(PRE_REDUCE), Triangle);
    }
    img.into_rgb32f()
}

/// The pre-reduced image as 32x32 f32 RGB (row-major, interleaved), image's triangle filter.
pub(super) fn reduce32(rgb: &image::Rgb32FImage) -> Vec<f32> {
    use image::imageops::FilterType::Triangle;
    let side = PHASH_SIDE as u32;
    image::DynamicImage::ImageRgb32F(rgb.clone()).resize_exact(side, side, Triangle).into_rgb32f().into_raw()
}

/// pHash of the 32x32 RGB reduction (values in 0..1).
pub(super) fn phash_of(rgb: &[f32]) -> u64 {
    let luma: Vec<f64> = rgb
        .chunks_exact(3)
        .map(|p| 0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2]))
        .collect();
    let coeffs = low_frequency_dct(&luma);
    let mut sorted = coeffs;
    sorted.sort_by(f64::total_cmp);
    let median = (sorted[31] + sorted[32]) / 2.0;
    let mut hash = 0u64;
    for (i, &c) in coeffs.iter().enumerate() {
        if c > median {
            hash |= 1 << (63 - i);
        }
    }
    hash
}

/// 4x4 RGB thumbnail (0..255): the means of the 8x8 blocks of the 32x32 reduction.
pub(super) fn colour_thumb(rgb: &[f32]) -> [u8; THUMB_LEN] {
    let block = PHASH_SIDE / THUMB_SIDE;
    let mut sums = [0.0f64; THUMB_LEN];
    for (i, p) in rgb.chunks_exact(3).enumerate() {
        let (y, x) = (i / PHASH_SIDE, i % PHASH_SIDE);
        let cell = (y / block) * THUMB_SIDE + x / block;
        for c in 0..3 {
            sums[cell * 3 + c] += f64::from(p[c]);
        }
    }
    let scale = 255.0 / (block * block) as f64;
    sums.map(|s| (s * scale).round().clamp(0.0, 255.0) as u8)
}

/// cos(pi (2x + 1) k / 2n) for k < 8, x < 32, computed once.
fn dct_basis() -> &'static [f64] {
    static BASIS: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
    BASIS.get_or_init(|| {
        let n = PHASH_SIDE;
        (0..PHASH_LOW * n)
            .map(|i| {
                let (k, x) = (i / n, i % n);
                (std::f64::consts::PI * (2 * x + 1) as f64 * k as f64 / (2 * n) as f64).cos()
            })
            .collect()
    })
}

/// The top-left 8x8 coefficients of the 2-D DCT-II of a 32x32 block, row-major (u = vertical frequency). The
/// unnormalised transform: a positive scale does not change the comparison with the median.
fn low_frequency_dct(block: &[f64]) -> [f64; 64] {
    let (n, low) = (PHASH_SIDE, PHASH_LOW);
    let basis = dct_basis();
    // Rows first: t[y][v] = sum_x block[y][x] * cos(v, x).
    let mut t = vec![0.0f64; n * low];
    for (y, row) in block.chunks_exact(n).enumerate() {
        for (v, cos) in basis.chunks_exact(n).enumerate() {
            let mut acc = 0.0;
            for (a, b) in row.iter().zip(cos) {
                acc += a * b;
            }
            t[y * low + v] = acc;
        }
    }
    let mut out = [0.0f64; 64];
    for (u, cos) in basis.chunks_exact(n).enumerate() {
        for (y, c) in cos.iter().enumerate() {
            for v in 0..low {
                out[u * low + v] += c * t[y * low + v];
            }
        }
    }
    out
}

/// Mean absolute difference (0..255) between two 4x4 RGB thumbnails.
pub fn colour_difference(a: &[u8; THUMB_LEN], b: &[u8; THUMB_LEN]) -> f64 {
    let total: u32 = a.iter().zip(b).map(|(&x, &y)| u32::from(x.abs_diff(y))).sum();
    f64::from(total) / THUMB_LEN as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(w: u32, h: u32) -> image::RgbImage {
        image::RgbImage::from_fn(w, h, |x, y| {
            let (fx, fy) = (x as f64 / w as f64, y as f64 / h as f64);
            let d = ((fx - 0.5).powi(2) + (fy - 0.55).powi(2)).sqrt();
            let eye = ((fx - 0.35).powi(2) + (fy - 0.45).powi(2)).sqrt() < 0.06
                || ((fx - 0.65).powi(2) + (fy - 0.45).powi(2)).sqrt() < 0.06;
            if eye {
                image::Rgb([30, 60, 200])
            } else if d < 0.35 {
                image::Rgb([250, 220, 190])
            } else if fy < 0.4 {
                image::Rgb([120, 40, 20])
            } else {
                image::Rgb([240, 240, 250])
            }
        })
    }

    #[test]
    fn phash_is_stable_under_resize_and_differs_between_images() {
        let a = face(200, 200);
        let resized = image::imageops::resize(&a, 73, 73, image::imageops::FilterType::Triangle);
        let d = (phash(&a) ^ phash(&resized)).count_ones();
        assert!(d <= 4, "resize moved the hash by {d} bits");
        let other = image::imageops::rotate90(&face(200, 200));
        assert!((phash(&a) ^ phash(&other)).count_ones() > 12);
    }
}
