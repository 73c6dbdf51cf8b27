//! Training batches from the packed shards: memory-mapped, shuffled per epoch, augmented, prefetched.
//!
//! * **Source.** The shards `pack` wrote for one (size, split), as listed in `manifests/pack.parquet` (rows with
//!   status "ok"), each memory-mapped (`memmap2`): the `images` tensor (u8 `[N, S, S, 3]`, NHWC RGB) is read in
//!   place, so opening a 100k-image set costs no copy and the page cache is shared with other processes. Samples
//!   are numbered in (shard path, row) order.
//! * **Order.** Epoch `e` (0-based) visits the samples in the permutation drawn by a ChaCha8 generator seeded
//!   with [`stream_seed`]`(seed, "shuffle", e)`, cut into `floor(N / batch)` batches (the remainder is dropped:
//!   the step graphs have a static batch size, and with a fresh permutation every epoch no image is left out for
//!   long). Because every random stream is derived from counters (seed, epoch, batch), the loader's whole state
//!   is its [`Position`]: a checkpoint stores two integers and resuming replays exactly the same batches.
//! * **Augmentation** ([`Augment`]), per sample, from the batch's own stream `stream_seed(seed, "augment",
//!   e * 2^32 + b)`: a horizontal flip with probability 1/2, then a translation by (dx, dy) drawn uniformly from
//!   `-t..=t` pixels with edge replication (the "small random crop" of the seed papers without the resampling
//!   blur a crop-and-resize adds at 64 px). Faces in the packs are centred and upright, so no vertical flip and no
//!   rotation.
//! * **Prefetch.** A background thread assembles batches into a bounded channel ([`Loader`]); the trainer only
//!   waits when the thread falls behind, which `anime-pipe train --bench-loader` measures (batches/s of the
//!   loader alone).
//!
//! Batches stay `u8` NHWC: the step graphs normalise to [-1, 1] themselves, so a batch is 4x smaller to move
//! than floats, and the exact pixels of a batch are reproducible bit for bit.
use crate::stages::columns;
use crate::workdir::Workdir;
use anyhow::{bail, ensure, Context, Result};
use memmap2::Mmap;
use rand::rngs::ChaCha8Rng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

/// One memory-mapped shard: the bytes of its `images` tensor start at `offset`.
struct MappedShard {
    map: Mmap,
    offset: usize,
    count: usize,
}

/// The samples of one (size, split), memory-mapped.
pub struct ShardSet {
    shards: Vec<MappedShard>,
    /// (shard, row) of every sample, in (shard path, row) order.
    samples: Vec<(u32, u32)>,
    size: u32,
    /// Workdir-relative shard paths (or the given paths), in order.
    paths: Vec<String>,
    digest: String,
}

impl ShardSet {
    /// The shards of `split` at `size` listed in `manifests/pack.parquet`.
    pub fn open(workdir: &Workdir, size: u32, split: &str) -> Result<ShardSet> {
        let df = crate::manifest::read_stage(workdir, "pack")?;
        let (sizes, splits) = (columns::u32s(&df, "size")?, columns::strings(&df, "split")?);
        let (shards, status) = (columns::opt_strings(&df, "shard")?, columns::strings(&df, "status")?);
        let hashes = columns::opt_strings(&df, "shard_blake3")?;
        // shard -> (rows listed, blake3 recorded by pack)
        let mut listed: BTreeMap<String, (usize, String)> = BTreeMap::new();
        for i in 0..df.height() {
            if sizes[i] != size || splits[i] != split || status[i] != "ok" {
                continue;
            }
            let (Some(shard), Some(hash)) = (&shards[i], &hashes[i]) else {
                bail!("pack.parquet row {i}: accepted row without shard or shard_blake3");
            };
            listed.entry(shard.clone()).or_insert((0, hash.clone())).0 += 1;
        }
        if listed.is_empty() {
            let available: std::collections::BTreeSet<u32> = sizes.iter().copied().collect();
            bail!(
                "pack.parquet lists no {split} samples at size {size} (sizes packed: {available:?}): \
                 run `anime-pipe pack --size {size}` or choose train.image_size"
            );
        }
        let mut set = ShardSet::empty(size);
        let mut digest = blake3::Hasher::new();
        digest.update(b"anime-pipe-train-data/1\n");
        for (shard, (rows, hash)) in &listed {
            let path = workdir.root().join(shard);
            set.push(&path, shard.clone())?;
            ensure!(
                set.shards.last().map(|s| s.count) == Some(*rows),
                "{}: holds {} images but pack.parquet lists {rows}: the shards changed since pack ran (run \
                 `anime-pipe verify`, then `anime-pipe pack`)",
                path.display(),
                set.shards.last().map_or(0, |s| s.count)
            );
            digest.update(format!("{shard}\n{hash}\n").as_bytes());
        }
        set.digest = digest.finalize().to_hex().to_string();
        Ok(set)
    }

    /// Shard files given directly (tests, tools); the digest then covers the files' bytes.
    pub fn open_files(paths: &[PathBuf], size: u32) -> Result<ShardSet> {
        ensure!(!paths.is_empty(), "no shard files given");
        let mut set = ShardSet::empty(size);
        let mut digest = blake3::Hasher::new();
        digest.update(b"anime-pipe-train-data/1\n");
        for path in paths {
            set.push(path, path.display().to_string())?;
            let hash = crate::manifest::file_blake3(path)?;
            digest.update(format!("{}\n{hash}\n", path.display()).as_bytes());
        }
        set.digest = digest.finalize().to_hex().to_string();
        Ok(set)
    }

    fn empty(size: u32) -> ShardSet {
        ShardSet { shards: Vec::new(), samples: Vec::new(), size, paths: Vec::new(), digest: String::new() }
    }

    fn push(&mut self, path: &Path, name: String) -> Result<()> {
        let shard = map_shard(path, self.size)?;
        let index = self.shards.len() as u32;
        self.samples.extend((0..shard.count as u32).map(|row| (index, row)));
        self.shards.push(shard);
        self.paths.push(name);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Side of the square images.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Bytes per image (size * size * 3).
    pub fn image_bytes(&self) -> usize {
        (self.size as usize).pow(2) * 3
    }

    /// The shards, in sample order.
    pub fn paths(&self) -> &[String] {
        &self.paths
    }

    /// blake3 over the shard names and their content hashes (pack's `shard_blake3`): which data a run used.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Sample `i`'s pixels, HWC RGB.
    pub fn image(&self, i: usize) -> &[u8] {
        let (shard, row) = self.samples[i];
        let shard = &self.shards[shard as usize];
        let n = self.image_bytes();
        let start = shard.offset + row as usize * n;
        &shard.map[start..start + n]
    }
}

/// Maps a shard and checks its `images` tensor (U8, [N, size, size, 3], data inside the file).
fn map_shard(path: &Path, size: u32) -> Result<MappedShard> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open shard {}", path.display()))?;
    // SAFETY: shards are written once, atomically (temp file + rename), and never modified in place; the map
    // is read-only. A concurrent `pack` replaces the file (new inode), leaving this mapping intact.
    let map = unsafe { Mmap::map(&file) }.with_context(|| format!("cannot map shard {}", path.display()))?;
    let (header_len, metadata) = safetensors::SafeTensors::read_metadata(&map)
        .map_err(|e| anyhow::anyhow!("{}: not a safetensors file: {e:?}", path.display()))?;
    let info = metadata
        .info(crate::stages::pack::TENSOR_NAME)
        .with_context(|| format!("{}: no `images` tensor", path.display()))?;
    let s = size as usize;
    ensure!(
        info.dtype == safetensors::Dtype::U8 && info.shape.len() == 4 && info.shape[1..] == [s, s, 3],
        "{}: images tensor is {:?} {:?}, expected U8 [N, {s}, {s}, 3]",
        path.display(),
        info.dtype,
        info.shape
    );
    let offset = 8 + header_len + info.data_offsets.0;
    let count = info.shape[0];
    ensure!(offset + count * s * s * 3 <= map.len(), "{}: truncated", path.display());
    Ok(MappedShard { map, offset, count })
}

/// Per-sample augmentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Augment {
    /// Mirror left-right with probability 1/2.
    pub flip: bool,
    /// Shift by up to this many pixels in x and y (edge pixels replicated); 0 = off.
    pub translate: u32,
}

/// Where the loader is: the next batch it yields is batch `batch` of epoch `epoch` (both 0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, serde::Serialize, serde::Deserialize)]
pub struct Position {
    pub epoch: u64,
    pub batch: u64,
}

/// One batch: u8 NHWC pixels of `batch_size` images.
pub struct Batch {
    pub position: Position,
    pub pixels: Vec<u8>,
}

/// A seed for one named random stream, derived from the run seed and a counter (64-bit FNV-1a over the three,
/// so streams never overlap by construction and the derivation is reproducible in any language).
pub fn stream_seed(seed: u64, name: &str, counter: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.to_le_bytes().iter().chain(name.as_bytes()).chain(&counter.to_le_bytes()) {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// How batches are drawn.
#[derive(Debug, Clone, Copy)]
pub struct LoaderSpec {
    pub batch_size: usize,
    pub seed: u64,
    pub augment: Augment,
}

impl LoaderSpec {
    pub fn batches_per_epoch(&self, samples: usize) -> u64 {
        (samples / self.batch_size) as u64
    }

    /// The sample order of `epoch`.
    pub fn permutation(&self, samples: usize, epoch: u64) -> Vec<u32> {
        let mut order: Vec<u32> = (0..samples as u32).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(stream_seed(self.seed, "shuffle", epoch)));
        order
    }

    /// Assembles the batch at `position` (`order` = that epoch's permutation) into `out`.
    pub fn fill(&self, set: &ShardSet, order: &[u32], position: Position, out: &mut Vec<u8>) {
        let n = set.image_bytes();
        out.resize(self.batch_size * n, 0);
        let first = position.batch as usize * self.batch_size;
        let mut rng =
            ChaCha8Rng::seed_from_u64(stream_seed(self.seed, "augment", position.epoch << 32 | position.batch));
        for (slot, &sample) in order[first..first + self.batch_size].iter().enumerate() {
            let dst = &mut out[slot * n..(slot + 1) * n];
            let flip = self.augment.flip && rng.random_bool(0.5);
            let t = self.augment.translate as i64;
            let (dx, dy) = if t > 0 { (rng.random_range(-t..=t), rng.random_range(-t..=t)) } else { (0, 0) };
            transform(set.image(sample as usize), dst, set.size() as usize, flip, dx, dy);
        }
    }
}

/// `dst(x, y) = src(clamp(x' - dx), clamp(y - dy))` with `x' = S-1-x` when flipped: flip, then translate by
/// (dx, dy), edges replicated. The identity is a plain copy.
pub fn transform(src: &[u8], dst: &mut [u8], size: usize, flip: bool, dx: i64, dy: i64) {
    if !flip && dx == 0 && dy == 0 {
        dst.copy_from_slice(src);
        return;
    }
    let last = size as i64 - 1;
    for y in 0..size {
        let sy = (y as i64 - dy).clamp(0, last) as usize;
        let src_row = &src[sy * size * 3..(sy + 1) * size * 3];
        let dst_row = &mut dst[y * size * 3..(y + 1) * size * 3];
        for x in 0..size {
            let fx = if flip { last - x as i64 } else { x as i64 };
            let sx = (fx - dx).clamp(0, last) as usize;
            dst_row[x * 3..x * 3 + 3].copy_from_slice(&src_row[sx * 3..sx * 3 + 3]);
        }
    }
}

/// Batches assembled on a background thread, `depth` ahead of the consumer.
pub struct Loader {
    rx: Option<Receiver<Batch>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    batches_per_epoch: u64,
}

impl Loader {
    /// Starts yielding batches from `start`. Fails when the set holds fewer samples than one batch.
    pub fn spawn(set: Arc<ShardSet>, spec: LoaderSpec, start: Position, depth: usize) -> Result<Loader> {
        let batches_per_epoch = spec.batches_per_epoch(set.len());
        ensure!(
            batches_per_epoch > 0,
            "the training set has {} images, fewer than one batch of {} (lower train.batch_size)",
            set.len(),
            spec.batch_size
        );
        ensure!(start.batch < batches_per_epoch, "loader position {start:?} is past the end of its epoch");
        let (tx, rx) = sync_channel(depth.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("train-loader".into())
            .spawn(move || {
                let mut position = start;
                let mut order = spec.permutation(set.len(), position.epoch);
                while !stop_flag.load(Ordering::Relaxed) {
                    let mut pixels = Vec::new();
                    spec.fill(&set, &order, position, &mut pixels);
                    if tx.send(Batch { position, pixels }).is_err() {
                        return; // the consumer is gone
                    }
                    position.batch += 1;
                    if position.batch == batches_per_epoch {
                        position = Position { epoch: position.epoch + 1, batch: 0 };
                        order = spec.permutation(set.len(), position.epoch);
                    }
                }
            })
            .context("cannot start the loader thread")?;
        Ok(Loader { rx: Some(rx), stop, handle: Some(handle), batches_per_epoch })
    }

    pub fn batches_per_epoch(&self) -> u64 {
        self.batches_per_epoch
    }

    /// The next batch (blocks while the thread is assembling it).
    pub fn next_batch(&mut self) -> Result<Batch> {
        self.rx.as_ref().and_then(|rx| rx.recv().ok()).context("the loader thread stopped unexpectedly")
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.rx.take(); // unblocks a pending send
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(size: usize, f: impl Fn(usize, usize) -> [u8; 3]) -> Vec<u8> {
        (0..size * size).flat_map(|i| f(i % size, i / size)).collect()
    }

    #[test]
    fn transform_flips_and_translates_with_edge_replication() {
        let s = 4;
        let src = image(s, |x, y| [x as u8, y as u8, 7]);
        let mut dst = vec![0; src.len()];
        transform(&src, &mut dst, s, true, 0, 0);
        assert_eq!(dst, image(s, |x, y| [(3 - x) as u8, y as u8, 7]));
        // Shift right by 1 and up by 1: column 0 repeats source column 0, the last row repeats the last row.
        transform(&src, &mut dst, s, false, 1, -1);
        assert_eq!(dst, image(s, |x, y| [x.saturating_sub(1) as u8, (y + 1).min(3) as u8, 7]));
        transform(&src, &mut dst, s, false, 0, 0);
        assert_eq!(dst, src);
    }

    #[test]
    fn permutations_are_seeded_per_epoch_and_complete() {
        let spec = LoaderSpec { batch_size: 4, seed: 3, augment: Augment::default() };
        let (a, b) = (spec.permutation(100, 0), spec.permutation(100, 1));
        assert_ne!(a, b, "every epoch has its own order");
        assert_eq!(a, spec.permutation(100, 0), "same seed and epoch, same order");
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<u32>>());
        let other = LoaderSpec { seed: 4, ..spec };
        assert_ne!(a, other.permutation(100, 0));
    }

    #[test]
    fn stream_seeds_differ_by_name_and_counter() {
        let seeds = [stream_seed(1, "shuffle", 0), stream_seed(1, "shuffle", 1), stream_seed(1, "augment", 0)];
        assert!(seeds[0] != seeds[1] && seeds[0] != seeds[2] && seeds[1] != seeds[2]);
        assert_eq!(stream_seed(1, "shuffle", 0), seeds[0]);
    }
}
