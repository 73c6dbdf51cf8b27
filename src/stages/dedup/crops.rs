//! Near duplicates that are crops: every distinct picture's 16 window pHashes are matched against the
//! whole-image pHashes of all of them (multi-index hashing, [`crate::imagehash::MatchIndex`]: no quadratic
//! scan), and each candidate is verified on aligned thumbnails ([`crate::imagehash::is_crop_of`]).
use crate::imagehash::{is_crop_of, MatchIndex, CROP_MAX_HAMMING, WINDOWS};
use crate::measure::Measures;
use rayon::prelude::*;

/// Windows verified per candidate pair, closest hash first.
const VERIFIED_WINDOWS: usize = 2;

/// Pictures whose windows are queried at once: the candidates of one chunk (16 bytes each, all windows of a
/// picture in the same chunk) are verified and dropped before the next, so memory stays bounded by the chunk
/// whatever the collection's size. The result does not depend on it.
const PICTURES_PER_CHUNK: usize = 1 << 16;

/// The verified pairs (i, j), i < j, of indices into `sigs` where one picture is a crop of the other; sorted.
pub fn all_crop_pairs(sigs: &[&Measures]) -> Vec<(u32, u32)> {
    let all: Vec<u32> = (0..sigs.len() as u32).collect();
    crop_pairs(sigs, &all, &all)
}

/// The verified crop pairs (as (min, max) indices into `sigs`, sorted) where the original is one of `originals`
/// and the copy one of `indexed`. An incremental run asks for new originals against all pictures and old
/// originals against new pictures only; the pairs of one (original, copy) are the same whichever set asks.
pub fn crop_pairs(sigs: &[&Measures], originals: &[u32], indexed: &[u32]) -> Vec<(u32, u32)> {
    let index: Vec<u64> = indexed.iter().map(|&j| sigs[j as usize].phash).collect();
    let search = MatchIndex::build(&index, CROP_MAX_HAMMING);
    let mut pairs = Vec::new();
    for chunk in originals.chunks(PICTURES_PER_CHUNK) {
        let found = candidates(sigs, chunk, Indexed { ids: indexed, hashes: &index, search: &search });
        pairs.extend(verified_pairs(sigs, &found));
    }
    pairs.sort_unstable();
    pairs.dedup();
    pairs
}

/// The searched whole-image hashes: picture ids, their hashes, and the search tables over them.
#[derive(Clone, Copy)]
struct Indexed<'a> {
    ids: &'a [u32],
    hashes: &'a [u64],
    search: &'a MatchIndex,
}

/// (original, copy, distance, window) for the pictures of `chunk` as originals: the copy's whole hash is near the
/// original's window. Sorted, so each pair's windows are together, closest first.
fn candidates(sigs: &[&Measures], chunk: &[u32], indexed: Indexed) -> Vec<(u32, u32, u32, u8)> {
    let queries: Vec<u64> = chunk.iter().flat_map(|&i| sigs[i as usize].crop.windows).collect();
    let mut found: Vec<(u32, u32, u32, u8)> = indexed
        .search
        .matches(&queries)
        .into_iter()
        .map(|(q, j)| {
            let i = chunk[q as usize / WINDOWS];
            let distance = (queries[q as usize] ^ indexed.hashes[j as usize]).count_ones();
            (i, indexed.ids[j as usize], distance, (q as usize % WINDOWS) as u8)
        })
        .filter(|&(i, j, _, _)| i != j)
        .collect();
    found.sort_unstable();
    found
}

/// The candidate pairs that pass verification on one of their closest windows, as (min, max).
fn verified_pairs(sigs: &[&Measures], candidates: &[(u32, u32, u32, u8)]) -> Vec<(u32, u32)> {
    let per_pair: Vec<&[(u32, u32, u32, u8)]> = candidates.chunk_by(|a, b| (a.0, a.1) == (b.0, b.1)).collect();
    per_pair
        .par_iter()
        .filter(|windows| {
            // Neighbouring windows match the same copy; the closest two are enough to verify from.
            windows.iter().take(VERIFIED_WINDOWS).any(|&(i, j, _, k)| {
                let (original, copy) = (sigs[i as usize], sigs[j as usize]);
                is_crop_of(&original.crop, usize::from(k), &copy.crop, copy.phash)
            })
        })
        .map(|windows| (windows[0].0.min(windows[0].1), windows[0].0.max(windows[0].1)))
        .collect()
}
