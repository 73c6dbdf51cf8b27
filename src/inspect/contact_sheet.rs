//! `anime-pipe stats --contact-sheet PATH`: a PNG grid of the face crops, so a person can judge the detector and the
//! crop geometry at a glance.
//!
//! Cells are [`CELL`] px squares (each crop resized with Lanczos3; crops are square), [`COLUMNS`] per row, separated
//! by [`GAP`] px of dark gray, in crop.parquet order (source, path, face rank), at most [`MAX_CROPS`] of them. The
//! detector score is printed in the cell's bottom-left corner (2 decimals, a 3x5 pixel font drawn at 2x, white on a
//! black band). Only accepted face crops (`kind` "face", status "ok") are shown.
use crate::imageio::Limits;
use crate::manifest::columns;
use crate::manifest::Status;
use crate::named::Named;
use crate::pixels::{encode_png, grid, resize_rgb, GridLayout};
use crate::report::Summary;
use crate::workdir::{atomic_write, Workdir};
use anyhow::{bail, Context, Result};
use fast_image_resize as fir;
use image::{Rgb, RgbImage};
use rayon::prelude::*;
use std::path::Path;

pub const CELL: u32 = 96;
pub const COLUMNS: u32 = 16;
pub const GAP: u32 = 2;
pub const MAX_CROPS: usize = 1024;
const BACKGROUND: Rgb<u8> = Rgb([40, 40, 40]);

/// Writes the contact sheet of `workdir`'s crop.parquet to `path` (atomically).
pub fn write(workdir: &Workdir, path: &Path) -> Result<Summary> {
    let mut summary = Summary::start("contact-sheet");
    let crops = accepted_crops(workdir)?;
    if crops.is_empty() {
        bail!("--contact-sheet: crop.parquet has no accepted face crops to show");
    }
    let shown = &crops[..crops.len().min(MAX_CROPS)];
    let limits = Limits { max_file_bytes: 1 << 30, max_pixels: 1 << 30, max_archive_bytes: 1 << 30 };
    let cells: Vec<RgbImage> = shown
        .par_iter()
        .map(|(object, score)| {
            let bytes = crate::cache::read_object(workdir, object)?;
            let decoded = crate::imageio::decode_rgb8(&bytes, &limits)
                .map_err(|e| anyhow::anyhow!("crop object {object} does not decode: {e}"))?;
            let mut cell = resize_rgb(&decoded.image, CELL, CELL, fir::FilterType::Lanczos3);
            draw_label(&mut cell, &format!("{score:.2}"));
            Ok(cell)
        })
        .collect::<Result<_>>()?;
    let sheet = tile(&cells);
    atomic_write(path, &encode_png(&sheet)?).with_context(|| format!("cannot write {}", path.display()))?;
    summary.count("face crops", crops.len() as u64).count("shown", shown.len() as u64);
    summary.fact("contact sheet", format!("{} ({}x{} px)", path.display(), sheet.width(), sheet.height()));
    Ok(summary.finish())
}

/// (object, score) of the accepted face crops, in manifest order.
fn accepted_crops(workdir: &Workdir) -> Result<Vec<(String, f64)>> {
    let df = crate::manifest::read_stage(workdir, "crop")?;
    let (kind, status, object, score) = (
        columns::strings(&df, "kind")?,
        columns::strings(&df, "status")?,
        columns::opt_strings(&df, "object")?,
        columns::opt_f64s(&df, "score")?,
    );
    Ok((0..df.height())
        .filter(|&r| kind[r] == "face" && status[r] == Status::Ok.name())
        .filter_map(|r| Some((object[r].clone()?, score[r].unwrap_or(0.0))))
        .collect())
}

/// Cells laid out row-major on a dark background, at most [`COLUMNS`] per row.
fn tile(cells: &[RgbImage]) -> RgbImage {
    let columns = COLUMNS.min(cells.len() as u32).max(1);
    let rows = (cells.len() as u32).div_ceil(columns);
    let layout = GridLayout { columns, rows, cell: CELL, pad: GAP, background: BACKGROUND.0 };
    grid(&layout, cells.iter().map(|cell| cell.as_raw().as_slice()))
}

/// 3x5 glyphs, one row per byte (bit 2 = left column).
fn glyph(c: char) -> [u8; 5] {
    match c {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        '.' => [0, 0, 0, 0, 2],
        _ => [0; 5],
    }
}

/// Draws `text` at 2x in the bottom-left corner, white on a black band.
fn draw_label(cell: &mut RgbImage, text: &str) {
    const SCALE: u32 = 2;
    let (char_w, band_h) = (4 * SCALE, 7 * SCALE);
    let band_w = (text.chars().count() as u32 * char_w + SCALE).min(cell.width());
    let top = cell.height().saturating_sub(band_h);
    for y in top..cell.height() {
        for x in 0..band_w {
            cell.put_pixel(x, y, Rgb([0, 0, 0]));
        }
    }
    for (i, c) in text.chars().enumerate() {
        for (gy, bits) in glyph(c).iter().enumerate() {
            for gx in 0..3u32 {
                if bits & (4 >> gx) == 0 {
                    continue;
                }
                for dy in 0..SCALE {
                    for dx in 0..SCALE {
                        let x = SCALE + i as u32 * char_w + gx * SCALE + dx;
                        let y = top + SCALE + gy as u32 * SCALE + dy;
                        if x < cell.width() && y < cell.height() {
                            cell.put_pixel(x, y, Rgb([255, 255, 255]));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_places_cells_row_major_with_gaps() {
        let cells: Vec<RgbImage> = (0..20u8).map(|i| RgbImage::from_pixel(CELL, CELL, Rgb([i, 100, 200]))).collect();
        let sheet = tile(&cells);
        // 16 columns, 2 rows.
        assert_eq!(sheet.dimensions(), (16 * CELL + 17 * GAP, 2 * CELL + 3 * GAP));
        assert_eq!(sheet.get_pixel(GAP, GAP).0, [0, 100, 200]);
        assert_eq!(sheet.get_pixel(GAP + 3 * (CELL + GAP), GAP).0, [3, 100, 200]);
        assert_eq!(sheet.get_pixel(GAP, GAP + CELL + GAP).0, [16, 100, 200]);
        assert_eq!(sheet.get_pixel(0, 0), &BACKGROUND);
        // Cells past the last one stay background.
        assert_eq!(sheet.get_pixel(GAP + 5 * (CELL + GAP), GAP + CELL + GAP), &BACKGROUND);
    }

    #[test]
    fn label_draws_white_glyphs_on_black() {
        let mut cell = RgbImage::from_pixel(CELL, CELL, Rgb([128, 128, 128]));
        draw_label(&mut cell, "1");
        let top = CELL - 14;
        // Glyph '1' row 0 is 0b010: its middle column (x = 2 + 2..4) is lit, its left column (x = 2..4) is not.
        assert_eq!(cell.get_pixel(4, top + 2).0, [255; 3]);
        assert_eq!(cell.get_pixel(2, top + 2).0, [0; 3]);
        assert_eq!(cell.get_pixel(50, top + 2).0, [128; 3], "band only as wide as the text");
        assert_eq!(cell.get_pixel(4, top - 1).0, [128; 3]);
    }
}
