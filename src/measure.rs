//! Everything later stages need from an image's pixels, measured from its one decode: `ingest` measures every
//! accepted file and `crop` every crop it makes, and the manifests carry the measures on, so `dedup` and `clean`
//! decode nothing. None of it depends on a threshold (thresholds are applied where the measures are read).
use crate::imagehash::{self, CropSignature, Signature, THUMB_LEN};
use crate::quality::{self, Scores};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "MeasuresWire", try_from = "MeasuresWire")]
pub struct Measures {
    /// blake3 of size + RGB8 pixels (exact-pixel duplicates).
    pub pixel_hash: String,
    /// 64-bit DCT perceptual hash (near duplicates).
    pub phash: u64,
    /// 4x4 RGB thumbnail that confirms pHash candidates.
    pub thumb: [u8; THUMB_LEN],
    /// Window hashes and thumbnails that find copies cropped by up to 10% per side (576 bytes).
    pub crop: CropSignature,
    /// Sharpness, colourfulness, grayscale flag, entropy (`clean`).
    pub quality: Scores,
}

/// Measures one decoded image (consumed: the hashes reduce it in place).
pub fn measure(image: image::RgbImage) -> Measures {
    let quality = quality::score_image(&image);
    let Signature { pixel_hash, phash, thumb, crop } = imagehash::signature(image);
    Measures { pixel_hash, phash, thumb, crop, quality }
}

impl Measures {
    pub fn signature(&self) -> Signature {
        Signature { pixel_hash: self.pixel_hash.clone(), phash: self.phash, thumb: self.thumb, crop: self.crop.clone() }
    }
}

/// [`Measures`] as serialised (memo payloads): serde has no impl for large arrays, so thumbnails travel as hex.
#[derive(Serialize, Deserialize)]
struct MeasuresWire {
    pixel_hash: String,
    phash: u64,
    thumb: String,
    window_phashes: Vec<u64>,
    gray_thumb: String,
    colour_thumb: String,
    quality: Scores,
}

impl From<Measures> for MeasuresWire {
    fn from(m: Measures) -> Self {
        MeasuresWire {
            pixel_hash: m.pixel_hash,
            phash: m.phash,
            thumb: thumb_hex(&m.thumb),
            window_phashes: m.crop.windows.to_vec(),
            gray_thumb: thumb_hex(&m.crop.gray),
            colour_thumb: thumb_hex(&m.crop.colour),
            quality: m.quality,
        }
    }
}

impl TryFrom<MeasuresWire> for Measures {
    type Error = String;
    fn try_from(w: MeasuresWire) -> Result<Self, String> {
        let bad = |what: &str| format!("bad {what} in measures");
        let crop = CropSignature {
            windows: w.window_phashes.try_into().map_err(|_| bad("window_phashes"))?,
            gray: thumb_from_hex(&w.gray_thumb).ok_or_else(|| bad("gray_thumb"))?,
            colour: thumb_from_hex(&w.colour_thumb).ok_or_else(|| bad("colour_thumb"))?,
        };
        let thumb = thumb_from_hex(&w.thumb).ok_or_else(|| bad("thumb"))?;
        Ok(Measures { pixel_hash: w.pixel_hash, phash: w.phash, thumb, crop, quality: w.quality })
    }
}

/// A thumbnail as lowercase hex digits (the `thumb` column: 96 digits).
pub fn thumb_hex(thumb: &[u8]) -> String {
    thumb.iter().map(|b| format!("{b:02x}")).collect()
}

/// A thumbnail of N bytes from its hex; None when malformed.
pub fn thumb_from_hex<const N: usize>(hex: &str) -> Option<[u8; N]> {
    if hex.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumb_hex_round_trips() {
        let thumb: [u8; THUMB_LEN] = std::array::from_fn(|i| (i * 5) as u8);
        assert_eq!(thumb_from_hex(&thumb_hex(&thumb)), Some(thumb));
        assert_eq!(thumb_from_hex::<THUMB_LEN>("zz"), None);
    }

    #[test]
    fn measures_equal_the_separate_hashes_and_scores() {
        let img = image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([(x * 6) as u8, (y * 8) as u8, 77]));
        let m = measure(img.clone());
        assert_eq!(m.phash, imagehash::phash(&img));
        assert_eq!(m.quality, quality::score_image(&img));
        assert_eq!(m.signature(), imagehash::signature(img));
    }

    #[test]
    fn measures_round_trip_through_their_serialised_form() {
        let img = image::RgbImage::from_fn(50, 44, |x, y| image::Rgb([(x * 5) as u8, (y * 5) as u8, (x * y) as u8]));
        let m = measure(img);
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<Measures>(&json).unwrap(), m);
    }
}
