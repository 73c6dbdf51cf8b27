//! Boxes and crop rectangles.
//!
//! A detected face box is tight on the face; training crops want hair and chin too. [`crop_rect`] turns a face box
//! into a square crop rectangle in source pixels:
//!
//! 1. side = max(box w, box h) x (1 + `margin`) (so `margin` 0.5 adds a quarter of the box on every side);
//! 2. centre = box centre moved up by `shift_up` x box height (anime faces: keep the hair, the chin is close);
//! 3. integer square: side rounded to whole pixels, top-left = round(centre - side / 2);
//! 4. borders, per [`Border`]: `clamp` shifts the square inside the image (shrinking it to the image's shorter side
//!    when it does not fit, so it stays square); `edge` and `constant` keep it where it is and [`extract_crop`] fills
//!    the outside with replicated edge pixels or a constant colour.
//!
//! `clamp` keeps only real pixels but moves faces off-centre near borders; the pad policies keep every face centred
//! at the same relative size (what a face-generation dataset usually wants) at the cost of synthetic border pixels.
use image::RgbImage;
use serde::{Deserialize, Serialize};

/// An axis-aligned box in pixel coordinates: `(x0, y0)` top-left, `(x1, y1)` bottom-right edges.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BoxF {
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
}

impl BoxF {
    pub fn new(x0: f32, y0: f32, x1: f32, y1: f32) -> Self {
        Self { x0, y0, x1, y1 }
    }
    pub fn from_center(cx: f32, cy: f32, w: f32, h: f32) -> Self {
        Self::new(cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0)
    }
    pub fn width(&self) -> f32 {
        (self.x1 - self.x0).max(0.0)
    }
    pub fn height(&self) -> f32 {
        (self.y1 - self.y0).max(0.0)
    }
    pub fn area(&self) -> f32 {
        self.width() * self.height()
    }
    /// Intersection over union; 0 when either box is empty.
    pub fn iou(&self, other: &BoxF) -> f32 {
        let w = (self.x1.min(other.x1) - self.x0.max(other.x0)).max(0.0);
        let h = (self.y1.min(other.y1) - self.y0.max(other.y0)).max(0.0);
        let inter = w * h;
        let union = self.area() + other.area() - inter;
        if union <= 0.0 {
            0.0
        } else {
            inter / union
        }
    }
    /// The box with every coordinate multiplied by `f` (e.g. from detector-input pixels to source pixels).
    pub fn scaled(&self, f: f32) -> Self {
        Self::new(self.x0 * f, self.y0 * f, self.x1 * f, self.y1 * f)
    }
    /// The box clipped to `[0, w] x [0, h]`.
    pub fn clipped(&self, w: f32, h: f32) -> Self {
        Self::new(self.x0.clamp(0.0, w), self.y0.clamp(0.0, h), self.x1.clamp(0.0, w), self.y1.clamp(0.0, h))
    }
}

/// What happens where a crop square leaves the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Border {
    /// Shift (and if needed shrink) the square to lie inside the image: only real pixels.
    #[default]
    Clamp,
    /// Keep the square centred on the face; outside pixels replicate the nearest edge pixel.
    Edge,
    /// Keep the square centred on the face; outside pixels get a constant colour (`crop.pad_color`).
    Constant,
}

impl crate::named::Named for Border {
    const ALL: &'static [Self] = &[Border::Clamp, Border::Edge, Border::Constant];
    const WHAT: &'static str = "crop.border";
    fn name(self) -> &'static str {
        match self {
            Border::Clamp => "clamp",
            Border::Edge => "edge",
            Border::Constant => "constant",
        }
    }
    fn help(self) -> &'static str {
        match self {
            Border::Clamp => "Shift the square inside the image (only real pixels)",
            Border::Edge => "Keep the face centred; pad with replicated edge pixels",
            Border::Constant => "Keep the face centred; pad with crop.pad_color",
        }
    }
}
crate::impl_named_str!(Border);

/// How a face box becomes a crop square.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CropGeometry {
    /// Extra size in total, as a fraction of the box's longer side (0.5: a quarter of it on each side).
    pub margin: f32,
    /// Upward shift of the centre, as a fraction of the box height.
    pub shift_up: f32,
    pub border: Border,
}

/// A square crop in source pixel coordinates; for the pad policies it may extend outside the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CropRect {
    pub x0: i64,
    pub y0: i64,
    pub size: u32,
}

impl CropRect {
    pub fn x1(&self) -> i64 {
        self.x0 + i64::from(self.size)
    }
    pub fn y1(&self) -> i64 {
        self.y0 + i64::from(self.size)
    }
    /// True when part of the square lies outside a `w x h` image.
    pub fn leaves(&self, w: u32, h: u32) -> bool {
        self.x0 < 0 || self.y0 < 0 || self.x1() > i64::from(w) || self.y1() > i64::from(h)
    }
}

/// The crop square for `face` in a `w x h` image (see the module documentation for the rules).
pub fn crop_rect(face: &BoxF, w: u32, h: u32, g: &CropGeometry) -> CropRect {
    let side = face.width().max(face.height()) * (1.0 + g.margin);
    let cx = (face.x0 + face.x1) / 2.0;
    let cy = (face.y0 + face.y1) / 2.0 - g.shift_up * face.height();
    let mut size = (side.round() as i64).max(1);
    if g.border == Border::Clamp {
        size = size.min(i64::from(w.min(h))).max(1);
    }
    let mut x0 = (cx - size as f32 / 2.0).round() as i64;
    let mut y0 = (cy - size as f32 / 2.0).round() as i64;
    if g.border == Border::Clamp {
        x0 = x0.clamp(0, i64::from(w) - size);
        y0 = y0.clamp(0, i64::from(h) - size);
    }
    CropRect { x0, y0, size: size as u32 }
}

/// The pixels of `rect`; outside the image they follow `border` (`Clamp` rectangles never leave the image; if one
/// does anyway, it is treated like `Edge`).
pub fn extract_crop(image: &RgbImage, rect: &CropRect, border: Border, pad_color: [u8; 3]) -> RgbImage {
    let (w, h) = (i64::from(image.width()), i64::from(image.height()));
    let size = rect.size as usize;
    let src = image.as_raw();
    let mut out = vec![0u8; size * size * 3];
    for (v, row) in out.chunks_exact_mut(size * 3).enumerate() {
        let sy = rect.y0 + v as i64;
        if border == Border::Constant && !(0..h).contains(&sy) {
            row.chunks_exact_mut(3).for_each(|p| p.copy_from_slice(&pad_color));
            continue;
        }
        let sy = sy.clamp(0, h - 1) as usize;
        let src_row = &src[sy * w as usize * 3..(sy + 1) * w as usize * 3];
        // The part of this row inside the image is one contiguous copy; the rest is padding.
        let inside_start = (-rect.x0).clamp(0, size as i64) as usize;
        let inside_end = (w - rect.x0).clamp(0, size as i64) as usize;
        if inside_start < inside_end {
            let sx = (rect.x0 + inside_start as i64) as usize;
            row[inside_start * 3..inside_end * 3]
                .copy_from_slice(&src_row[sx * 3..(sx + inside_end - inside_start) * 3]);
        }
        for u in (0..inside_start).chain(inside_end..size) {
            let pixel = match border {
                Border::Constant => pad_color,
                _ => {
                    let sx = (rect.x0 + u as i64).clamp(0, w - 1) as usize;
                    [src_row[sx * 3], src_row[sx * 3 + 1], src_row[sx * 3 + 2]]
                }
            };
            row[u * 3..u * 3 + 3].copy_from_slice(&pixel);
        }
    }
    RgbImage::from_raw(rect.size, rect.size, out).expect("buffer sized for the crop")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry(margin: f32, shift_up: f32, border: Border) -> CropGeometry {
        CropGeometry { margin, shift_up, border }
    }

    #[test]
    fn iou_of_known_overlaps() {
        let a = BoxF::new(0.0, 0.0, 10.0, 10.0);
        assert_eq!(a.iou(&a), 1.0);
        // Half overlap: inter 50, union 150.
        assert!((a.iou(&BoxF::new(5.0, 0.0, 15.0, 10.0)) - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(a.iou(&BoxF::new(20.0, 20.0, 30.0, 30.0)), 0.0);
        assert_eq!(a.iou(&BoxF::new(3.0, 3.0, 3.0, 9.0)), 0.0, "empty box");
    }

    #[test]
    fn margin_grows_the_longer_side_into_a_centred_square() {
        // 100x60 box centred at (200, 200): side 100 * 1.5 = 150, square centred on the box.
        let r = crop_rect(&BoxF::new(150.0, 170.0, 250.0, 230.0), 1000, 1000, &geometry(0.5, 0.0, Border::Clamp));
        assert_eq!(r, CropRect { x0: 125, y0: 125, size: 150 });
    }

    #[test]
    fn shift_moves_the_centre_up_by_a_fraction_of_the_box_height() {
        // 100x100 box centred at (500, 500), shift 0.1 -> centre y 490; margin 0 -> side 100.
        let r = crop_rect(&BoxF::new(450.0, 450.0, 550.0, 550.0), 1000, 1000, &geometry(0.0, 0.1, Border::Edge));
        assert_eq!(r, CropRect { x0: 450, y0: 440, size: 100 });
    }

    #[test]
    fn clamp_shifts_inside_and_pad_keeps_the_face_centred() {
        // Box at the top-left corner: the 150 px square would start at (-25, -25).
        let face = BoxF::new(0.0, 0.0, 100.0, 100.0);
        let clamped = crop_rect(&face, 400, 300, &geometry(0.5, 0.0, Border::Clamp));
        assert_eq!(clamped, CropRect { x0: 0, y0: 0, size: 150 });
        assert!(!clamped.leaves(400, 300));
        let padded = crop_rect(&face, 400, 300, &geometry(0.5, 0.0, Border::Edge));
        assert_eq!(padded, CropRect { x0: -25, y0: -25, size: 150 });
        assert!(padded.leaves(400, 300));
        // Bottom-right corner: clamped square ends exactly at the image edge.
        let r = crop_rect(&BoxF::new(350.0, 250.0, 400.0, 300.0), 400, 300, &geometry(1.0, 0.0, Border::Clamp));
        assert_eq!((r.x1(), r.y1(), r.size), (400, 300, 100));
    }

    #[test]
    fn clamp_shrinks_a_square_larger_than_the_image() {
        let r = crop_rect(&BoxF::new(10.0, 10.0, 90.0, 50.0), 100, 60, &geometry(1.0, 0.0, Border::Clamp));
        assert_eq!(r.size, 60, "shorter image side");
        assert!(!r.leaves(100, 60));
    }

    #[test]
    fn extract_copies_inside_pixels_and_pads_outside() {
        // 4x3 image whose pixel (x, y) is (x, y, 7).
        let image = RgbImage::from_fn(4, 3, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let rect = CropRect { x0: -1, y0: 1, size: 3 };
        let edge = extract_crop(&image, &rect, Border::Edge, [0; 3]);
        // Row 0 of the crop is source row 1; column 0 is outside (x = -1) -> replicate x = 0.
        assert_eq!(edge.get_pixel(0, 0).0, [0, 1, 7]);
        assert_eq!(edge.get_pixel(1, 0).0, [0, 1, 7]);
        assert_eq!(edge.get_pixel(2, 1).0, [1, 2, 7]);
        // Row 2 is source y = 3, outside -> replicate y = 2.
        assert_eq!(edge.get_pixel(2, 2).0, [1, 2, 7]);
        let constant = extract_crop(&image, &rect, Border::Constant, [255, 0, 255]);
        assert_eq!(constant.get_pixel(0, 0).0, [255, 0, 255]);
        assert_eq!(constant.get_pixel(1, 0).0, [0, 1, 7]);
        assert_eq!(constant.get_pixel(1, 2).0, [255, 0, 255]);
        // A rectangle fully inside equals the plain sub-image.
        let inside = CropRect { x0: 1, y0: 0, size: 2 };
        let expected = image::imageops::crop_imm(&image, 1, 0, 2, 2).to_image();
        assert_eq!(extract_crop(&image, &inside, Border::Constant, [9; 3]), expected);
    }
}
