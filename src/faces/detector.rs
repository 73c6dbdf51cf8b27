//! Face detectors run through ONNX Runtime: FaceBoxes (SSD-style priors) and YOLOv8/YOLO11-style exports.
//!
//! ## FaceBoxes (`crop.detector: faceboxes`)
//! Input `[1, 3, H, W]` float, **BGR**, raw 0..255 minus the mean (104, 117, 123). The resized image is padded on
//! the right and bottom to multiples of 32 with the mean colour (0 after subtraction): pads there do not move
//! box coordinates, and the feature maps then match the priors exactly. Outputs `loc [1, N, 4]` and
//! `conf [1, N, 2]` (softmaxed, face score = `conf[.., 1]`); boxes are decoded against the priors of
//! [`faceboxes_priors`] with variances (0.1, 0.2). The graph has a fixed batch of 1, so images run one at a time
//! (their sizes differ anyway).
//!
//! ## YOLO (`crop.detector: yolo`)
//! Ultralytics YOLOv8/YOLO11 exports: input `[1, 3, S, S]` RGB 0..1, letterboxed (aspect kept, centred, padded with
//! 114/255 gray; pads `round(d - 0.1)` before and `round(d + 0.1)` after, as ultralytics' `LetterBox`); output
//! `[1, 4 + C, N]` of (cx, cy, w, h) in input pixels and C class scores (score = the best class; a face model has
//! one). A `[1, N, 4 + C]` output is accepted too (the channel axis is the smaller one of at least 5). S is the
//! model's own input size when it declares one, else `crop.yolo_input_size`; scales other than 1 multiply S
//! (rounded to a multiple of 32) and need a model exported with dynamic H, W.
//!
//! ## Scales and the size cap
//! FaceBoxes finds faces from ~100 px up. Each image is first reduced (never enlarged) so that its longer side is at
//! most `crop.max_side` (huge scans would otherwise cost seconds and gigabytes for faces that are large anyway);
//! then the detector runs once per entry of `crop.scales` on that input resized by the scale (2.0 doubles it,
//! catching faces of ~50-100 px). Candidates of all scales, mapped back to source pixels, are merged by one NMS.
//! Resizing is bilinear convolution (antialiased when reducing, like PIL's `BILINEAR`).
use crate::faces::geometry::BoxF;
use crate::faces::load_session;
use crate::faces::nms::{nms, Detection};
use crate::pixels::resize_rgb;
use crate::runtime::{Resolved, SessionOptions};
use anyhow::{anyhow, bail, Context, Result};
use fast_image_resize as fir;
use image::RgbImage;
use ort::session::Session;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Mutex;

/// Which output format the detector model has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    #[default]
    Faceboxes,
    Yolo,
}

impl crate::named::Named for Family {
    const ALL: &'static [Self] = &[Family::Faceboxes, Family::Yolo];
    const WHAT: &'static str = "crop.detector";
    fn name(self) -> &'static str {
        match self {
            Family::Faceboxes => "faceboxes",
            Family::Yolo => "yolo",
        }
    }
}
crate::impl_named_str!(Family);

/// Detector parameters (from `crop:` in pipeline.yaml).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectorParams {
    pub family: Family,
    pub scales: Vec<f32>,
    /// Longer side of the scale-1 input; larger images are reduced to it.
    pub max_side: u32,
    /// YOLO letterbox size when the model does not declare one.
    pub yolo_input_size: u32,
    /// Candidates below this score are discarded before NMS (the stage reports those between it and the
    /// acceptance threshold as `low_score`).
    pub candidate_threshold: f32,
    pub nms_iou: f32,
    /// Best candidates considered by NMS, over all scales.
    pub top_k: usize,
}

/// FaceBoxes feature maps: (stride, anchor sizes).
const FACEBOXES_MAPS: [(u32, &[u32]); 3] = [(32, &[32, 64, 128]), (64, &[256]), (128, &[512])];
const FACEBOXES_MEAN_BGR: [f32; 3] = [104.0, 117.0, 123.0];
const FACEBOXES_VARIANCE: [f32; 2] = [0.1, 0.2];
const YOLO_PAD: u8 = 114;

/// Centre offsets (fractions of a cell) at which an anchor of `size` px is repeated: 32 px 4x4, 64 px 2x2, larger
/// once at the cell centre.
fn densify_offsets(size: u32) -> &'static [f32] {
    match size {
        32 => &[0.0, 0.25, 0.5, 0.75],
        64 => &[0.0, 0.5],
        _ => &[0.5],
    }
}

/// FaceBoxes priors `(cx, cy, w, h)` normalised by (W, H), in the network's output order: feature maps by stride;
/// cells row-major over a `ceil(H/stride) x ceil(W/stride)` map; per cell the anchor sizes in order, each densified
/// row-major over (y offset, x offset).
pub fn faceboxes_priors(h: u32, w: u32) -> Vec<[f32; 4]> {
    let (wf, hf) = (w as f32, h as f32);
    let mut priors = Vec::new();
    for (step, sizes) in FACEBOXES_MAPS {
        let (rows, cols) = (h.div_ceil(step), w.div_ceil(step));
        for i in 0..rows {
            for j in 0..cols {
                for &size in sizes {
                    let offsets = densify_offsets(size);
                    for oy in offsets {
                        for ox in offsets {
                            let cx = (j as f32 + ox) * step as f32 / wf;
                            let cy = (i as f32 + oy) * step as f32 / hf;
                            priors.push([cx, cy, size as f32 / wf, size as f32 / hf]);
                        }
                    }
                }
            }
        }
    }
    priors
}

/// Decodes FaceBoxes outputs for an `h x w` input into boxes in input pixels, keeping scores >= `threshold`.
pub fn decode_faceboxes(loc: &[f32], conf: &[f32], h: u32, w: u32, threshold: f32) -> Result<Vec<(BoxF, f32)>> {
    let priors = faceboxes_priors(h, w);
    if loc.len() != priors.len() * 4 || conf.len() != priors.len() * 2 {
        bail!(
            "FaceBoxes output has {} boxes but a {w}x{h} input has {} priors: is crop.detector right for this model?",
            loc.len() / 4,
            priors.len()
        );
    }
    let (wf, hf) = (w as f32, h as f32);
    let [v0, v1] = FACEBOXES_VARIANCE;
    let mut out = Vec::new();
    for (k, p) in priors.iter().enumerate() {
        let score = conf[k * 2 + 1];
        if score < threshold {
            continue;
        }
        let l = &loc[k * 4..k * 4 + 4];
        let cx = p[0] + l[0] * v0 * p[2];
        let cy = p[1] + l[1] * v0 * p[3];
        let bw = p[2] * (l[2] * v1).exp();
        let bh = p[3] * (l[3] * v1).exp();
        out.push((BoxF::from_center(cx * wf, cy * hf, bw * wf, bh * hf), score));
    }
    Ok(out)
}

/// Decodes a YOLO output of shape `[1, 4 + C, N]` (or `[1, N, 4 + C]`) into boxes in input pixels with their best
/// class score, keeping scores >= `threshold`.
pub fn decode_yolo(output: &[f32], shape: &[i64], threshold: f32) -> Result<Vec<(BoxF, f32)>> {
    let [1, a, b] = shape else {
        bail!("YOLO output has shape {shape:?}; expected [1, 4 + classes, boxes]");
    };
    let (a, b) = (*a as usize, *b as usize);
    // The channel axis (4 + classes, so at least 5) is the short one: a face model has 5 channels and thousands of
    // boxes.
    let channel_major = b < 5 || (a >= 5 && a <= b);
    let (channels, boxes) = if channel_major { (a, b) } else { (b, a) };
    if channels < 5 || output.len() != channels * boxes {
        bail!("YOLO output has shape {shape:?}; expected [1, 4 + classes, boxes] with at least one class");
    }
    let at = |c: usize, n: usize| if channel_major { output[c * boxes + n] } else { output[n * channels + c] };
    let mut out = Vec::new();
    for n in 0..boxes {
        let score = (4..channels).map(|c| at(c, n)).fold(f32::NEG_INFINITY, f32::max);
        if score >= threshold {
            out.push((BoxF::from_center(at(0, n), at(1, n), at(2, n), at(3, n)), score));
        }
    }
    Ok(out)
}

/// Where an image lands inside a square letterbox of side `size`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    pub size: u32,
    /// Resize factor applied to the image.
    pub ratio: f32,
    pub new_w: u32,
    pub new_h: u32,
    pub left: u32,
    pub top: u32,
}

impl Letterbox {
    /// Ultralytics' `LetterBox(center=True, auto=False, scaleup=True)` arithmetic.
    pub fn new(w: u32, h: u32, size: u32) -> Self {
        let ratio = (size as f32 / w as f32).min(size as f32 / h as f32);
        let new_w = ((w as f32 * ratio).round() as u32).clamp(1, size);
        let new_h = ((h as f32 * ratio).round() as u32).clamp(1, size);
        let left = ((size - new_w) as f32 / 2.0 - 0.1).round().max(0.0) as u32;
        let top = ((size - new_h) as f32 / 2.0 - 0.1).round().max(0.0) as u32;
        Self { size, ratio, new_w, new_h, left, top }
    }

    /// A box in letterbox pixels mapped back to source-image pixels.
    pub fn unmap(&self, b: &BoxF) -> BoxF {
        let (l, t, r) = (self.left as f32, self.top as f32, self.ratio);
        BoxF::new((b.x0 - l) / r, (b.y0 - t) / r, (b.x1 - l) / r, (b.y1 - t) / r)
    }
}

/// A loaded detector. The ORT session needs `&mut` to run, so it sits behind a mutex: callers prepare inputs in
/// parallel and take turns on the session (which itself uses `-j` intra-op threads).
pub struct Detector {
    session: Mutex<Session>,
    input_name: String,
    params: DetectorParams,
    /// YOLO: the model's fixed square input size, when it declares one.
    fixed_input: Option<u32>,
    pub device: Resolved,
}

impl Detector {
    pub fn load(model: &Path, params: DetectorParams, options: &SessionOptions) -> Result<Self> {
        let (session, device) = load_session(model, options)?;
        let input = session.inputs().first().ok_or_else(|| anyhow!("{} has no inputs", model.display()))?;
        let input_name = input.name().to_string();
        let dims: Vec<i64> = input.dtype().tensor_shape().map(|s| s.iter().copied().collect()).unwrap_or_default();
        let fixed_input = match dims.as_slice() {
            [_, _, h, w] if *h > 0 && *w > 0 => {
                if h != w {
                    bail!("{}: input is {h}x{w}; only square inputs are supported", model.display());
                }
                Some(*h as u32)
            }
            _ => None,
        };
        if params.family == Family::Yolo && fixed_input.is_some() && params.scales.iter().any(|&s| s != 1.0) {
            bail!(
                "crop.scales = {:?}: {} has a fixed {}x{} input, so only scale 1.0 is possible (export it with \
                 dynamic=True for more scales)",
                params.scales,
                model.display(),
                fixed_input.unwrap_or(0),
                fixed_input.unwrap_or(0)
            );
        }
        Ok(Self { session: Mutex::new(session), input_name, params, fixed_input, device })
    }

    pub fn params(&self) -> &DetectorParams {
        &self.params
    }

    /// Every face candidate scoring at least `candidate_threshold`, over all scales, merged by NMS, in rank order,
    /// in source-image pixels.
    pub fn detect(&self, image: &RgbImage) -> Result<Vec<Detection>> {
        let mut candidates = Vec::new();
        for &scale in &self.params.scales {
            let found = match self.params.family {
                Family::Faceboxes => self.detect_faceboxes(image, scale)?,
                Family::Yolo => self.detect_yolo(image, scale)?,
            };
            candidates.extend(found.into_iter().map(|(bbox, score)| Detection { bbox, score, scale }));
        }
        Ok(nms(candidates, self.params.nms_iou, self.params.top_k))
    }

    /// The detector input size for `scale`: the image reduced to `max_side`, then multiplied by `scale`.
    pub fn input_size(&self, w: u32, h: u32, scale: f32) -> (u32, u32) {
        scaled_input_size(w, h, self.params.max_side, scale)
    }

    fn detect_faceboxes(&self, image: &RgbImage, scale: f32) -> Result<Vec<(BoxF, f32)>> {
        let (w, h) = image.dimensions();
        let (iw, ih) = self.input_size(w, h, scale);
        let resized = resize_rgb(image, iw, ih, fir::FilterType::Bilinear);
        let (ph, pw) = (ih.div_ceil(32) * 32, iw.div_ceil(32) * 32);
        let tensor = faceboxes_tensor(&resized, ph, pw);
        let outputs = self.run(&[1, 3, ph as usize, pw as usize], tensor, &["loc", "conf"])?;
        let boxes = decode_faceboxes(&outputs[0].1, &outputs[1].1, ph, pw, self.params.candidate_threshold)?;
        let (fx, fy) = (w as f32 / iw as f32, h as f32 / ih as f32);
        Ok(boxes.into_iter().map(|(b, s)| (BoxF::new(b.x0 * fx, b.y0 * fy, b.x1 * fx, b.y1 * fy), s)).collect())
    }

    fn detect_yolo(&self, image: &RgbImage, scale: f32) -> Result<Vec<(BoxF, f32)>> {
        let size = match self.fixed_input {
            Some(s) => s,
            None => (((self.params.yolo_input_size as f32 * scale) / 32.0).round() as u32).max(1) * 32,
        };
        let (w, h) = image.dimensions();
        let lb = Letterbox::new(w, h, size);
        let tensor = yolo_tensor(image, &lb);
        let outputs = self.run(&[1, 3, size as usize, size as usize], tensor, &[])?;
        let (shape, data) = &outputs[0];
        let boxes = decode_yolo(data, shape, self.params.candidate_threshold)?;
        Ok(boxes.into_iter().map(|(b, s)| (lb.unmap(&b), s)).collect())
    }

    /// Runs the session on one input; returns the named outputs (or the first when `names` is empty) as
    /// (shape, values).
    fn run(&self, shape: &[usize], data: Vec<f32>, names: &[&str]) -> Result<Vec<(Vec<i64>, Vec<f32>)>> {
        let tensor = ort::value::Tensor::from_array((shape.to_vec(), data)).map_err(|e| anyhow!("{e}"))?;
        let mut session = self.session.lock().map_err(|_| anyhow!("the detector session panicked earlier"))?;
        let outputs = session
            .run(ort::inputs![self.input_name.as_str() => tensor])
            .map_err(|e| anyhow!("face detector failed on a {shape:?} input: {e}"))?;
        let extract = |value: &ort::value::DynValue| -> Result<(Vec<i64>, Vec<f32>)> {
            let (shape, values) = value.try_extract_tensor::<f32>().map_err(|e| anyhow!("{e}"))?;
            Ok((shape.iter().copied().collect(), values.to_vec()))
        };
        if names.is_empty() {
            let (_, first) = outputs.iter().next().context("the detector returned no outputs")?;
            return Ok(vec![extract(&first)?]);
        }
        names
            .iter()
            .map(|n| extract(outputs.get(*n).with_context(|| format!("the detector has no output {n:?}"))?))
            .collect()
    }
}

/// `w x h` reduced (never enlarged) so the longer side is at most `max_side`, then multiplied by `scale`; each side
/// at least 1 px.
pub fn scaled_input_size(w: u32, h: u32, max_side: u32, scale: f32) -> (u32, u32) {
    let cap = (max_side as f32 / w.max(h) as f32).min(1.0);
    let f = cap * scale;
    (((w as f32 * f).round() as u32).max(1), ((h as f32 * f).round() as u32).max(1))
}

/// CHW BGR minus mean, padded with zeros (the mean colour) to `ph x pw`.
fn faceboxes_tensor(image: &RgbImage, ph: u32, pw: u32) -> Vec<f32> {
    let (w, h) = image.dimensions();
    let plane = (ph * pw) as usize;
    let mut data = vec![0f32; 3 * plane];
    for (y, row) in image.as_raw().chunks_exact(w as usize * 3).enumerate().take(h as usize) {
        for (x, px) in row.chunks_exact(3).enumerate() {
            let at = y * pw as usize + x;
            // BGR order: channel 0 is blue.
            data[at] = px[2] as f32 - FACEBOXES_MEAN_BGR[0];
            data[plane + at] = px[1] as f32 - FACEBOXES_MEAN_BGR[1];
            data[2 * plane + at] = px[0] as f32 - FACEBOXES_MEAN_BGR[2];
        }
    }
    data
}

/// CHW RGB 0..1 of the letterboxed image.
fn yolo_tensor(image: &RgbImage, lb: &Letterbox) -> Vec<f32> {
    let resized = resize_rgb(image, lb.new_w, lb.new_h, fir::FilterType::Bilinear);
    let s = lb.size as usize;
    let plane = s * s;
    let mut data = vec![YOLO_PAD as f32 / 255.0; 3 * plane];
    for (y, row) in resized.as_raw().chunks_exact(lb.new_w as usize * 3).enumerate() {
        for (x, px) in row.chunks_exact(3).enumerate() {
            let at = (y + lb.top as usize) * s + x + lb.left as usize;
            for c in 0..3 {
                data[c * plane + at] = px[c] as f32 / 255.0;
            }
        }
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Prior counts derived by hand from the README's description: per stride-32 cell 16 + 4 + 1 = 21 priors, per
    /// stride-64 and stride-128 cell 1.
    #[test]
    fn faceboxes_prior_counts_per_feature_map() {
        // 1024 x 1024: 32x32 cells x 21 + 16x16 + 8x8.
        assert_eq!(faceboxes_priors(1024, 1024).len(), 32 * 32 * 21 + 16 * 16 + 8 * 8);
        // 720 x 1280 (H x W): ceil(720/32) = 23 rows, 40 cols; ceil(720/64) = 12 x 20; ceil(720/128) = 6 x 10.
        assert_eq!(faceboxes_priors(720, 1280).len(), 23 * 40 * 21 + 12 * 20 + 6 * 10);
    }

    #[test]
    fn faceboxes_prior_order_and_values() {
        let (h, w) = (64u32, 128u32);
        let p = faceboxes_priors(h, w);
        let norm = |cx: f32, cy: f32, s: f32| [cx / w as f32, cy / h as f32, s / w as f32, s / h as f32];
        // First cell (0, 0): 32 px anchors at offsets 0, 8, 16, 24 px, row-major over (y, x).
        assert_eq!(p[0], norm(0.0, 0.0, 32.0));
        assert_eq!(p[1], norm(8.0, 0.0, 32.0));
        assert_eq!(p[4], norm(0.0, 8.0, 32.0));
        assert_eq!(p[15], norm(24.0, 24.0, 32.0));
        // Then 64 px at offsets 0, 16 px; then 128 px at the centre.
        assert_eq!(p[16], norm(0.0, 0.0, 64.0));
        assert_eq!(p[17], norm(16.0, 0.0, 64.0));
        assert_eq!(p[19], norm(16.0, 16.0, 64.0));
        assert_eq!(p[20], norm(16.0, 16.0, 128.0));
        // Second cell is (row 0, col 1): x shifted by one stride.
        assert_eq!(p[21], norm(32.0, 0.0, 32.0));
        // Stride-32 map has 2 x 4 cells; the stride-64 map (1 x 2) follows, then stride 128 (1 x 1).
        let s32 = 2 * 4 * 21;
        assert_eq!(p[s32], norm(32.0, 32.0, 256.0));
        assert_eq!(p[s32 + 1], norm(96.0, 32.0, 256.0));
        assert_eq!(p[s32 + 2], norm(64.0, 64.0, 512.0));
        assert_eq!(p.len(), s32 + 3);
    }

    #[test]
    fn faceboxes_decode_applies_variances() {
        let (h, w) = (32u32, 32u32);
        let n = faceboxes_priors(h, w).len();
        let mut loc = vec![0f32; n * 4];
        let mut conf = vec![0f32; n * 2];
        // Prior 20 is the 128 px anchor at the cell centre (16, 16). Move it by (+1, -1) x 0.1 x 128 px and scale
        // its size by exp(0.2 * ln 2 / 0.2) = 2 in width.
        loc[20 * 4..20 * 4 + 4].copy_from_slice(&[1.0, -1.0, 2f32.ln() / 0.2, 0.0]);
        conf[20 * 2 + 1] = 0.9;
        conf[3 * 2 + 1] = 0.2;
        let boxes = decode_faceboxes(&loc, &conf, h, w, 0.5).unwrap();
        assert_eq!(boxes.len(), 1);
        let (b, s) = boxes[0];
        assert_eq!(s, 0.9);
        let (cx, cy) = (16.0 + 12.8, 16.0 - 12.8);
        let expected = BoxF::from_center(cx, cy, 256.0, 128.0);
        for (got, want) in [(b.x0, expected.x0), (b.y0, expected.y0), (b.x1, expected.x1), (b.y1, expected.y1)] {
            assert!((got - want).abs() < 1e-3, "{b:?} vs {expected:?}");
        }
        assert!(decode_faceboxes(&loc[4..], &conf, h, w, 0.5).is_err(), "count mismatch is an error");
    }

    #[test]
    fn yolo_decode_reads_both_layouts() {
        // Two real boxes among eight (the rest score 0), two classes: channel-major [1, 6, 8].
        let (n, c) = (8usize, 6usize);
        let mut channel_major = vec![0f32; c * n];
        for (k, values) in [(1usize, [10.0, 20.0, 4.0, 6.0, 0.1, 0.7]), (5, [50.0, 60.0, 8.0, 10.0, 0.95, 0.2])] {
            for (ch, v) in values.into_iter().enumerate() {
                channel_major[ch * n + k] = v;
            }
        }
        let boxes = decode_yolo(&channel_major, &[1, 6, 8], 0.5).unwrap();
        assert_eq!(boxes, vec![(BoxF::new(8.0, 17.0, 12.0, 23.0), 0.7), (BoxF::new(46.0, 55.0, 54.0, 65.0), 0.95)]);
        // The same data box-major [1, 8, 6].
        let box_major: Vec<f32> =
            (0..n).flat_map(|k| (0..c).map(move |ch| (ch, k))).map(|(ch, k)| channel_major[ch * n + k]).collect();
        assert_eq!(decode_yolo(&box_major, &[1, 8, 6], 0.5).unwrap(), boxes);
        assert!(decode_yolo(&channel_major, &[6, 8], 0.5).is_err());
        assert!(decode_yolo(&channel_major[..12], &[1, 4, 3], 0.5).is_err(), "no class channel on either axis");
        assert!(decode_yolo(&channel_major[..40], &[1, 6, 8], 0.5).is_err(), "size mismatch");
    }

    #[test]
    fn letterbox_matches_ultralytics_arithmetic() {
        // 320 x 160 into 640: ratio 2, image 640 x 320, 160 px bands above and below.
        let lb = Letterbox::new(320, 160, 640);
        assert_eq!((lb.ratio, lb.new_w, lb.new_h, lb.left, lb.top), (2.0, 640, 320, 0, 160));
        assert_eq!(lb.unmap(&BoxF::new(20.0, 200.0, 100.0, 280.0)), BoxF::new(10.0, 20.0, 50.0, 60.0));
        // Odd padding: 100 x 61 into 64 -> ratio 0.64, 64 x 39, 25 px to split: 12 above, 13 below.
        let lb = Letterbox::new(100, 61, 64);
        assert_eq!((lb.new_w, lb.new_h, lb.left, lb.top), (64, 39, 0, 12));
    }

    #[test]
    fn input_size_caps_then_scales() {
        assert_eq!(scaled_input_size(4096, 2048, 2048, 1.0), (2048, 1024));
        assert_eq!(scaled_input_size(4096, 2048, 2048, 2.0), (4096, 2048));
        assert_eq!(scaled_input_size(640, 480, 2048, 1.0), (640, 480), "never enlarged at scale 1");
        assert_eq!(scaled_input_size(640, 480, 2048, 2.0), (1280, 960));
    }
}
