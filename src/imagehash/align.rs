//! Aligned comparison of two images' small thumbnails: the verification step of crop candidates. A window match
//! says roughly where the copy sits in the original (within 3% per edge); a small search over the four edges
//! of that box (steps of 1.25%) finds the alignment at which the original's gray thumbnail, resampled over the
//! box, is closest to the copy's. Unaligned, a 2.5% shift of sharp line art already costs as much as a different
//! expression of the same character; aligned, re-encoded, resized and cropped copies stay below what separates
//! different pictures.
use std::sync::LazyLock;

/// Side of the gray thumbnail (luma, 16x16) and of the colour thumbnail (RGB, 8x8).
pub const GRAY_SIDE: usize = 16;
pub const COLOUR_SIDE: usize = 8;
/// Sides the thumbnails are compared at (the gray one resampled to 12x12, the colour one to 4x4).
const GRAY_CMP: usize = 12;
const COLOUR_CMP: usize = 4;
/// Side of the unaligned gray comparison that screens candidates before the search.
const GRAY_PREFILTER: usize = GRAY_CMP / 2;
const STEP: f32 = 0.0125;
const ROUNDS: usize = 6;

/// Mean absolute differences (0..255) of two images at their best alignment near a start box.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aligned {
    pub gray: f32,
    pub colour: f32,
    /// The box of the first image (x0, y0, x1, y1 fractions) that matched the whole second image.
    pub bbox: [f32; 4],
}

/// Compares the region `start` of image a (refined by coordinate descent on its four edges) with all of image b.
pub fn aligned(a_gray: &[u8], a_colour: &[u8], start: [f32; 4], b_gray: &[u8], b_colour: &[u8]) -> Aligned {
    let whole = [0.0, 0.0, 1.0, 1.0];
    let b_g = area(b_gray, GRAY_SIDE, 1, whole, GRAY_CMP);
    let (mut bbox, mut best) = (start, gray_cost_below(a_gray, start, &b_g, f32::INFINITY).unwrap_or(f32::INFINITY));
    for _ in 0..ROUNDS {
        let mut improved = false;
        for edge in 0..4 {
            for delta in [-STEP, STEP] {
                let mut next = bbox;
                next[edge] = (next[edge] + delta).clamp(0.0, 1.0);
                if next[2] - next[0] < 0.5 || next[3] - next[1] < 0.5 {
                    continue;
                }
                if let Some(c) = gray_cost_below(a_gray, next, &b_g, best) {
                    (bbox, best, improved) = (next, c, true);
                }
            }
        }
        if !improved {
            break;
        }
    }
    let colour =
        mad(&area(a_colour, COLOUR_SIDE, 3, bbox, COLOUR_CMP), &area(b_colour, COLOUR_SIDE, 3, whole, COLOUR_CMP));
    Aligned { gray: best, colour, bbox }
}

/// The unaligned screens of a crop candidate at one box of the first image, its resampling weights computed once:
/// dedup screens every candidate at one of 16 fixed window boxes, and computing the weights per candidate was a
/// third of the screening (perf on 1M pictures).
pub struct Screen {
    colour: Grid,
    gray: Grid,
}

/// The whole second image, which every screen compares with.
static WHOLE: LazyLock<Screen> = LazyLock::new(|| Screen::new([0.0, 0.0, 1.0, 1.0]));

impl Screen {
    pub fn new(bbox: [f32; 4]) -> Self {
        Self { colour: Grid::new(COLOUR_SIDE, bbox, COLOUR_CMP), gray: Grid::new(GRAY_SIDE, bbox, GRAY_PREFILTER) }
    }

    /// Mean absolute difference (0..255) of the 4x4 colour resamplings of a's box and all of b, without the
    /// alignment search: one resampling each, the cheap test before [`aligned`].
    pub fn colour_difference(&self, a_colour: &[u8], b_colour: &[u8]) -> f32 {
        let (mut a, mut b) = ([0.0f32; COLOUR_CMP * COLOUR_CMP * 3], [0.0f32; COLOUR_CMP * COLOUR_CMP * 3]);
        self.colour.resample(a_colour, COLOUR_SIDE, 3, COLOUR_CMP, &mut a);
        WHOLE.colour.resample(b_colour, COLOUR_SIDE, 3, COLOUR_CMP, &mut b);
        mad(&a, &b)
    }

    /// Mean absolute difference (0..255) of the 6x6 gray resamplings of a's box and all of b, without the
    /// alignment search. Each 6x6 cell is the mean of four 12x12 ones, so the coarse difference moves less with a
    /// misalignment than the compared one does.
    pub fn gray_difference(&self, a_gray: &[u8], b_gray: &[u8]) -> f32 {
        let (mut a, mut b) = ([0.0f32; GRAY_PREFILTER * GRAY_PREFILTER], [0.0f32; GRAY_PREFILTER * GRAY_PREFILTER]);
        self.gray.resample(a_gray, GRAY_SIDE, 1, GRAY_PREFILTER, &mut a);
        WHOLE.gray.resample(b_gray, GRAY_SIDE, 1, GRAY_PREFILTER, &mut b);
        mad(&a, &b)
    }
}

fn mad(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>() / a.len() as f32
}

/// The gray cost of a's box `bbox` (mean absolute difference of its 12x12 resampling from `b_g`) when it is below
/// `bound`, else `None`: most boxes the search tries are worse than its best, and their running sum shows it after
/// a few rows. Cells and sums in the order of [`area`] and [`mad`], so the value is theirs bit for bit.
fn gray_cost_below(a_gray: &[u8], bbox: [f32; 4], b_g: &[f32], bound: f32) -> Option<f32> {
    let wx = coverage(GRAY_SIDE, bbox[0], bbox[2], GRAY_CMP);
    let wy = coverage(GRAY_SIDE, bbox[1], bbox[3], GRAY_CMP);
    let cells = (GRAY_CMP * GRAY_CMP) as f32;
    let mut sum = 0.0f32;
    for (oy, ys) in wy[..GRAY_CMP].iter().enumerate() {
        for (ox, xs) in wx[..GRAY_CMP].iter().enumerate() {
            let mut cell = 0.0f32;
            for &(y, wy) in &ys.taps[..ys.len] {
                for &(x, wx) in &xs.taps[..xs.len] {
                    cell += wy * wx * f32::from(a_gray[y * GRAY_SIDE + x]);
                }
            }
            sum += (cell - b_g[oy * GRAY_CMP + ox]).abs();
        }
        // A sum of non-negative terms only grows, so the final mean is at least this one.
        if sum / cells >= bound {
            return None;
        }
    }
    Some(sum / cells)
}

/// The box (fractions of the thumbnail) of a `side` x `side` thumbnail with `ch` channels, area-averaged onto
/// `out` x `out` cells: each cell the coverage-weighted mean of the thumbnail pixels it overlaps.
fn area(thumb: &[u8], side: usize, ch: usize, bbox: [f32; 4], out: usize) -> Vec<f32> {
    let mut result = vec![0.0f32; out * out * ch];
    Grid::new(side, bbox, out).resample(thumb, side, ch, out, &mut result);
    result
}

/// The resampling weights of a box of a `side` x `side` thumbnail onto `out` x `out` cells, per axis.
struct Grid {
    wx: [Taps; MAX_OUT],
    wy: [Taps; MAX_OUT],
}

impl Grid {
    fn new(side: usize, bbox: [f32; 4], out: usize) -> Self {
        Self { wx: coverage(side, bbox[0], bbox[2], out), wy: coverage(side, bbox[1], bbox[3], out) }
    }

    /// `thumb` (`ch` channels) resampled into `result` (`out` x `out` x `ch`, zeroed; `out` as at [`Grid::new`]).
    /// Inlined so that each caller's constant sizes unroll the loops.
    #[inline(always)]
    fn resample(&self, thumb: &[u8], side: usize, ch: usize, out: usize, result: &mut [f32]) {
        for (oy, ys) in self.wy[..out].iter().enumerate() {
            for (ox, xs) in self.wx[..out].iter().enumerate() {
                let cell = &mut result[(oy * out + ox) * ch..(oy * out + ox + 1) * ch];
                for &(y, wy) in &ys.taps[..ys.len] {
                    for &(x, wx) in &xs.taps[..xs.len] {
                        let p = &thumb[(y * side + x) * ch..(y * side + x + 1) * ch];
                        for c in 0..ch {
                            cell[c] += wy * wx * f32::from(p[c]);
                        }
                    }
                }
            }
        }
    }
}

/// Most output cells per axis, and most thumbnail pixels one cell overlaps (a cell is at most 2 pixels wide for
/// the boxes searched here: the box spans at least half the thumbnail).
const MAX_OUT: usize = GRAY_CMP;
const MAX_TAPS: usize = 4;

#[derive(Clone, Copy, Default)]
struct Taps {
    taps: [(usize, f32); MAX_TAPS],
    len: usize,
}

/// Per output cell over `[a, b]` (fractions): (thumbnail pixel, weight) pairs, weights summing to 1.
fn coverage(side: usize, a: f32, b: f32, out: usize) -> [Taps; MAX_OUT] {
    let s = side as f32;
    let cell = (b - a) * s / out as f32;
    let mut cells = [Taps::default(); MAX_OUT];
    for (i, taps) in cells[..out].iter_mut().enumerate() {
        let (lo, hi) = (a * s + i as f32 * cell, a * s + (i + 1) as f32 * cell);
        let first = lo.floor() as i64;
        let last = (hi.ceil() as i64).max(first + 1).min(first + MAX_TAPS as i64);
        for p in first..last {
            let overlap = (hi.min(p as f32 + 1.0) - lo.max(p as f32)).max(0.0);
            taps.taps[taps.len] = (p.clamp(0, side as i64 - 1) as usize, overlap / cell);
            taps.len += 1;
        }
    }
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 16x16 gray and 8x8 colour thumbnail of a smooth pattern seen through the box [x0, x1] x [y0, y1].
    fn thumbs(x0: f32, y0: f32, x1: f32, y1: f32) -> (Vec<u8>, Vec<u8>) {
        let f = |u: f32, v: f32| 128.0 + 100.0 * (u * 9.0).sin() * (v * 7.0).cos();
        let at = |side: usize, i: usize, j: usize| {
            let (u, v) = ((j as f32 + 0.5) / side as f32, (i as f32 + 0.5) / side as f32);
            f(x0 + u * (x1 - x0), y0 + v * (y1 - y0))
        };
        let gray = (0..GRAY_SIDE * GRAY_SIDE).map(|p| at(GRAY_SIDE, p / GRAY_SIDE, p % GRAY_SIDE) as u8).collect();
        let colour = (0..COLOUR_SIDE * COLOUR_SIDE)
            .flat_map(|p| {
                let g = at(COLOUR_SIDE, p / COLOUR_SIDE, p % COLOUR_SIDE);
                [g as u8, (255.0 - g) as u8, 90]
            })
            .collect();
        (gray, colour)
    }

    #[test]
    fn the_search_finds_the_crop_box_and_a_wrong_box_costs_more() {
        let (og, oc) = thumbs(0.0, 0.0, 1.0, 1.0);
        let (cg, cc) = thumbs(0.08, 0.0, 1.0, 0.95);
        let found = aligned(&og, &oc, [0.075, 0.025, 0.975, 0.975], &cg, &cc);
        assert!(found.gray < 4.0 && found.colour < 6.0, "{found:?}");
        assert!((found.bbox[0] - 0.08).abs() <= 0.02 && (found.bbox[3] - 0.95).abs() <= 0.02, "{found:?}");
        // A region far outside the search's reach (the right half) is no match.
        let (hg, hc) = thumbs(0.5, 0.0, 1.0, 1.0);
        assert!(aligned(&og, &oc, [0.0, 0.0, 1.0, 1.0], &hg, &hc).gray > 10.0);
    }

    #[test]
    fn the_bounded_cost_is_the_full_cost_bit_for_bit_or_none_at_the_bound() {
        let (og, _) = thumbs(0.0, 0.0, 1.0, 1.0);
        let (cg, _) = thumbs(0.05, 0.02, 0.97, 1.0);
        let b_g = area(&cg, GRAY_SIDE, 1, [0.0, 0.0, 1.0, 1.0], GRAY_CMP);
        for bbox in [[0.05, 0.025, 0.975, 1.0], [0.0, 0.0, 1.0, 1.0], [0.2, 0.1, 0.9, 0.8]] {
            let full = mad(&area(&og, GRAY_SIDE, 1, bbox, GRAY_CMP), &b_g);
            assert_eq!(gray_cost_below(&og, bbox, &b_g, f32::INFINITY).map(f32::to_bits), Some(full.to_bits()));
            assert_eq!(gray_cost_below(&og, bbox, &b_g, full), None, "not below itself");
            assert_eq!(gray_cost_below(&og, bbox, &b_g, full * 0.5), None);
            assert_eq!(gray_cost_below(&og, bbox, &b_g, full.next_up()).map(f32::to_bits), Some(full.to_bits()));
        }
    }

    #[test]
    fn area_of_the_whole_thumbnail_is_the_block_mean() {
        let thumb: Vec<u8> = (0..16).map(|i| (i * 10) as u8).collect();
        let out = area(&thumb, 4, 1, [0.0, 0.0, 1.0, 1.0], 2);
        assert_eq!(out, vec![25.0, 45.0, 105.0, 125.0]);
    }
}
