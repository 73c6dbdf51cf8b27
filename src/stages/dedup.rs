//! `anime-pipe dedup`: marks exact and near duplicates among the accepted ingest rows. Nothing is deleted: every
//! accepted ingest row gets one row in `manifests/dedup.parquet`, and duplicates point at the row kept for them.
//!
//! ## What counts as a duplicate
//! - `exact_bytes`: same blake3 of the file bytes (same cache object).
//! - `exact_pixels`: same decoded RGB8 pixels and size, different bytes (e.g. a PNG and a lossless WebP/BMP of the
//!   same picture). `pixel_hash` = blake3 of `width (u32 LE) ‖ height (u32 LE) ‖ RGB8 rows`.
//! - `near`: 64-bit DCT perceptual hashes within `dedup.phash_threshold` bits (Hamming distance; `--threshold`;
//!   off with `--no-near` / `dedup.near: false`), **confirmed by colour**: the mean absolute difference of the
//!   two images' 4x4 RGB thumbnails must be at most [`NEAR_MAX_COLOUR_DIFFERENCE`] (10 of 255). pHash sees only
//!   luma structure, and aligned face crops share it: on the Getchu faces, pHash alone at 6 bits pairs different
//!   characters in the same pose and chains them into groups of hundreds; with the colour check every pair we
//!   inspected was the same picture (retouched, re-encoded or resized).
//!   The pHash: the image reduced to 32x32 RGB (image's triangle filter, in f32; images larger than 128 px on a
//!   side are first reduced to at most 128x128 in 8-bit), luma = 0.299 R + 0.587 G + 0.114 B, 2-D DCT-II, the
//!   top-left 8x8 coefficients compared with their median, bit `63 - (8u + v)` set when coefficient (u, v) is
//!   above it (the construction of Python's `imagehash.phash`). Every hash has 32 bits set, so distances are even
//!   (thresholds 6 and 7 behave alike). The thumbnail is the 8x8-block means of the same 32x32 reduction. Robust
//!   to resizing, re-encoding (JPEG quality) and crops of up to about 3% of a side at the default threshold (a
//!   5% crop moves the hash by about 10 bits); not to flips or large crops.
//!
//! ## Groups and the keep policy
//! Duplicate relations are merged with union-find into connected components, so relations **chain**: if A~B and
//! B~C then A, B and C form one group even when A and C are further apart than the threshold (their `hamming` to
//! the kept row can then exceed the threshold). Within a group the kept row is the one with the largest
//! resolution (width x height), then the lowest `source_index`, then the smallest `path` (then `key`). Every other
//! row gets `status` "duplicate" and `duplicate_of` = the kept row's key. `dup_kind` says which level of the
//! hierarchy made the row redundant, applying the same ranking at each level: `exact_bytes` when a better-ranked
//! row has the same bytes; otherwise `exact_pixels` when a better-ranked row has the same pixels; otherwise
//! `near`. So the exact_bytes count is always (rows - distinct objects) and the exact_pixels count (distinct
//! objects - distinct pixel hashes), whatever the near-duplicate threshold; `duplicate_of` still names the
//! group's kept row, which for an exact copy of a near duplicate is not itself byte-identical.
//!
//! ## Scale
//! Each distinct cache object is decoded once (from the cache, never from the sources), in parallel; pixel hash,
//! pHash and thumbnail come from the same decode. The near search runs over distinct pictures (one per pixel
//! hash) with multi-index hashing ([`near_pairs`]): no quadratic scan.
//!
//! ## dedup.parquet (one row per accepted ingest row, in ingest order: source_index, path)
//! | column | type | meaning |
//! |---|---|---|
//! | key, source, source_index, path | str, str, u32, str | as in ingest.parquet |
//! | already_cropped | bool | as in ingest.parquet |
//! | object | str | cache object (blake3 of the bytes) |
//! | width, height | u32 | image size |
//! | status | str | "ok" (kept or unique), "duplicate", or "rejected" (no longer decodes under the limits) |
//! | reason | str? | null when ok; the dup_kind for duplicates; the decode reason for rejected rows |
//! | duplicate_of | str? | key of the kept row (duplicates only) |
//! | dup_kind | str? | "exact_bytes", "exact_pixels" or "near" (duplicates only) |
//! | hamming | u32? | pHash distance to the kept row (near duplicates only) |
//! | pixel_hash | str? | blake3 of size + decoded RGB8 pixels (null for rejected rows) |
//! | phash | u64? | 64-bit perceptual hash (null for rejected rows) |
use crate::cache;
use crate::imageio;
use crate::manifest;
use crate::manifest::columns::{self, col, frame};
use crate::report::Summary;
use crate::stages::Ctx;
use anyhow::{Context, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::HashMap;

/// Resolved `dedup:`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DedupSettings {
    pub phash_threshold: u32,
    pub near: bool,
}

const STAGE: &str = "dedup";
const UPSTREAM: &str = "ingest";

pub fn fingerprint(ctx: &Ctx) -> Result<String> {
    let upstream = manifest::file_blake3(&ctx.env.workdir.manifest_path(UPSTREAM))
        .with_context(|| format!("run `anime-pipe {UPSTREAM}` first"))?;
    let d = &ctx.plan.dedup;
    let l = &ctx.plan.limits;
    let settings = format!(
        "anime-pipe dedup/1 upstream={upstream} threshold={} near={} max_file_bytes={} max_pixels={}",
        d.phash_threshold, d.near, l.max_file_bytes, l.max_pixels
    );
    Ok(blake3::hash(settings.as_bytes()).to_hex().to_string())
}

pub fn run(ctx: &Ctx) -> Result<Summary> {
    let mut summary = Summary::start(STAGE);
    let inputs = fingerprint(ctx)?;
    let items = read_items(ctx)?;
    let objects = distinct_objects(&items);
    let signatures = signatures(ctx, &objects)?;
    let by_object: HashMap<&str, &Result<Signature, imageio::DecodeError>> =
        objects.iter().map(String::as_str).zip(&signatures).collect();
    let item_sigs: Vec<Option<&Signature>> =
        items.iter().map(|it| by_object[it.object.as_str()].as_ref().ok()).collect();
    let settings = ctx.plan.dedup;
    let threshold = settings.near.then_some(settings.phash_threshold);
    let verdicts = group(&items, &item_sigs, threshold);
    let reasons = reasons(&items, &by_object, &verdicts);
    let mut df = manifest_frame(&items, &item_sigs, &reasons, &verdicts)?;
    manifest::publish_stage(&ctx.env.workdir, STAGE, &mut df, &inputs)?;
    summarize(&mut summary, ctx, &items, &reasons, &verdicts, objects.len());
    Ok(summary.finish())
}

/// An accepted ingest row.
#[derive(Debug, Clone)]
struct Item {
    key: String,
    source: String,
    source_index: u32,
    path: String,
    already_cropped: Option<bool>,
    object: String,
    width: u32,
    height: u32,
}

fn read_items(ctx: &Ctx) -> Result<Vec<Item>> {
    let df = manifest::read_stage(&ctx.env.workdir, UPSTREAM)?;
    let status = columns::strings(&df, "status")?;
    let (key, source, path) =
        (columns::strings(&df, "key")?, columns::strings(&df, "source")?, columns::strings(&df, "path")?);
    let source_index = columns::u32s(&df, "source_index")?;
    let object = columns::opt_strings(&df, "object")?;
    let (width, height) = (columns::opt_u32s(&df, "width")?, columns::opt_u32s(&df, "height")?);
    let cropped = columns::opt_bools(&df, "already_cropped")?;
    (0..df.height())
        .filter(|&r| status[r] == "ok")
        .map(|r| {
            let missing = |what: &str| anyhow::anyhow!("ingest.parquet row {:?}: status \"ok\" but no {what}", key[r]);
            Ok(Item {
                key: key[r].clone(),
                source: source[r].clone(),
                source_index: source_index[r],
                path: path[r].clone(),
                already_cropped: cropped[r],
                object: object[r].clone().ok_or_else(|| missing("object"))?,
                width: width[r].ok_or_else(|| missing("width"))?,
                height: height[r].ok_or_else(|| missing("height"))?,
            })
        })
        .collect()
}

fn distinct_objects(items: &[Item]) -> Vec<String> {
    let mut objects: Vec<String> = items.iter().map(|it| it.object.clone()).collect();
    objects.sort();
    objects.dedup();
    objects
}

/// What one decode of a cache object yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub pixel_hash: String,
    pub phash: u64,
    /// 4x4 area-averaged RGB, row-major: confirms pHash candidates (see [`NEAR_MAX_COLOUR_DIFFERENCE`]).
    pub thumb: [u8; THUMB_LEN],
}

const THUMB_SIDE: usize = 4;
const THUMB_LEN: usize = THUMB_SIDE * THUMB_SIDE * 3;

/// A pHash candidate pair is a near duplicate only if the mean absolute difference of the two 4x4 RGB thumbnails
/// is at most this (0..255 scale). pHash sees luma structure only, and aligned face crops share it: on the 64x64
/// Getchu faces, pairs within 6 bits are the same picture (re-encoded, retouched: difference < 10) or different
/// characters in the same pose (typically > 15, e.g. other hair colours). Resizes, re-encodes and crops of a few
/// percent stay well below it.
pub const NEAR_MAX_COLOUR_DIFFERENCE: f64 = 10.0;

/// Decodes every object once, in parallel (results in `objects` order). A missing object is an error (the
/// workdir is damaged); an object that no longer decodes (limits lowered since ingest) is a per-row rejection.
fn signatures(ctx: &Ctx, objects: &[String]) -> Result<Vec<Result<Signature, imageio::DecodeError>>> {
    let bar = ctx.env.reporter.bar(objects.len() as u64, "dedup");
    let out = objects
        .par_iter()
        .map(|object| {
            let bytes = cache::read_object(&ctx.env.workdir, object)?;
            let sig = imageio::decode_rgb8(&bytes, &ctx.plan.limits).map(|d| signature(d.image));
            bar.inc(1);
            Ok(sig)
        })
        .collect::<Result<Vec<_>>>();
    bar.finish_and_clear();
    out
}

/// Pixel hash, pHash and colour thumbnail of one decoded image (one pass over the decode: the image is consumed).
pub fn signature(img: image::RgbImage) -> Signature {
    let mut h = blake3::Hasher::new();
    h.update(&img.width().to_le_bytes());
    h.update(&img.height().to_le_bytes());
    h.update(img.as_raw());
    let small = reduce(img);
    Signature { pixel_hash: h.finalize().to_hex().to_string(), phash: phash_of(&small), thumb: colour_thumb(&small) }
}

// ---------------------------------------------------------------------------------------------------------------
// Perceptual hash

const PHASH_SIDE: usize = 32;
const PHASH_LOW: usize = 8;
/// Larger images are first reduced to at most this size in 8-bit, so the f32 resize touches few pixels.
const PRE_REDUCE: u32 = 128;

/// 64-bit DCT perceptual hash (see the module docs).
pub fn phash(img: &image::RgbImage) -> u64 {
    phash_of(&reduce(img.clone()))
}

/// The image as 32x32 f32 RGB (row-major, interleaved). Both resizes use image's triangle filter, whose support
/// grows with the scale factor (so downscaling anti-aliases), and run inside the image crate, which is compiled
/// optimised even in debug builds; scalar f32 arithmetic, so the result is the same on every machine.
fn reduce(img: image::RgbImage) -> Vec<f32> {
    use image::imageops::FilterType::Triangle;
    let (w, h) = img.dimensions();
    let mut img = image::DynamicImage::ImageRgb8(img);
    if w > PRE_REDUCE || h > PRE_REDUCE {
        img = img.resize_exact(w.min(PRE_REDUCE), h.min(PRE_REDUCE), Triangle);
    }
    let side = PHASH_SIDE as u32;
    image::DynamicImage::ImageRgb32F(img.into_rgb32f()).resize_exact(side, side, Triangle).into_rgb32f().into_raw()
}

/// pHash of the 32x32 RGB reduction (values in 0..1).
fn phash_of(rgb: &[f32]) -> u64 {
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
fn colour_thumb(rgb: &[f32]) -> [u8; THUMB_LEN] {
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

// ---------------------------------------------------------------------------------------------------------------
// Near-duplicate search: multi-index hashing

/// All pairs `(i, j)`, `i < j`, with `popcount(hashes[i] ^ hashes[j]) <= threshold`, sorted.
///
/// Multi-index hashing (Norouzi et al.): split the 64 bits into `m` blocks. By pigeonhole, two hashes within
/// distance t agree within r = floor(t/m) bits on at least one block. For every block, the hashes are bucketed by
/// that block's value (counting sort, CSR layout, full hashes stored beside the ids); each hash enumerates the
/// block values within radius r of its own and verifies the candidates in those buckets on all 64 bits. A pair is
/// reported from the first block where it qualifies only, so it is found once. Queries run in bucket order, so
/// the probed buckets stream through memory. `m` (3..=8) minimises the expected work
/// m * (neighbours per block) * (4 + n / 2^block_bits) (a probe costs about 4 comparisons). For n = 1M and t = 6
/// that is m = 4 (16-bit blocks, r = 1): 68 bucket probes and ~1,000 64-bit comparisons per hash, O(n) overall
/// instead of n²/2 (measured: ~3 s single-threaded in a release build for 1M random hashes; t = 10 needs r = 2,
/// 548 probes per hash, ~25 s). Memory: per block, n ids + n hashes + 2^block_bits offsets.
pub fn near_pairs(hashes: &[u64], threshold: u32) -> Vec<(u32, u32)> {
    let n = hashes.len();
    if n < 2 {
        return Vec::new();
    }
    let blocks = Blocks::choose(n, threshold);
    let tables: Vec<BlockTable> = (0..blocks.m).map(|b| BlockTable::build(hashes, blocks.range(b))).collect();
    let mut pairs = Vec::new();
    for (b, table) in tables.iter().enumerate() {
        let flips = flip_masks(blocks.range(b).1, blocks.radius);
        // Queries walk the buckets in order, so each flip's target bucket also moves through memory nearly
        // sequentially (a few streams the prefetcher follows) instead of jumping to a random bucket per query.
        let buckets = table.offsets.len() - 1;
        const CHUNK: usize = 1024;
        let found: Vec<Vec<(u32, u32)>> = (0..buckets.div_ceil(CHUNK))
            .into_par_iter()
            .map(|c| {
                let mut out = Vec::new();
                for v in c * CHUNK..((c + 1) * CHUNK).min(buckets) {
                    probe_bucket(&tables, b, v as u32, &flips, threshold, blocks.radius, &mut out);
                }
                out
            })
            .collect();
        pairs.extend(found.into_iter().flatten());
    }
    pairs.sort_unstable();
    pairs
}

/// Pairs (i, j), i < j, with i in bucket `v` of block `b`, j in a bucket within the radius, within the threshold
/// on all 64 bits, and not within the radius on an earlier block (so each pair is reported by one block only).
fn probe_bucket(
    tables: &[BlockTable],
    b: usize,
    v: u32,
    flips: &[u32],
    threshold: u32,
    radius: u32,
    out: &mut Vec<(u32, u32)>,
) {
    let table = &tables[b];
    let (ids, values) = table.bucket(v);
    for (&i, &hi) in ids.iter().zip(values) {
        for &flip in flips {
            let (cand_ids, cand_values) = table.bucket(v ^ flip);
            // Ids ascend within a bucket: only the suffix after `i` can pair with it (i < j); skipping the
            // prefix by binary search avoids an unpredictable branch per candidate.
            let after = cand_ids.partition_point(|&j| j <= i);
            for (&j, &hj) in cand_ids[after..].iter().zip(&cand_values[after..]) {
                if (hi ^ hj).count_ones() > threshold {
                    continue;
                }
                let earlier = tables[..b].iter().any(|t| (t.value(hi) ^ t.value(hj)).count_ones() <= radius);
                if !earlier {
                    out.push((i, j));
                }
            }
        }
    }
}

struct Blocks {
    m: usize,
    radius: u32,
}

impl Blocks {
    fn choose(n: usize, threshold: u32) -> Self {
        let cost = |m: usize| {
            let bits = 64usize.div_ceil(m) as u32;
            let radius = threshold / m as u32;
            let neighbours: f64 = (0..=radius.min(bits)).map(|k| binomial(bits, k)).sum();
            // A bucket probe is a likely cache miss (~4 candidate checks, which scan contiguous ids).
            m as f64 * neighbours * (4.0 + n as f64 / 2f64.powi(bits as i32))
        };
        let m = (3..=8).min_by(|&a, &b| cost(a).total_cmp(&cost(b))).expect("non-empty range");
        Self { m, radius: threshold / m as u32 }
    }

    /// (first bit, bit count) of block `b`: 64 bits split as evenly as possible.
    fn range(&self, b: usize) -> (u32, u32) {
        let (base, extra) = (64 / self.m, 64 % self.m);
        let start = b * base + b.min(extra);
        let len = base + usize::from(b < extra);
        (start as u32, len as u32)
    }
}

fn binomial(n: u32, k: u32) -> f64 {
    (0..k).fold(1.0, |acc, i| acc * f64::from(n - i) / f64::from(i + 1))
}

/// Every `bits`-bit mask with at most `radius` bits set.
fn flip_masks(bits: u32, radius: u32) -> Vec<u32> {
    let mut masks = vec![0u32];
    let mut frontier = vec![(0u32, 0u32)]; // (mask, next bit allowed)
    for _ in 0..radius {
        let mut next = Vec::new();
        for &(mask, from) in &frontier {
            for bit in from..bits {
                let m = mask | (1 << bit);
                masks.push(m);
                next.push((m, bit + 1));
            }
        }
        frontier = next;
    }
    masks
}

/// All hashes bucketed by one block's value, in CSR layout: bucket `v` is `offsets[v]..offsets[v + 1]` of `ids`
/// (ascending within a bucket) and of `values`, the full hashes stored beside the ids so that verifying a
/// candidate reads contiguous memory instead of a random `hashes[j]`.
struct BlockTable {
    shift: u32,
    mask: u64,
    offsets: Vec<u32>,
    ids: Vec<u32>,
    values: Vec<u64>,
}

impl BlockTable {
    fn build(hashes: &[u64], (shift, bits): (u32, u32)) -> Self {
        let mask = (1u64 << bits) - 1;
        let mut offsets = vec![0u32; (1usize << bits) + 1];
        for &h in hashes {
            offsets[((h >> shift) & mask) as usize + 1] += 1;
        }
        for v in 1..offsets.len() {
            offsets[v] += offsets[v - 1];
        }
        let mut cursor = offsets.clone();
        let (mut ids, mut values) = (vec![0u32; hashes.len()], vec![0u64; hashes.len()]);
        for (i, &h) in hashes.iter().enumerate() {
            let slot = &mut cursor[((h >> shift) & mask) as usize];
            ids[*slot as usize] = i as u32;
            values[*slot as usize] = h;
            *slot += 1;
        }
        Self { shift, mask, offsets, ids, values }
    }

    fn value(&self, h: u64) -> u32 {
        ((h >> self.shift) & self.mask) as u32
    }

    fn bucket(&self, v: u32) -> (&[u32], &[u64]) {
        let range = self.offsets[v as usize] as usize..self.offsets[v as usize + 1] as usize;
        (&self.ids[range.clone()], &self.values[range])
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Grouping

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

#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Ok,
    Rejected,
    Duplicate { of: usize, kind: &'static str, hamming: Option<u32> },
}

/// Unions items with equal bytes, equal pixels and (with a threshold) confirmed near pHashes, then applies the
/// keep policy per component.
fn group(items: &[Item], sigs: &[Option<&Signature>], threshold: Option<u32>) -> Vec<Verdict> {
    let rank = |i: usize| rank(&items[i]);
    let decodable: Vec<usize> = (0..items.len()).filter(|&i| sigs[i].is_some()).collect();
    let sig = |i: usize| sigs[i].expect("decodable rows have a signature");
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
    if let Some(t) = threshold {
        // One search entry per distinct picture (pixel class); identical pictures share hash and thumbnail.
        let mut reps: Vec<usize> = pixels_best.values().copied().collect();
        reps.sort_unstable();
        let hashes: Vec<u64> = reps.iter().map(|&i| sig(i).phash).collect();
        for (a, b) in near_pairs(&hashes, t) {
            let (a, b) = (reps[a as usize], reps[b as usize]);
            if colour_difference(&sig(a).thumb, &sig(b).thumb) <= NEAR_MAX_COLOUR_DIFFERENCE {
                uf.union(a as u32, b as u32);
            }
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
            let Some(s) = sigs[i] else {
                return Verdict::Rejected;
            };
            let k = kept[&uf.find(i as u32)];
            if k == i {
                Verdict::Ok
            } else if bytes_best[items[i].object.as_str()] != i {
                Verdict::Duplicate { of: k, kind: "exact_bytes", hamming: None }
            } else if pixels_best[s.pixel_hash.as_str()] != i {
                Verdict::Duplicate { of: k, kind: "exact_pixels", hamming: None }
            } else {
                Verdict::Duplicate { of: k, kind: "near", hamming: Some((s.phash ^ sig(k).phash).count_ones()) }
            }
        })
        .collect()
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

/// Mean absolute difference (0..255) between two 4x4 RGB thumbnails.
fn colour_difference(a: &[u8; THUMB_LEN], b: &[u8; THUMB_LEN]) -> f64 {
    let total: u32 = a.iter().zip(b).map(|(&x, &y)| u32::from(x.abs_diff(y))).sum();
    f64::from(total) / THUMB_LEN as f64
}

/// The `reason` column: null when kept, the dup_kind for duplicates, the decode reason for rejected rows.
fn reasons(
    items: &[Item],
    by_object: &HashMap<&str, &Result<Signature, imageio::DecodeError>>,
    verdicts: &[Verdict],
) -> Vec<Option<String>> {
    let decode_error = |i: usize| by_object[items[i].object.as_str()].as_ref().err();
    verdicts
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Verdict::Ok => None,
            Verdict::Rejected => decode_error(i).map(|e| e.reason.to_string()),
            Verdict::Duplicate { kind, .. } => Some(kind.to_string()),
        })
        .collect()
}

fn manifest_frame(
    items: &[Item],
    sigs: &[Option<&Signature>],
    reasons: &[Option<String>],
    verdicts: &[Verdict],
) -> Result<polars::prelude::DataFrame> {
    let status: Vec<&str> = verdicts
        .iter()
        .map(|v| match v {
            Verdict::Ok => "ok",
            Verdict::Rejected => "rejected",
            Verdict::Duplicate { .. } => "duplicate",
        })
        .collect();
    let dup = |f: &dyn Fn(usize, &'static str, Option<u32>) -> Option<String>| -> Vec<Option<String>> {
        verdicts
            .iter()
            .map(|v| match v {
                Verdict::Duplicate { of, kind, hamming } => f(*of, kind, *hamming),
                _ => None,
            })
            .collect()
    };
    let hamming: Vec<Option<u32>> = verdicts
        .iter()
        .map(|v| match v {
            Verdict::Duplicate { hamming, .. } => *hamming,
            _ => None,
        })
        .collect();
    let strs = |f: fn(&Item) -> String| items.iter().map(f).collect::<Vec<_>>();
    frame(
        items.len(),
        vec![
            col("key", strs(|it| it.key.clone())),
            col("source", strs(|it| it.source.clone())),
            col("source_index", items.iter().map(|it| it.source_index).collect::<Vec<u32>>()),
            col("path", strs(|it| it.path.clone())),
            col("already_cropped", items.iter().map(|it| it.already_cropped).collect::<Vec<Option<bool>>>()),
            col("object", strs(|it| it.object.clone())),
            col("width", items.iter().map(|it| it.width).collect::<Vec<u32>>()),
            col("height", items.iter().map(|it| it.height).collect::<Vec<u32>>()),
            col("status", status),
            col("reason", reasons.to_vec()),
            col("duplicate_of", dup(&|of, _, _| Some(items[of].key.clone()))),
            col("dup_kind", dup(&|_, kind, _| Some(kind.to_string()))),
            col("hamming", hamming),
            col("pixel_hash", sigs.iter().map(|s| s.map(|s| s.pixel_hash.clone())).collect::<Vec<_>>()),
            col("phash", sigs.iter().map(|s| s.map(|s| s.phash)).collect::<Vec<Option<u64>>>()),
        ],
    )
}

fn summarize(
    summary: &mut Summary,
    ctx: &Ctx,
    items: &[Item],
    reasons: &[Option<String>],
    verdicts: &[Verdict],
    objects: usize,
) {
    let count = |f: &dyn Fn(&Verdict) -> bool| verdicts.iter().filter(|v| f(v)).count() as u64;
    let mut groups: HashMap<usize, u32> = HashMap::new();
    for v in verdicts {
        if let Verdict::Duplicate { of, .. } = v {
            *groups.entry(*of).or_default() += 1;
        }
    }
    summary
        .count("items", items.len() as u64)
        .count("decoded objects", objects as u64)
        .count("kept", count(&|v| *v == Verdict::Ok))
        .count("duplicates", count(&|v| matches!(v, Verdict::Duplicate { .. })))
        .count("duplicate groups", groups.len() as u64)
        .count("rejected", count(&|v| *v == Verdict::Rejected));
    for reason in reasons.iter().flatten() {
        summary.reject(reason);
    }
    let d = ctx.plan.dedup;
    summary.fact(
        "near duplicates",
        if d.near {
            format!("pHash within {} bits, colour difference <= {NEAR_MAX_COLOUR_DIFFERENCE}", d.phash_threshold)
        } else {
            "off".into()
        },
    );
    summary.fact("manifest", ctx.env.workdir.manifest_path(STAGE).display());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SplitMix64: a tiny deterministic generator for test data.
    fn rng(seed: &mut u64) -> u64 {
        *seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn flip_random_bits(h: u64, k: u32, seed: &mut u64) -> u64 {
        let mut out = h;
        let mut flipped = 0;
        while flipped < k {
            let bit = 1u64 << (rng(seed) % 64);
            if (out ^ h) & bit == 0 {
                out ^= bit;
                flipped += 1;
            }
        }
        out
    }

    fn brute_force(hashes: &[u64], t: u32) -> Vec<(u32, u32)> {
        let mut pairs = Vec::new();
        for i in 0..hashes.len() {
            for j in i + 1..hashes.len() {
                if (hashes[i] ^ hashes[j]).count_ones() <= t {
                    pairs.push((i as u32, j as u32));
                }
            }
        }
        pairs
    }

    /// Random hashes, clusters around a few centres, planted pairs at every distance 0..=20, and duplicates.
    fn test_hashes(seed: u64) -> Vec<u64> {
        let mut s = seed;
        let mut hashes: Vec<u64> = (0..1500).map(|_| rng(&mut s)).collect();
        for k in 0..=20 {
            for _ in 0..10 {
                let h = rng(&mut s);
                hashes.push(h);
                hashes.push(flip_random_bits(h, k, &mut s));
            }
        }
        let centres: Vec<u64> = (0..5).map(|_| rng(&mut s)).collect();
        for c in &centres {
            for _ in 0..100 {
                let k = (rng(&mut s) % 12) as u32;
                hashes.push(flip_random_bits(*c, k, &mut s));
            }
        }
        hashes.extend_from_within(..20);
        hashes
    }

    #[test]
    fn multi_index_hashing_finds_exactly_the_brute_force_pairs() {
        for (seed, t) in [(1, 0), (2, 1), (3, 3), (4, 6), (5, 8), (6, 12), (7, 20)] {
            let hashes = test_hashes(seed);
            let expected = brute_force(&hashes, t);
            assert!(!expected.is_empty());
            assert_eq!(near_pairs(&hashes, t), expected, "threshold {t}");
        }
    }

    #[test]
    fn block_choice_covers_all_bits_and_scales() {
        for m in 3..=8 {
            let b = Blocks { m, radius: 0 };
            let total: u32 = (0..m).map(|i| b.range(i).1).sum();
            assert_eq!(total, 64);
            assert_eq!(b.range(m - 1).0 + b.range(m - 1).1, 64);
        }
        assert_eq!(Blocks::choose(1_000_000, 6).m, 4);
        assert_eq!(flip_masks(16, 2).len(), 1 + 16 + 120);
    }

    #[test]
    fn two_hundred_thousand_hashes_find_every_planted_pair() {
        let mut s = 42u64;
        let mut hashes: Vec<u64> = (0..200_000).map(|_| rng(&mut s)).collect();
        let mut planted = Vec::new();
        for p in 0..1000u32 {
            let i = (rng(&mut s) % 200_000) as usize;
            hashes.push(flip_random_bits(hashes[i], p % 7, &mut s));
            planted.push((i as u32, hashes.len() as u32 - 1));
        }
        let pairs = near_pairs(&hashes, 6);
        for pair in &planted {
            assert!(pairs.binary_search(pair).is_ok(), "planted pair {pair:?} missed");
        }
        for &(i, j) in &pairs {
            assert!(i < j && (hashes[i as usize] ^ hashes[j as usize]).count_ones() <= 6);
        }
        // Independent random 64-bit hashes are almost never within 6 bits: the expected number of such pairs
        // among 201k is C(201k, 2) * P(d <= 6) ≈ 0.1, so nearly everything found is planted.
        assert!(pairs.len() < planted.len() + 5, "{} pairs", pairs.len());
    }

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
        let sig = |p: &str, h: u64| Signature { pixel_hash: p.into(), phash: h, thumb: [0; THUMB_LEN] };
        let s = [sig("p1", 0), sig("p1", 0), sig("p2", 0b1), sig("p3", 0xFFFF_0000), sig("p4", 0xFFFF_0003)];
        let sigs: Vec<Option<&Signature>> = s.iter().map(Some).collect();
        let v = group(&items, &sigs, Some(2));
        // c (128x128) wins the group {a, b, c}. b outranks a (source 0 < 1) among the identical bytes {a, b}: a is
        // an exact_bytes duplicate, b a near one (1 bit from c). Both point at the kept c.
        assert_eq!(v[2], Verdict::Ok);
        assert_eq!(v[0], Verdict::Duplicate { of: 2, kind: "near", hamming: Some(1) });
        assert_eq!(v[1], Verdict::Duplicate { of: 2, kind: "exact_bytes", hamming: None });
        // d and e are 2 bits apart: e is larger, so e is kept.
        assert_eq!(v[4], Verdict::Ok);
        assert_eq!(v[3], Verdict::Duplicate { of: 4, kind: "near", hamming: Some(2) });
        // Without the near search only the exact pair remains, and the lower source_index wins.
        let v = group(&items, &sigs, None);
        assert_eq!(v[0], Verdict::Ok);
        assert_eq!(v[1], Verdict::Duplicate { of: 0, kind: "exact_bytes", hamming: None });
        assert!(v[2..].iter().all(|x| *x == Verdict::Ok));
    }

    #[test]
    fn near_groups_chain_through_intermediates() {
        let items: Vec<Item> = (0..3).map(|i| item(&format!("k{i}"), 0, &format!("o{i}"), 10 + i, 10)).collect();
        let s = [(0u64, "a"), (0b111, "b"), (0b111_111, "c")].map(|(h, p)| Signature {
            pixel_hash: p.into(),
            phash: h,
            thumb: [0; THUMB_LEN],
        });
        let sigs: Vec<Option<&Signature>> = s.iter().map(Some).collect();
        let v = group(&items, &sigs, Some(3));
        // 0 ~ 1 and 1 ~ 2 at 3 bits; 0 and 2 are 6 apart but share the group; k2 (largest) is kept.
        assert_eq!(v[2], Verdict::Ok);
        assert_eq!(v[0], Verdict::Duplicate { of: 2, kind: "near", hamming: Some(6) });
        assert_eq!(v[1], Verdict::Duplicate { of: 2, kind: "near", hamming: Some(3) });
    }

    #[test]
    fn phash_candidates_with_different_colours_are_not_near_duplicates() {
        let items: Vec<Item> = (0..3).map(|i| item(&format!("k{i}"), 0, &format!("o{i}"), 10, 10)).collect();
        // Same pHash for all three; thumbnails 100, 110 (difference exactly 10: confirmed) and 89 (11 from k0).
        let s: Vec<Signature> = [100u8, 110, 89]
            .iter()
            .enumerate()
            .map(|(i, &t)| Signature { pixel_hash: format!("p{i}"), phash: 0, thumb: [t; THUMB_LEN] })
            .collect();
        let sigs: Vec<Option<&Signature>> = s.iter().map(Some).collect();
        let v = group(&items, &sigs, Some(6));
        assert_eq!(v[0], Verdict::Ok);
        assert_eq!(v[1], Verdict::Duplicate { of: 0, kind: "near", hamming: Some(0) });
        assert_eq!(v[2], Verdict::Ok);
    }
}
