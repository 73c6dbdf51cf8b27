//! Pixels in, pixels out: resizing, deterministic PNG encoding and image grids, for every module that makes
//! pictures (crops, upscales, contact sheets, sample grids, reports).
use anyhow::{anyhow, Result};
use fast_image_resize as fir;
use image::RgbImage;

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

/// PNG bytes with fixed encoder settings (default zlib level, adaptive filter, no metadata or timestamps), so the
/// same pixels always give the same bytes and therefore the same cache object.
pub fn encode_png(image: &RgbImage) -> Result<Vec<u8>> {
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    use image::ImageEncoder;
    let mut bytes = Vec::new();
    PngEncoder::new_with_quality(&mut bytes, CompressionType::Default, FilterType::Adaptive)
        .write_image(image.as_raw(), image.width(), image.height(), image::ExtendedColorType::Rgb8)
        .map_err(|e| anyhow!("cannot encode a {}x{} PNG: {e}", image.width(), image.height()))?;
    Ok(bytes)
}
