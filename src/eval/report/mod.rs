//! `runs/<name>/report.html`: one self-contained page (no external files, scripts or fonts; images inlined as
//! base64 PNG, charts as inline SVG) for a person comparing a run's checkpoints:
//!
//! 1. the reference set and the evaluation settings;
//! 2. FID, KID (x 10^3, error bars = ± std over subsets) and the feature-spread ratio over epochs, one series per
//!    weights in a run with a moving average of G (EMA and raw); with `train --eval-every`, the in-training FID
//!    curve and the best generator (`best.json`, `best.generator.onnx`) marked;
//! 3. the training curves from `metrics.parquet` (D and G losses; D's mean outputs on reals and fakes), each
//!    series reduced to at most [`MAX_CURVE_POINTS`] bucket means ([`charts`] draws them) so long runs stay light; `loss.png` is embedded
//!    instead when there is no readable metrics file;
//! 4. sample grids side by side: real images of the reference split, then every evaluated generator on the same
//!    latents (cell k of every grid comes from the same latent vector);
//! 5. the metrics table and the run's `config.json`.
pub mod charts;

use super::table::Row;
use super::Ctx;
use crate::manifest::columns;
use crate::pixels::{encode_png_with, grid, GridLayout, PngCompression};
use crate::rundir::RunDir;
use anyhow::Result;
use base64::Engine;
use charts::{bucket_means, line_chart, Series};
use std::fmt::Write as _;

/// Points per training curve after bucketing.
pub const MAX_CURVE_POINTS: usize = 600;
/// Gap between grid cells, in pixels.
const GRID_GAP: u32 = 2;
const GRID_BACKGROUND: [u8; 3] = [32, 32, 32];

/// A PNG of the first `count` packed RGB8 images (`side` x `side`) in a near-square grid (columns =
/// ceil(sqrt(count))) on a dark background; best compression, because these grids are embedded in report.html
/// and generated noise compresses poorly.
pub fn grid_png(pixels: &[u8], side: u32, count: usize) -> Result<Vec<u8>> {
    let layout = GridLayout::near_square(count, side, GRID_GAP, GRID_BACKGROUND);
    let cells = pixels.chunks_exact((side * side * 3) as usize).take(count.max(1));
    encode_png_with(&grid(&layout, cells), PngCompression::Best)
}

fn data_uri_png(png: &[u8]) -> String {
    format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(png))
}

pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const COLORS: [&str; 4] = ["#2563eb", "#dc2626", "#059669", "#d97706"];

/// The report page for a run directory and its eval rows.
pub(crate) fn build(ctx: &Ctx<'_>, run: &RunDir, rows: &[Row], dataset_digest: &str) -> Result<String> {
    let name = run
        .root()
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().to_string()))
        .unwrap_or_else(|| run.root().display().to_string());
    let settings = &ctx.req.settings;
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>anime-pipe eval: {title}</title>\
         <style>{STYLE}</style></head><body><h1>Run <code>{title}</code></h1>",
        title = escape(&name)
    );
    html.push_str(&settings_section(ctx, rows, dataset_digest));
    html.push_str(&best_section(run));
    html.push_str("<h2>Metrics over training</h2><div class=\"charts\">");
    html.push_str(&metric_charts(rows));
    html.push_str(&in_training_fid_chart(run));
    html.push_str("</div><h2>Training curves</h2><div class=\"charts\">");
    html.push_str(&training_curves(run));
    html.push_str(
        "</div><h2>Samples</h2><p class=\"note\">Same latent vectors in every generator's grid (cell by cell); \
                   the first grid shows real images of the reference split.</p><div class=\"grids\">",
    );
    html.push_str(&sample_grids(ctx, run, rows)?);
    html.push_str("</div><h2>Table</h2>");
    html.push_str(&metrics_table(rows));
    html.push_str(&config_section(run));
    html.push_str("</body></html>\n");
    let _ = settings;
    Ok(html)
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px 32px;color:#111;\
background:#fafafa}h1{font-size:22px;margin:0 0 8px}h2{font-size:18px;margin:28px 0 10px;border-bottom:1px solid #ddd;\
padding-bottom:4px}code{font-family:ui-monospace,monospace;font-size:90%}table{border-collapse:collapse;font-size:13px;\
background:#fff}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}th{background:#f0f0f0}\
td.l,th.l{text-align:left}.charts{display:flex;flex-wrap:wrap;gap:12px}.chart{background:#fff;border:1px solid #ddd}\
.chart .title{font-size:14px;font-weight:600}.chart .tick{font-size:11px;fill:#555}.chart .label{font-size:12px;fill:#333}\
.chart .legend{font-size:12px;fill:#333}.chart .grid{stroke:#eee}.chart .axis{stroke:#888}\
.chart .line{stroke-width:1.8}.chart .err{stroke-width:1.5;opacity:.6}.chart .refline{stroke:#999;stroke-dasharray:4 3}\
.chart .empty{font-size:13px;fill:#999}.grids{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));\
gap:14px}.card{background:#fff;border:1px solid #ddd;padding:8px}.card img{width:100%;image-rendering:pixelated;\
display:block}.card .cap{font-size:13px;margin-top:6px}.card.real{border-color:#059669}.note{color:#555;font-size:13px}\
.best{background:#ecfdf5;border:1px solid #059669;padding:6px 10px;font-size:14px}dl{display:grid;grid-template-columns:max-content auto;gap:2px 14px;font-size:13px}dt{color:#555}dd{margin:0}\
pre{background:#fff;border:1px solid #ddd;padding:8px;font-size:12px;overflow:auto}";

fn settings_section(ctx: &Ctx<'_>, rows: &[Row], dataset_digest: &str) -> String {
    let s = &ctx.req.settings;
    let mut refs: Vec<String> = rows
        .iter()
        .map(|r| format!("{} x {} px {} images (key {})", r.reference_count, r.size, s.split, &r.reference[..12]))
        .collect();
    refs.dedup();
    // As used (subsets shrink for small n), not as configured.
    let mut kid: Vec<String> =
        rows.iter().map(|r| format!("{} subsets of {}", r.kid_subsets, r.kid_subset_size)).collect();
    kid.dedup();
    let kid_text = format!("{} (unbiased MMD², kernel (x·y/d + 1)³)", kid.join("; "));
    let items = [
        ("dataset digest", format!("<code>{}</code>", escape(dataset_digest))),
        ("reference", escape(&refs.join("; "))),
        ("generated per checkpoint", format!("{} (seed {})", s.samples, s.seed)),
        ("KID", kid_text),
        ("Inception", escape(&ctx.req.inception.display().to_string())),
        (
            "near duplicates",
            format!(
                "generated samples within {} bits (pHash) of another, transitively: the test of `anime-pipe dedup`, so a \
                 deduplicated pack has none among its reals",
                ctx.req.settings.near_threshold
            ),
        ),
    ];
    let mut html = String::from("<dl>");
    for (k, v) in items {
        let _ = write!(html, "<dt>{k}</dt><dd>{v}</dd>");
    }
    html.push_str("</dl>");
    if rows.iter().any(|r| r.n < 2048) {
        html.push_str(
            "<p class=\"note\">Fewer than 2048 generated samples: the covariance is rank-deficient and FID is biased \
             upwards; compare FIDs only at equal n (KID is unbiased).</p>",
        );
    }
    html
}

/// x positions: epochs when every row has one, else steps when every row has one, else table order.
fn x_of(rows: &[Row]) -> (Vec<f64>, &'static str) {
    if rows.iter().all(|r| r.epoch.is_some()) {
        (rows.iter().map(|r| f64::from(r.epoch.unwrap_or(0))).collect(), "epoch")
    } else if rows.iter().all(|r| r.step.is_some()) {
        (rows.iter().map(|r| r.step.unwrap_or(0) as f64).collect(), "step")
    } else {
        ((0..rows.len()).map(|i| i as f64).collect(), "generator (table order)")
    }
}

/// The rows of each weights kind (all rows, unnamed, for a run without a moving average).
fn by_weights(rows: &[Row]) -> Vec<(&'static str, Vec<Row>)> {
    if rows.iter().all(|r| r.weights.is_none()) {
        return vec![("", rows.to_vec())];
    }
    let pick = |w: &str| rows.iter().filter(|r| r.weights.as_deref().unwrap_or("ema") == w).cloned().collect();
    vec![(" (EMA)", pick("ema")), (" (raw)", pick("raw"))]
}

fn metric_charts(rows: &[Row]) -> String {
    let (_, x_label) = x_of(rows);
    let (mut fid, mut kid, mut spread) = (Vec::new(), Vec::new(), Vec::new());
    for (k, (suffix, group)) in by_weights(rows).into_iter().enumerate() {
        let (xs, _) = x_of(&group);
        let series = |name: String, color, values: Vec<f64>, errors: Option<Vec<f64>>| Series {
            name,
            color,
            points: xs.iter().copied().zip(values).collect(),
            errors,
            markers: true,
        };
        fid.push(series(format!("FID{suffix}"), COLORS[k], group.iter().map(|r| r.fid).collect(), None));
        kid.push(series(
            format!("KID x1e3 (± std){suffix}"),
            COLORS[k],
            group.iter().map(|r| r.kid_mean * 1e3).collect(),
            Some(group.iter().map(|r| r.kid_std * 1e3).collect()),
        ));
        let ratios = group.iter().map(|r| r.feature_spread_ratio).collect();
        spread.push(series(format!("generated / real{suffix}"), COLORS[k], ratios, None));
    }
    [
        line_chart("FID (lower is better)", x_label, &fid, None),
        line_chart("KID x 10³ (lower is better)", x_label, &kid, Some((0.0, "0"))),
        line_chart("Feature spread ratio (collapse < 1)", x_label, &spread, Some((1.0, "reals"))),
    ]
    .concat()
}

/// The best generator of `train --eval-every`, from best.json (nothing without one).
fn best_section(run: &RunDir) -> String {
    match crate::rundir::read_best(&run.best_path()) {
        Ok(Some(b)) => format!(
            "<p class=\"best\"><b>Best during training</b>: step {} · FID {:.2} ({} samples vs {}; {} weights) · \
             <code>best.generator.onnx</code></p>",
            b.step,
            b.fid,
            b.samples,
            escape(&b.reference),
            escape(&b.weights)
        ),
        _ => String::new(),
    }
}

/// metrics.parquet's `fid` / `fid_raw` over steps (`train --eval-every`), the best step named in the title;
/// nothing when the run was not scored during training.
fn in_training_fid_chart(run: &RunDir) -> String {
    let Ok(rows) = crate::rundir::read_metrics(&run.metrics_path()) else { return String::new() };
    let points = |get: fn(&crate::rundir::MetricRow) -> Option<f64>| -> Vec<(f64, f64)> {
        rows.iter().filter_map(|r| Some((r.step as f64, get(r)?))).collect()
    };
    let (average, raw) = (points(|r| r.fid), points(|r| r.fid_raw));
    if average.is_empty() {
        return String::new();
    }
    let name = if raw.is_empty() { "FID" } else { "FID (EMA)" };
    let mut series = vec![Series { name: name.into(), color: COLORS[0], points: average, errors: None, markers: true }];
    if !raw.is_empty() {
        series.push(Series { name: "FID (raw)".into(), color: COLORS[1], points: raw, errors: None, markers: true });
    }
    let title = match crate::rundir::read_best(&run.best_path()) {
        Ok(Some(b)) => format!("In-training FID (best {:.2} at step {}: best.generator.onnx)", b.fid, b.step),
        _ => "In-training FID".into(),
    };
    line_chart(&title, "step", &series, None)
}

/// Read column by column, so a metrics file with only some of the columns still gives those curves.
fn training_curves(run: &RunDir) -> String {
    let metrics = crate::manifest::read_parquet(&run.metrics_path()).ok();
    let column = |name: &str| metrics.as_ref().and_then(|df| columns::opt_f64s(df, name).ok());
    if let Some(steps) = column("step") {
        let curve = |name: &str, label: &str, color| {
            column(name).map(|values| {
                let points: Vec<(f64, f64)> = steps
                    .iter()
                    .zip(values)
                    .filter_map(|(s, v)| Some((((*s)?), v?)))
                    .filter(|p| p.1.is_finite())
                    .collect();
                Series {
                    name: label.into(),
                    color,
                    points: bucket_means(&points, MAX_CURVE_POINTS),
                    errors: None,
                    markers: false,
                }
            })
        };
        let losses: Vec<Series> = [curve("loss_d", "D loss", COLORS[0]), curve("loss_g", "G loss", COLORS[1])]
            .into_iter()
            .flatten()
            .collect();
        let outputs: Vec<Series> = [curve("d_x", "D(x) reals", COLORS[2]), curve("d_gz", "D(G(z)) fakes", COLORS[3])]
            .into_iter()
            .flatten()
            .collect();
        if !losses.is_empty() || !outputs.is_empty() {
            return [
                line_chart("Losses", "step", &losses, None),
                line_chart("Discriminator outputs (mean sigmoid)", "step", &outputs, Some((0.5, "0.5"))),
            ]
            .concat();
        }
    }
    match std::fs::read(run.loss_plot_path()) {
        Ok(png) => format!("<img src=\"{}\" alt=\"loss curves\" style=\"max-width:100%\">", data_uri_png(&png)),
        Err(_) => "<p class=\"note\">No metrics.parquet or loss.png in the run directory.</p>".into(),
    }
}

fn sample_grids(ctx: &Ctx<'_>, run: &RunDir, rows: &[Row]) -> Result<String> {
    let mut html = String::new();
    if let Some(first) = rows.first() {
        if let Some(png) = real_grid(ctx, first.size, ctx.req.settings.grid) {
            let _ = write!(
                html,
                "<div class=\"card real\"><img src=\"{}\" alt=\"real images\"><div class=\"cap\"><b>real</b> ({} split, \
                 {} px)</div></div>",
                data_uri_png(&png),
                escape(&ctx.req.settings.split),
                first.size
            );
        }
    }
    for r in rows {
        let caption = format!(
            "<b>{}</b>{} · FID {:.2} · KID×10³ {:.2}",
            escape(&r.label),
            r.step.map_or(String::new(), |s| format!(" (step {s})")),
            r.fid,
            r.kid_mean * 1e3
        );
        match std::fs::read(run.eval_grid_path(&r.label)) {
            Ok(png) => {
                let _ = write!(
                    html,
                    "<div class=\"card\"><img src=\"{}\" alt=\"{}\"><div class=\"cap\">{caption}</div></div>",
                    data_uri_png(&png),
                    escape(&r.label)
                );
            }
            Err(_) => {
                let _ = write!(html, "<div class=\"card\"><div class=\"cap\">{caption} (grid missing)</div></div>");
            }
        }
    }
    Ok(html)
}

/// A grid of the first `count` reference images, or None when the pack cannot be read.
fn real_grid(ctx: &Ctx<'_>, size: u32, count: usize) -> Option<Vec<u8>> {
    let mut items = super::reference::reference_items(&ctx.env.workdir, size, &ctx.req.settings.split).ok()?;
    items.truncate(count.max(1));
    let mut pixels = Vec::new();
    super::reference::for_each_batch(&ctx.env.workdir, &items, size, items.len(), |p, _| {
        pixels.extend_from_slice(p);
        Ok(())
    })
    .ok()?;
    grid_png(&pixels, size, items.len()).ok()
}

fn metrics_table(rows: &[Row]) -> String {
    let mut html = String::from(
        "<table><tr><th class=\"l\">generator</th><th>epoch</th><th>step</th><th>n</th><th>FID</th>\
         <th>KID×10³</th><th>± std</th><th>spread ratio</th><th>near dups</th><th>seconds</th></tr>",
    );
    let best = rows.iter().map(|r| r.fid).fold(f64::INFINITY, f64::min);
    for r in rows {
        let fid = if r.fid == best { format!("<b>{:.2}</b>", r.fid) } else { format!("{:.2}", r.fid) };
        let _ = write!(
            html,
            "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{fid}</td><td>{:.3}</td><td>{:.3}</td>\
             <td>{:.3}</td><td>{}</td><td>{:.1}</td></tr>",
            escape(&r.checkpoint),
            r.epoch.map_or("-".into(), |e| e.to_string()),
            r.step.map_or("-".into(), |s| s.to_string()),
            r.n,
            r.kid_mean * 1e3,
            r.kid_std * 1e3,
            r.feature_spread_ratio,
            r.near_dup_count,
            r.seconds
        );
    }
    html.push_str("</table>");
    html
}

fn config_section(run: &RunDir) -> String {
    match std::fs::read_to_string(run.config_path()) {
        Ok(text) => {
            let pretty = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or(text);
            format!(
                "<h2>Run configuration</h2><details><summary>config.json</summary><pre>{}</pre></details>",
                escape(&pretty)
            )
        }
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_places_tiles_row_major_with_gaps() {
        // 3 tiles of 2x2 -> 2 columns, 2 rows; tile k filled with value 10 * (k + 1).
        let pixels: Vec<u8> = (0..3u8).flat_map(|k| [10 * (k + 1); 12]).collect();
        let png = grid_png(&pixels, 2, 3).unwrap();
        let img = image::load_from_memory(&png).unwrap().into_rgb8();
        assert_eq!(img.dimensions(), (2 * 4 + 2, 2 * 4 + 2));
        assert_eq!(img.get_pixel(2, 2).0, [10; 3]);
        assert_eq!(img.get_pixel(6, 2).0, [20; 3]);
        assert_eq!(img.get_pixel(2, 6).0, [30; 3]);
        assert_eq!(img.get_pixel(6, 6).0, [32; 3], "empty cell shows the background");
        assert_eq!(img.get_pixel(0, 0).0, [32; 3]);
    }
}
