//! Upscalers on real images (../shared): exact output sizes, sane values, tiled == untiled, waifu2x beats Lanczos
//! on a restoration task; and the upscale stage's manifest.

use crate::support::faces::*;
use crate::support::shared_dir;
use anime_pipe::faces::upscale::{upscale_to, Method, SrModel, Tiling};
use anime_pipe::pixels::resize_rgb;
use anime_pipe::runtime::{Device, SessionOptions};
use anime_pipe::stages::Stage;
use fast_image_resize as fir;
use image::RgbImage;

fn model(method: Method) -> Option<SrModel> {
    let shared = shared_dir()?;
    let file = match method {
        Method::Waifu2x => "waifu2x_upconv7_anime_scale2x.onnx",
        Method::Realesrgan => "realesr_animevideov3_x4.onnx",
        Method::Lanczos => unreachable!(),
    };
    let options = SessionOptions { device: Device::Cpu, threads: 2, optimize: true };
    Some(SrModel::load(&shared.join("models").join(file), method, &options).unwrap())
}

/// The first `n` holoen256 images (256 x 256 face crops), sorted by name.
fn holoen(n: usize) -> Vec<RgbImage> {
    let Some(shared) = shared_dir() else { return Vec::new() };
    let mut paths: Vec<_> =
        std::fs::read_dir(shared.join("data/holoen256")).unwrap().map(|e| e.unwrap().path()).collect();
    paths.sort();
    paths.iter().take(n).map(|p| image::open(p).unwrap().to_rgb8()).collect()
}

const UNTILED: Tiling = Tiling { tile: 4096, overlap: 16, batch: 1 };

fn mean_rgb(image: &RgbImage) -> [f64; 3] {
    let mut sum = [0f64; 3];
    for p in image.pixels() {
        for c in 0..3 {
            sum[c] += f64::from(p[c]);
        }
    }
    sum.map(|s| s / f64::from(image.width() * image.height()))
}

/// (max, mean) absolute difference per channel value.
fn diff(a: &RgbImage, b: &RgbImage) -> (u8, f64) {
    assert_eq!(a.dimensions(), b.dimensions());
    let d: Vec<u8> = a.as_raw().iter().zip(b.as_raw()).map(|(x, y)| x.abs_diff(*y)).collect();
    (*d.iter().max().unwrap(), d.iter().map(|&v| f64::from(v)).sum::<f64>() / d.len() as f64)
}

fn psnr(a: &RgbImage, b: &RgbImage) -> f64 {
    let mse = a.as_raw().iter().zip(b.as_raw()).map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2)).sum::<f64>()
        / a.as_raw().len() as f64;
    10.0 * (255.0 * 255.0 / mse).log10()
}

#[test]
fn models_give_exact_factors_and_keep_the_colours() {
    let Some(image) = holoen(1).pop() else { return };
    // Odd sizes: waifu2x must still give exactly 2x (7 px of edge padding per side), Real-ESRGAN 4x.
    let small = image::imageops::crop_imm(&image, 50, 40, 37, 23).to_image();
    for (method, factor) in [(Method::Waifu2x, 2), (Method::Realesrgan, 4)] {
        let m = model(method).unwrap();
        let up = m.upscale(&small, &UNTILED).unwrap();
        assert_eq!(up.dimensions(), (37 * factor, 23 * factor), "{method:?}");
        // A restoration model keeps the average colour (within a few levels) and produces real variation.
        let (a, b) = (mean_rgb(&small), mean_rgb(&up));
        for c in 0..3 {
            assert!((a[c] - b[c]).abs() < 4.0, "{method:?} channel {c}: mean {} -> {}", a[c], b[c]);
        }
        let (lo, hi) = up.as_raw().iter().fold((255u8, 0u8), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        assert!(hi - lo > 100, "{method:?}: output range {lo}..{hi}");
    }
}

#[test]
fn tiled_output_matches_untiled() {
    let Some(image) = holoen(1).pop() else { return };
    // 256 x 256 with 96 px tiles: 3 x 3 tiles, overlapping by at least 16 px.
    let tiled = Tiling { tile: 96, overlap: 16, batch: 4 };
    let w2x = model(Method::Waifu2x).unwrap();
    let (max, mean) = diff(&w2x.upscale(&image, &UNTILED).unwrap(), &w2x.upscale(&image, &tiled).unwrap());
    // waifu2x has valid convolutions only and every tile gets its real 7 px context: only float summation order
    // can differ, which moves a value by at most one level after rounding.
    eprintln!("waifu2x tiled vs untiled: max diff {max}, mean {mean:.4}");
    assert!(max <= 1, "waifu2x tiled vs untiled: max diff {max}, mean {mean}");
    let esr = model(Method::Realesrgan).unwrap();
    let small = resize_rgb(&image, 128, 128, fir::FilterType::Lanczos3);
    let tiled = Tiling { tile: 64, overlap: 16, batch: 4 };
    let (max, mean) = diff(&esr.upscale(&small, &UNTILED).unwrap(), &esr.upscale(&small, &tiled).unwrap());
    // Real-ESRGAN zero-pads every convolution, so tile edges see different context; the 16 px overlap and the
    // feathered blend keep the difference invisible: under a third of a level on average, a few levels at most.
    eprintln!("Real-ESRGAN tiled vs untiled: max diff {max}, mean {mean:.4}");
    assert!(mean < 0.3 && max <= 12, "Real-ESRGAN tiled vs untiled: max diff {max}, mean {mean}");
}

#[test]
fn waifu2x_restores_a_halved_image_better_than_lanczos() {
    let images = holoen(4);
    if images.is_empty() {
        return;
    }
    let w2x = model(Method::Waifu2x).unwrap();
    let tiling = Tiling { tile: 256, overlap: 16, batch: 4 };
    for (i, original) in images.iter().enumerate() {
        // 256 -> 128 by area averaging (box filter at exactly 2x), then back to 256 both ways.
        let half = resize_rgb(original, 128, 128, fir::FilterType::Box);
        let lanczos = upscale_to(&half, 256, None, &tiling).unwrap();
        let sr = upscale_to(&half, 256, Some(&w2x), &tiling).unwrap();
        assert_eq!((lanczos.image.dimensions(), sr.image.dimensions(), sr.passes), ((256, 256), (256, 256), 1));
        let (p_lanczos, p_sr) = (psnr(original, &lanczos.image), psnr(original, &sr.image));
        eprintln!("holoen256 image {i}: PSNR lanczos {p_lanczos:.2} dB, waifu2x {p_sr:.2} dB");
        assert!(p_sr > p_lanczos + 0.5, "image {i}: waifu2x {p_sr:.2} dB vs lanczos {p_lanczos:.2} dB");
    }
}

#[test]
fn repeated_passes_reach_the_target_exactly() {
    let Some(image) = holoen(1).pop() else { return };
    let small = resize_rgb(&image, 40, 30, fir::FilterType::Lanczos3);
    let tiling = Tiling { tile: 256, overlap: 16, batch: 4 };
    // 30 -> 60 -> 120 -> 240 >= 200: three 2x passes, then Lanczos down to a 200 px shorter side.
    let up = upscale_to(&small, 200, model(Method::Waifu2x).as_ref(), &tiling).unwrap();
    assert_eq!((up.image.dimensions(), up.passes), ((267, 200), 3));
    // 30 -> 120 -> 480: two 4x passes.
    let up = upscale_to(&small, 200, model(Method::Realesrgan).as_ref(), &tiling).unwrap();
    assert_eq!((up.image.dimensions(), up.passes), ((267, 200), 2));
}

#[test]
fn stage_upscales_only_small_items_and_records_how() {
    let Some(image) = holoen(1).pop() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut ctx = context(dir.path(), "upscale: {method: waifu2x, target: 128}", 2);
    let small = resize_rgb(&image, 48, 48, fir::FilterType::Lanczos3);
    let wide = resize_rgb(&image, 100, 80, fir::FilterType::Lanczos3);
    let mut broken = png(&small);
    broken.truncate(100);
    let inputs = [
        Input::new("faces", "a_small.png", png(&small)),
        Input::new("faces", "b_large.png", png(&image)),
        Input::new("faces", "c_wide.png", png(&wide)),
        Input { width: 48, height: 48, ..Input::new("faces", "d_broken.png", broken) },
    ];
    publish_dedup(&mut ctx, &inputs, &["faces"]);
    let summary = ctx.run(Stage::Upscale).unwrap();
    let df = read_stage(&ctx.workdir, "upscale");
    assert_eq!(strs(&df, "key"), inputs.iter().map(|i| Some(i.key())).collect::<Vec<_>>());
    assert_eq!(
        strs(&df, "upscale_method"),
        ["waifu2x", "none", "waifu2x", "none"].map(|s| Some(s.to_string())).to_vec()
    );
    assert_eq!(u32s(&df, "upscale_passes"), vec![Some(2), Some(0), Some(1), Some(0)]);
    // 48 -> 128 (factor 8/3); 80 -> 128 with the width following: 100 * 128 / 80 = 160.
    assert_eq!(u32s(&df, "upscaled_width"), vec![Some(128), None, Some(160), None]);
    assert_eq!(u32s(&df, "upscaled_height"), vec![Some(128), None, Some(128), None]);
    let factor = f64s(&df, "upscale_factor");
    assert!((factor[0].unwrap() - 128.0 / 48.0).abs() < 1e-9 && factor[1] == Some(1.0));
    // Originals are kept (clean judges their real size); the upscaled object decodes at the recorded size.
    assert_eq!(u32s(&df, "width")[0], Some(48));
    assert_eq!(strs(&df, "object")[0], Some(inputs[0].object()));
    let up = object_image(&ctx.workdir, strs(&df, "upscaled_object")[0].as_deref().unwrap());
    assert_eq!(up.dimensions(), (128, 128));
    assert_eq!(strs(&df, "reason")[3].as_deref(), Some("decode_failed"));
    assert_eq!(summary.rejects.get("decode_failed"), Some(&1));

    // clean reads upscale.parquet when the stage is configured, with the original sizes and the upscaled object.
    ctx.plan.stages = vec![Stage::Ingest, Stage::Dedup, Stage::Upscale, Stage::Clean];
    assert_eq!(ctx.plan.upstream(Stage::Clean), Some(Stage::Upscale));
    let upstream = anime_pipe::manifest::Upstream::of(&ctx.workdir, "upscale", "clean").unwrap();
    let items = anime_pipe::manifest::read_items(&ctx.workdir, &upstream).unwrap();
    assert_eq!((items[0].width, items[0].upscaled_object.is_some()), (48, true));
    assert_eq!(items[1].upscaled_object, None);
    // The original's measures pass through upscale for clean to judge.
    assert!(items.iter().all(|i| i.measures.is_some()));
}
