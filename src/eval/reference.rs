//! Reference statistics: Inception features of the packed real images of one (size, split), their mean and
//! covariance, cached so that evaluating another checkpoint (or re-running eval) does not run Inception on the
//! reals again.
//!
//! ## Images
//! The rows of `manifests/pack.parquet` with the given size and split and status "ok", in (shard, index) order,
//! i.e. pack's canonical order (by content hash, so any prefix is an unbiased sample); `eval.max_reference` keeps
//! the first N. Pixels come from the `images` tensors of the shards.
//!
//! ## Cache: `<workdir>/cache/fid/<key>.safetensors`
//! `key` = blake3 hex of `"anime-pipe-fid-ref/1\n"` followed by `digest=<dataset digest>\nsplit=<split>\n
//! size=<size>\ninception=<blake3 of the model file>\nmax_reference=<N or all>\n`. The dataset digest
//! ([`crate::digest::dataset_digest`]) covers every manifest and shard, so any change to the data gives a new key;
//! so does another Inception file. Tensors: `mean` F64 `[d]`, `cov` F64 `[d, d]` (divided by n - 1), `features` F32
//! [n, d] (for KID and the spread ratio); `__metadata__`: `format` = "anime-pipe-fid-ref/1", `dataset_digest`,
//! `split`, `size`, `inception_blake3`, `count`, `max_reference`. Written atomically; a file that does not parse
//! or does not match its metadata is recomputed (with a warning). Old keys are never deleted automatically:
//! `rm -r cache/fid` is always safe.
use super::features::{Features, Inception};
use super::fid::GaussianStats;
use crate::manifest::columns;
use crate::manifest::Status;
use crate::named::Named;
use crate::workdir::{atomic_write, Workdir};
use anime_linalg::Mat;
use anyhow::{bail, Context, Result};
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use std::collections::HashMap;
use std::path::PathBuf;

const FORMAT: &str = "anime-pipe-fid-ref/1";

/// What the reference set is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceSpec {
    pub dataset_digest: String,
    pub split: String,
    pub size: u32,
    pub inception_blake3: String,
    pub max_reference: Option<usize>,
}

impl ReferenceSpec {
    pub fn key(&self) -> String {
        let text = format!(
            "{FORMAT}\ndigest={}\nsplit={}\nsize={}\ninception={}\nmax_reference={}\n",
            self.dataset_digest,
            self.split,
            self.size,
            self.inception_blake3,
            self.max_reference.map_or("all".to_string(), |n| n.to_string())
        );
        blake3::hash(text.as_bytes()).to_hex().to_string()
    }

    pub fn cache_path(&self, workdir: &Workdir) -> PathBuf {
        workdir.root().join("cache/fid").join(format!("{}.safetensors", self.key()))
    }
}

/// The reference features and their Gaussian fit.
pub struct Reference {
    pub spec: ReferenceSpec,
    pub key: String,
    pub features: Features,
    pub stats: GaussianStats,
    /// True when read from the cache (no Inception run on the reals).
    pub cached: bool,
}

/// The shard images of (size, split) in pack order: (workdir-relative shard, index) pairs.
pub fn reference_items(workdir: &Workdir, size: u32, split: &str) -> Result<Vec<(String, u32)>> {
    let df = crate::manifest::read_stage(workdir, "pack")
        .context("FID compares against the packed dataset: run `anime-pipe pack` in this workdir first")?;
    let (sizes, splits, status) =
        (columns::u32s(&df, "size")?, columns::strings(&df, "split")?, columns::strings(&df, "status")?);
    let (shards, indices) = (columns::opt_strings(&df, "shard")?, columns::opt_u32s(&df, "index")?);
    let mut items = Vec::new();
    for i in 0..df.height() {
        if sizes[i] == size && splits[i] == split && status[i] == Status::Ok.name() {
            match (&shards[i], indices[i]) {
                (Some(shard), Some(index)) => items.push((shard.clone(), index)),
                _ => bail!("pack.parquet row {i}: status ok without shard/index"),
            }
        }
    }
    if items.is_empty() {
        let packed: std::collections::BTreeSet<u32> = sizes.iter().copied().collect();
        bail!(
            "pack.parquet has no {split} images at size {size} (sizes packed: {packed:?}): run `anime-pipe pack \
             --size {size}`, or pass --size / --split to compare against what is packed"
        );
    }
    items.sort();
    Ok(items)
}

/// Reads the images of `items` (all of one size) from their shards, in order, calling `each` with batches of at
/// most `batch` packed RGB8 images.
pub fn for_each_batch(
    workdir: &Workdir,
    items: &[(String, u32)],
    size: u32,
    batch: usize,
    mut each: impl FnMut(&[u8], usize) -> Result<()>,
) -> Result<()> {
    let image_len = (size * size * 3) as usize;
    let mut pending: Vec<u8> = Vec::with_capacity(batch * image_len);
    let mut count = 0;
    let mut i = 0;
    while i < items.len() {
        let shard = &items[i].0;
        let path = workdir.root().join(shard);
        let bytes = std::fs::read(&path).with_context(|| format!("cannot read shard {}", path.display()))?;
        let tensors = SafeTensors::deserialize(&bytes).with_context(|| format!("{}: not a safetensors file", shard))?;
        let images = tensors.tensor(crate::shards::TENSOR_NAME).with_context(|| format!("{shard}: no images"))?;
        let shape = images.shape();
        if images.dtype() != Dtype::U8 || shape.len() != 4 || shape[1..] != [size as usize, size as usize, 3] {
            bail!("{shard}: images tensor is {:?} {shape:?}, expected U8 [N, {size}, {size}, 3]", images.dtype());
        }
        while i < items.len() && items[i].0 == *shard {
            let index = items[i].1 as usize;
            if index >= shape[0] {
                bail!("{shard}: pack.parquet lists index {index} but the shard holds {} images", shape[0]);
            }
            pending.extend_from_slice(&images.data()[index * image_len..(index + 1) * image_len]);
            count += 1;
            i += 1;
            if count == batch {
                each(&pending, count)?;
                pending.clear();
                count = 0;
            }
        }
    }
    if count > 0 {
        each(&pending, count)?;
    }
    Ok(())
}

/// The reference for `spec`: from the cache when present and valid, else computed with `inception` (progress on
/// `bar`) and cached.
pub fn load_or_compute(
    workdir: &Workdir,
    spec: &ReferenceSpec,
    inception: &mut Inception,
    batch: usize,
    bar: &indicatif::ProgressBar,
) -> Result<Reference> {
    let path = spec.cache_path(workdir);
    let key = spec.key();
    if path.exists() {
        match read_cache(&path, spec) {
            Ok((features, stats)) => return Ok(Reference { spec: spec.clone(), key, features, stats, cached: true }),
            Err(e) => tracing::warn!("ignoring the reference cache {}: {e:#}; recomputing", path.display()),
        }
    }
    let mut items = reference_items(workdir, spec.size, &spec.split)?;
    if let Some(n) = spec.max_reference {
        items.truncate(n);
    }
    if items.len() < 2 {
        bail!("the {} split at size {} has {} image(s); FID needs at least 2", spec.split, spec.size, items.len());
    }
    bar.set_length(items.len() as u64);
    let mut features = Features::empty(super::features::FEATURE_DIM);
    let side = spec.size as usize;
    for_each_batch(workdir, &items, spec.size, batch, |pixels, count| {
        let f = inception.embed(pixels, count, side, side)?;
        features.push_rows(&f.data);
        bar.inc(count as u64);
        Ok(())
    })?;
    let stats = GaussianStats::of(&features)?;
    write_cache(&path, spec, &features, &stats)?;
    Ok(Reference { spec: spec.clone(), key, features, stats, cached: false })
}

fn f64_bytes(values: impl Iterator<Item = f64>) -> Vec<u8> {
    values.flat_map(f64::to_le_bytes).collect()
}

fn write_cache(path: &std::path::Path, spec: &ReferenceSpec, features: &Features, stats: &GaussianStats) -> Result<()> {
    let d = stats.dim();
    let mean = f64_bytes(stats.mean.iter().copied());
    // Row-major; the matrix is symmetric anyway.
    let cov = f64_bytes((0..d * d).map(|k| stats.cov[(k / d, k % d)]));
    let feats: Vec<u8> = features.data.iter().flat_map(|v| v.to_le_bytes()).collect();
    let tensors = vec![
        ("mean", TensorView::new(Dtype::F64, vec![d], &mean)?),
        ("cov", TensorView::new(Dtype::F64, vec![d, d], &cov)?),
        ("features", TensorView::new(Dtype::F32, vec![features.rows, d], &feats)?),
    ];
    let metadata = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("dataset_digest".to_string(), spec.dataset_digest.clone()),
        ("split".to_string(), spec.split.clone()),
        ("size".to_string(), spec.size.to_string()),
        ("inception_blake3".to_string(), spec.inception_blake3.clone()),
        ("count".to_string(), features.rows.to_string()),
        ("max_reference".to_string(), spec.max_reference.map_or("all".to_string(), |n| n.to_string())),
    ]);
    let bytes = safetensors::serialize(tensors, Some(metadata))?;
    atomic_write(path, &bytes)
}

/// A safetensors file with one F32 tensor `features` [n, d] (what bench/fid_reference.py reads).
pub fn write_features(path: &std::path::Path, features: &Features) -> Result<()> {
    let bytes: Vec<u8> = features.data.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = TensorView::new(Dtype::F32, vec![features.rows, features.dim], &bytes)?;
    atomic_write(path, &safetensors::serialize([("features", view)], None)?)
}

fn read_cache(path: &std::path::Path, spec: &ReferenceSpec) -> Result<(Features, GaussianStats)> {
    let bytes = std::fs::read(path)?;
    let (_, header) = SafeTensors::read_metadata(&bytes)?;
    let meta = header.metadata().clone().unwrap_or_default();
    let get = |k: &str| meta.get(k).map(String::as_str).unwrap_or("");
    if get("format") != FORMAT
        || get("dataset_digest") != spec.dataset_digest
        || get("split") != spec.split
        || get("size") != spec.size.to_string()
        || get("inception_blake3") != spec.inception_blake3
    {
        bail!("its metadata does not describe this reference set");
    }
    let tensors = SafeTensors::deserialize(&bytes)?;
    let (mean, cov, feats) = (tensors.tensor("mean")?, tensors.tensor("cov")?, tensors.tensor("features")?);
    let d = mean.shape()[0];
    let n = feats.shape()[0];
    if cov.shape() != [d, d] || feats.shape() != [n, d] || get("count") != n.to_string() || n < 2 {
        bail!("inconsistent tensor shapes");
    }
    let f64s = |data: &[u8]| -> Vec<f64> {
        data.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))).collect()
    };
    let mean = f64s(mean.data());
    let cov_values = f64s(cov.data());
    let cov = Mat::from_fn(d, d, |i, j| cov_values[i * d + j]);
    let data: Vec<f32> =
        feats.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect();
    let features = Features { rows: n, dim: d, data };
    if n <= d {
        // Small reference sets keep the low-rank factor (see `fid`); recomputing is cheaper than storing it.
        let stats = GaussianStats::of(&features)?;
        return Ok((features, stats));
    }
    Ok((features, GaussianStats { count: n, mean, cov, factor: None }))
}
