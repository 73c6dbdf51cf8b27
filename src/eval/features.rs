//! Inception pool3 features for FID/KID: `fid_inception_v3_pool3.onnx` (the TensorFlow "inception-2015-12-05"
//! network that pytorch-fid uses, see ../shared/models/FID.md) run through ONNX Runtime.
//!
//! Input convention: float32 RGB `[N, 3, 299, 299]` with values 0..255 (the graph applies `(x - 128) / 128`
//! itself); output `pool3` `[N, 2048]`. Images of any size are first resized to 299x299 by [`resize_to_nchw`],
//! which reproduces PyTorch's `F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)` (no
//! antialiasing), the resize pytorch-fid applies. pytorch-fid resizes values in 0..1 and this module values in
//! 0..255; scaling commutes with linear interpolation, so the two agree up to float rounding.
use crate::runtime::{session_from_file, Resolved, SessionOptions};
use anyhow::{anyhow, bail, Result};
use ort::session::Session;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Side of Inception's input.
pub const INPUT_SIDE: usize = 299;
/// Width of the pool3 feature vector.
pub const FEATURE_DIM: usize = 2048;
const INPUT_NAME: &str = "image";
const OUTPUT_NAME: &str = "pool3";

/// Row-major feature vectors (one row per image).
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    pub rows: usize,
    pub dim: usize,
    pub data: Vec<f32>,
}

impl Features {
    pub fn empty(dim: usize) -> Self {
        Self { rows: 0, dim, data: Vec::new() }
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    pub fn push_rows(&mut self, data: &[f32]) {
        debug_assert_eq!(data.len() % self.dim, 0);
        self.data.extend_from_slice(data);
        self.rows += data.len() / self.dim;
    }

    /// The rows at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Features {
        let mut out = Features { rows: 0, dim: self.dim, data: Vec::with_capacity(indices.len() * self.dim) };
        for &i in indices {
            out.push_rows(self.row(i));
        }
        out
    }
}

/// The message when the Inception model is missing: what it is and both ways to point at it.
pub fn missing_model_hint(path: &Path) -> String {
    format!(
        "the FID Inception model {} does not exist.\n  \
         FID and KID need `fid_inception_v3_pool3.onnx` (the pytorch-fid / TensorFlow Inception-v3 pool3 network, \
         87 MB; input `image` [N,3,299,299] 0..255, output `pool3` [N,2048]).\n  \
         fix: set its path in pipeline.yaml\n      models:\n        fid_inception: path/to/fid_inception_v3_pool3.onnx\n    \
         or pass --inception PATH, or get the pinned file: `anime-pipe models fetch fid_inception --from URL_OR_DIR` \
         (looked up in $ANIME_PIPE_MODELS, ~/.cache/anime-pipe/models, then ../shared/models; `anime-pipe models`)",
        path.display()
    )
}

/// A loaded Inception network, counting the images it embedded (so callers and tests can tell cached reference
/// statistics from recomputed ones).
pub struct Inception {
    session: Session,
    path: PathBuf,
    /// blake3 of the model file: part of the reference-statistics cache key.
    pub model_blake3: String,
    pub device: Resolved,
    images_embedded: u64,
    /// Time spent resizing to 299x299 and running the network, since loading.
    pub resize_time: std::time::Duration,
    pub network_time: std::time::Duration,
}

impl Inception {
    pub fn load(path: &Path, options: &SessionOptions) -> Result<Self> {
        if !path.is_file() {
            bail!("{}", missing_model_hint(path));
        }
        let model_blake3 = crate::manifest::file_blake3(path)?;
        let (session, device) = session_from_file(path, options)?;
        let has = |names: Vec<&str>, name: &str| names.contains(&name);
        let inputs: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        let outputs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        if !has(inputs.clone(), INPUT_NAME) || !has(outputs.clone(), OUTPUT_NAME) {
            bail!(
                "{} is not the FID Inception model: expected input {INPUT_NAME:?} and output {OUTPUT_NAME:?}, found \
                 inputs {inputs:?} and outputs {outputs:?}",
                path.display()
            );
        }
        Ok(Self {
            session,
            path: path.to_path_buf(),
            model_blake3,
            device,
            images_embedded: 0,
            resize_time: Default::default(),
            network_time: Default::default(),
        })
    }

    /// How many images went through the network since loading.
    pub fn images_embedded(&self) -> u64 {
        self.images_embedded
    }

    /// pool3 features of `count` RGB8 images of `height` x `width`, packed NHWC in `pixels`.
    pub fn embed(&mut self, pixels: &[u8], count: usize, height: usize, width: usize) -> Result<Features> {
        let image_len = height * width * 3;
        if pixels.len() != count * image_len {
            bail!("embed: {} bytes for {count} images of {width}x{height}", pixels.len());
        }
        let started = std::time::Instant::now();
        let plane = 3 * INPUT_SIDE * INPUT_SIDE;
        let mut input = vec![0f32; count * plane];
        input.par_chunks_mut(plane).zip(pixels.par_chunks(image_len)).for_each(|(dst, src)| {
            resize_to_nchw(src, height, width, INPUT_SIDE, INPUT_SIDE, dst);
        });
        let resized = std::time::Instant::now();
        self.resize_time += resized - started;
        let tensor =
            ort::value::Tensor::from_array(([count, 3, INPUT_SIDE, INPUT_SIDE], input)).map_err(|e| anyhow!("{e}"))?;
        let outputs = self
            .session
            .run(ort::inputs![INPUT_NAME => tensor])
            .map_err(|e| anyhow!("Inception ({}) failed on {count} images: {e}", self.path.display()))?;
        let (shape, values) = outputs[OUTPUT_NAME].try_extract_tensor::<f32>().map_err(|e| anyhow!("{e}"))?;
        if shape.len() != 2 || shape[0] as usize != count || shape[1] as usize != FEATURE_DIM {
            bail!("Inception returned pool3 of shape {shape:?}, expected [{count}, {FEATURE_DIM}]");
        }
        self.images_embedded += count as u64;
        self.network_time += resized.elapsed();
        Ok(Features { rows: count, dim: FEATURE_DIM, data: values.to_vec() })
    }
}

/// For one axis of a bilinear resize from `input` to `output` samples: per output index, the two source indices
/// and the weight of the second, exactly as PyTorch's `upsample_bilinear2d` (align_corners=False) computes them:
/// `src = (dst + 0.5) * input / output - 0.5`, clamped below at 0; `i0 = floor(src)`, `i1 = min(i0 + 1, input - 1)`,
/// `lambda = src - i0`; in f32 like PyTorch's float kernel (scale = input / output as f32).
pub fn bilinear_taps(input: usize, output: usize) -> Vec<(usize, usize, f32)> {
    let scale = input as f32 / output as f32;
    (0..output)
        .map(|dst| {
            let src = (scale * (dst as f32 + 0.5) - 0.5).max(0.0);
            let i0 = (src as usize).min(input - 1);
            let i1 = if i0 < input - 1 { i0 + 1 } else { i0 };
            (i0, i1, src - i0 as f32)
        })
        .collect()
}

/// Resizes one packed RGB8 image (`height` x `width`, HWC) to `out_h` x `out_w` with PyTorch's bilinear
/// interpolation (align_corners=False, see [`bilinear_taps`]) and writes it planar (CHW), as f32 in 0..255.
/// PyTorch interpolates as `h0 * (w0 * p00 + w1 * p01) + h1 * (w0 * p10 + w1 * p11)` with `w0 = 1 - lambda`;
/// the same grouping is used here.
pub fn resize_to_nchw(src: &[u8], height: usize, width: usize, out_h: usize, out_w: usize, dst: &mut [f32]) {
    assert_eq!(src.len(), height * width * 3, "source buffer size");
    assert_eq!(dst.len(), 3 * out_h * out_w, "destination buffer size");
    let ys = bilinear_taps(height, out_h);
    let xs = bilinear_taps(width, out_w);
    let pixel = |y: usize, x: usize, c: usize| f32::from(src[(y * width + x) * 3 + c]);
    for c in 0..3 {
        let plane = &mut dst[c * out_h * out_w..(c + 1) * out_h * out_w];
        for (oy, &(y0, y1, ly)) in ys.iter().enumerate() {
            let (h0, h1) = (1.0 - ly, ly);
            for (ox, &(x0, x1, lx)) in xs.iter().enumerate() {
                let (w0, w1) = (1.0 - lx, lx);
                let top = w0 * pixel(y0, x0, c) + w1 * pixel(y0, x1, c);
                let bottom = w0 * pixel(y1, x0, c) + w1 * pixel(y1, x1, c);
                plane[oy * out_w + ox] = h0 * top + h1 * bottom;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taps_match_pytorch_half_pixel_rule_for_2x_upsampling() {
        // PyTorch: F.interpolate(torch.tensor([[[[0., 10.]]]]), size=(1, 4), mode="bilinear",
        // align_corners=False) == [0, 2.5, 7.5, 10]: src = -0.25 (clamped to 0), 0.25, 0.75, 1.25 (i1 clamped).
        let taps = bilinear_taps(2, 4);
        assert_eq!(taps, vec![(0, 1, 0.0), (0, 1, 0.25), (0, 1, 0.75), (1, 1, 0.25)]);
        let src = [0u8, 0, 0, 10, 10, 10];
        let mut dst = vec![0f32; 3 * 4];
        resize_to_nchw(&src, 1, 2, 1, 4, &mut dst);
        assert_eq!(&dst[..4], &[0.0, 2.5, 7.5, 10.0]);
    }

    #[test]
    fn downsampling_by_two_averages_pixel_pairs_without_antialiasing() {
        // 4 -> 2: src = 0.5 and 2.5, so each output is the mean of a pair (no wider support).
        let src: Vec<u8> = [0u8, 100, 200, 40].iter().flat_map(|&v| [v, v, v]).collect();
        let mut dst = vec![0f32; 3 * 2];
        resize_to_nchw(&src, 1, 4, 1, 2, &mut dst);
        assert_eq!(&dst[..2], &[50.0, 120.0]);
    }

    #[test]
    fn constant_image_stays_constant_and_channels_are_planar() {
        let src: Vec<u8> = (0..5 * 7).flat_map(|_| [10u8, 20, 30]).collect();
        let mut dst = vec![0f32; 3 * 11 * 13];
        resize_to_nchw(&src, 5, 7, 11, 13, &mut dst);
        for (c, v) in [10.0, 20.0, 30.0].iter().enumerate() {
            assert!(dst[c * 143..(c + 1) * 143].iter().all(|x| (x - v).abs() < 1e-4), "channel {c}");
        }
    }

    #[test]
    fn missing_model_error_says_how_to_provide_it() {
        let err = Inception::load(Path::new("/nonexistent/fid.onnx"), &SessionOptions::default()).err().unwrap();
        let text = err.to_string();
        assert!(text.contains("models:") && text.contains("fid_inception:") && text.contains("--inception"), "{text}");
    }
}
