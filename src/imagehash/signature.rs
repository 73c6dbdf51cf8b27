//! What one decode of an image yields for duplicate search: the exact pixel hash, the pHash and colour thumbnail
//! (`phash`), and the crop-robust signature (`crop`). Apart from both so that neither imports the other.
use super::crop::CropSignature;
use super::phash::{colour_thumb, phash_of, pre_reduce, reduce32, THUMB_LEN};

/// What one decode of a cache object yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub pixel_hash: String,
    pub phash: u64,
    /// 4x4 area-averaged RGB, row-major: confirms pHash candidates (see [`NEAR_MAX_COLOUR_DIFFERENCE`]).
    pub thumb: [u8; THUMB_LEN],
    /// Window hashes and thumbnails for copies cropped by up to 10% per side.
    pub crop: CropSignature,
}

/// Pixel hash, pHash and colour thumbnail of one decoded image (one pass over the decode: the image is consumed).
pub fn signature(img: image::RgbImage) -> Signature {
    let mut h = blake3::Hasher::new();
    h.update(&img.width().to_le_bytes());
    h.update(&img.height().to_le_bytes());
    h.update(img.as_raw());
    let rgb = pre_reduce(img);
    let small = reduce32(&rgb);
    Signature {
        pixel_hash: h.finalize().to_hex().to_string(),
        phash: phash_of(&small),
        thumb: colour_thumb(&small),
        crop: CropSignature::of(&rgb, &small),
    }
}
