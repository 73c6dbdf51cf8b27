//! Near-duplicate search over 64-bit hashes: multi-index hashing, no quadratic scan.
use rayon::prelude::*;

/// All pairs `(i, j)`, `i < j`, with `popcount(hashes[i] ^ hashes[j]) <= threshold`, sorted.
///
/// Multi-index hashing (Norouzi et al.): split the 64 bits into `m` blocks. By pigeonhole, two hashes within
/// distance t agree within r = floor(t/m) bits on at least one block. For every block, the hashes are bucketed by
/// that block's value (counting sort, CSR layout, full hashes stored beside the ids); each hash enumerates the
/// block values within radius r of its own and verifies the candidates in those buckets on all 64 bits. A pair is
/// reported from the first block where it qualifies only, so it is found once. Queries run in bucket order, so
/// the probed buckets stream through memory. `m` (3..=8) minimises the work measured on the hashes themselves
/// ([`Blocks::choose_for`]). For n = 1M uniform hashes and t = 6 that is m = 4 (16-bit blocks, r = 1): 68 bucket
/// probes and ~1,000 64-bit comparisons per hash, O(n) overall instead of n²/2 (measured: ~3 s single-threaded
/// in a release build for 1M random hashes; t = 10 needs r = 2, 548 probes per hash, ~25 s). Memory: per block,
/// n ids + n hashes + 2^block_bits offsets.
pub fn near_pairs(hashes: &[u64], threshold: u32) -> Vec<(u32, u32)> {
    let n = hashes.len();
    if n < 2 {
        return Vec::new();
    }
    let blocks = Blocks::choose_for(hashes, threshold);
    let tables: Vec<BlockTable> = (0..blocks.m).map(|b| BlockTable::build(hashes, blocks.range(b))).collect();
    let mut pairs = Vec::new();
    for (b, table) in tables.iter().enumerate() {
        let flips = flip_masks(blocks.range(b).1, blocks.radius);
        // Queries walk the buckets in order, so each flip's target bucket also moves through memory nearly
        // sequentially (a few streams the prefetcher follows) instead of jumping to a random bucket per query.
        pairs.extend(in_bucket_chunks(table.offsets.len() - 1, |v, out| {
            probe_bucket(&tables, b, v, &flips, threshold, blocks.radius, out)
        }));
    }
    pairs.sort_unstable();
    pairs
}

/// All `(q, i)` with `popcount(queries[q] ^ index[i]) <= threshold`, sorted: [`MatchIndex`] built and queried
/// once.
pub fn near_matches(index: &[u64], queries: &[u64], threshold: u32) -> Vec<(u32, u32)> {
    MatchIndex::build(index, threshold).matches(queries)
}

/// The multi-index tables of [`near_pairs`] over an indexed set, built once and queried by several query sets
/// (so a caller can bound memory by querying in chunks).
pub struct MatchIndex {
    blocks: Blocks,
    tables: Vec<BlockTable>,
    threshold: u32,
}

impl MatchIndex {
    pub fn build(index: &[u64], threshold: u32) -> Self {
        let blocks = Blocks::choose_for(index, threshold);
        let tables = (0..blocks.m).map(|b| BlockTable::build(index, blocks.range(b))).collect();
        Self { blocks, tables, threshold }
    }

    /// All `(q, i)` within the threshold, sorted; a match is reported from the first block where it qualifies
    /// only. Per block the queries are bucketed too (one block at a time: 12 bytes per query), and each query
    /// bucket is compared with the index buckets within the radius of its value, so both sides stream through
    /// memory in bucket order.
    pub fn matches(&self, queries: &[u64]) -> Vec<(u32, u32)> {
        if self.tables.first().is_none_or(|t| t.ids.is_empty()) || queries.is_empty() {
            return Vec::new();
        }
        let (blocks, tables) = (&self.blocks, &self.tables);
        let mut matches = Vec::new();
        for b in 0..blocks.m {
            let flips = flip_masks(blocks.range(b).1, blocks.radius);
            let by_value = BlockTable::build(queries, blocks.range(b));
            matches.extend(in_bucket_chunks(by_value.offsets.len() - 1, |v, out| {
                let (ids, values) = by_value.bucket(v);
                let query = QueryBucket { ids, values, value: v };
                probe_queries(tables, b, &query, &flips, self.threshold, blocks.radius, out)
            }));
        }
        matches.sort_unstable();
        matches
    }
}

/// Runs `probe(v, out)` for every bucket value `v` below `buckets`, in parallel chunks of consecutive buckets (so
/// each chunk walks memory in bucket order), and returns what the probes pushed, chunk by chunk.
fn in_bucket_chunks(buckets: usize, probe: impl Fn(u32, &mut Vec<(u32, u32)>) + Sync) -> Vec<(u32, u32)> {
    const CHUNK: usize = 1024;
    let found: Vec<Vec<(u32, u32)>> = (0..buckets.div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| {
            let mut out = Vec::new();
            for v in c * CHUNK..((c + 1) * CHUNK).min(buckets) {
                probe(v as u32, &mut out);
            }
            out
        })
        .collect();
    found.into_iter().flatten().collect()
}

/// The queries whose block value is `value`.
struct QueryBucket<'a> {
    ids: &'a [u32],
    values: &'a [u64],
    value: u32,
}

/// Matches of one bucket of queries against the index buckets of block `b` within the radius of its value.
fn probe_queries(
    tables: &[BlockTable],
    b: usize,
    query: &QueryBucket<'_>,
    flips: &[u32],
    threshold: u32,
    radius: u32,
    out: &mut Vec<(u32, u32)>,
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("popcnt") {
        // SAFETY: the CPU has POPCNT, checked just above.
        return unsafe { probe_queries_popcnt(tables, b, query, flips, threshold, radius, out) };
    }
    probe_queries_body(tables, b, query, flips, threshold, radius, out)
}

/// [`probe_queries`] compiled with the POPCNT instruction. Rust's x86-64 baseline predates it, so `count_ones`
/// is otherwise a dozen shift-and-multiply instructions, and comparing hashes in crowded buckets is most of the
/// search (perf on 100k alike pictures; BENCHMARKS.md, "Dedup at scale"). Checked at run time, not required
/// at build time, so the binary still runs on any x86-64.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
fn probe_queries_popcnt(
    tables: &[BlockTable],
    b: usize,
    query: &QueryBucket<'_>,
    flips: &[u32],
    threshold: u32,
    radius: u32,
    out: &mut Vec<(u32, u32)>,
) {
    probe_queries_body(tables, b, query, flips, threshold, radius, out)
}

#[inline(always)]
fn probe_queries_body(
    tables: &[BlockTable],
    b: usize,
    query: &QueryBucket<'_>,
    flips: &[u32],
    threshold: u32,
    radius: u32,
    out: &mut Vec<(u32, u32)>,
) {
    if query.ids.is_empty() {
        return;
    }
    for &flip in flips {
        let (ids, values) = tables[b].bucket(query.value ^ flip);
        for (&q, &h) in query.ids.iter().zip(query.values) {
            for (&i, &hi) in ids.iter().zip(values) {
                if (h ^ hi).count_ones() <= threshold
                    && !tables[..b].iter().any(|t| (t.value(h) ^ t.value(hi)).count_ones() <= radius)
                {
                    out.push((q, i));
                }
            }
        }
    }
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
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("popcnt") {
        // SAFETY: the CPU has POPCNT, checked just above.
        return unsafe { probe_bucket_popcnt(tables, b, v, flips, threshold, radius, out) };
    }
    probe_bucket_body(tables, b, v, flips, threshold, radius, out)
}

/// [`probe_bucket`] with POPCNT, as [`probe_queries_popcnt`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
fn probe_bucket_popcnt(
    tables: &[BlockTable],
    b: usize,
    v: u32,
    flips: &[u32],
    threshold: u32,
    radius: u32,
    out: &mut Vec<(u32, u32)>,
) {
    probe_bucket_body(tables, b, v, flips, threshold, radius, out)
}

#[inline(always)]
fn probe_bucket_body(
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

/// A bucket probe is a likely cache miss, worth about 4 hash comparisons (which scan contiguous ids).
const PROBE_COST: f64 = 4.0;

struct Blocks {
    m: usize,
    radius: u32,
}

impl Blocks {
    /// The block count whose search costs least on these hashes: per m, the bucket probes and the 64-bit
    /// comparisons that a sample of the hashes would make as queries, counted on exact block histograms. The
    /// textbook estimate assumes uniform hashes (n / 2^bits per bucket); pictures alike enough to agree on most
    /// low-frequency bits crowd into few buckets, where it is off by orders of magnitude (on 100k mosaics of real
    /// faces it chose 5 blocks at 8,335 comparisons per query where 3 blocks cost 3,814). The pairs found do not
    /// depend on m, only the time.
    fn choose_for(hashes: &[u64], threshold: u32) -> Self {
        const SAMPLE: usize = 1024;
        let sample: Vec<u64> = hashes.iter().step_by((hashes.len() / SAMPLE).max(1)).copied().collect();
        let work = |m: usize| {
            let blocks = Self { m, radius: threshold / m as u32 };
            let mut work = 0.0f64;
            for b in 0..m {
                let (shift, bits) = blocks.range(b);
                let mask = (1u64 << bits) - 1;
                let mut counts = vec![0u32; 1 << bits];
                for &h in hashes {
                    counts[((h >> shift) & mask) as usize] += 1;
                }
                for &flip in &flip_masks(bits, blocks.radius) {
                    for &q in &sample {
                        work += PROBE_COST + f64::from(counts[(((q >> shift) & mask) as u32 ^ flip) as usize]);
                    }
                }
            }
            work
        };
        let m = (3..=8).map(|m| (work(m), m)).min_by(|a, b| a.0.total_cmp(&b.0)).expect("non-empty range").1;
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
    fn near_matches_finds_exactly_the_brute_force_matches() {
        for (seed, t) in [(11, 0), (12, 3), (13, 8), (14, 12)] {
            let index = test_hashes(seed);
            let mut s = seed;
            let mut queries: Vec<u64> = (0..300).map(|_| rng(&mut s)).collect();
            queries.extend(index.iter().step_by(7).map(|&h| flip_random_bits(h, (rng(&mut s) % 14) as u32, &mut s)));
            let mut expected = Vec::new();
            for (q, &hq) in queries.iter().enumerate() {
                for (i, &hi) in index.iter().enumerate() {
                    if (hq ^ hi).count_ones() <= t {
                        expected.push((q as u32, i as u32));
                    }
                }
            }
            assert!(!expected.is_empty());
            assert_eq!(near_matches(&index, &queries, t), expected, "threshold {t}");
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
        assert_eq!(flip_masks(16, 2).len(), 1 + 16 + 120);
    }

    #[test]
    fn block_choice_follows_how_the_hashes_crowd() {
        let mut s = 3u64;
        let uniform: Vec<u64> = (0..1_000_000).map(|_| rng(&mut s)).collect();
        // Uniform: 4 blocks of 16 bits at 6 bits (17 probes of ~15 hashes each beat 3 blocks' 254 probes).
        assert_eq!(Blocks::choose_for(&uniform, 6).m, 4);
        // Only the low 20 bits vary: every block above them is one full bucket, probed at every flip. The fewest
        // such blocks and flips win: 3 blocks, although the uniform estimate for 1M hashes says 4.
        let crowded: Vec<u64> = uniform.iter().map(|h| 0xA5A5_A5A5_A5A0_0000 | (h & 0xF_FFFF)).collect();
        assert_eq!(Blocks::choose_for(&crowded, 6).m, 3);
        let pairs = near_pairs(&crowded[..3000], 6);
        assert_eq!(pairs, brute_force(&crowded[..3000], 6));
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
}
