//! `progress.png`: how a run's samples changed, one strip per sampled epoch.
use crate::pixels::write_png;
use crate::rundir::RunDir;
use crate::train::sample::{GRID_BACKGROUND, GRID_COMPRESSION, GRID_PAD, SAMPLE_ROWS};
use anyhow::{Context, Result};

/// At most this many epochs appear in `progress.png` (evenly spaced, first and last always in).
pub const PROGRESS_MAX_ROWS: usize = 16;

/// `progress.png`: the first row of each `samples/epoch-NNNN.png`, oldest at the top; at most
/// [`PROGRESS_MAX_ROWS`] epochs, evenly spaced, always the first and the latest.
pub fn write_progress(dir: &RunDir) -> Result<()> {
    let epochs = dir.epoch_samples()?;
    let chosen = spaced(epochs.len(), PROGRESS_MAX_ROWS);
    let strips: Vec<image::RgbImage> = chosen
        .iter()
        .map(|&i| {
            let grid =
                image::open(&epochs[i].1).with_context(|| format!("cannot read {}", epochs[i].1.display()))?.to_rgb8();
            let cell = (grid.height() - GRID_PAD) / SAMPLE_ROWS as u32;
            Ok(image::imageops::crop_imm(&grid, 0, 0, grid.width(), cell).to_image())
        })
        .collect::<Result<_>>()?;
    let Some(first) = strips.first() else { return Ok(()) };
    let (w, h) = (first.width(), first.height());
    let mut out = image::RgbImage::from_pixel(w, h * strips.len() as u32 + GRID_PAD, image::Rgb(GRID_BACKGROUND));
    for (i, strip) in strips.iter().enumerate() {
        image::imageops::replace(&mut out, strip, 0, i as i64 * i64::from(h));
    }
    write_png(&dir.progress_path(), &out, GRID_COMPRESSION)
}

/// `k` indices evenly spread over `0..n` (all of them when `n <= k`), first and last included.
pub fn spaced(n: usize, k: usize) -> Vec<usize> {
    if n <= k {
        return (0..n).collect();
    }
    let mut out: Vec<usize> = (0..k).map(|i| (i * (n - 1) + (k - 1) / 2) / (k - 1)).collect();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spaced_indices_cover_both_ends() {
        assert_eq!(spaced(3, 16), vec![0, 1, 2]);
        let s = spaced(100, 16);
        assert_eq!((s.len(), s[0], *s.last().unwrap()), (16, 0, 99));
        assert!(s.windows(2).all(|w| w[0] < w[1]));
    }
}
