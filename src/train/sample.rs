//! `anime-pipe sample`: images from an exported generator (see `gan::generator` for the models it accepts and the
//! seeded latents), as a grid, latent-space walks ([`super::walks`]) or separate PNGs.
//!
//! **Latents**: those of `gan::generator::latents`, so `sample` and `eval` with the same seed draw the same images;
//! `--save-latents` writes them as `.npy` so other tools can reuse them.
//!
//! **Grids** (also the trainer's `samples/*.png`): cells of S x S in rows, separated and framed by a 2-pixel dark
//! grey border ([`GRID_PAD`]), so a C x R grid is `C (S + 2) + 2` by `R (S + 2) + 2` pixels.
use crate::gan::generator::{latents, Generator, EXPORT_BATCH};
use crate::pixels::{enlarge, write_png, GridLayout, PngCompression};
use crate::report::Summary;
use crate::runtime::{Device, SessionOptions};
use crate::train::walks::walk_latents;
use anyhow::{bail, Result};
use image::RgbImage;
use std::path::PathBuf;

/// The trainer's per-epoch sample grids: a fixed batch of 8 columns x 4 rows of latents.
pub const SAMPLE_COLS: usize = 8;
pub const SAMPLE_ROWS: usize = 4;
/// Border between and around grid cells, in pixels.
pub const GRID_PAD: u32 = 2;
pub const GRID_BACKGROUND: [u8; 3] = [40, 40, 40];
/// Sample grids are written often (every sampled epoch): fast compression.
pub const GRID_COMPRESSION: PngCompression = PngCompression::Fast;

/// Lays out `images` (S x S RGB each) in a grid of `cols` columns, row by row; empty cells stay background.
pub fn grid(images: &[u8], size: usize, cols: usize, rows: usize) -> RgbImage {
    let layout = GridLayout {
        columns: cols as u32,
        rows: rows as u32,
        cell: size as u32,
        pad: GRID_PAD,
        background: GRID_BACKGROUND,
    };
    crate::pixels::grid(&layout, images.chunks_exact(size * size * 3))
}

/// A float32 C-order `.npy` (format 1.0) of shape `shape`.
pub fn npy_bytes(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // magic (6) + version (2) + header length (2) + header + '\n' is a multiple of 64.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// `COLSxROWS` (e.g. `8x8`).
pub fn parse_grid(text: &str) -> Result<(usize, usize)> {
    let parsed = text.split_once(['x', 'X']).and_then(|(c, r)| Some((c.parse().ok()?, r.parse().ok()?)));
    match parsed {
        Some((c, r)) if c > 0 && r > 0 && c * r <= 100_000 => Ok((c, r)),
        _ => bail!("--grid {text:?}: expected COLSxROWS with positive numbers, e.g. 8x8"),
    }
}

/// What `anime-pipe sample` draws.
#[derive(Debug, Clone)]
pub struct SampleRequest {
    pub model: PathBuf,
    pub out: PathBuf,
    pub count: Option<usize>,
    /// "COLSxROWS".
    pub grid: Option<String>,
    /// Steps per latent walk.
    pub interpolate: Option<usize>,
    pub rows: usize,
    pub lerp: bool,
    pub seed: u64,
    pub scale: u32,
    pub separate: Option<PathBuf>,
    pub save_latents: Option<PathBuf>,
}

/// `anime-pipe sample`.
pub fn run(args: &SampleRequest, device: Device, threads: usize) -> Result<Summary> {
    let mut summary = Summary::start("sample");
    let options = SessionOptions { device, threads, optimize: true };
    let mut generator = Generator::load(&args.model, &options)?;
    let nz = generator.latent_len();
    let (z, cols, rows, what) = match args.interpolate {
        Some(k) => {
            if !(2..=1000).contains(&k) || !(1..=1000).contains(&args.rows) {
                bail!("--interpolate {k} --rows {}: expected 2..=1000 steps and 1..=1000 rows", args.rows);
            }
            let walk = walk_latents(args.seed, args.rows, k, nz, !args.lerp);
            (walk, k, args.rows, if args.lerp { "lerp walks" } else { "slerp walks" })
        }
        None => {
            let grid = args.grid.as_deref().map(parse_grid).transpose()?;
            let n = args.count.or(grid.map(|(c, r)| c * r)).unwrap_or(64);
            if n == 0 || n > 100_000 {
                bail!("-n {n}: expected 1..=100000 images");
            }
            let (cols, rows) = grid.unwrap_or_else(|| {
                let cols = (n as f64).sqrt().ceil() as usize;
                (cols, n.div_ceil(cols))
            });
            if cols * rows < n {
                bail!("--grid {cols}x{rows} has {} cells, fewer than -n {n}", cols * rows);
            }
            (latents(args.seed, n, nz), cols, rows, "images")
        }
    };
    let count = z.len() / nz;
    let (images, side) = generator.generate_all(&z, EXPORT_BATCH)?;
    let size = side as usize;
    write_png(&args.out, &enlarge(&grid(&images, size, cols, rows), args.scale), GRID_COMPRESSION)?;
    if let Some(dir) = &args.separate {
        std::fs::create_dir_all(dir)?;
        for (i, pixels) in images.chunks_exact(size * size * 3).enumerate() {
            let image = RgbImage::from_raw(side, side, pixels.to_vec()).expect("cell size");
            write_png(&dir.join(format!("{i:05}.png")), &enlarge(&image, args.scale), GRID_COMPRESSION)?;
        }
    }
    if let Some(path) = &args.save_latents {
        crate::workdir::atomic_write(path, &npy_bytes(&[count, nz], &z))?;
    }
    summary.count(what, count as u64);
    summary
        .fact("grid", format!("{cols}x{rows} of {size}x{size}"))
        .fact("latent size", nz)
        .fact("seed", args.seed)
        .fact("out", args.out.display());
    Ok(summary.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_places_cells_row_by_row_with_borders() {
        let size = 2;
        let images: Vec<u8> = (0..3u8).flat_map(|i| vec![i * 100; size * size * 3]).collect();
        let g = grid(&images, size, 2, 2);
        assert_eq!(g.dimensions(), (2 * (2 + GRID_PAD) + GRID_PAD, 2 * (2 + GRID_PAD) + GRID_PAD));
        assert_eq!(g.get_pixel(GRID_PAD, GRID_PAD).0, [0, 0, 0]);
        assert_eq!(g.get_pixel(GRID_PAD + 2 + GRID_PAD, GRID_PAD).0, [100; 3]);
        assert_eq!(g.get_pixel(GRID_PAD, GRID_PAD + 2 + GRID_PAD + 1).0, [200; 3]);
        assert_eq!(g.get_pixel(0, 0).0, GRID_BACKGROUND);
        assert_eq!(g.get_pixel(GRID_PAD + 2 + GRID_PAD, GRID_PAD + 2 + GRID_PAD).0, GRID_BACKGROUND, "empty cell");
    }

    #[test]
    fn npy_header_is_aligned_and_parsable() {
        let bytes = npy_bytes(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
        assert!(header.contains("'shape': (2, 3)") && header.ends_with('\n'), "{header}");
        assert_eq!(bytes.len(), 10 + header_len + 24);
        assert_eq!(&bytes[10 + header_len..10 + header_len + 4], &1.0f32.to_le_bytes());
    }

    #[test]
    fn grid_specs_parse() {
        assert_eq!(parse_grid("8x4").unwrap(), (8, 4));
        assert!(parse_grid("8").is_err() && parse_grid("0x3").is_err());
    }
}
