//! Checkpoints: everything needed to resume a run exactly, in one safetensors file.
//!
//! `runs/<name>/checkpoints/epoch-NNNN.safetensors` (after epoch NNNN, 1-based) or `step-NNNNNNNN.safetensors`
//! (a run stopped inside an epoch: `--steps`, Ctrl-C), written atomically (temp file, fsync, rename):
//!
//! * **Tensors**, all F32, little-endian, sorted by name: the training state exactly as the step graphs hold it —
//!   parameters (`d.conv1.weight`, `g.bn1.bias`, ...), Adam moments (`<param>.adam_m`, `<param>.adam_v`) and
//!   batch-norm running statistics (`<scope>.running_mean`, `<scope>.running_var`).
//! * **`__metadata__`** (strings, as safetensors requires; sorted keys, so equal checkpoints are equal bytes):
//!
//! | key | value |
//! |---|---|
//! | `format` | `anime-pipe-checkpoint/1` |
//! | `step` | iterations done (one iteration = `d_steps` D updates + one G update) |
//! | `epoch` | complete epochs done |
//! | `loader_epoch`, `loader_batch` | the loader's next batch (0-based); with the seed this is its whole state |
//! | `d_updates`, `g_updates` | Adam's step counters `t` of each network |
//! | `rng_seed`, `rng_word_pos` | the runner's ChaCha8 stream (latents, label flips, dropout masks): seed and word position |
//! | `seed` | the run seed every random stream derives from (see `loader::stream_seed`) |
//! | `arch` | architecture name |
//! | `dataset_digest` | the training shards' digest (see `loader::ShardSet::digest`) |
//! | `config` | the resolved training config, JSON |
//!
//! The loader's random streams (shuffles, augmentation) are ChaCha8 streams seeded by (seed, stream name,
//! counter), the counters being the loader position above; the runner's stream is restored from its word
//! position. Together they are all the randomness of a run. In Python: `safetensors.numpy.load_file(path)` gives the tensors, and `json.loads` of the 8-byte-length
//! header's `__metadata__` the rest.
use crate::gan::runner::{self, RngState};
use crate::rundir::{self, CheckpointName, RunDir};
use crate::train::loader::Position;
use crate::train::presets::TrainConfig;
use crate::workdir::atomic_write_with;
use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const FORMAT: &str = "anime-pipe-checkpoint/1";

/// Name -> (shape, row-major values).
pub type Tensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// Where a run stands.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Complete epochs.
    pub epoch: u64,
    /// The loader's next batch.
    pub loader: Position,
    /// The runner's counters (`iteration` is the run's step) and random stream.
    pub runner: runner::Progress,
}

impl Progress {
    /// Iterations done.
    pub fn step(&self) -> u64 {
        self.runner.iteration
    }
}

/// A checkpoint's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Meta {
    pub progress: Progress,
    pub seed: u64,
    pub arch: String,
    pub dataset_digest: String,
    pub config: TrainConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub meta: Meta,
    pub tensors: Tensors,
}

/// `epoch-0007` at an epoch's end, `step-00001234` inside one (see `rundir` for the files of each name).
pub fn name(progress: &Progress, at_epoch_end: bool) -> CheckpointName {
    match at_epoch_end {
        true => CheckpointName::Epoch(progress.epoch),
        false => CheckpointName::Step(progress.step()),
    }
}

impl Meta {
    fn to_strings(&self) -> Result<BTreeMap<String, String>> {
        let p = &self.progress;
        Ok(BTreeMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("step".into(), p.runner.iteration.to_string()),
            ("epoch".into(), p.epoch.to_string()),
            ("loader_epoch".into(), p.loader.epoch.to_string()),
            ("loader_batch".into(), p.loader.batch.to_string()),
            ("d_updates".into(), p.runner.d_updates.to_string()),
            ("g_updates".into(), p.runner.g_updates.to_string()),
            ("rng_seed".into(), p.runner.rng.seed.to_string()),
            ("rng_word_pos".into(), p.runner.rng.word_pos.clone()),
            ("seed".into(), self.seed.to_string()),
            ("arch".into(), self.arch.clone()),
            ("dataset_digest".into(), self.dataset_digest.clone()),
            ("config".into(), serde_json::to_string(&self.config)?),
        ]))
    }

    fn from_strings(m: &BTreeMap<String, String>, path: &Path) -> Result<Meta> {
        let get = |k: &str| m.get(k).with_context(|| format!("{}: checkpoint metadata lacks {k:?}", path.display()));
        let int = |k: &str| -> Result<u64> {
            get(k)?.parse().with_context(|| format!("{}: checkpoint metadata {k:?} is not an integer", path.display()))
        };
        let format = get("format")?;
        ensure!(format == FORMAT, "{}: format {format:?}, expected {FORMAT:?}", path.display());
        Ok(Meta {
            progress: Progress {
                epoch: int("epoch")?,
                loader: Position { epoch: int("loader_epoch")?, batch: int("loader_batch")? },
                runner: runner::Progress {
                    iteration: int("step")?,
                    d_updates: int("d_updates")?,
                    g_updates: int("g_updates")?,
                    rng: RngState { seed: int("rng_seed")?, word_pos: get("rng_word_pos")?.clone() },
                },
            },
            seed: int("seed")?,
            arch: get("arch")?.clone(),
            dataset_digest: get("dataset_digest")?.clone(),
            config: serde_json::from_str(get("config")?)
                .with_context(|| format!("{}: checkpoint config is not valid", path.display()))?,
        })
    }
}

#[derive(Serialize)]
struct TensorEntry<'a> {
    dtype: &'static str,
    shape: &'a [usize],
    data_offsets: [usize; 2],
}

/// Writes `checkpoint` to `path` atomically. Non-finite values are refused: a checkpoint is always resumable.
pub fn write(path: &Path, checkpoint: &Checkpoint) -> Result<()> {
    let mut header = BTreeMap::new();
    header.insert("__metadata__".to_string(), serde_json::to_value(checkpoint.meta.to_strings()?)?);
    let mut offset = 0;
    for (name, (shape, data)) in &checkpoint.tensors {
        ensure!(shape.iter().product::<usize>() == data.len(), "checkpoint tensor {name}: shape {shape:?} mismatch");
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            bail!("checkpoint tensor {name} holds a non-finite value ({} at index {i}): not written", data[i]);
        }
        let end = offset + data.len() * 4;
        header.insert(
            name.clone(),
            serde_json::to_value(TensorEntry { dtype: "F32", shape, data_offsets: [offset, end] })?,
        );
        offset = end;
    }
    let mut json = serde_json::to_vec(&header)?;
    json.resize(json.len().next_multiple_of(8), b' ');
    atomic_write_with(path, |file| {
        let mut out = std::io::BufWriter::new(file);
        out.write_all(&(json.len() as u64).to_le_bytes())?;
        out.write_all(&json)?;
        for (_, data) in checkpoint.tensors.values() {
            for v in data {
                out.write_all(&v.to_le_bytes())?;
            }
        }
        out.flush()?;
        Ok(())
    })
    .with_context(|| format!("cannot write checkpoint {}", path.display()))
}

/// Reads a checkpoint (metadata and every tensor).
pub fn read(path: &Path) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read checkpoint {}", path.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: not a safetensors file: {e:?}", path.display()))?;
    let meta = meta_of(&bytes, path)?;
    let mut tensors = Tensors::new();
    for (name, view) in st.tensors() {
        ensure!(view.dtype() == safetensors::Dtype::F32, "{}: tensor {name} is not F32", path.display());
        let data = view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        tensors.insert(name, (view.shape().to_vec(), data));
    }
    Ok(Checkpoint { meta, tensors })
}

/// Reads only a checkpoint's metadata (the JSON header; the tensor data is not read).
pub fn read_meta(path: &Path) -> Result<Meta> {
    Meta::from_strings(&rundir::read_checkpoint_metadata(path)?, path)
}

fn meta_of(bytes: &[u8], path: &Path) -> Result<Meta> {
    let (_, metadata) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| anyhow::anyhow!("{}: not a safetensors file: {e:?}", path.display()))?;
    let map: BTreeMap<String, String> = metadata.metadata().clone().unwrap_or_default().into_iter().collect();
    Meta::from_strings(&map, path)
}

/// The checkpoint of `run` with the most steps (among those whose metadata parses), if any.
pub fn latest(run: &RunDir) -> Result<Option<(PathBuf, Meta)>> {
    let mut best: Option<(PathBuf, Meta)> = None;
    for path in run.checkpoint_states()? {
        match read_meta(&path) {
            Ok(meta) => {
                let better = best.as_ref().is_none_or(|(p, m)| (meta.progress.step(), &path) > (m.progress.step(), p));
                if better {
                    best = Some((path, meta));
                }
            }
            Err(e) => tracing::warn!("skipping unreadable checkpoint: {e:#}"),
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        let config = crate::train::presets::preset("dcgan64").unwrap();
        Checkpoint {
            meta: Meta {
                progress: Progress {
                    epoch: 3,
                    loader: Position { epoch: 3, batch: 1 },
                    runner: runner::Progress {
                        iteration: 12,
                        d_updates: 12,
                        g_updates: 12,
                        rng: RngState { seed: 9, word_pos: "340282366920938463463374607431768211455".into() },
                    },
                },
                seed: 9,
                arch: "dcgan64".into(),
                dataset_digest: "00ab".into(),
                config,
            },
            tensors: Tensors::from([
                ("b.w".to_string(), (vec![2, 2], vec![1.0, -2.5, 3.25, f32::MIN_POSITIVE])),
                ("a".to_string(), (vec![3], vec![0.0, -0.0, 7.0])),
            ]),
        }
    }

    #[test]
    fn round_trips_bit_exactly_and_reads_with_the_safetensors_crate() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::at(dir.path());
        run.create_dirs().unwrap();
        let path = run.checkpoint_state_path(name(&sample().meta.progress, true));
        assert!(path.ends_with("checkpoints/epoch-0003.safetensors"));
        let c = sample();
        write(&path, &c).unwrap();
        let back = read(&path).unwrap();
        assert_eq!(back.meta, c.meta);
        for (name, (shape, data)) in &c.tensors {
            let (s, d) = &back.tensors[name];
            assert_eq!(s, shape);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(d), bits(data), "{name}");
        }
        assert_eq!(read_meta(&path).unwrap(), c.meta);
        // Deterministic bytes: the same checkpoint written twice is the same file.
        let again = run.checkpoints_dir().join("again.safetensors");
        write(&again, &c).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), std::fs::read(&again).unwrap());
        let (latest_path, meta) = latest(&run).unwrap().unwrap();
        assert_eq!(meta.progress.step(), 12);
        assert!(latest_path.ends_with("epoch-0003.safetensors") || latest_path.ends_with("again.safetensors"));
    }

    #[test]
    fn refuses_non_finite_state() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = sample();
        c.tensors.get_mut("a").unwrap().1[1] = f32::NAN;
        let err = write(&dir.path().join("x.safetensors"), &c).unwrap_err().to_string();
        assert!(err.contains("non-finite"), "{err}");
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "nothing left behind");
    }
}
