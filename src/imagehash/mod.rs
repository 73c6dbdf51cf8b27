//! Image hashes for duplicate search, shared by `dedup` (duplicate groups) and `eval` (near-duplicate samples, a
//! mode-collapse signal).
//!
//! - `pixel_hash`: blake3 of `width (u32 LE) ‖ height (u32 LE) ‖ RGB8 rows`: equal pixels, whatever the encoding.
//! - [`phash`]: the 64-bit DCT perceptual hash. The image reduced to 32x32 RGB (image's triangle filter, in f32;
//!   images larger than 128 px on a side are first reduced to at most 128x128 in 8-bit), luma
//!   `0.299 R + 0.587 G + 0.114 B`, 2-D DCT-II, the top-left 8x8 coefficients compared with their median, bit
//!   `63 - (8u + v)` set when coefficient (u, v) is above it (the construction of Python's `imagehash.phash`).
//!   Every hash has 32 bits set, so distances are even.
//! - the colour thumbnail: the 4x4 RGB block means of the same 32x32 reduction, which confirms pHash candidates
//!   ([`colour_difference`], [`NEAR_MAX_COLOUR_DIFFERENCE`]): pHash sees luma structure only.
//! - the crop signature ([`CropSignature`]): pHashes of 16 windows (insets of 2% or 8% per side) and 16x16
//!   gray / 8x8 colour thumbnails, so copies cropped by up to 10% per side are found ([`is_crop_of`]).
//! - [`near_pairs`]: all pairs of 64-bit hashes within a Hamming distance, by multi-index hashing;
//!   [`near_matches`]: the same between a set of queries and an indexed set.
mod align;
mod crop;
mod near;
mod phash;
mod signature;
mod window;

pub use crop::{is_crop_of, CropSignature, COLOUR_LEN, CROP_MAX_COLOUR_DIFFERENCE, CROP_MAX_GRAY_DIFFERENCE};
pub use crop::{CROP_MAX_HAMMING, GRAY_LEN};
pub use near::{near_matches, near_pairs, MatchIndex};
pub use phash::{colour_difference, phash, NEAR_MAX_COLOUR_DIFFERENCE, THUMB_LEN};
pub use signature::{signature, Signature};
pub use window::WINDOWS;
