//! Duplicate groups: equal bytes, equal pixels and confirmed near pHashes are merged with union-find, and the keep
//! policy picks one row per group (see the `dedup` module docs).
use super::crops::all_crop_pairs;
use crate::imagehash::{colour_difference, near_pairs, NEAR_MAX_COLOUR_DIFFERENCE};
use crate::manifest::{Item, Reason};
use crate::measure::Measures;
use std::cmp::Reverse;
use std::collections::HashMap;

struct UnionFind {
    parent: Vec<u32>,
}

impl UnionFind {
    fn new(n: usize) -> Self {
        Self { parent: (0..n as u32).collect() }
    }
    fn find(&mut self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            let grand = self.parent[self.parent[x as usize] as usize];
            self.parent[x as usize] = grand;
            x = grand;
        }
        x
    }
    fn union(&mut self, a: u32, b: u32) {
        let (ra, rb) = (self.find(a), self.find(b));
        // The smaller root wins: the structure (not only the partition) is then independent of union order.
        if ra != rb {
            let (lo, hi) = (ra.min(rb), ra.max(rb));
            self.parent[hi as usize] = lo;
        }
    }
}

/// What dedup decides for one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Kept: unique, or the best-ranked member of its group.
    Ok,
    /// A duplicate of item `of` (the group's kept item); `kind` is the level that made it redundant.
    Duplicate { of: usize, kind: Reason, hamming: Option<u32> },
}

/// The near-duplicate searches to run: whole-image pHashes within `threshold` bits (colour-confirmed), and with
/// `crops` also crops (window pHashes, verified on aligned thumbnails).
#[derive(Debug, Clone, Copy)]
pub struct Near {
    pub threshold: u32,
    pub crops: bool,
}

/// Unions items with equal bytes, equal pixels and (with `near`) confirmed near duplicates, then applies the
/// keep policy per component.
#[cfg(test)]
pub fn group(items: &[Item], sigs: &[&Measures], near: Option<Near>) -> Vec<Verdict> {
    match near {
        Some(near) => group_with(items, sigs, Some(|pictures: &[&Measures]| near_pairs_of(pictures, near))),
        None => group_with(items, sigs, None::<fn(&[&Measures]) -> Vec<(u32, u32)>>),
    }
}

/// [`group`] with the near pairs from `near_pairs`, called once with the distinct pictures (one per pixel hash,
/// in item order) and returning pairs of indices into them. The verdicts depend only on the pairs' connected
/// components, so any source of the same pair set (a fresh search, or one that reuses earlier pairs) groups alike.
pub fn group_with(
    items: &[Item],
    sigs: &[&Measures],
    near_pairs: Option<impl FnOnce(&[&Measures]) -> Vec<(u32, u32)>>,
) -> Vec<Verdict> {
    let rank = |i: usize| rank(&items[i]);
    let decodable: Vec<usize> = (0..items.len()).collect();
    let sig = |i: usize| sigs[i];
    // The best-ranked row per identical-bytes class, then per identical-pixels class among those.
    let bytes_best = best_per_class(items, decodable.iter().copied(), |i| items[i].object.as_str());
    let bytes_reps: Vec<usize> =
        decodable.iter().copied().filter(|&i| bytes_best[items[i].object.as_str()] == i).collect();
    let pixels_best = best_per_class(items, bytes_reps.iter().copied(), |i| sig(i).pixel_hash.as_str());
    let mut uf = UnionFind::new(items.len());
    for &i in &decodable {
        uf.union(i as u32, bytes_best[items[i].object.as_str()] as u32);
    }
    for &i in &bytes_reps {
        uf.union(i as u32, pixels_best[sig(i).pixel_hash.as_str()] as u32);
    }
    if let Some(near_pairs) = near_pairs {
        // One search entry per distinct picture (pixel class); identical pictures share all measures.
        let mut reps: Vec<usize> = pixels_best.values().copied().collect();
        reps.sort_unstable();
        let rep_sigs: Vec<&Measures> = reps.iter().map(|&i| sig(i)).collect();
        for (a, b) in near_pairs(&rep_sigs) {
            uf.union(reps[a as usize] as u32, reps[b as usize] as u32);
        }
    }
    let mut kept: HashMap<u32, usize> = HashMap::new();
    for &i in &decodable {
        let best = kept.entry(uf.find(i as u32)).or_insert(i);
        if rank(i) < rank(*best) {
            *best = i;
        }
    }
    (0..items.len())
        .map(|i| {
            let s = sigs[i];
            let k = kept[&uf.find(i as u32)];
            if k == i {
                Verdict::Ok
            } else if bytes_best[items[i].object.as_str()] != i {
                Verdict::Duplicate { of: k, kind: Reason::ExactBytes, hamming: None }
            } else if pixels_best[s.pixel_hash.as_str()] != i {
                Verdict::Duplicate { of: k, kind: Reason::ExactPixels, hamming: None }
            } else {
                Verdict::Duplicate { of: k, kind: Reason::Near, hamming: Some((s.phash ^ sig(k).phash).count_ones()) }
            }
        })
        .collect()
}

/// Pairs of indices into `sigs` that are near duplicates: colour-confirmed pHash pairs, then verified crops.
pub fn near_pairs_of(sigs: &[&Measures], near: Near) -> Vec<(u32, u32)> {
    let hashes: Vec<u64> = sigs.iter().map(|s| s.phash).collect();
    let mut pairs: Vec<(u32, u32)> = near_pairs(&hashes, near.threshold)
        .into_iter()
        .filter(|&(a, b)| colour_confirmed(sigs[a as usize], sigs[b as usize]))
        .collect();
    if near.crops {
        pairs.extend(all_crop_pairs(sigs));
    }
    pairs
}

/// A whole-image pHash candidate is a near duplicate only if the colours agree too (pHash sees luma only).
pub fn colour_confirmed(a: &Measures, b: &Measures) -> bool {
    colour_difference(&a.thumb, &b.thumb) <= NEAR_MAX_COLOUR_DIFFERENCE
}

/// The keep policy's order (smaller is better): largest resolution, then lowest source_index, then path, then key.
fn rank(it: &Item) -> (Reverse<u64>, u32, &str, &str) {
    (Reverse(u64::from(it.width) * u64::from(it.height)), it.source_index, &it.path, &it.key)
}

/// The best-ranked member of each class.
fn best_per_class<'a>(
    items: &[Item],
    members: impl Iterator<Item = usize>,
    class: impl Fn(usize) -> &'a str,
) -> HashMap<&'a str, usize> {
    let mut best: HashMap<&str, usize> = HashMap::new();
    for i in members {
        let b = best.entry(class(i)).or_insert(i);
        if rank(&items[i]) < rank(&items[*b]) {
            *b = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imagehash::{CropSignature, COLOUR_LEN, GRAY_LEN, THUMB_LEN, WINDOWS};
    use crate::quality::Scores;

    /// Measures with only the hashes set (grouping reads nothing else).
    fn measures_of(pixel_hash: String, phash: u64, thumb: [u8; THUMB_LEN]) -> Measures {
        let quality = Scores { sharpness: 0.0, colorfulness: 0.0, grayscale: false, entropy: 0.0 };
        let crop = CropSignature { windows: [!phash; WINDOWS], gray: [0; GRAY_LEN], colour: [0; COLOUR_LEN] };
        Measures { pixel_hash, phash, thumb, crop, quality }
    }

    /// The whole-image pHash search only (these tests are about it and about grouping).
    fn whole_image(threshold: u32) -> Option<Near> {
        Some(Near { threshold, crops: false })
    }

    fn item(key: &str, source_index: u32, object: &str, w: u32, h: u32) -> Item {
        Item {
            key: key.into(),
            source: "s".into(),
            source_index,
            path: key.into(),
            already_cropped: None,
            object: object.into(),
            width: w,
            height: h,
            upscaled_object: None,
            measures: None,
        }
    }

    #[test]
    fn keep_policy_prefers_resolution_then_source_then_path() {
        let items = vec![
            item("b", 0, "o1", 64, 64),
            item("a", 1, "o1", 64, 64),
            item("c", 0, "o2", 128, 128),
            item("d", 0, "o3", 32, 32),
            item("e", 0, "o4", 64, 64),
        ];
        let sig = |p: &str, h: u64| measures_of(p.into(), h, [0; THUMB_LEN]);
        let s = [sig("p1", 0), sig("p1", 0), sig("p2", 0b1), sig("p3", 0xFFFF_0000), sig("p4", 0xFFFF_0003)];
        let sigs: Vec<&Measures> = s.iter().collect();
        let v = group(&items, &sigs, whole_image(2));
        // c (128x128) wins the group {a, b, c}. b outranks a (source 0 < 1) among the identical bytes {a, b}: a is
        // an exact_bytes duplicate, b a near one (1 bit from c). Both point at the kept c.
        assert_eq!(v[2], Verdict::Ok);
        assert_eq!(v[0], Verdict::Duplicate { of: 2, kind: Reason::Near, hamming: Some(1) });
        assert_eq!(v[1], Verdict::Duplicate { of: 2, kind: Reason::ExactBytes, hamming: None });
        // d and e are 2 bits apart: e is larger, so e is kept.
        assert_eq!(v[4], Verdict::Ok);
        assert_eq!(v[3], Verdict::Duplicate { of: 4, kind: Reason::Near, hamming: Some(2) });
        // Without the near search only the exact pair remains, and the lower source_index wins.
        let v = group(&items, &sigs, None);
        assert_eq!(v[0], Verdict::Ok);
        assert_eq!(v[1], Verdict::Duplicate { of: 0, kind: Reason::ExactBytes, hamming: None });
        assert!(v[2..].iter().all(|x| *x == Verdict::Ok));
    }

    #[test]
    fn near_groups_chain_through_intermediates() {
        let items: Vec<Item> = (0..3).map(|i| item(&format!("k{i}"), 0, &format!("o{i}"), 10 + i, 10)).collect();
        let s = [(0u64, "a"), (0b111, "b"), (0b111_111, "c")].map(|(h, p)| measures_of(p.into(), h, [0; THUMB_LEN]));
        let sigs: Vec<&Measures> = s.iter().collect();
        let v = group(&items, &sigs, whole_image(3));
        // 0 ~ 1 and 1 ~ 2 at 3 bits; 0 and 2 are 6 apart but share the group; k2 (largest) is kept.
        assert_eq!(v[2], Verdict::Ok);
        assert_eq!(v[0], Verdict::Duplicate { of: 2, kind: Reason::Near, hamming: Some(6) });
        assert_eq!(v[1], Verdict::Duplicate { of: 2, kind: Reason::Near, hamming: Some(3) });
    }

    #[test]
    fn phash_candidates_with_different_colours_are_not_near_duplicates() {
        let items: Vec<Item> = (0..3).map(|i| item(&format!("k{i}"), 0, &format!("o{i}"), 10, 10)).collect();
        // Same pHash for all three; thumbnails 100, 110 (difference exactly 10: confirmed) and 89 (11 from k0).
        let s: Vec<Measures> = [100u8, 110, 89]
            .iter()
            .enumerate()
            .map(|(i, &t)| measures_of(format!("p{i}"), 0, [t; THUMB_LEN]))
            .collect();
        let sigs: Vec<&Measures> = s.iter().collect();
        let v = group(&items, &sigs, whole_image(6));
        assert_eq!(v[0], Verdict::Ok);
        assert_eq!(v[1], Verdict::Duplicate { of: 0, kind: Reason::Near, hamming: Some(0) });
        assert_eq!(v[2], Verdict::Ok);
    }
}
