//! `loss.png`: the training curves, drawn with plotters' bitmap backend into a buffer and encoded by `image`.
//!
//! Text needs a font, and bare machines (CI, containers) have none, so plotters' system-font loader (`ttf`) would
//! fail there. We use its `ab_glyph` renderer with one font embedded in the binary: Go Regular (Bigelow & Holmes
//! for the Go project, BSD-3-Clause, 140 KB; licence in `fonts/LICENSE-Go-fonts.txt`), registered once as
//! "sans-serif". Plotters' own PNG encoder is left out (it would pull a second `image` version); the RGB buffer is
//! written with the `image` crate the rest of the tool uses.
use crate::pixels::{write_png, PngCompression};
use crate::rundir::MetricRow;
use anyhow::{anyhow, Result};
use plotters::prelude::*;
use std::path::Path;
use std::sync::OnceLock;

const FONT: &[u8] = include_bytes!("fonts/Go-Regular.ttf");
const FAMILY: &str = "sans-serif";
pub const WIDTH: u32 = 1000;
pub const HEIGHT: u32 = 700;

fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    ok.then_some(()).ok_or_else(|| anyhow!("the embedded plot font could not be parsed"))
}

/// Draws the loss curves (top) and D's mean outputs on real and generated images (bottom) against the step.
pub fn render_losses(rows: &[MetricRow], title: &str) -> Result<image::RgbImage> {
    register_font()?;
    let mut buffer = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let root = root.titled(title, (FAMILY, 22)).map_err(plot_error)?;
        let (top, bottom) = root.split_vertically(HEIGHT * 58 / 100);
        let steps = rows.iter().map(|r| r.step).max().unwrap_or(1).max(1) as f64;
        let finite = |v: f64| v.is_finite().then_some(v);
        let loss_max = rows.iter().flat_map(|r| [r.loss_d, r.loss_g]).filter_map(finite).fold(0.0f64, f64::max);
        panel(
            &top,
            "loss",
            steps,
            (0.0, (loss_max * 1.05).max(1e-3)),
            &[
                ("loss_d", RED, rows.iter().map(|r| (r.step as f64, r.loss_d)).collect()),
                ("loss_g", BLUE, rows.iter().map(|r| (r.step as f64, r.loss_g)).collect()),
            ],
        )?;
        panel(
            &bottom,
            "D output",
            steps,
            (0.0, 1.0),
            &[
                ("D(x)", RGBColor(0, 150, 0), rows.iter().map(|r| (r.step as f64, r.d_x)).collect()),
                ("D(G(z))", MAGENTA, rows.iter().map(|r| (r.step as f64, r.d_gz)).collect()),
            ],
        )?;
        root.present().map_err(plot_error)?;
    }
    image::RgbImage::from_raw(WIDTH, HEIGHT, buffer).ok_or_else(|| anyhow!("plot buffer has the wrong size"))
}

type Series = (&'static str, RGBColor, Vec<(f64, f64)>);

fn panel(
    area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    y_label: &str,
    max_step: f64,
    y_range: (f64, f64),
    series: &[Series],
) -> Result<()> {
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..max_step, y_range.0..y_range.1)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("step")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_desc(y_label)
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 16))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(plot_error)?;
    for (name, color, points) in series {
        // A non-finite value (a diverged run's last row) would break the line: drop those points.
        let points: Vec<(f64, f64)> = points.iter().copied().filter(|(_, y)| y.is_finite()).collect();
        let color = *color;
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(plot_error)?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .label_font((FAMILY, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(plot_error)?;
    Ok(())
}

fn plot_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("cannot draw the plot: {e:?}")
}

/// Renders and writes `loss.png` atomically.
pub fn write_loss_plot(path: &Path, rows: &[MetricRow], title: &str) -> Result<()> {
    let image = render_losses(rows, title)?;
    write_png(path, &image, PngCompression::Fast)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_curves_and_text_on_a_white_canvas() {
        let rows: Vec<MetricRow> = (1..=50)
            .map(|i| MetricRow {
                step: i * 10,
                epoch: 1,
                loss_d: 1.4 - i as f64 / 100.0,
                loss_g: 0.7 + i as f64 / 50.0,
                d_x: 0.6,
                d_gz: 0.3,
                lr_d: 2e-4,
                lr_g: 2e-4,
                images_per_s: 100.0,
                fid: None,
                fid_raw: None,
            })
            .collect();
        let image = render_losses(&rows, "test run").unwrap();
        assert_eq!(image.dimensions(), (WIDTH, HEIGHT));
        let count = |f: &dyn Fn(&image::Rgb<u8>) -> bool| image.pixels().filter(|p| f(p)).count();
        // The red (loss_d) and blue (loss_g) curves are drawn, and text (grey antialiased glyphs) exists.
        assert!(count(&|p| p[0] > 200 && p[1] < 60 && p[2] < 60) > 200, "red curve");
        assert!(count(&|p| p[2] > 200 && p[0] < 60 && p[1] < 60) > 200, "blue curve");
        assert!(count(&|p| p[0] == p[1] && p[1] == p[2] && p[0] > 40 && p[0] < 200) > 100, "antialiased text");
        // Most of the canvas stays white.
        assert!(count(&|p| p.0 == [255, 255, 255]) > (WIDTH * HEIGHT / 2) as usize);
    }

    #[test]
    fn survives_empty_and_non_finite_rows() {
        render_losses(&[], "empty").unwrap();
        let row = MetricRow {
            step: 1,
            epoch: 1,
            loss_d: f64::NAN,
            loss_g: f64::INFINITY,
            d_x: 0.5,
            d_gz: 0.5,
            lr_d: 1.0,
            lr_g: 1.0,
            images_per_s: 0.0,
            fid: None,
            fid_raw: None,
        };
        render_losses(&[row], "nan").unwrap();
    }
}
