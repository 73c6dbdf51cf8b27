//! Safe image decoding (initial version; being extended).
use crate::config::Limits;
use image::{ImageDecoder, ImageFormat, ImageReader};
use std::io::Cursor;

/// A decoded image, always RGB8, plus what it was before conversion.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub image: image::RgbImage,
    /// "jpeg", "png", "gif", "webp", "bmp" or "tiff" (detected by content).
    pub format: &'static str,
    /// Original colour type, e.g. "rgb8", "rgba8", "l8", "la8", "rgb16", "rgba16", "cmyk8", "palette".
    pub color: String,
    /// Number of frames (1 for still images; animations keep only their first frame).
    pub frames: u32,
}

/// Why a file could not be decoded. `reason` is a stable snake_case value written to manifests.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct DecodeError {
    pub reason: &'static str,
    pub detail: String,
}

impl DecodeError {
    pub fn new(reason: &'static str, detail: impl Into<String>) -> Self {
        Self { reason, detail: detail.into() }
    }
}

/// The format of `bytes` by content (magic bytes), never by file name.
pub fn sniff_format(bytes: &[u8]) -> Option<&'static str> {
    let b = bytes;
    if b.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("jpeg")
    } else if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("png")
    } else if b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a") {
        Some("gif")
    } else if b.len() >= 12 && &b[0..4] == b"RIFF" && &b[8..12] == b"WEBP" {
        Some("webp")
    } else if b.starts_with(b"BM") && b.len() >= 26 {
        Some("bmp")
    } else if b.starts_with(b"II*\0") || b.starts_with(b"MM\0*") {
        Some("tiff")
    } else {
        None
    }
}

fn image_format(format: &str) -> ImageFormat {
    match format {
        "jpeg" => ImageFormat::Jpeg,
        "png" => ImageFormat::Png,
        "gif" => ImageFormat::Gif,
        "webp" => ImageFormat::WebP,
        "bmp" => ImageFormat::Bmp,
        _ => ImageFormat::Tiff,
    }
}

fn precheck(bytes: &[u8], limits: &Limits) -> Result<&'static str, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::new("empty_file", "0 bytes"));
    }
    if bytes.len() as u64 > limits.max_file_bytes {
        return Err(DecodeError::new("too_large", format!("{} bytes > {}", bytes.len(), limits.max_file_bytes)));
    }
    sniff_format(bytes).ok_or_else(|| DecodeError::new("not_an_image", "no known image signature"))
}

/// Format and dimensions from the header, without decoding pixels.
pub fn probe(bytes: &[u8], limits: &Limits) -> Result<(&'static str, u32, u32), DecodeError> {
    let format = precheck(bytes, limits)?;
    let reader = ImageReader::with_format(Cursor::new(bytes), image_format(format));
    let (w, h) = reader.into_dimensions().map_err(|e| DecodeError::new("corrupt", e.to_string()))?;
    if u64::from(w) * u64::from(h) > limits.max_pixels {
        return Err(DecodeError::new("decompression_bomb", format!("{w}x{h} > {} pixels", limits.max_pixels)));
    }
    Ok((format, w, h))
}

/// Decodes to RGB8 with limits.
pub fn decode_rgb8(bytes: &[u8], limits: &Limits) -> Result<Decoded, DecodeError> {
    let (format, _, _) = probe(bytes, limits)?;
    let reader = ImageReader::with_format(Cursor::new(bytes), image_format(format));
    let decoder = reader.into_decoder().map_err(|e| DecodeError::new("corrupt", e.to_string()))?;
    let color = format!("{:?}", decoder.color_type()).to_lowercase();
    let img = image::DynamicImage::from_decoder(decoder).map_err(|e| DecodeError::new("corrupt", e.to_string()))?;
    Ok(Decoded { image: img.to_rgb8(), format, color, frames: 1 })
}
