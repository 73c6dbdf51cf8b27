//! Near duplicates that are crops: every distinct picture's 16 window pHashes are matched against the
//! whole-image pHashes of all of them (multi-index hashing, [`crate::imagehash::near_matches`]: no quadratic
//! scan), and each candidate is verified on aligned thumbnails ([`crate::imagehash::is_crop_of`]).
use crate::imagehash::{is_crop_of, near_matches, CROP_MAX_HAMMING, WINDOWS};
use crate::measure::Measures;
use rayon::prelude::*;

/// Windows verified per candidate pair, closest hash first.
const VERIFIED_WINDOWS: usize = 2;

/// The verified pairs (i, j), i < j, of indices into `sigs` where one picture is a crop of the other; sorted.
pub fn crop_pairs(sigs: &[&Measures]) -> Vec<(u32, u32)> {
    let index: Vec<u64> = sigs.iter().map(|s| s.phash).collect();
    let queries: Vec<u64> = sigs.iter().flat_map(|s| s.crop.windows).collect();
    // (original, copy, distance, window): the copy's whole hash is near the original's window.
    let mut candidates: Vec<(u32, u32, u32, u8)> = near_matches(&index, &queries, CROP_MAX_HAMMING)
        .into_iter()
        .map(|(q, j)| (q / WINDOWS as u32, j, (queries[q as usize] ^ index[j as usize]).count_ones(), q))
        .filter(|&(i, j, _, _)| i != j)
        .map(|(i, j, d, q)| (i, j, d, (q % WINDOWS as u32) as u8))
        .collect();
    candidates.sort_unstable();
    let per_pair: Vec<&[(u32, u32, u32, u8)]> = candidates.chunk_by(|a, b| (a.0, a.1) == (b.0, b.1)).collect();
    let mut pairs: Vec<(u32, u32)> = per_pair
        .par_iter()
        .filter(|windows| {
            // Neighbouring windows match the same copy; the closest two are enough to verify from.
            windows.iter().take(VERIFIED_WINDOWS).any(|&(i, j, _, k)| {
                let (original, copy) = (sigs[i as usize], sigs[j as usize]);
                is_crop_of(&original.crop, usize::from(k), &copy.crop, copy.phash)
            })
        })
        .map(|windows| (windows[0].0.min(windows[0].1), windows[0].0.max(windows[0].1)))
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    pairs
}
