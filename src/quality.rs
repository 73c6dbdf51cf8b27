//! Image-quality scores, measured once per image from its decode (by `ingest`, and by `crop` for the crops it
//! makes) and judged against thresholds by `clean` (which decodes nothing).
//!
//! Luma is BT.601 in integers, `(77 R + 150 G + 29 B + 128) >> 8`, which maps gray pixels (R = G = B = v) to v.
use fast_image_resize as fir;
use image::RgbImage;
use serde::{Deserialize, Serialize};

/// Sharpness is measured with the shorter side reduced to at most this many pixels (see [`sharpness`]).
pub const SHARPNESS_SIDE: u32 = 256;
/// Per-pixel channel spread (max - min) still counted as gray: JPEG chroma rounding moves gray pixels by a few
/// levels.
pub const GRAYSCALE_TOLERANCE: u8 = 8;

/// The image-quality scores of one decoded image.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub sharpness: f64,
    pub colorfulness: f64,
    pub grayscale: bool,
    pub entropy: f64,
}

/// All scores of one image: one pass over the full-resolution pixels, then sharpness on the (reduced) luma.
pub fn score_image(image: &RgbImage) -> Scores {
    let (w, h) = image.dimensions();
    let stats = pixel_stats(image);
    Scores {
        sharpness: sharpness(&stats.luma, w, h),
        colorfulness: stats.colorfulness(),
        grayscale: stats.max_spread <= GRAYSCALE_TOLERANCE,
        entropy: entropy_of(&stats.histogram),
    }
}

/// What the full-resolution scores need, gathered in a single pass over the pixels (decoding dominates the
/// stage; this keeps scoring to one read of the image).
pub struct PixelStats {
    /// BT.601 luma in integer arithmetic, `(77 R + 150 G + 29 B + 128) >> 8`; exact for gray pixels.
    pub luma: Vec<u8>,
    pub histogram: [u64; 256],
    /// Largest max(R,G,B) - min(R,G,B) over all pixels.
    pub max_spread: u8,
    /// Sums of rg = R - G and of yb2 = R + G - 2B (yb doubled, to stay in integers) and of their squares.
    sums: [i64; 4],
}

pub fn pixel_stats(image: &RgbImage) -> PixelStats {
    let raw = image.as_raw();
    let n = raw.len() / 3;
    let mut luma = Vec::with_capacity(n);
    let mut histogram = [0u64; 256];
    let (mut max_spread, mut sums) = (0u8, [0i64; 4]);
    // Index loop rather than iterator adapters: this runs on every pixel, also in unoptimised (debug) builds.
    for i in 0..n {
        let (r, g, b) = (raw[3 * i], raw[3 * i + 1], raw[3 * i + 2]);
        let y = ((77 * u32::from(r) + 150 * u32::from(g) + 29 * u32::from(b) + 128) >> 8) as u8;
        luma.push(y);
        histogram[usize::from(y)] += 1;
        max_spread = max_spread.max(r.max(g).max(b) - r.min(g).min(b));
        let rg = i64::from(r) - i64::from(g);
        let yb2 = i64::from(r) + i64::from(g) - 2 * i64::from(b);
        sums[0] += rg;
        sums[1] += rg * rg;
        sums[2] += yb2;
        sums[3] += yb2 * yb2;
    }
    PixelStats { luma, histogram, max_spread, sums }
}

impl PixelStats {
    /// Hasler & Süsstrunk (2003) colourfulness: with rg = R - G and yb = (R + G)/2 - B over all pixels,
    /// `sqrt(var(rg) + var(yb)) + 0.3 sqrt(mean(rg)^2 + mean(yb)^2)`. 0 for gray images; about 15 is "slightly
    /// colourful", 33 "moderately", 59 "quite", 82+ "highly" in the paper's scale. Computed on the full image.
    pub fn colorfulness(&self) -> f64 {
        let n = self.luma.len() as i64;
        if n == 0 {
            return 0.0;
        }
        let [rg, rg_sq, yb2, yb2_sq] = self.sums;
        let var_rg = exact_variance(rg, rg_sq, n);
        let var_yb = exact_variance(yb2, yb2_sq, n) / 4.0;
        let (mean_rg, mean_yb) = (rg as f64 / n as f64, yb2 as f64 / (2 * n) as f64);
        (var_rg + var_yb).sqrt() + 0.3 * (mean_rg * mean_rg + mean_yb * mean_yb).sqrt()
    }
}

/// BT.601 luma of every pixel (see [`PixelStats::luma`]).
pub fn luma(image: &RgbImage) -> Vec<u8> {
    pixel_stats(image).luma
}

/// See [`PixelStats::colorfulness`].
pub fn colorfulness(image: &RgbImage) -> f64 {
    pixel_stats(image).colorfulness()
}

/// True when every pixel's channels differ by at most `tolerance` levels.
pub fn is_grayscale(image: &RgbImage, tolerance: u8) -> bool {
    pixel_stats(image).max_spread <= tolerance
}

/// Sharpness: variance of the Laplacian of the luma, made comparable across resolutions by first reducing images
/// whose shorter side exceeds [`SHARPNESS_SIDE`] to exactly that shorter side (area/box filter: it averages, adding
/// no ringing that would fake detail). The same picture at 256 px and at 1024 px therefore scores the same, and the
/// score describes detail at a scale close to the training sizes. Smaller images are measured as they are
/// (upsampling them would itself blur). Luma is 0..=255, so a 1-pixel 0/255 checkerboard scores 1020^2.
pub fn sharpness(luma: &[u8], width: u32, height: u32) -> f64 {
    let short = width.min(height);
    if short <= SHARPNESS_SIDE {
        return laplacian_variance(luma, width, height);
    }
    let scale = f64::from(SHARPNESS_SIDE) / f64::from(short);
    let (w, h) = if width <= height {
        (SHARPNESS_SIDE, ((f64::from(height) * scale).round() as u32).max(1))
    } else {
        (((f64::from(width) * scale).round() as u32).max(1), SHARPNESS_SIDE)
    };
    let small = downscale_area(luma, width, height, w, h);
    laplacian_variance(&small, w, h)
}

fn downscale_area(luma: &[u8], width: u32, height: u32, w: u32, h: u32) -> Vec<u8> {
    let src = fir::images::ImageRef::new(width, height, luma, fir::PixelType::U8).expect("buffer matches dimensions");
    let mut dst = fir::images::Image::new(w, h, fir::PixelType::U8);
    let options = fir::ResizeOptions::new().resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Box));
    fir::Resizer::new().resize(&src, &mut dst, &options).expect("same pixel type, non-empty sizes");
    dst.into_vec()
}

/// Population variance of the 4-neighbour Laplacian `N + S + E + W - 4 C` over the interior pixels (no border
/// padding, so borders cannot invent edges). 0 for images without an interior (a side under 3 px).
pub fn laplacian_variance(luma: &[u8], width: u32, height: u32) -> f64 {
    let (w, h) = (width as usize, height as usize);
    if w < 3 || h < 3 {
        return 0.0;
    }
    let (mut sum, mut sum_sq) = (0i64, 0i64);
    for y in 1..h - 1 {
        let (up, row, down) = (&luma[(y - 1) * w..y * w], &luma[y * w..(y + 1) * w], &luma[(y + 1) * w..(y + 2) * w]);
        for x in 1..w - 1 {
            let l = i64::from(up[x]) + i64::from(down[x]) + i64::from(row[x - 1]) + i64::from(row[x + 1])
                - 4 * i64::from(row[x]);
            sum += l;
            sum_sq += l * l;
        }
    }
    exact_variance(sum, sum_sq, ((w - 2) * (h - 2)) as i64)
}

/// Population variance from integer sums, exact until the final division (and so order-independent).
fn exact_variance(sum: i64, sum_sq: i64, n: i64) -> f64 {
    let (sum, sum_sq, n) = (i128::from(sum), i128::from(sum_sq), i128::from(n));
    ((n * sum_sq - sum * sum) as f64) / ((n * n) as f64)
}

/// Shannon entropy (bits) of the 256-bin histogram of `luma`: 0 for a flat image, 1 for two equally common
/// levels, 8 at most.
pub fn luma_entropy(luma: &[u8]) -> f64 {
    let mut histogram = [0u64; 256];
    for &v in luma {
        histogram[usize::from(v)] += 1;
    }
    entropy_of(&histogram)
}

fn entropy_of(histogram: &[u64; 256]) -> f64 {
    let n: u64 = histogram.iter().sum();
    // p log2(1/p) rather than -p log2(p): a single level then sums to +0.0, not -0.0.
    histogram.iter().filter(|&&c| c > 0).map(|&c| c as f64 / n as f64).map(|p| p * (1.0 / p).log2()).sum()
}
