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
//!   e * 2^32 + b)`: a horizontal flip with probability 1/2; a translation by (dx, dy) drawn uniformly from
//!   `-t..=t` pixels; and, when asked, the "small random crop/rotation" of the seed papers: a square crop of side
//!   `(1 - u) * S`, `u` uniform in `[0, crop]`, at a uniform position, scaled back to `S`, and a rotation by an
//!   angle uniform in `[-rotate, rotate]` degrees about the centre. Flip and translation alone are an exact pixel
//!   copy; crop and rotation resample once, bilinearly, with all four composed into one inverse map (so an image
//!   is interpolated at most once). Edges are replicated everywhere (no black corners for D to learn). Faces in
//!   the packs are centred and upright, so no vertical flip. Draws happen only for the enabled parts, so turning
//!   crop/rotation on does not change the flips and shifts a seed gives.
//! * **Prefetch.** A background thread assembles batches into a bounded channel ([`Loader`]); the trainer only
//!   waits when the thread falls behind, which `anime-pipe train --bench-loader` measures (batches/s of the
//!   loader alone).
//!
//! Batches stay `u8` NHWC: the step graphs normalise to [-1, 1] themselves, so a batch is 4x smaller to move
//! than floats, and the exact pixels of a batch are reproducible bit for bit.
use crate::manifest::columns;
use crate::manifest::Status;
use crate::named::Named;
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
            if sizes[i] != size || splits[i] != split || status[i] != Status::Ok.name() {
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
    let info =
        metadata.info(crate::shards::TENSOR_NAME).with_context(|| format!("{}: no `images` tensor", path.display()))?;
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
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Augment {
    /// Mirror left-right with probability 1/2.
    pub flip: bool,
    /// Shift by up to this many pixels in x and y (edge pixels replicated); 0 = off.
    pub translate: u32,
    /// Random crop: keep a square of side `(1 - u) * S`, `u` uniform in `[0, crop]`, scaled back to `S`; 0 = off.
    #[serde(default)]
    pub crop: f64,
    /// Random rotation by up to this many degrees either way, about the centre; 0 = off.
    #[serde(default)]
    pub rotate: f64,
}

impl Augment {
    /// The crop/rotation of one sample, or `None` when both are off (drawn after flip and translation).
    fn draw_warp(&self, rng: &mut ChaCha8Rng, size: usize) -> Option<Warp> {
        if self.crop <= 0.0 && self.rotate <= 0.0 {
            return None;
        }
        let (mut scale, mut offset) = (1.0f64, (0.0f64, 0.0f64));
        if self.crop > 0.0 {
            scale = 1.0 - rng.random_range(0.0..=self.crop);
            // The crop's centre may move as far as keeps the crop inside the image.
            let room = (1.0 - scale) * size as f64 / 2.0;
            if room > 0.0 {
                offset = (rng.random_range(-room..=room), rng.random_range(-room..=room));
            }
        }
        let angle = if self.rotate > 0.0 { rng.random_range(-self.rotate..=self.rotate).to_radians() } else { 0.0 };
        Some(Warp { scale: scale as f32, offset: (offset.0 as f32, offset.1 as f32), angle: angle as f32 })
    }
}

/// A crop (side `scale * S`, centre moved by `offset` pixels) and a rotation by `angle` radians.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Warp {
    pub scale: f32,
    pub offset: (f32, f32),
    pub angle: f32,
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
            let src = set.image(sample as usize);
            match self.augment.draw_warp(&mut rng, set.size() as usize) {
                None => transform(src, dst, set.size() as usize, flip, dx, dy),
                Some(warp) => warp_bilinear(src, dst, set.size() as usize, flip, (dx, dy), warp),
            }
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

/// Crop-and-scale, rotation, translation by (dx, dy) and the flip as one inverse map sampled bilinearly: output
/// pixel `p` reads the source at `c + offset + scale * R(-angle) (F(p) - (dx, dy) - c)`, `c` the image centre,
/// `F` the left-right mirror when flipped (as in [`transform`]), coordinates clamped to the image (edges
/// replicated). Interpolation weights are 8-bit fixed
/// point (exact for integer positions, so the identity warp is a copy), which keeps the loader an order of
/// magnitude ahead of a GPU step.
pub fn warp_bilinear(src: &[u8], dst: &mut [u8], size: usize, flip: bool, shift: (i64, i64), warp: Warp) {
    let last = (size - 1) as f32;
    let centre = last / 2.0;
    let (sin, cos) = warp.angle.sin_cos();
    let (a, b) = (warp.scale * cos, warp.scale * sin);
    let stride = size * 3;
    for (y, row) in dst.chunks_exact_mut(stride).enumerate() {
        let v = y as f32 - shift.1 as f32 - centre;
        for (x, out) in row.chunks_exact_mut(3).enumerate() {
            let fx = if flip { last - x as f32 } else { x as f32 };
            let u = fx - shift.0 as f32 - centre;
            let sx = (centre + warp.offset.0 + a * u + b * v).clamp(0.0, last);
            let sy = (centre + warp.offset.1 - b * u + a * v).clamp(0.0, last);
            // Non-negative after the clamp: truncation is the floor.
            let (x0, y0) = (sx as usize, sy as usize);
            let (x1, y1) = ((x0 + 1).min(size - 1), (y0 + 1).min(size - 1));
            let wx = ((sx - x0 as f32) * 256.0 + 0.5) as u32;
            let wy = ((sy - y0 as f32) * 256.0 + 0.5) as u32;
            let (top, bottom) = (&src[y0 * stride..], &src[y1 * stride..]);
            for (ch, value) in out.iter_mut().enumerate() {
                let (l, r) = (x0 * 3 + ch, x1 * 3 + ch);
                let t = u32::from(top[l]) * (256 - wx) + u32::from(top[r]) * wx;
                let d = u32::from(bottom[l]) * (256 - wx) + u32::from(bottom[r]) * wx;
                *value = ((t * (256 - wy) + d * wy + (1 << 15)) >> 16) as u8;
            }
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
    fn warp_without_crop_or_rotation_matches_the_exact_transform() {
        let s = 8;
        let src = image(s, |x, y| [(x * 30) as u8, (y * 30) as u8, (x * y) as u8]);
        let identity = Warp { scale: 1.0, offset: (0.0, 0.0), angle: 0.0 };
        for (flip, dx, dy) in [(false, 0, 0), (true, 0, 0), (false, 2, -1), (true, -3, 2)] {
            let (mut exact, mut warped) = (vec![0; src.len()], vec![0; src.len()]);
            transform(&src, &mut exact, s, flip, dx, dy);
            warp_bilinear(&src, &mut warped, s, flip, (dx, dy), identity);
            assert_eq!(exact, warped, "flip {flip}, shift ({dx}, {dy})");
        }
    }

    #[test]
    fn warp_rotates_about_the_centre_and_crops_by_zooming_in() {
        let s = 9; // odd: the centre is a pixel
        let src = image(s, |x, y| [(x * 20) as u8, (y * 20) as u8, 0]);
        let mut dst = vec![0; src.len()];
        // A quarter turn: the centre stays, and the output's top-middle reads the source's middle-left or
        // middle-right (a ramp in x becomes a ramp in y).
        let quarter = Warp { scale: 1.0, offset: (0.0, 0.0), angle: std::f32::consts::FRAC_PI_2 };
        warp_bilinear(&src, &mut dst, s, false, (0, 0), quarter);
        let px = |img: &[u8], x: usize, y: usize| [img[(y * s + x) * 3], img[(y * s + x) * 3 + 1]];
        assert_eq!(px(&dst, 4, 4), [80, 80]);
        let top = px(&dst, 4, 0);
        assert!(top == [0, 80] || top == [160, 80], "{top:?}");
        let column: Vec<u8> = (0..s).map(|y| px(&dst, 4, y)[0]).collect();
        assert!(column.windows(2).all(|w| w[0] != w[1]), "x ramp turned into a y ramp: {column:?}");
        // A centred crop to half the side doubles distances from the centre: the x ramp's slope halves.
        let half = Warp { scale: 0.5, offset: (0.0, 0.0), angle: 0.0 };
        warp_bilinear(&src, &mut dst, s, false, (0, 0), half);
        assert_eq!(px(&dst, 4, 4), [80, 80]);
        assert_eq!((px(&dst, 0, 4)[0], px(&dst, 8, 4)[0]), (40, 120));
    }

    #[test]
    fn crop_and_rotation_draws_stay_in_range() {
        let aug = Augment { flip: true, translate: 2, crop: 0.1, rotate: 10.0 };
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for _ in 0..500 {
            let w = aug.draw_warp(&mut rng, 64).unwrap();
            assert!((0.9..=1.0).contains(&w.scale), "{w:?}");
            let room = (1.0 - w.scale) * 32.0 + 1e-4;
            assert!(w.offset.0.abs() <= room && w.offset.1.abs() <= room, "{w:?}");
            assert!(w.angle.abs() <= 10f32.to_radians() + 1e-6, "{w:?}");
        }
        assert!(Augment { flip: true, translate: 2, crop: 0.0, rotate: 0.0 }.draw_warp(&mut rng, 64).is_none());
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
