//! The crop-robust signature of an image and the decision that two images are one picture, the second a crop
//! (and possibly a resize or re-encode) of the first: window hash within [`CROP_MAX_HAMMING`] bits of the
//! second's whole-image pHash (the candidate), then, at the best alignment near that window, the gray thumbnails
//! within [`CROP_MAX_GRAY_DIFFERENCE`] and the colour thumbnails within [`CROP_MAX_COLOUR_DIFFERENCE`].
//!
//! Thresholds measured on 3,000 Getchu faces and a copy of each (crop 0..10% per side, half of them resized to
//! 50..90%, JPEG quality 60..95): 98% of copies have a window within 8 bits; of those, 99% pass both thumbnail
//! checks, while among the other faces (after removing pairs that are the same picture) 3 of 3,000 copies met an
//! unrelated face that passed: same-character sprites that differ in expression only.
use super::align::{aligned, Screen, COLOUR_SIDE, GRAY_SIDE};
use super::window::{window_box, window_hashes, WINDOWS};
use std::sync::LazyLock;

pub const GRAY_LEN: usize = GRAY_SIDE * GRAY_SIDE;
pub const COLOUR_LEN: usize = COLOUR_SIDE * COLOUR_SIDE * 3;

/// A window's pHash must be within this many bits of the other image's whole-image pHash.
pub const CROP_MAX_HAMMING: u32 = 8;
/// Mean absolute difference (0..255) of the aligned 12x12 gray resamplings.
pub const CROP_MAX_GRAY_DIFFERENCE: f32 = 7.0;
/// Mean absolute difference (0..255) of the aligned 4x4 RGB resamplings.
pub const CROP_MAX_COLOUR_DIFFERENCE: f32 = 12.0;
/// Candidates whose colour differs by more than this at the window's own box are rejected before the alignment
/// search. The search moves each edge by at most 7.5%, which shifts 4x4 colour means by far less than this
/// margin over [`CROP_MAX_COLOUR_DIFFERENCE`]; in a large collection of alike pictures most candidates are such
/// far-off ones, and the search is ~50 resamplings each (BENCHMARKS.md, "Dedup at scale").
pub const CROP_PREFILTER_COLOUR: f32 = 2.5 * CROP_MAX_COLOUR_DIFFERENCE;
/// Candidates whose 6x6 gray differs by more than this at the window's own box are rejected before the search
/// too. Measured on the labelled real faces (`tests/it/dedup_recall.rs` at 2,000 faces): of 24,069 window checks
/// that the search accepted, one started above 20 (at 22.6), seven above 17.5; on 100k alike mosaics of real
/// faces the screen leaves 37k of the 303k searches the colour screen let through (BENCHMARKS.md, "Dedup at
/// scale"), and the search was most of dedup's time there.
pub const CROP_PREFILTER_GRAY: f32 = 20.0;

/// 16 window pHashes (128 bytes), a 16x16 luma thumbnail (256 bytes) and an 8x8 RGB thumbnail (192 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CropSignature {
    pub windows: [u64; WINDOWS],
    pub gray: [u8; GRAY_LEN],
    pub colour: [u8; COLOUR_LEN],
}

impl CropSignature {
    /// From the pre-reduced image (`rgb`, for the windows) and its 32x32 reduction (`small`, for the thumbnails).
    pub(super) fn of(rgb: &image::Rgb32FImage, small: &[f32]) -> Self {
        Self { windows: window_hashes(rgb), gray: gray_thumb(small), colour: colour_thumb(small) }
    }
}

/// The screens at each window's box.
static SCREENS: LazyLock<[Screen; WINDOWS]> = LazyLock::new(|| std::array::from_fn(|k| Screen::new(window_box(k))));

/// True when `copy` (whole-image pHash `copy_phash`) is original's window `k` cropped, resized or re-encoded: the
/// window's hash is the candidate test, the aligned thumbnails the verification.
pub fn is_crop_of(original: &CropSignature, k: usize, copy: &CropSignature, copy_phash: u64) -> bool {
    if (original.windows[k] ^ copy_phash).count_ones() > CROP_MAX_HAMMING {
        return false;
    }
    let screen = &SCREENS[k];
    if screen.colour_difference(&original.colour, &copy.colour) > CROP_PREFILTER_COLOUR
        || screen.gray_difference(&original.gray, &copy.gray) > CROP_PREFILTER_GRAY
    {
        return false;
    }
    let found = aligned(&original.gray, &original.colour, window_box(k), &copy.gray, &copy.colour);
    found.gray <= CROP_MAX_GRAY_DIFFERENCE && found.colour <= CROP_MAX_COLOUR_DIFFERENCE
}

/// 16x16 luma (0.299 R + 0.587 G + 0.114 B): the means of the 2x2 blocks of the 32x32 reduction.
fn gray_thumb(small: &[f32]) -> [u8; GRAY_LEN] {
    let luma: Vec<f32> = small.chunks_exact(3).map(|p| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]).collect();
    block_means::<GRAY_LEN>(&luma, 1, GRAY_SIDE)
}

/// 8x8 RGB: the means of the 4x4 blocks of the 32x32 reduction.
fn colour_thumb(small: &[f32]) -> [u8; COLOUR_LEN] {
    block_means::<COLOUR_LEN>(small, 3, COLOUR_SIDE)
}

/// Block means (0..255, rounded) of a 32x32 image with `ch` channels (values 0..1) reduced to `side` x `side`.
fn block_means<const N: usize>(values: &[f32], ch: usize, side: usize) -> [u8; N] {
    let n = super::phash::PHASH_SIDE;
    let block = n / side;
    let mut sums = [0.0f64; N];
    for (i, p) in values.chunks_exact(ch).enumerate() {
        let cell = (i / n / block) * side + (i % n) / block;
        for c in 0..ch {
            sums[cell * ch + c] += f64::from(p[c]);
        }
    }
    let scale = 255.0 / (block * block) as f64;
    sums.map(|s| (s * scale).round().clamp(0.0, 255.0) as u8)
}
