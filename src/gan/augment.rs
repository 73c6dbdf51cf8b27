//! Differentiable augmentation (DiffAugment: Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN
//! Training", policy `color,translation,cutout`): every image D sees, real or generated, is randomly recoloured,
//! shifted and partly blanked *inside the step graph*, so G's gradient flows back through the augmentation and D
//! cannot memorise a small training set.
//!
//! The randomness enters as per-step batch inputs `aug_<pass>.<what>` (one set per D application: `real`, `fake`,
//! `gen`), drawn by the runner with [`draw`]; the graph itself is deterministic standard ONNX. In the paper's code
//! (`DiffAugment_pytorch.py`) on images in [-1, 1], per sample:
//! - colour: `x + (r - 0.5)`, then saturation `(x - mean_c) * 2r + mean_c`, then contrast
//!   `(x - mean_chw) * (r + 0.5) + mean_chw`: inputs `brightness` (the offset), `saturation` and `contrast` (the
//!   factors), `f32 [B, 1, 1, 1]`;
//! - translation by up to 1/8 of the side on each axis, zeros shifted in: `R x C` with one-hot shift matrices
//!   `rows [B, 1, S, S]` (`rows[i, i + dy] = 1`) and `cols [B, 1, S, S]` (`cols[j + dx, j] = 1`); a MatMul pair
//!   instead of the paper's gather, since its vector-Jacobian products are MatMuls too;
//! - cutout: one square of half the side zeroed, `x * cutout` with the 0/1 mask `cutout [B, 1, S, S]`.
use anyhow::{bail, Result};
use onnxgrad::{DType, Graph, ValueId};
use rand::rngs::ChaCha8Rng;
use rand::RngExt;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Largest shift as a fraction of the side (the paper's 0.125).
pub const TRANSLATION_RATIO: f64 = 0.125;
/// Cutout square side as a fraction of the image side (the paper's 0.5).
pub const CUTOUT_RATIO: f64 = 0.5;

/// Input suffixes (`aug_<pass>.<suffix>`).
pub const BRIGHTNESS: &str = "brightness";
pub const SATURATION: &str = "saturation";
pub const CONTRAST: &str = "contrast";
pub const ROWS: &str = "rows";
pub const COLS: &str = "cols";
pub const CUTOUT: &str = "cutout";
/// Prefix of every augmentation input.
pub const PREFIX: &str = "aug_";

/// Which transforms run, written as the paper's policy string (`color,translation,cutout`; empty = off).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DiffAugment {
    pub color: bool,
    pub translation: bool,
    pub cutout: bool,
}

impl DiffAugment {
    /// The paper's full policy.
    pub const ALL: DiffAugment = DiffAugment { color: true, translation: true, cutout: true };

    pub fn is_off(&self) -> bool {
        *self == DiffAugment::default()
    }
}

impl fmt::Display for DiffAugment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let on = [(self.color, "color"), (self.translation, "translation"), (self.cutout, "cutout")];
        let names: Vec<&str> = on.iter().filter(|(b, _)| *b).map(|(_, n)| *n).collect();
        f.write_str(&names.join(","))
    }
}

impl FromStr for DiffAugment {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<DiffAugment> {
        let mut policy = DiffAugment::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty() && *p != "none") {
            match part {
                "color" | "colour" => policy.color = true,
                "translation" => policy.translation = true,
                "cutout" => policy.cutout = true,
                _ => bail!(
                    "unknown DiffAugment transform {part:?}: expected a list of color, translation, cutout (or none)"
                ),
            }
        }
        Ok(policy)
    }
}

impl TryFrom<String> for DiffAugment {
    type Error = anyhow::Error;
    fn try_from(s: String) -> Result<DiffAugment> {
        s.parse()
    }
}

impl From<DiffAugment> for String {
    fn from(p: DiffAugment) -> String {
        p.to_string()
    }
}

/// `aug_<pass>.<what>`.
pub fn input_name(pass: &str, what: &str) -> String {
    format!("{PREFIX}{pass}.{what}")
}

/// The largest shift in pixels and the cutout side for images of side `size` (rounded as the paper's code).
fn geometry(size: usize) -> (i64, usize) {
    let shift = (size as f64 * TRANSLATION_RATIO + 0.5) as i64;
    let cut = (size as f64 * CUTOUT_RATIO + 0.5) as usize;
    (shift, cut)
}

/// The inputs `policy` declares for one D application, with their shapes.
pub fn inputs(policy: DiffAugment, pass: &str, batch: usize, size: usize) -> Vec<(String, Vec<usize>)> {
    let scalar = vec![batch, 1, 1, 1];
    let map = vec![batch, 1, size, size];
    let mut out = Vec::new();
    if policy.color {
        for what in [BRIGHTNESS, SATURATION, CONTRAST] {
            out.push((input_name(pass, what), scalar.clone()));
        }
    }
    if policy.translation {
        out.push((input_name(pass, ROWS), map.clone()));
        out.push((input_name(pass, COLS), map.clone()));
    }
    if policy.cutout {
        out.push((input_name(pass, CUTOUT), map));
    }
    out
}

/// Augments `x` (`f32 [B, 3, S, S]`, in [-1, 1]) for the D application `pass`, declaring its inputs.
pub fn apply(g: &mut Graph, policy: DiffAugment, x: ValueId, pass: &str) -> Result<ValueId> {
    if policy.is_off() {
        return Ok(x);
    }
    let shape = g.shape(x).to_vec();
    let (batch, size) = (shape[0], shape[2]);
    let mut inputs = inputs(policy, pass, batch, size).into_iter();
    let mut next = |g: &mut Graph| -> Result<ValueId> {
        let (name, shape) = inputs.next().expect("one input per transform");
        Ok(g.input(&name, DType::F32, &shape)?)
    };
    let mut s = g.scope(&format!("diffaugment_{pass}"));
    let mut x = x;
    if policy.color {
        let brightness = next(&mut s)?;
        x = s.add(x, brightness)?;
        let saturation = next(&mut s)?;
        x = scale_about_mean(&mut s, x, saturation, &[1])?;
        let contrast = next(&mut s)?;
        x = scale_about_mean(&mut s, x, contrast, &[1, 2, 3])?;
    }
    if policy.translation {
        let rows = next(&mut s)?;
        let cols = next(&mut s)?;
        x = s.matmul(rows, x)?;
        x = s.matmul(x, cols)?;
    }
    if policy.cutout {
        let mask = next(&mut s)?;
        x = s.mul(x, mask)?;
    }
    Ok(x)
}

/// `(x - m) * factor + m` with `m` the mean of `x` over `axes` (per sample).
fn scale_about_mean(g: &mut Graph, x: ValueId, factor: ValueId, axes: &[i64]) -> Result<ValueId> {
    let mean = g.reduce_mean(x, axes, true)?;
    let centred = g.sub(x, mean)?;
    let scaled = g.mul(centred, factor)?;
    Ok(g.add(scaled, mean)?)
}

/// Draws one D application's inputs (in [`inputs`]' order and shapes) from the runner's stream.
pub fn draw(policy: DiffAugment, batch: usize, size: usize, rng: &mut ChaCha8Rng) -> Vec<Vec<f32>> {
    let (shift, cut) = geometry(size);
    let mut out = Vec::new();
    if policy.color {
        let mut per_sample = |f: &dyn Fn(f32) -> f32| (0..batch).map(|_| f(rng.random::<f32>())).collect::<Vec<_>>();
        out.push(per_sample(&|r| r - 0.5));
        out.push(per_sample(&|r| r * 2.0));
        out.push(per_sample(&|r| r + 0.5));
    }
    if policy.translation {
        let (mut rows, mut cols) = (vec![0f32; batch * size * size], vec![0f32; batch * size * size]);
        for b in 0..batch {
            let dy = rng.random_range(-shift..=shift);
            let dx = rng.random_range(-shift..=shift);
            let block = b * size * size;
            for i in 0..size {
                // Output row i reads input row i + dy (zero when outside), and output column j input column j + dx.
                if let Some(k) = shifted(i, dy, size) {
                    rows[block + i * size + k] = 1.0;
                }
                if let Some(k) = shifted(i, dx, size) {
                    cols[block + k * size + i] = 1.0;
                }
            }
        }
        out.push(rows);
        out.push(cols);
    }
    if policy.cutout {
        let mut mask = vec![1f32; batch * size * size];
        // Centres as the paper's code: in [0, size + 1 - cut % 2), the square clipped to the image.
        let centres = size + 1 - cut % 2;
        for b in 0..batch {
            let cy = rng.random_range(0..centres) as i64 - (cut / 2) as i64;
            let cx = rng.random_range(0..centres) as i64 - (cut / 2) as i64;
            for i in clip(cy, cut, size) {
                for j in clip(cx, cut, size) {
                    mask[b * size * size + i * size + j] = 0.0;
                }
            }
        }
        out.push(mask);
    }
    out
}

/// `i + d` when it is inside `0..size`.
fn shifted(i: usize, d: i64, size: usize) -> Option<usize> {
    let k = i as i64 + d;
    (0..size as i64).contains(&k).then_some(k as usize)
}

/// `start..start + len` clipped to `0..size`.
fn clip(start: i64, len: usize, size: usize) -> std::ops::Range<usize> {
    let lo = start.clamp(0, size as i64) as usize;
    let hi = (start + len as i64).clamp(0, size as i64) as usize;
    lo..hi
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn policy_strings_round_trip_and_unknown_names_are_refused() {
        let all: DiffAugment = "color,translation,cutout".parse().unwrap();
        assert_eq!(all, DiffAugment::ALL);
        assert_eq!(all.to_string(), "color,translation,cutout");
        assert_eq!("translation".parse::<DiffAugment>().unwrap().to_string(), "translation");
        assert!("none".parse::<DiffAugment>().unwrap().is_off());
        assert!("".parse::<DiffAugment>().unwrap().is_off());
        let err = "color,blur".parse::<DiffAugment>().unwrap_err().to_string();
        assert!(err.contains("blur") && err.contains("cutout"), "{err}");
    }

    #[test]
    fn translation_matrices_shift_and_cutout_blanks_a_clipped_square() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (batch, size) = (16, 8);
        let policy = DiffAugment { color: false, translation: true, cutout: true };
        let draws = draw(policy, batch, size, &mut rng);
        let (rows, cols, mask) = (&draws[0], &draws[1], &draws[2]);
        let (shift, cut) = geometry(size);
        assert_eq!((shift, cut), (1, 4));
        for b in 0..batch {
            let at = |m: &[f32], r: usize, c: usize| m[b * size * size + r * size + c];
            // Each output row reads at most one input row, all with the same offset within the allowed shift.
            let offsets: Vec<i64> = (0..size)
                .filter_map(|i| (0..size).find(|&k| at(rows, i, k) == 1.0).map(|k| k as i64 - i as i64))
                .collect();
            assert!(offsets.len() >= size - 1, "rows of sample {b}");
            assert!(offsets.windows(2).all(|w| w[0] == w[1]) && offsets[0].abs() <= shift);
            let column_offsets: Vec<i64> = (0..size)
                .filter_map(|j| (0..size).find(|&k| at(cols, k, j) == 1.0).map(|k| k as i64 - j as i64))
                .collect();
            assert!(column_offsets.windows(2).all(|w| w[0] == w[1]) && column_offsets[0].abs() <= shift);
            let zeros = (0..size * size).filter(|&p| mask[b * size * size + p] == 0.0).count();
            assert!((4..=cut * cut).contains(&zeros), "sample {b}: {zeros} pixels cut");
        }
    }
}
