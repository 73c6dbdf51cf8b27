//! Pixels in, pixels out: resizing, PNG encoding and image grids, for every module that makes pictures (crops,
//! upscales, contact sheets, sample grids, training plots, reports).
use crate::workdir::atomic_write;
use anyhow::{anyhow, Context, Result};
use fast_image_resize as fir;
use image::RgbImage;
use std::path::Path;

/// Resizes an RGB8 image with a convolution filter (antialiased when reducing); same size returns a copy.
pub fn resize_rgb(image: &RgbImage, w: u32, h: u32, filter: fir::FilterType) -> RgbImage {
    if image.dimensions() == (w, h) {
        return image.clone();
    }
    let src = fir::images::ImageRef::new(image.width(), image.height(), image.as_raw(), fir::PixelType::U8x3)
        .expect("RgbImage buffer matches its dimensions");
    let mut dst = fir::images::Image::new(w, h, fir::PixelType::U8x3);
    let options = fir::ResizeOptions::new().resize_alg(fir::ResizeAlg::Convolution(filter));
    fir::Resizer::new().resize(&src, &mut dst, &options).expect("same pixel type, non-empty sizes");
    RgbImage::from_raw(w, h, dst.into_vec()).expect("resizer output matches its dimensions")
}

/// Nearest-neighbour enlargement by an integer factor (for viewing small samples).
pub fn enlarge(image: &RgbImage, factor: u32) -> RgbImage {
    if factor <= 1 {
        return image.clone();
    }
    RgbImage::from_fn(image.width() * factor, image.height() * factor, |x, y| *image.get_pixel(x / factor, y / factor))
}

/// The zlib effort of a PNG. Every level gives the same pixels; each keeps the bytes its outputs always had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PngCompression {
    /// Files written often during training and sampling (sample grids, progress.png, loss.png).
    Fast,
    /// Content-addressed cache objects (crops, upscales) and contact sheets: see [`encode_png`].
    Default,
    /// Grids embedded in report.html, where generated noise compresses poorly.
    Best,
}

/// PNG bytes with fixed encoder settings (default zlib level, adaptive filter, no metadata or timestamps), so the
/// same pixels always give the same bytes and therefore the same cache object.
pub fn encode_png(image: &RgbImage) -> Result<Vec<u8>> {
    encode_png_with(image, PngCompression::Default)
}

/// PNG bytes at a compression level (adaptive filter, no metadata or timestamps: deterministic bytes).
pub fn encode_png_with(image: &RgbImage, compression: PngCompression) -> Result<Vec<u8>> {
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    use image::ImageEncoder;
    let level = match compression {
        PngCompression::Fast => CompressionType::Fast,
        PngCompression::Default => CompressionType::Default,
        PngCompression::Best => CompressionType::Best,
    };
    let mut bytes = Vec::new();
    PngEncoder::new_with_quality(&mut bytes, level, FilterType::Adaptive)
        .write_image(image.as_raw(), image.width(), image.height(), image::ExtendedColorType::Rgb8)
        .map_err(|e| anyhow!("cannot encode a {}x{} PNG: {e}", image.width(), image.height()))?;
    Ok(bytes)
}

/// Writes `image` as a PNG, atomically.
pub fn write_png(path: &Path, image: &RgbImage, compression: PngCompression) -> Result<()> {
    atomic_write(path, &encode_png_with(image, compression)?)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Where the cells of a grid go: `columns` x `rows` squares of `cell` px, separated and framed by `pad` px of
/// `background`; a C x R grid is `C (cell + pad) + pad` by `R (cell + pad) + pad` pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GridLayout {
    pub columns: u32,
    pub rows: u32,
    pub cell: u32,
    pub pad: u32,
    pub background: [u8; 3],
}

impl GridLayout {
    /// A near-square grid for `count` cells: ceil(sqrt(count)) columns, as many rows as needed (at least 1 x 1).
    pub fn near_square(count: usize, cell: u32, pad: u32, background: [u8; 3]) -> GridLayout {
        let count = count.max(1) as u32;
        let columns = (f64::from(count)).sqrt().ceil() as u32;
        GridLayout { columns, rows: count.div_ceil(columns), cell, pad, background }
    }

    pub fn dimensions(&self) -> (u32, u32) {
        let span = |n: u32| n * (self.cell + self.pad) + self.pad;
        (span(self.columns), span(self.rows))
    }

    /// Top-left pixel of cell `index` (row by row).
    pub fn origin(&self, index: u32) -> (u32, u32) {
        let step = self.cell + self.pad;
        ((index % self.columns) * step + self.pad, (index / self.columns) * step + self.pad)
    }
}

/// Draws `cells` (each `cell` x `cell` packed RGB8) row by row; cells past the grid's end are dropped, and cells
/// not given stay background.
pub fn grid<'a>(layout: &GridLayout, cells: impl IntoIterator<Item = &'a [u8]>) -> RgbImage {
    let (w, h) = layout.dimensions();
    let mut out = RgbImage::from_pixel(w, h, image::Rgb(layout.background));
    let row_len = layout.cell as usize * 3;
    let capacity = (layout.columns * layout.rows) as usize;
    for (i, pixels) in cells.into_iter().take(capacity).enumerate() {
        assert_eq!(pixels.len(), row_len * layout.cell as usize, "grid cell size");
        let (x0, y0) = layout.origin(i as u32);
        for (y, src) in pixels.chunks_exact(row_len).enumerate() {
            let start = ((y0 as usize + y) * w as usize + x0 as usize) * 3;
            out.as_mut()[start..start + row_len].copy_from_slice(src);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_places_cells_row_by_row_with_padding() {
        let layout = GridLayout { columns: 2, rows: 2, cell: 2, pad: 3, background: [7, 8, 9] };
        let cells: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i * 100; 12]).collect();
        let g = grid(&layout, cells.iter().map(Vec::as_slice));
        assert_eq!(g.dimensions(), (2 * 5 + 3, 2 * 5 + 3));
        assert_eq!(g.get_pixel(3, 3).0, [0; 3]);
        assert_eq!(g.get_pixel(4, 4).0, [0; 3]);
        assert_eq!(g.get_pixel(8, 3).0, [100; 3]);
        assert_eq!(g.get_pixel(3, 9).0, [200; 3]);
        assert_eq!(g.get_pixel(0, 0).0, [7, 8, 9]);
        assert_eq!(g.get_pixel(5, 3).0, [7, 8, 9], "padding between cells");
        assert_eq!(g.get_pixel(8, 8).0, [7, 8, 9], "empty cell");
    }

    #[test]
    fn near_square_grids_fit_their_cells() {
        let shape = |n| {
            let l = GridLayout::near_square(n, 1, 0, [0; 3]);
            (l.columns, l.rows)
        };
        assert_eq!([shape(0), shape(1), shape(3), shape(16), shape(17)], [(1, 1), (1, 1), (2, 2), (4, 4), (5, 4)]);
    }

    #[test]
    fn compression_levels_keep_the_pixels() {
        let image = RgbImage::from_fn(5, 3, |x, y| image::Rgb([x as u8 * 40, y as u8 * 80, 7]));
        for level in [PngCompression::Fast, PngCompression::Default, PngCompression::Best] {
            let png = encode_png_with(&image, level).unwrap();
            assert_eq!(image::load_from_memory(&png).unwrap().into_rgb8(), image);
        }
        assert_eq!(encode_png(&image).unwrap(), encode_png_with(&image, PngCompression::Default).unwrap());
        // `Fast` is what `PngEncoder::new` gives: the bytes sample grids and loss.png always had.
        let mut plain = Vec::new();
        image.write_with_encoder(image::codecs::png::PngEncoder::new(&mut plain)).unwrap();
        assert_eq!(encode_png_with(&image, PngCompression::Fast).unwrap(), plain);
    }
}
