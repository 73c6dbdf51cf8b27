//! Incremental near search: the near pairs of the last run are kept in the cache, so a re-run after adding 1% new
//! pictures searches only pairs that involve a new picture.
//!
//! Exact, not approximate: every near relation (whole-image pHash + colour, or a verified crop) is a property of
//! one pair of pictures, and the verdicts depend only on the pairs' connected components. The memo records the
//! set `searched` of pictures (pixel hashes) whose mutual pairs are all known, and those pairs. With the current
//! distinct pictures P, old = P ∩ searched and new = P \ searched; the pairs of P are the memo's pairs inside old,
//! plus whole-image pairs of new against all of P, crops with a new original against all of P, and crops with an
//! old original and a new copy. The memo is then rewritten with searched = P exactly (not a union: a picture
//! removed and later added back is new again, since its pairs with pictures added meanwhile were never searched).
//!
//! Layout: `cache/memo/dedup/<key>/near-pairs.dat`, `key` from the dedup settings and the measure algorithm
//! ([`super::Inputs::pairs_key`]), so `gc` keeps the current memo like the per-item ones. Format (hand-written: a
//! length-prefixed list needs no library, and parquet would cost a dataframe of strings per load): the magic,
//! searched count (u64 LE) and each pixel hash (u8 length + bytes), pair count (u64 LE) and each pair as two
//! indices (u32 LE) into the searched list. Written atomically after the search, before the manifest.
use super::crops::crop_pairs;
use super::group::{colour_confirmed, near_pairs_of, Near};
use crate::imagehash::MatchIndex;
use crate::measure::Measures;
use crate::workdir::{atomic_write, Workdir};
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const MAGIC: &[u8] = b"anime-pipe-dedup-pairs/1\n";

/// The pictures searched by the last run and their near pairs (indices into `searched`, smaller first).
#[derive(Debug, Default, PartialEq)]
pub struct PairMemo {
    pub searched: Vec<String>,
    pub pairs: Vec<(u32, u32)>,
}

/// What an incremental search reused and computed.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Reuse {
    /// Pictures whose pairs with each other came from the memo.
    pub pictures_reused: u64,
    /// Pictures searched against all others.
    pub pictures_searched: u64,
    /// Pairs taken from the memo.
    pub pairs_reused: u64,
}

/// Where the memo of `key` lies.
pub fn memo_path(workdir: &Workdir, key: &str) -> PathBuf {
    workdir.root().join("cache/memo/dedup").join(key).join("near-pairs.dat")
}

/// The memo at `path`; none when there is no file. A file this code cannot read is an error naming it (delete it
/// and dedup searches everything again).
pub fn load(path: &Path) -> Result<Option<PairMemo>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    decode(&bytes).map(Some).with_context(|| {
        format!(
            "{} is not a dedup pair memo this version reads: delete it (dedup then searches all pictures)",
            path.display()
        )
    })
}

pub fn save(path: &Path, memo: &PairMemo) -> Result<()> {
    atomic_write(path, &encode(memo))
}

fn encode(memo: &PairMemo) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend((memo.searched.len() as u64).to_le_bytes());
    for hash in &memo.searched {
        out.push(hash.len() as u8);
        out.extend(hash.as_bytes());
    }
    out.extend((memo.pairs.len() as u64).to_le_bytes());
    for &(a, b) in &memo.pairs {
        out.extend(a.to_le_bytes());
        out.extend(b.to_le_bytes());
    }
    out
}

fn decode(bytes: &[u8]) -> Result<PairMemo> {
    let mut rest = bytes.strip_prefix(MAGIC).context("unknown magic")?;
    let mut take = |n: usize| -> Result<&[u8]> {
        if rest.len() < n {
            bail!("truncated");
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let count = u64::from_le_bytes(take(8)?.try_into()?) as usize;
    let mut searched = Vec::with_capacity(count.min(1 << 24));
    for _ in 0..count {
        let len = usize::from(take(1)?[0]);
        searched.push(String::from_utf8(take(len)?.to_vec())?);
    }
    let count = u64::from_le_bytes(take(8)?.try_into()?) as usize;
    let mut pairs = Vec::with_capacity(count.min(1 << 24));
    for _ in 0..count {
        let a = u32::from_le_bytes(take(4)?.try_into()?);
        let b = u32::from_le_bytes(take(4)?.try_into()?);
        if a as usize >= searched.len() || b as usize >= searched.len() {
            bail!("pair ({a}, {b}) outside the {} searched pictures", searched.len());
        }
        pairs.push((a, b));
    }
    if !rest.is_empty() {
        bail!("trailing bytes");
    }
    Ok(PairMemo { searched, pairs })
}

/// The near pairs among `pictures` (indices into it, sorted, each once), reusing `memo`'s; and the memo to keep.
pub fn near_pairs_reusing(
    pictures: &[&Measures],
    near: Near,
    memo: Option<&PairMemo>,
) -> (Vec<(u32, u32)>, PairMemo, Reuse) {
    let position: HashMap<&str, u32> =
        pictures.iter().enumerate().map(|(i, s)| (s.pixel_hash.as_str(), i as u32)).collect();
    // Memo index -> current picture, for the memo's pictures that are still here.
    let old_at: Vec<Option<u32>> =
        memo.map(|m| m.searched.iter().map(|h| position.get(h.as_str()).copied()).collect()).unwrap_or_default();
    let mut is_old = vec![false; pictures.len()];
    for &i in old_at.iter().flatten() {
        is_old[i as usize] = true;
    }
    let (old, new): (Vec<u32>, Vec<u32>) = (0..pictures.len() as u32).partition(|&i| is_old[i as usize]);
    let mut pairs = if old.is_empty() {
        near_pairs_of(pictures, near)
    } else {
        let reused = memo
            .into_iter()
            .flat_map(|m| &m.pairs)
            .filter_map(|&(a, b)| Some(ordered(old_at[a as usize]?, old_at[b as usize]?)));
        let mut pairs: Vec<(u32, u32)> = reused.collect();
        if !new.is_empty() {
            let all: Vec<u32> = (0..pictures.len() as u32).collect();
            pairs.extend(whole_image_pairs_of(pictures, &new, near.threshold));
            if near.crops {
                pairs.extend(crop_pairs(pictures, &new, &all));
                pairs.extend(crop_pairs(pictures, &old, &new));
            }
        }
        pairs
    };
    pairs.sort_unstable();
    pairs.dedup();
    let reuse = Reuse {
        pictures_reused: old.len() as u64,
        pictures_searched: new.len() as u64,
        pairs_reused: pairs.iter().filter(|&&(a, b)| is_old[a as usize] && is_old[b as usize]).count() as u64,
    };
    let searched = pictures.iter().map(|s| s.pixel_hash.clone()).collect();
    (pairs.clone(), PairMemo { searched, pairs }, reuse)
}

/// Colour-confirmed whole-image pairs with at least one end in `queries`, as (min, max).
fn whole_image_pairs_of(pictures: &[&Measures], queries: &[u32], threshold: u32) -> Vec<(u32, u32)> {
    let hashes: Vec<u64> = pictures.iter().map(|s| s.phash).collect();
    let asked: Vec<u64> = queries.iter().map(|&i| hashes[i as usize]).collect();
    MatchIndex::build(&hashes, threshold)
        .matches(&asked)
        .into_iter()
        .map(|(q, j)| (queries[q as usize], j))
        .filter(|&(i, j)| i != j && colour_confirmed(pictures[i as usize], pictures[j as usize]))
        .map(|(i, j)| ordered(i, j))
        .collect()
}

fn ordered(a: u32, b: u32) -> (u32, u32) {
    (a.min(b), a.max(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memo_round_trips_and_damaged_files_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m/near-pairs.dat");
        assert_eq!(load(&path).unwrap(), None, "no memo yet");
        let memo = PairMemo { searched: vec!["aa".into(), "bb".into(), "cc".into()], pairs: vec![(0, 2), (1, 2)] };
        save(&path, &memo).unwrap();
        assert_eq!(load(&path).unwrap(), Some(memo));
        let bytes = std::fs::read(&path).unwrap();
        for damaged in [&bytes[..bytes.len() - 1], &bytes[1..]] {
            std::fs::write(&path, damaged).unwrap();
            let message = format!("{:#}", load(&path).unwrap_err());
            assert!(message.contains("near-pairs.dat") && message.contains("delete it"), "{message}");
        }
        let mut out_of_range = encode(&PairMemo { searched: vec!["aa".into()], pairs: vec![] });
        out_of_range.truncate(out_of_range.len() - 8);
        out_of_range.extend(1u64.to_le_bytes().iter().chain(&0u32.to_le_bytes()).chain(&5u32.to_le_bytes()));
        assert!(decode(&out_of_range).is_err(), "a pair index beyond the pictures");
    }
}
