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
//! - [`near_pairs`]: all pairs of 64-bit hashes within a Hamming distance, by multi-index hashing.
mod near;
mod phash;

pub use near::near_pairs;
pub use phash::{colour_difference, phash, signature, Signature, NEAR_MAX_COLOUR_DIFFERENCE, THUMB_LEN};
