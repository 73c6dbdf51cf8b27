//! Running an exported generator, and the seeded latents it is fed: the one implementation behind
//! `anime-pipe sample`, the trainer's sample grids and `anime-pipe eval`.
//!
//! **Models.** Anime-pipe's exports (`runs/<name>/generator.onnx`, `checkpoints/*.generator.onnx`; built by
//! [`crate::gan::steps::generator_inference`]) take `z` f32 `[n, nz]` and output `image_u8` u8 `[n, S, S, 3]`
//! with a static batch of [`EXPORT_BATCH`]. Other generators work too, such as a PyTorch export: one float input
//! of latents, `[B, nz]` or `[B, nz, 1, 1]` (named `z`, or the model's only input), B fixed or dynamic; output
//! `image_u8` when present (used as is), else the first float output `[B, 3, S, S]` in [-1, 1], mapped to u8 with
//! `round((x + 1) * 127.5)` clamped to 0..255, the same rounding as `image_u8`. Batch norm runs in evaluation
//! mode, so every image depends on its own latent only and a short last batch can be zero-padded.
//!
//! **Latents** ([`LatentStream`], [`latents`]): standard normal f32 drawn in row-major order from
//! `ChaCha8Rng::seed_from_u64(seed)` with `rand_distr::StandardNormal`. Sample i's latent is the i-th block of
//! `nz` draws, so it depends only on (seed, i): not on the batch size, and the same seed gives every checkpoint
//! the same latents, which makes their sample grids comparable cell by cell.
use crate::runtime::{session_from_bytes, session_from_file, SessionOptions};
use anyhow::{anyhow, bail, ensure, Context, Result};
use ort::session::Session;
use ort::value::{TensorElementType, ValueType};
use rand::rngs::ChaCha8Rng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use std::path::Path;

/// Batch size of the exported generator graphs.
pub const EXPORT_BATCH: usize = 64;
const U8_OUTPUT: &str = "image_u8";
const PREFERRED_INPUT: &str = "z";

/// A generator model in an ONNX Runtime session.
pub struct Generator {
    session: Session,
    input: String,
    /// Latent shape without the batch axis (`[nz]` or `[nz, 1, 1]`).
    latent_shape: Vec<usize>,
    /// The model's batch size when its graph fixes one.
    fixed_batch: Option<usize>,
    output: Output,
    /// The image side the graph declares (static shapes), if it does.
    declared_side: Option<u32>,
    name: String,
}

enum Output {
    U8Nhwc(String),
    F32Nchw(String),
}

impl Generator {
    pub fn load(path: &Path, options: &SessionOptions) -> Result<Self> {
        let (session, _) = session_from_file(path, options)?;
        Self::from_session(session, path.display().to_string())
    }

    /// A generator from an in-memory model (`name` labels errors).
    pub fn from_bytes(model: &[u8], options: &SessionOptions, name: &str) -> Result<Self> {
        let (session, _) = session_from_bytes(model, options)?;
        Self::from_session(session, name.to_string())
    }

    fn from_session(session: Session, name: String) -> Result<Self> {
        let inputs = session.inputs();
        let input = match inputs.iter().find(|i| i.name() == PREFERRED_INPUT) {
            Some(i) => i,
            None if inputs.len() == 1 => &inputs[0],
            None => bail!("{name}: expected a latent input named {PREFERRED_INPUT:?} (or a single input)"),
        };
        let dims: Vec<i64> = input.dtype().tensor_shape().map(|s| s.iter().copied().collect()).unwrap_or_default();
        let latent_shape = match dims.as_slice() {
            [_, nz] if *nz > 0 => vec![*nz as usize],
            [_, nz, 1, 1] if *nz > 0 => vec![*nz as usize, 1, 1],
            _ => bail!("{name}: latent input {:?} has shape {dims:?}; expected [B, nz] or [B, nz, 1, 1]", input.name()),
        };
        let fixed_batch = (dims[0] > 0).then_some(dims[0] as usize);
        let output = pick_output(&session).with_context(|| format!("{name}: no usable image output"))?;
        let declared_side = declared_side(&session, &output);
        let input = input.name().to_string();
        Ok(Self { session, input, latent_shape, fixed_batch, output, declared_side, name })
    }

    /// The output side the graph declares, when its shapes are static (known before running it).
    pub fn declared_side(&self) -> Option<u32> {
        self.declared_side
    }

    /// Values per latent (nz).
    pub fn latent_len(&self) -> usize {
        self.latent_shape.iter().product()
    }

    /// The batch size to run: the model's fixed one, else `preferred`.
    pub fn batch_size(&self, preferred: usize) -> usize {
        self.fixed_batch.unwrap_or(preferred.max(1))
    }

    /// Images for any number of latents (`z.len() / latent_len`), run in batches of [`Self::batch_size`]
    /// (`preferred`), as packed RGB8 `[count, S, S, 3]`, and S.
    pub fn generate_all(&mut self, z: &[f32], preferred: usize) -> Result<(Vec<u8>, u32)> {
        let nz = self.latent_len();
        ensure!(z.len().is_multiple_of(nz), "{} latent values are not a multiple of nz = {nz}", z.len());
        let mut out = Vec::new();
        let mut side = None;
        for chunk in z.chunks(self.batch_size(preferred) * nz) {
            let (pixels, s) = self.generate(chunk, chunk.len() / nz)?;
            ensure!(side.is_none_or(|old| old == s), "{}: output size changed from {side:?} to {s}", self.name);
            side = Some(s);
            out.extend_from_slice(&pixels);
        }
        Ok((out, side.unwrap_or(0)))
    }

    /// Images for one batch of latents (`count` x `latent_len`), as packed RGB8 `[count, S, S, 3]`, and S. With a
    /// fixed-batch model, `count` must not exceed its batch size; missing rows are padded with zeros and dropped.
    pub fn generate(&mut self, latents: &[f32], count: usize) -> Result<(Vec<u8>, u32)> {
        let nz = self.latent_len();
        assert_eq!(latents.len(), count * nz, "latent buffer size");
        let batch = self.fixed_batch.unwrap_or(count);
        if count > batch {
            bail!("{}: {count} latents for a model with a fixed batch of {batch}", self.name);
        }
        let mut input = latents.to_vec();
        input.resize(batch * nz, 0.0);
        let mut shape = vec![batch];
        shape.extend(&self.latent_shape);
        let tensor = ort::value::Tensor::from_array((shape, input)).map_err(|e| anyhow!("{e}"))?;
        let outputs = self
            .session
            .run(ort::inputs![self.input.as_str() => tensor])
            .map_err(|e| anyhow!("generator {} failed: {e}", self.name))?;
        let (pixels, side) = match &self.output {
            Output::U8Nhwc(name) => {
                let (shape, values) = outputs[name.as_str()].try_extract_tensor::<u8>().map_err(|e| anyhow!("{e}"))?;
                let side = square_side(&shape[..], batch, 3, 1).with_context(|| self.name.clone())?;
                (values.to_vec(), side)
            }
            Output::F32Nchw(name) => {
                let (shape, values) = outputs[name.as_str()].try_extract_tensor::<f32>().map_err(|e| anyhow!("{e}"))?;
                let side = square_side(&shape[..], batch, 1, 2).with_context(|| self.name.clone())?;
                (nchw_unit_to_nhwc_u8(values, batch, side as usize), side)
            }
        };
        let image_len = (side * side * 3) as usize;
        Ok((pixels[..count * image_len].to_vec(), side))
    }
}

/// `image_u8` if the model has it, else its first float output.
fn pick_output(session: &Session) -> Result<Output> {
    let outputs = session.outputs();
    if outputs.iter().any(|o| o.name() == U8_OUTPUT) {
        return Ok(Output::U8Nhwc(U8_OUTPUT.to_string()));
    }
    outputs
        .iter()
        .find(|o| matches!(o.dtype(), ValueType::Tensor { ty: TensorElementType::Float32, .. }))
        .map(|o| Output::F32Nchw(o.name().to_string()))
        .ok_or_else(|| anyhow!("expected an output {U8_OUTPUT:?} (u8 NHWC) or a float32 NCHW image output"))
}

fn declared_side(session: &Session, output: &Output) -> Option<u32> {
    let (name, first_spatial) = match output {
        Output::U8Nhwc(name) => (name, 1),
        Output::F32Nchw(name) => (name, 2),
    };
    let outlet = session.outputs().iter().find(|o| o.name() == name)?;
    let dims: Vec<i64> = outlet.dtype().tensor_shape()?.iter().copied().collect();
    let (h, w) = (*dims.get(first_spatial)?, *dims.get(first_spatial + 1)?);
    (h > 0 && h == w).then_some(h as u32)
}

/// S of an image tensor shaped `[batch, S, S, 3]` (`c_axis` 3, `first_spatial` 1) or `[batch, 3, S, S]` (1, 2).
fn square_side(shape: &[i64], batch: usize, c_axis: usize, first_spatial: usize) -> Result<u32> {
    let ok = shape.len() == 4
        && shape[0] as usize == batch
        && shape[c_axis] == 3
        && shape[first_spatial] == shape[first_spatial + 1]
        && shape[first_spatial] > 0;
    if !ok {
        bail!("generator output has shape {shape:?}; expected square RGB images for a batch of {batch}");
    }
    Ok(shape[first_spatial] as u32)
}

/// `[n, 3, s, s]` floats in [-1, 1] -> `[n, s, s, 3]` u8 by `round((x + 1) * 127.5)`, clamped.
pub fn nchw_unit_to_nhwc_u8(values: &[f32], n: usize, s: usize) -> Vec<u8> {
    let plane = s * s;
    let mut out = vec![0u8; n * plane * 3];
    for (img, dst) in values.chunks_exact(3 * plane).zip(out.chunks_exact_mut(3 * plane)) {
        for p in 0..plane {
            for c in 0..3 {
                let v = ((img[c * plane + p] + 1.0) * 127.5 + 0.5).floor();
                dst[p * 3 + c] = v.clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

/// The latent stream for one seed, read forward in blocks.
pub struct LatentStream {
    rng: ChaCha8Rng,
    nz: usize,
}

impl LatentStream {
    pub fn new(seed: u64, nz: usize) -> Self {
        Self { rng: ChaCha8Rng::seed_from_u64(seed), nz }
    }

    /// The next `count` latents, row-major.
    pub fn next_block(&mut self, count: usize) -> Vec<f32> {
        (0..count * self.nz).map(|_| StandardNormal.sample(&mut self.rng)).collect()
    }
}

/// The first `count` latents of `seed`'s stream.
pub fn latents(seed: u64, count: usize, nz: usize) -> Vec<f32> {
    LatentStream::new(seed, nz).next_block(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latents_do_not_depend_on_block_size() {
        let mut s = LatentStream::new(5, 3);
        let mut blocks = s.next_block(2);
        blocks.extend(s.next_block(3));
        assert_eq!(blocks, latents(5, 5, 3));
        assert_ne!(blocks[..3], latents(6, 1, 3)[..]);
    }

    #[test]
    fn latents_keep_their_values() {
        // Drawn before `sample` and `eval` shared this stream (both gave these bits): saved latents, sample grids
        // and eval.parquet rows stay comparable across versions.
        let bits: Vec<u32> = latents(7, 3, 4).iter().map(|x| x.to_bits()).collect();
        let expected = [
            3209068230, 3216053239, 1063502907, 1052259574, 1050254024, 3206964611, 3213921338, 1066041482, 3196722649,
            1070091508, 3213011171, 3196241332,
        ];
        assert_eq!(bits, expected);
    }

    #[test]
    fn latents_look_standard_normal() {
        let z = latents(1, 1000, 10);
        let mean = z.iter().sum::<f32>() / z.len() as f32;
        let var = z.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / z.len() as f32;
        assert!(mean.abs() < 0.05 && (var - 1.0).abs() < 0.05, "mean {mean} var {var}");
    }

    #[test]
    fn image_shapes_give_their_side() {
        assert_eq!(square_side(&[8, 64, 64, 3], 8, 3, 1).unwrap(), 64);
        assert_eq!(square_side(&[8, 3, 32, 32], 8, 1, 2).unwrap(), 32);
        assert!(square_side(&[8, 3, 32, 16], 8, 1, 2).is_err());
        assert!(square_side(&[4, 3, 32, 32], 8, 1, 2).is_err());
        assert!(square_side(&[8, 64, 64, 3], 8, 1, 2).is_err());
    }

    #[test]
    fn unit_range_maps_to_bytes_like_image_u8() {
        // One 2x2 image, NCHW: channel 0 = [-1, 1, 0, 2], channel 1 = [-3, 0.5, 0, 0], channel 2 = 0.
        // round((x + 1) * 127.5): -1 -> 0, 1 -> 255, 0 -> 128 (127.5 rounds up), 0.5 -> 191; clamped outside.
        let v = [-1.0f32, 1.0, 0.0, 2.0, -3.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let out = nchw_unit_to_nhwc_u8(&v, 1, 2);
        assert_eq!(out, vec![0, 0, 128, 255, 191, 128, 128, 128, 128, 255, 128, 128]);
    }
}
