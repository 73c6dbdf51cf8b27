//! Safe image decoding: the one place where image bytes become pixels, for every stage.
//!
//! Policy (decided here, relied on by every stage):
//! - **Format by content**: [`sniff_format`] reads magic bytes; file names and extensions are never trusted.
//!   Supported: JPEG, PNG (incl. APNG), GIF, WebP (lossy, lossless, animated), BMP, TIFF.
//! - **Unsupported formats** that we can recognise (AVIF, HEIC/HEIF, JPEG XL, JPEG 2000, SVG, PSD, ICO, QOI, EXR,
//!   PDF, DDS) are rejected `unsupported_format`; bytes with no known signature are `not_an_image`.
//! - **Everything accepted becomes RGB8**: gray, gray+alpha, palette, 16-bit and CMYK/YCCK are converted at decode
//!   time (16-bit rounds to the nearest 8-bit value). Alpha is composited over **white** (transparent backgrounds of
//!   anime cut-outs become white rather than the black of dropping the channel). The `color` field records the
//!   original colour type: `l8`, `la8`, `rgb8`, `rgba8`, `l16`, `la16`, `rgb16`, `rgba16`, `cmyk8`, `palette`, ...
//! - **EXIF orientation** is applied where the decoder reports it (JPEG, WebP, TIFF, PNG eXIf), so width and
//!   height are those of the upright image ([`probe`] alone reports the stored header size).
//! - **Animations** (GIF, APNG, animated WebP) keep their first frame; `frames` counts the frames (1 for stills).
//!   Multi-page TIFFs keep their first page and report `frames` = 1.
//! - **Limits before work**: empty input is `empty_file`; more than `limits.max_file_bytes` is `too_large`; the
//!   pixel count is read from the header and more than `limits.max_pixels` is `decompression_bomb` before any pixel
//!   is decoded; the decoder also runs under `image::Limits` (allocation cap) as a second line of defence.
//! - **Truncation**: JPEG must reach its EOI marker, PNG its IEND chunk, WebP its declared RIFF size, GIF must not
//!   stop inside a block (lenient decoders would otherwise fill the missing rows with gray). Decoder errors at end
//!   of data are `truncated`; any other decoder error, and any decoder **panic** (caught), is `corrupt`.
//!
//! Reasons (stable manifest values): `empty_file`, `too_large`, `not_an_image`, `unsupported_format`,
//! `decompression_bomb`, `truncated`, `corrupt`.
use crate::manifest::Reason;
use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader};
use serde::{Deserialize, Serialize};
use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// What decoding may cost (`limits:` in pipeline.yaml). Every stage that decodes applies the same limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Files larger than this are rejected unread (`too_large`).
    pub max_file_bytes: u64,
    /// Images with more pixels than this are rejected before decoding (`decompression_bomb`).
    pub max_pixels: u64,
    /// Total uncompressed bytes read from one archive; past it entries are rejected (`archive_budget_exceeded`).
    pub max_archive_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_file_bytes: 256 << 20, max_pixels: 128_000_000, max_archive_bytes: 64 << 30 }
    }
}

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
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct DecodeError {
    pub reason: Reason,
    pub detail: String,
}

impl DecodeError {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self { reason, detail: detail.into() }
    }
}

/// The formats [`decode_rgb8`] accepts, as reported in `Decoded::format`.
pub const SUPPORTED_FORMATS: &[&str] = &["jpeg", "png", "gif", "webp", "bmp", "tiff"];

/// The format of `bytes` by content (magic bytes), never by file name. Only supported formats are named.
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
    } else if is_bmp(b) {
        Some("bmp")
    } else if [b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"].iter().any(|m| b.starts_with(*m)) {
        Some("tiff")
    } else {
        None
    }
}

/// "BM" alone would match text files; also require a known DIB header size.
fn is_bmp(b: &[u8]) -> bool {
    b.len() >= 26
        && b.starts_with(b"BM")
        && [12, 16, 40, 52, 56, 64, 108, 124].contains(&u32::from_le_bytes([b[14], b[15], b[16], b[17]]))
}

/// Image formats we recognise but do not decode.
pub fn sniff_unsupported(bytes: &[u8]) -> Option<&'static str> {
    let b = bytes;
    if b.len() >= 12 && &b[4..8] == b"ftyp" {
        return match &b[8..12] {
            b"avif" | b"avis" => Some("avif"),
            b"heic" | b"heix" | b"hevc" | b"hevx" | b"heim" | b"heis" | b"mif1" | b"msf1" => Some("heic"),
            _ => None,
        };
    }
    let magic: &[(&[u8], &str)] = &[
        (b"\xFF\x0A", "jxl"),
        (b"\0\0\0\x0CJXL \r\n\x87\n", "jxl"),
        (b"\0\0\0\x0CjP  \r\n\x87\n", "jpeg2000"),
        (b"8BPS", "psd"),
        (b"\0\0\x01\0", "ico"),
        (b"qoif", "qoi"),
        (b"\x76\x2F\x31\x01", "exr"),
        (b"%PDF", "pdf"),
        (b"DDS ", "dds"),
    ];
    if let Some((_, name)) = magic.iter().find(|(m, _)| b.starts_with(m)) {
        return Some(name);
    }
    let head = String::from_utf8_lossy(&b[..b.len().min(1024)]).to_ascii_lowercase();
    let head = head.trim_start_matches('\u{feff}').trim_start();
    if head.starts_with("<svg") || (head.starts_with("<?xml") && head.contains("<svg")) {
        return Some("svg");
    }
    None
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

/// Size checks and format sniffing, common to [`probe`] and [`decode_rgb8`].
fn identify(bytes: &[u8], limits: &Limits) -> Result<&'static str, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::new(Reason::EmptyFile, "the file has 0 bytes"));
    }
    if bytes.len() as u64 > limits.max_file_bytes {
        return Err(DecodeError::new(
            Reason::TooLarge,
            format!("{} bytes > limits.max_file_bytes = {}", bytes.len(), limits.max_file_bytes),
        ));
    }
    if let Some(format) = sniff_format(bytes) {
        return Ok(format);
    }
    if let Some(other) = sniff_unsupported(bytes) {
        return Err(DecodeError::new(Reason::UnsupportedFormat, format!("{other} images are not supported")));
    }
    Err(DecodeError::new(Reason::NotAnImage, "no known image signature in the first bytes"))
}

/// The decoder's own limits: a second line of defence behind the header pixel check (16-bit RGBA needs 8 bytes
/// per pixel, plus a copy of the input).
fn decoder_limits(limits: &Limits) -> image::Limits {
    let mut l = image::Limits::default();
    l.max_alloc =
        Some(limits.max_pixels.saturating_mul(8).saturating_add(limits.max_file_bytes).saturating_add(64 << 20));
    l
}

fn check_pixels(w: u32, h: u32, limits: &Limits) -> Result<(), DecodeError> {
    let pixels = u64::from(w) * u64::from(h);
    if pixels > limits.max_pixels {
        return Err(DecodeError::new(
            Reason::DecompressionBomb,
            format!("{w}x{h} = {pixels} pixels > limits.max_pixels = {}", limits.max_pixels),
        ));
    }
    if pixels == 0 {
        return Err(DecodeError::new(Reason::Corrupt, format!("the header declares a {w}x{h} image")));
    }
    Ok(())
}

/// Runs `f`, turning a decoder panic into a `corrupt` error (a malicious file must not take the run down).
fn guarded<T>(f: impl FnOnce() -> Result<T, DecodeError>) -> Result<T, DecodeError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let msg = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Err(DecodeError::new(Reason::Corrupt, format!("decoder panicked: {msg}")))
    })
}

fn open_decoder<'a>(
    bytes: &'a [u8],
    format: &'static str,
    limits: &Limits,
) -> Result<impl ImageDecoder + 'a, DecodeError> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), image_format(format));
    reader.limits(decoder_limits(limits));
    reader.into_decoder().map_err(classify)
}

/// Format and stored dimensions from the header (before EXIF orientation), without decoding pixels. Applies the same size, format and pixel-count
/// checks as [`decode_rgb8`] (so a `decompression_bomb` is caught here), but cannot detect truncation.
pub fn probe(bytes: &[u8], limits: &Limits) -> Result<(&'static str, u32, u32), DecodeError> {
    let format = identify(bytes, limits)?;
    guarded(|| {
        let decoder = open_decoder(bytes, format, limits)?;
        let (w, h) = decoder.dimensions();
        check_pixels(w, h, limits)?;
        Ok((format, w, h))
    })
}

/// Decodes any supported image to RGB8 under `limits` (see the module docs for the conversion policy).
pub fn decode_rgb8(bytes: &[u8], limits: &Limits) -> Result<Decoded, DecodeError> {
    let (mut img, orientation, info) = decode_native(bytes, limits)?;
    img.apply_orientation(orientation);
    Ok(Decoded { image: to_rgb8_over_white(img), format: info.format, color: info.color, frames: info.frames })
}

/// What ingest records about a valid image: everything but the pixels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub format: &'static str,
    /// Upright size (after EXIF orientation), as [`decode_rgb8`] would return it.
    pub width: u32,
    pub height: u32,
    pub color: String,
    pub frames: u32,
}

/// Validates an image by decoding it fully (the only way to catch corrupt pixel data) without the RGB8
/// conversion; same checks and reasons as [`decode_rgb8`].
pub fn inspect(bytes: &[u8], limits: &Limits) -> Result<Info, DecodeError> {
    decode_native(bytes, limits).map(|(_, _, info)| info)
}

fn decode_native(
    bytes: &[u8],
    limits: &Limits,
) -> Result<(DynamicImage, image::metadata::Orientation, Info), DecodeError> {
    use image::metadata::Orientation as O;
    let format = identify(bytes, limits)?;
    let structure = scan_structure(format, bytes)?;
    guarded(|| {
        let mut decoder = open_decoder(bytes, format, limits)?;
        let (w, h) = decoder.dimensions();
        check_pixels(w, h, limits)?;
        let color = structure.color.clone().unwrap_or_else(|| color_name(decoder.original_color_type()));
        let orientation = decoder.orientation().unwrap_or(O::NoTransforms);
        let img = DynamicImage::from_decoder(decoder).map_err(classify)?;
        let quarter_turn = matches!(orientation, O::Rotate90 | O::Rotate270 | O::Rotate90FlipH | O::Rotate270FlipH);
        let (width, height) = if quarter_turn { (h, w) } else { (w, h) };
        Ok((img, orientation, Info { format, width, height, color, frames: structure.frames }))
    })
}

/// Converts to RGB8; images with an alpha channel are composited over white.
pub fn to_rgb8_over_white(img: DynamicImage) -> image::RgbImage {
    if !img.color().has_alpha() {
        return match img {
            DynamicImage::ImageRgb8(rgb) => rgb,
            other => other.to_rgb8(),
        };
    }
    let rgba = img.to_rgba8();
    let (w, h) = rgba.dimensions();
    let mut out = image::RgbImage::new(w, h);
    for (dst, src) in out.pixels_mut().zip(rgba.pixels()) {
        let a = u32::from(src[3]);
        for c in 0..3 {
            // Rounded (c*a + 255*(255-a)) / 255.
            dst[c] = ((u32::from(src[c]) * a + 255 * (255 - a) + 127) / 255) as u8;
        }
    }
    out
}

fn color_name(c: image::ExtendedColorType) -> String {
    use image::ExtendedColorType as E;
    match c {
        E::Unknown(bits) => format!("unknown{bits}"),
        E::Cmyk8 => "cmyk8".into(),
        other => format!("{other:?}").to_ascii_lowercase(),
    }
}

/// Maps decoder errors to manifest reasons.
fn classify(e: ImageError) -> DecodeError {
    let detail = e.to_string();
    let reason = match &e {
        ImageError::Limits(_) => Reason::DecompressionBomb,
        ImageError::Unsupported(_) => Reason::UnsupportedFormat,
        ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => Reason::Truncated,
        _ if looks_truncated(&detail) => Reason::Truncated,
        _ => Reason::Corrupt,
    };
    DecodeError { reason, detail }
}

fn looks_truncated(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    ["unexpected end", "unexpected eof", "end of file", "eof", "truncated", "not enough data", "no more data"]
        .iter()
        .any(|p| m.contains(p))
}

/// What the structural scan learned: frame count and, where the header says more than the decoder reports, the
/// original colour type.
#[derive(Debug, Clone, PartialEq)]
struct Structure {
    frames: u32,
    color: Option<String>,
}

impl Structure {
    fn still() -> Self {
        Self { frames: 1, color: None }
    }
}

fn truncated(detail: impl Into<String>) -> DecodeError {
    DecodeError::new(Reason::Truncated, detail)
}

fn corrupt(detail: impl Into<String>) -> DecodeError {
    DecodeError::new(Reason::Corrupt, detail)
}

/// Walks the container structure (cheap, no pixel work) to detect truncation and count frames.
fn scan_structure(format: &str, bytes: &[u8]) -> Result<Structure, DecodeError> {
    match format {
        "jpeg" => scan_jpeg(bytes),
        "png" => scan_png(bytes),
        "gif" => scan_gif(bytes),
        "webp" => scan_webp(bytes),
        _ => Ok(Structure::still()),
    }
}

fn be16(b: &[u8], i: usize) -> usize {
    usize::from(u16::from_be_bytes([b[i], b[i + 1]]))
}

fn be32(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

fn le32(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// JPEG: marker segments up to EOI, skipping entropy-coded data (where 0xFF is always stuffed or a restart
/// marker). A file that ends before EOI is truncated. Extraneous bytes between segments are tolerated (libjpeg
/// warns and continues too). The frame header gives the component count: 1 gray, 3 YCbCr/RGB, 4 CMYK/YCCK.
fn scan_jpeg(b: &[u8]) -> Result<Structure, DecodeError> {
    let mut i = 2;
    let mut components = None;
    loop {
        let Some(off) = b.get(i..).and_then(|rest| rest.iter().position(|&x| x == 0xFF)) else {
            return Err(truncated("JPEG ends before its EOI marker"));
        };
        i += off;
        while i < b.len() && b[i] == 0xFF {
            i += 1;
        }
        let Some(&marker) = b.get(i) else {
            return Err(truncated("JPEG ends before its EOI marker"));
        };
        i += 1;
        match marker {
            0xD9 => break,
            0x00 | 0x01 | 0xD0..=0xD8 => continue,
            _ => {}
        }
        if i + 2 > b.len() {
            return Err(truncated("JPEG ends inside a segment header"));
        }
        let len = be16(b, i);
        if len < 2 {
            return Err(corrupt(format!("JPEG segment 0xFF{marker:02X} has length {len}")));
        }
        if i + len > b.len() {
            return Err(truncated(format!("JPEG ends inside segment 0xFF{marker:02X}")));
        }
        let is_frame_header = matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
        if is_frame_header && len >= 8 {
            components = Some(b[i + 7]);
        }
        i += len;
        if marker == 0xDA {
            i = skip_entropy_coded(b, i)?;
        }
    }
    let color = match components {
        Some(1) => "l8",
        Some(3) => "rgb8",
        Some(4) => "cmyk8",
        Some(n) => return Err(corrupt(format!("JPEG with {n} components"))),
        None => return Err(corrupt("JPEG without a frame header")),
    };
    Ok(Structure { frames: 1, color: Some(color.into()) })
}

/// Returns the index of the 0xFF that starts the marker ending the scan.
fn skip_entropy_coded(b: &[u8], mut i: usize) -> Result<usize, DecodeError> {
    loop {
        let Some(off) = b.get(i..).and_then(|rest| rest.iter().position(|&x| x == 0xFF)) else {
            return Err(truncated("JPEG ends inside scan data (no EOI marker)"));
        };
        i += off;
        match b.get(i + 1) {
            None => return Err(truncated("JPEG ends inside scan data (no EOI marker)")),
            Some(0x00 | 0xD0..=0xD7) => i += 2,
            Some(0xFF) => i += 1,
            Some(_) => return Ok(i),
        }
    }
}

/// PNG: chunks up to IEND. IHDR's colour type 3 is `palette`; an APNG's acTL gives the frame count.
fn scan_png(b: &[u8]) -> Result<Structure, DecodeError> {
    let mut i = 8;
    let mut s = Structure::still();
    loop {
        if i + 8 > b.len() {
            return Err(truncated("PNG ends before its IEND chunk"));
        }
        let len = be32(b, i) as usize;
        if len > 0x7FFF_FFFF {
            return Err(corrupt("PNG chunk length out of range"));
        }
        let kind = &b[i + 4..i + 8];
        let data = i + 8;
        if data + len + 4 > b.len() {
            return Err(truncated(format!("PNG ends inside a {} chunk", String::from_utf8_lossy(kind))));
        }
        match kind {
            b"IHDR" if len >= 13 && b[data + 9] == 3 => s.color = Some("palette".into()),
            b"acTL" if len >= 8 => s.frames = be32(b, data).max(1),
            b"IEND" => return Ok(s),
            _ => {}
        }
        i = data + len + 4;
    }
}

/// GIF: header, optional global colour table, then blocks until the trailer; counts image descriptors. A file
/// that ends cleanly between blocks without the trailer is accepted (common in the wild); one that ends inside a
/// block is truncated.
fn scan_gif(b: &[u8]) -> Result<Structure, DecodeError> {
    let short = || truncated("GIF ends inside a block");
    if b.len() < 13 {
        return Err(short());
    }
    let mut i = 13 + color_table_len(b[10]);
    let mut frames = 0u32;
    while let Some(&block) = b.get(i) {
        match block {
            0x3B => break,
            0x21 => i = skip_sub_blocks(b, i + 2).ok_or_else(short)?,
            0x2C => {
                let flags = *b.get(i + 9).ok_or_else(short)?;
                // 10-byte descriptor, local colour table, 1 byte LZW code size, data sub-blocks.
                i = skip_sub_blocks(b, i + 10 + color_table_len(flags) + 1).ok_or_else(short)?;
                frames += 1;
            }
            other => return Err(corrupt(format!("GIF: unknown block 0x{other:02X}"))),
        }
    }
    if frames == 0 {
        return Err(truncated("GIF has no image"));
    }
    Ok(Structure { frames, color: Some("palette".into()) })
}

fn color_table_len(flags: u8) -> usize {
    if flags & 0x80 != 0 {
        3 << ((flags & 0x07) + 1)
    } else {
        0
    }
}

/// Index after a chain of GIF data sub-blocks starting at `i`, or None if the data ends first.
fn skip_sub_blocks(b: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let n = usize::from(*b.get(i)?);
        i += 1;
        if n == 0 {
            return Some(i);
        }
        i += n;
    }
}

/// WebP: the RIFF size must fit the data; ANMF chunks count animation frames.
fn scan_webp(b: &[u8]) -> Result<Structure, DecodeError> {
    let riff_end = le32(b, 4) as usize + 8;
    if riff_end > b.len() {
        return Err(truncated(format!("WebP declares {riff_end} bytes but has {}", b.len())));
    }
    let mut i = 12;
    let mut frames = 0u32;
    while i + 8 <= riff_end {
        let len = le32(b, i + 4) as usize;
        if &b[i..i + 4] == b"ANMF" {
            frames += 1;
        }
        i = i.saturating_add(8).saturating_add(len).saturating_add(len & 1);
    }
    if i > riff_end {
        return Err(truncated("WebP ends inside a chunk"));
    }
    Ok(Structure { frames: frames.max(1), color: None })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::named::Named;
    use image::{ImageEncoder, Rgb, RgbImage, Rgba, RgbaImage};

    fn limits() -> Limits {
        Limits { max_file_bytes: 1 << 20, max_pixels: 1 << 20, max_archive_bytes: 1 << 30 }
    }

    fn pattern(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| Rgb([(x * 7) as u8, (y * 5) as u8, ((x + y) * 3) as u8]))
    }

    fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    fn reason(bytes: &[u8]) -> &'static str {
        decode_rgb8(bytes, &limits()).unwrap_err().reason.name()
    }

    #[test]
    fn lossless_formats_round_trip_to_the_same_pixels() {
        let img = DynamicImage::ImageRgb8(pattern(40, 30));
        for (format, name) in [
            (ImageFormat::Png, "png"),
            (ImageFormat::Bmp, "bmp"),
            (ImageFormat::Tiff, "tiff"),
            (ImageFormat::WebP, "webp"),
        ] {
            let d = decode_rgb8(&encode(&img, format), &limits()).unwrap();
            assert_eq!(d.format, name);
            assert_eq!(d.image, pattern(40, 30), "{name}");
            assert_eq!(d.frames, 1);
        }
    }

    #[test]
    fn sniffing_ignores_names_and_knows_unsupported_formats() {
        assert_eq!(sniff_format(b"GIF89a\x01\x00"), Some("gif"));
        assert_eq!(sniff_format(b"hello world, this is text"), None);
        assert_eq!(sniff_unsupported(b"\0\0\0\x1cftypavif\0\0\0\0"), Some("avif"));
        assert_eq!(sniff_unsupported(b"\0\0\0\x18ftypheic\0\0\0\0"), Some("heic"));
        assert_eq!(sniff_unsupported(b"  <?xml version=\"1.0\"?><svg xmlns=..."), Some("svg"));
        assert_eq!(sniff_unsupported(b"8BPS\0\x01"), Some("psd"));
        assert_eq!(reason(b"\0\0\0\x1cftypavif\0\0\0\0rest"), "unsupported_format");
        assert_eq!(reason(b"just some text in a .jpg"), "not_an_image");
        assert_eq!(reason(b""), "empty_file");
    }

    #[test]
    fn truncated_files_are_detected_not_gray_filled() {
        let img = DynamicImage::ImageRgb8(pattern(64, 64));
        for format in [ImageFormat::Jpeg, ImageFormat::Png, ImageFormat::Gif, ImageFormat::WebP] {
            let bytes = encode(&img, format);
            // A GIF missing only its trailer byte is accepted (see scan_gif), so cut GIFs inside the data.
            let cuts =
                if format == ImageFormat::Gif { vec![bytes.len() / 2] } else { vec![bytes.len() / 2, bytes.len() - 1] };
            for cut in cuts {
                let r = reason(&bytes[..cut]);
                assert!(r == "truncated", "{format:?} cut at {cut}/{}: {r}", bytes.len());
            }
        }
    }

    #[test]
    fn corrupt_data_is_corrupt() {
        let mut bytes = encode(&DynamicImage::ImageRgb8(pattern(32, 32)), ImageFormat::Png);
        let n = bytes.len();
        for b in &mut bytes[40..n - 20] {
            *b ^= 0x5A;
        }
        let r = reason(&bytes);
        assert!(r == "corrupt" || r == "truncated", "{r}");
    }

    #[test]
    fn pixel_cap_is_checked_from_the_header() {
        // A 1x1 PNG whose IHDR claims 100000x100000: rejected without allocating 30 GB.
        let mut bytes = encode(&DynamicImage::ImageRgb8(pattern(1, 1)), ImageFormat::Png);
        bytes[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        bytes[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let crc = crc32(&bytes[12..29]);
        bytes[29..33].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(probe(&bytes, &limits()).unwrap_err().reason, Reason::DecompressionBomb);
        assert_eq!(reason(&bytes), "decompression_bomb");
        let small = Limits { max_file_bytes: 10, ..limits() };
        assert_eq!(decode_rgb8(&bytes, &small).unwrap_err().reason, Reason::TooLarge);
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &byte in data {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }

    #[test]
    fn alpha_is_composited_over_white() {
        let img = RgbaImage::from_fn(4, 1, |x, _| Rgba([0, 0, 0, [0, 255, 128, 64][x as usize]]));
        let d = decode_rgb8(&encode(&DynamicImage::ImageRgba8(img), ImageFormat::Png), &limits()).unwrap();
        assert_eq!(d.color, "rgba8");
        // Black at alpha a over white: 255 * (255 - a) / 255 = 255 - a.
        let got: Vec<u8> = d.image.pixels().map(|p| p[0]).collect();
        assert_eq!(got, vec![255, 0, 127, 191]);
    }

    #[test]
    fn color_types_are_reported_and_converted() {
        let gray = image::GrayImage::from_fn(8, 8, |x, _| image::Luma([x as u8 * 30]));
        let d = decode_rgb8(&encode(&DynamicImage::ImageLuma8(gray), ImageFormat::Png), &limits()).unwrap();
        assert_eq!(d.color, "l8");
        assert_eq!(d.image.get_pixel(2, 0), &Rgb([60, 60, 60]));

        let deep = image::ImageBuffer::<image::Rgb<u16>, _>::from_fn(4, 4, |x, _| Rgb([x as u16 * 257 * 80, 0, 65535]));
        let d = decode_rgb8(&encode(&DynamicImage::ImageRgb16(deep), ImageFormat::Png), &limits()).unwrap();
        assert_eq!(d.color, "rgb16");
        assert_eq!(d.image.get_pixel(1, 0), &Rgb([80, 0, 255]));

        let gif = encode(&DynamicImage::ImageRgb8(pattern(8, 8)), ImageFormat::Gif);
        assert_eq!(decode_rgb8(&gif, &limits()).unwrap().color, "palette");
    }

    #[test]
    fn palette_png_is_reported_as_palette() {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, 2, 1);
            enc.set_color(png::ColorType::Indexed);
            enc.set_depth(png::BitDepth::Eight);
            enc.set_palette(vec![255, 0, 0, 0, 0, 255]);
            enc.write_header().unwrap().write_image_data(&[0, 1]).unwrap();
        }
        let d = decode_rgb8(&out, &limits()).unwrap();
        assert_eq!(d.color, "palette");
        assert_eq!(d.image.as_raw(), &vec![255, 0, 0, 0, 0, 255]);
    }

    #[test]
    fn animated_gif_keeps_the_first_frame_and_counts_frames() {
        let mut out = Vec::new();
        {
            let mut enc = image::codecs::gif::GifEncoder::new(&mut out);
            let frames = [Rgba([255, 0, 0, 255]), Rgba([0, 255, 0, 255]), Rgba([0, 0, 255, 255])]
                .map(|c| image::Frame::new(RgbaImage::from_pixel(6, 6, c)));
            enc.encode_frames(frames).unwrap();
        }
        let d = decode_rgb8(&out, &limits()).unwrap();
        assert_eq!(d.frames, 3);
        assert_eq!(d.image.get_pixel(0, 0), &Rgb([255, 0, 0]));
    }

    #[test]
    fn jpeg_gray_is_l8_and_probe_reads_dims() {
        let gray = image::GrayImage::from_pixel(33, 17, image::Luma([100]));
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
            .write_image(gray.as_raw(), 33, 17, image::ExtendedColorType::L8)
            .unwrap();
        assert_eq!(probe(&out, &limits()).unwrap(), ("jpeg", 33, 17));
        let d = decode_rgb8(&out, &limits()).unwrap();
        assert_eq!((d.color.as_str(), d.image.dimensions()), ("l8", (33, 17)));
    }

    #[test]
    fn garbage_after_a_valid_signature_never_panics() {
        let mut seed = 12345u64;
        for sig in [&b"\xFF\xD8\xFF"[..], b"\x89PNG\r\n\x1a\n", b"GIF89a", b"II*\0", b"RIFF\x20\0\0\0WEBPVP8 "] {
            for n in [0usize, 5, 50, 500] {
                let mut bytes = sig.to_vec();
                for _ in 0..n {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    bytes.push((seed >> 33) as u8);
                }
                let r = decode_rgb8(&bytes, &limits());
                assert!(r.is_err(), "random bytes decoded as an image");
            }
        }
    }

    #[test]
    fn cmyk_jpeg_is_converted_to_rgb() {
        // Written by Pillow: Image.new("CMYK", (16, 8), (0, 255, 255, 0)) with the right half (255, 0, 0, 0),
        // saved as JPEG quality 95 (Adobe APP14, inverted CMYK). Pillow decodes it to red (255, 0, 0) and cyan.
        let bytes = include_bytes!("../tests/data/cmyk_red_cyan.jpg");
        let d = decode_rgb8(bytes, &limits()).unwrap();
        assert_eq!((d.format, d.color.as_str(), d.image.dimensions()), ("jpeg", "cmyk8", (16, 8)));
        let close = |p: &Rgb<u8>, want: [u8; 3]| p.0.iter().zip(want).all(|(&a, b)| a.abs_diff(b) <= 8);
        assert!(close(d.image.get_pixel(2, 2), [255, 0, 0]), "{:?}", d.image.get_pixel(2, 2));
        assert!(close(d.image.get_pixel(12, 2), [0, 255, 255]), "{:?}", d.image.get_pixel(12, 2));
    }

    #[test]
    fn exif_orientation_is_applied() {
        let img = pattern(40, 20);
        let mut plain = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut plain, 95).encode_image(&img).unwrap();
        // APP1 "Exif": big-endian TIFF header, one IFD entry: Orientation (0x0112), SHORT, 1 value, 6 = rotate 90 CW.
        let mut exif = b"Exif\0\0MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0\x06\0\0\0\0\0\0".to_vec();
        let mut app1 = vec![0xFF, 0xE1];
        app1.extend_from_slice(&((exif.len() + 2) as u16).to_be_bytes());
        app1.append(&mut exif);
        let rotated: Vec<u8> = [&plain[..2], &app1, &plain[2..]].concat();
        let d = decode_rgb8(&rotated, &limits()).unwrap();
        assert_eq!(d.image.dimensions(), (20, 40));
        let info = inspect(&rotated, &limits()).unwrap();
        assert_eq!((info.width, info.height), (20, 40));
        // Rotating 90 degrees clockwise puts the original bottom-left pixel at the top-left.
        let want = image::imageops::rotate90(&decode_rgb8(&plain, &limits()).unwrap().image);
        assert_eq!(d.image, want);
        assert_eq!(probe(&rotated, &limits()).unwrap(), ("jpeg", 40, 20), "probe reports the stored (header) size");
    }
}
