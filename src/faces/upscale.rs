//! Upscaling small items towards the training size: Lanczos3, or ONNX super-resolution models.
//!
//! ## Models
//! - `waifu2x` (upconv_7 anime, 2x): input RGB 0..1 `[N, 3, H, W]`, output `[N, 3, 2(H - 14), 2(W - 14)]` (valid
//!   convolutions eat 7 px per side), so every input is padded by 7 px per side with replicated edge pixels (at the
//!   image border; inside the image, the neighbouring real pixels) to give exactly 2x.
//! - `realesrgan` (Real-ESRGAN animevideov3, 4x): input RGB 0..1, output `[N, 3, 4H, 4W]`, no border.
//!
//! Outputs are clipped to 0..1 and rounded to 8 bits.
//!
//! ## Tiling
//! Inputs larger than `tile` px on a side are cut into `tile x tile` tiles overlapping by `overlap` px (the last
//! tile of a row/column is aligned to the image edge, so every tile has the same shape and tiles are batched,
//! `batch` per run). Each tile gets its real neighbouring pixels as model border. Tile outputs are blended with
//! linear feathering: a weight that ramps from ~0 to 1 over `factor x overlap` output pixels from every tile edge
//! that lies inside the image (1 at image borders), normalised by the weight sum. For waifu2x (valid convolutions,
//! 7 px receptive radius, fully covered by the border) tiled output equals untiled output up to float rounding; for
//! Real-ESRGAN (zero-padded convolutions) the feathering hides the tile edges.
//!
//! ## Reaching the target
//! [`upscale_to`] makes the shorter side exactly `target`: Lanczos3 resizes directly; a model runs as many passes
//! as needed to reach at least `target` (2x repeatedly for waifu2x; 4x for Real-ESRGAN), then Lanczos3 reduces the
//! result to the exact size.
use crate::faces::load_session;
use crate::named::Named;
use crate::pixels::resize_rgb;
use crate::runtime::{Resolved, SessionOptions};
use anyhow::{anyhow, bail, Result};
use fast_image_resize as fir;
use image::RgbImage;
use ort::session::Session;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Mutex;

/// How items are upscaled (`upscale.method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Lanczos3 resampling (fast, no model).
    #[default]
    Lanczos,
    /// waifu2x upconv_7 anime 2x (models.waifu2x), applied repeatedly.
    Waifu2x,
    /// Real-ESRGAN animevideov3 4x (models.realesrgan).
    Realesrgan,
}

impl crate::named::Named for Method {
    const ALL: &'static [Self] = &[Method::Lanczos, Method::Waifu2x, Method::Realesrgan];
    const WHAT: &'static str = "upscale.method";
    fn name(self) -> &'static str {
        match self {
            Method::Lanczos => "lanczos",
            Method::Waifu2x => "waifu2x",
            Method::Realesrgan => "realesrgan",
        }
    }
    fn help(self) -> &'static str {
        match self {
            Method::Lanczos => "Lanczos3 resampling (fast, no model)",
            Method::Waifu2x => "waifu2x upconv_7 anime 2x (models.waifu2x), applied repeatedly",
            Method::Realesrgan => "Real-ESRGAN animevideov3 4x (models.realesrgan)",
        }
    }
}
crate::impl_named_str!(Method);

impl Method {
    /// (scale factor, border eaten per side) of the model; None for Lanczos.
    pub fn model_geometry(self) -> Option<(u32, u32)> {
        match self {
            Method::Lanczos => None,
            Method::Waifu2x => Some((2, 7)),
            Method::Realesrgan => Some((4, 0)),
        }
    }
}

/// Tile size, overlap (input pixels) and tiles per model run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tiling {
    pub tile: u32,
    pub overlap: u32,
    pub batch: usize,
}

/// A super-resolution model behind a mutex (ORT sessions run with `&mut`).
pub struct SrModel {
    session: Mutex<Session>,
    input_name: String,
    pub method: Method,
    pub factor: u32,
    pub border: u32,
    pub device: Resolved,
}

impl SrModel {
    pub fn load(path: &Path, method: Method, options: &SessionOptions) -> Result<Self> {
        let Some((factor, border)) = method.model_geometry() else {
            bail!("upscale method {} uses no model", method.name());
        };
        let (session, device) = load_session(path, options)?;
        let input_name = session
            .inputs()
            .first()
            .map(|i| i.name().to_string())
            .ok_or_else(|| anyhow!("{} has no inputs", path.display()))?;
        Ok(Self { session: Mutex::new(session), input_name, method, factor, border, device })
    }

    /// `image` upscaled by exactly `factor`, tiled per `tiling`.
    pub fn upscale(&self, image: &RgbImage, tiling: &Tiling) -> Result<RgbImage> {
        let (w, h) = image.dimensions();
        let f = self.factor;
        let (xs, ys) = (tile_spans(w, tiling.tile, tiling.overlap), tile_spans(h, tiling.tile, tiling.overlap));
        let tiles: Vec<(u32, u32)> = ys.iter().flat_map(|&(y0, _)| xs.iter().map(move |&(x0, _)| (x0, y0))).collect();
        let (tw, th) = (xs[0].1, ys[0].1);
        let (ow, oh) = ((w * f) as usize, (h * f) as usize);
        let mut acc = vec![0f32; 3 * ow * oh];
        let mut weight_sum = vec![0f32; ow * oh];
        for chunk in tiles.chunks(tiling.batch.max(1)) {
            let input = self.tile_batch(image, chunk, tw, th);
            let outputs = self.run(input, chunk.len(), tw, th)?;
            let tile_out = (3 * tw * f * th * f) as usize;
            for (k, &(x0, y0)) in chunk.iter().enumerate() {
                let out = &outputs[k * tile_out..(k + 1) * tile_out];
                let wx = feather(x0, tw, w, f, tiling.overlap);
                let wy = feather(y0, th, h, f, tiling.overlap);
                accumulate(&mut acc, &mut weight_sum, (ow, oh), out, (x0 * f, y0 * f), &wx, &wy);
            }
        }
        Ok(to_rgb8(&acc, &weight_sum, ow as u32, oh as u32))
    }

    /// `[n, 3, th + 2b, tw + 2b]` RGB 0..1: each tile with `border` px of context, edge-replicated outside the image.
    fn tile_batch(&self, image: &RgbImage, tiles: &[(u32, u32)], tw: u32, th: u32) -> Vec<f32> {
        let b = self.border as i64;
        let (pw, ph) = (tw as usize + 2 * b as usize, th as usize + 2 * b as usize);
        let (w, h) = (image.width() as i64, image.height() as i64);
        let raw = image.as_raw();
        let plane = pw * ph;
        let mut data = vec![0f32; tiles.len() * 3 * plane];
        for (k, &(x0, y0)) in tiles.iter().enumerate() {
            let base = k * 3 * plane;
            for v in 0..ph {
                let sy = (y0 as i64 + v as i64 - b).clamp(0, h - 1) as usize;
                for u in 0..pw {
                    let sx = (x0 as i64 + u as i64 - b).clamp(0, w - 1) as usize;
                    let px = &raw[(sy * w as usize + sx) * 3..][..3];
                    for c in 0..3 {
                        data[base + c * plane + v * pw + u] = px[c] as f32 / 255.0;
                    }
                }
            }
        }
        data
    }

    fn run(&self, input: Vec<f32>, n: usize, tw: u32, th: u32) -> Result<Vec<f32>> {
        let b = self.border as usize;
        let shape = vec![n, 3, th as usize + 2 * b, tw as usize + 2 * b];
        let tensor = ort::value::Tensor::from_array((shape.clone(), input)).map_err(|e| anyhow!("{e}"))?;
        let mut session = self.session.lock().map_err(|_| anyhow!("the upscaler session panicked earlier"))?;
        let outputs = session
            .run(ort::inputs![self.input_name.as_str() => tensor])
            .map_err(|e| anyhow!("{} upscaler failed on a {shape:?} input: {e}", self.method.name()))?;
        let (_, first) = outputs.iter().next().ok_or_else(|| anyhow!("the upscaler returned no outputs"))?;
        let (out_shape, values) = first.try_extract_tensor::<f32>().map_err(|e| anyhow!("{e}"))?;
        let expected = [n as i64, 3, (th * self.factor) as i64, (tw * self.factor) as i64];
        if out_shape.iter().copied().ne(expected) {
            bail!(
                "{} upscaler: a {shape:?} input gave {out_shape:?}, expected {expected:?} (wrong model for \
                 upscale.method?)",
                self.method.name()
            );
        }
        Ok(values.to_vec())
    }
}

/// (start, length) of tiles covering `len` px: `tile` long, `overlap` px shared between neighbours, the last one
/// aligned to the end. One span of the whole length when it fits in a tile.
pub fn tile_spans(len: u32, tile: u32, overlap: u32) -> Vec<(u32, u32)> {
    if len <= tile {
        return vec![(0, len)];
    }
    let step = tile.saturating_sub(overlap).max(1);
    let mut spans: Vec<(u32, u32)> =
        (0..).map(|i| i * step).take_while(|&s| s + tile < len).map(|s| (s, tile)).collect();
    spans.push((len - tile, tile));
    spans
}

/// Per-output-pixel weights along one axis of a tile starting at `start` (input px) of length `len` in an image of
/// `total` px: ramps of `factor x overlap` output px at edges inside the image, 1 elsewhere.
pub fn feather(start: u32, len: u32, total: u32, factor: u32, overlap: u32) -> Vec<f32> {
    let n = (len * factor) as usize;
    let ramp = (overlap * factor).max(1) as f32;
    let (inner_before, inner_after) = (start > 0, start + len < total);
    (0..n)
        .map(|u| {
            let before = if inner_before { ((u as f32 + 0.5) / ramp).min(1.0) } else { 1.0 };
            let after = if inner_after { ((n - u) as f32 - 0.5) / ramp } else { 1.0 };
            before * after.min(1.0)
        })
        .collect()
}

fn accumulate(
    acc: &mut [f32],
    weight_sum: &mut [f32],
    (ow, oh): (usize, usize),
    tile: &[f32],
    (ox, oy): (u32, u32),
    wx: &[f32],
    wy: &[f32],
) {
    let (tw, th) = (wx.len(), wy.len());
    let (ox, oy) = (ox as usize, oy as usize);
    for (v, &wv) in wy.iter().enumerate() {
        let row = (oy + v) * ow + ox;
        for (u, &wu) in wx.iter().enumerate() {
            let weight = wu * wv;
            weight_sum[row + u] += weight;
            for c in 0..3 {
                acc[c * ow * oh + row + u] += weight * tile[c * tw * th + v * tw + u];
            }
        }
    }
}

fn to_rgb8(acc: &[f32], weight_sum: &[f32], w: u32, h: u32) -> RgbImage {
    let plane = (w * h) as usize;
    let mut out = vec![0u8; plane * 3];
    for (i, &ws) in weight_sum.iter().enumerate() {
        for c in 0..3 {
            let v = (acc[c * plane + i] / ws).clamp(0.0, 1.0);
            out[i * 3 + c] = (v * 255.0).round() as u8;
        }
    }
    RgbImage::from_raw(w, h, out).expect("buffer sized for the image")
}

/// An upscaled item: the image and how many model passes made it.
pub struct Upscaled {
    pub image: RgbImage,
    pub passes: u32,
}

/// `image` resized so its shorter side is exactly `target` (the longer side keeps the aspect ratio, rounded), by
/// `method` (see the module documentation). `model` must be loaded for the model methods.
pub fn upscale_to(image: &RgbImage, target: u32, model: Option<&SrModel>, tiling: &Tiling) -> Result<Upscaled> {
    let (w, h) = image.dimensions();
    let short = w.min(h);
    let (out_w, out_h) = scaled_to_short_side(w, h, target);
    let Some(model) = model else {
        return Ok(Upscaled { image: resize_rgb(image, out_w, out_h, fir::FilterType::Lanczos3), passes: 0 });
    };
    let mut current = image.clone();
    let mut passes = 0;
    let mut reached = short;
    while reached < target {
        current = model.upscale(&current, tiling)?;
        reached *= model.factor;
        passes += 1;
    }
    Ok(Upscaled { image: resize_rgb(&current, out_w, out_h, fir::FilterType::Lanczos3), passes })
}

/// `(w, h)` scaled so that the shorter side becomes `target`; the longer side rounded, at least `target`.
pub fn scaled_to_short_side(w: u32, h: u32, target: u32) -> (u32, u32) {
    let short = w.min(h).max(1);
    let long = ((w.max(h) as f64 * target as f64 / short as f64).round() as u32).max(target);
    if w <= h {
        (target, long)
    } else {
        (long, target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_cover_the_length_with_equal_tiles() {
        assert_eq!(tile_spans(100, 256, 16), vec![(0, 100)]);
        assert_eq!(tile_spans(256, 256, 16), vec![(0, 256)]);
        // 600 px, tile 256, overlap 16 -> steps of 240: 0, 240, then the last aligned to the end (344).
        assert_eq!(tile_spans(600, 256, 16), vec![(0, 256), (240, 256), (344, 256)]);
        for len in [257u32, 300, 497, 1000, 4097] {
            let spans = tile_spans(len, 256, 16);
            assert!(spans.iter().all(|&(_, l)| l == 256));
            assert_eq!(spans[0].0, 0);
            assert_eq!(spans.last().map(|&(s, l)| s + l), Some(len));
            // Neighbours overlap by at least `overlap`.
            assert!(spans.windows(2).all(|p| p[0].0 + p[0].1 >= p[1].0 + 16), "{len}: {spans:?}");
        }
    }

    #[test]
    fn feather_ramps_only_at_inner_edges() {
        let alone = feather(0, 10, 10, 2, 4);
        assert!(alone.iter().all(|&w| w == 1.0));
        // Tile in the middle: ramps of 2 x 4 = 8 output px at both ends.
        let mid = feather(10, 20, 100, 2, 4);
        assert_eq!(mid.len(), 40);
        assert_eq!(mid[0], 0.5 / 8.0);
        assert_eq!(mid[7], 7.5 / 8.0);
        assert_eq!(mid[8], 1.0);
        assert_eq!(mid[39], 0.5 / 8.0);
        // Over an overlap of the same width, a falling and a rising ramp sum to 1.
        let left = feather(0, 20, 36, 1, 4);
        let right = feather(16, 20, 36, 1, 4);
        for x in 16..20usize {
            assert!((left[x] + right[x - 16] - 1.0).abs() < 1e-6, "x = {x}");
        }
    }

    #[test]
    fn blending_normalises_weights_and_clips_to_the_8_bit_range() {
        // A 2x1 output (CHW planes), accumulated from two weighted contributions per pixel.
        let (mut acc, mut weights) = (vec![0f32; 6], vec![0f32; 2]);
        let tile_a = [1.5, 0.5, -0.2, 0.5, 0.25, 0.75];
        let tile_b = [1.5, 0.0, -0.2, 1.0, 0.25, 0.25];
        accumulate(&mut acc, &mut weights, (2, 1), &tile_a, (0, 0), &[1.0, 0.25], &[1.0]);
        accumulate(&mut acc, &mut weights, (2, 1), &tile_b, (0, 0), &[1.0, 0.75], &[1.0]);
        let image = to_rgb8(&acc, &weights, 2, 1);
        // Pixel 0: equal weights, R 1.5 -> 255 (clipped), G -0.2 -> 0 (clipped), B 0.25 -> 64.
        assert_eq!(image.get_pixel(0, 0).0, [255, 0, 64]);
        // Pixel 1: (0.25 a + 0.75 b) / 1: R 0.125 -> 32, G 0.875 -> 223, B 0.375 -> 96.
        assert_eq!(image.get_pixel(1, 0).0, [32, 223, 96]);
    }

    #[test]
    fn target_size_keeps_aspect() {
        assert_eq!(scaled_to_short_side(100, 100, 256), (256, 256));
        assert_eq!(scaled_to_short_side(100, 150, 256), (256, 384));
        assert_eq!(scaled_to_short_side(301, 200, 64), (96, 64));
    }

    #[test]
    fn lanczos_reaches_the_exact_target() {
        let image = RgbImage::from_fn(40, 30, |x, y| image::Rgb([x as u8 * 6, y as u8 * 8, 100]));
        let tiling = Tiling { tile: 256, overlap: 16, batch: 1 };
        let up = upscale_to(&image, 64, None, &tiling).unwrap();
        assert_eq!((up.image.dimensions(), up.passes), ((85, 64), 0));
    }
}
