//! Inline SVG line charts for report.html: axes with round-number ticks, grid lines, a legend, optional error
//! bars and a dashed reference line; styled by the page's CSS classes (`chart`, `tick`, `line`, ...).
use super::escape;
use std::fmt::Write as _;

/// One line of a chart.
pub struct Series {
    pub name: String,
    pub color: &'static str,
    pub points: Vec<(f64, f64)>,
    /// Symmetric error bars, one per point.
    pub errors: Option<Vec<f64>>,
    pub markers: bool,
}

/// "Nice" tick step (1, 2 or 5 times a power of ten) for about `target` intervals over `range`.
fn tick_step(range: f64, target: f64) -> f64 {
    let raw = range / target;
    let magnitude = 10f64.powf(raw.log10().floor());
    let ratio = raw / magnitude;
    let nice = if ratio <= 1.0 {
        1.0
    } else if ratio <= 2.0 {
        2.0
    } else if ratio <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

fn format_tick(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 { 0 } else { (-step.log10().floor()) as usize };
    let v = if v.abs() < step * 1e-9 { 0.0 } else { v };
    if v.abs() >= 1e5 {
        format!("{v:.0}")
    } else {
        format!("{v:.decimals$}")
    }
}

/// An inline SVG line chart (axes, ticks, grid lines, legend, optional horizontal reference line).
pub fn line_chart(title: &str, x_label: &str, series: &[Series], reference_line: Option<(f64, &str)>) -> String {
    let (w, h) = (560.0, 300.0);
    let (left, right, top, bottom) = (64.0, 16.0, 34.0, 44.0);
    let finite = |v: &f64| v.is_finite();
    let xs: Vec<f64> = series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).filter(finite).collect();
    let mut ys: Vec<f64> = Vec::new();
    for s in series {
        for (i, p) in s.points.iter().enumerate() {
            let e = s.errors.as_ref().map_or(0.0, |e| e[i]);
            ys.extend([p.1 - e, p.1 + e]);
        }
    }
    ys.retain(finite);
    if let Some((y, _)) = reference_line {
        ys.push(y);
    }
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" \
         class=\"chart\"><text x=\"10\" y=\"20\" class=\"title\">{}</text>",
        escape(title)
    );
    if xs.is_empty() || ys.is_empty() {
        let _ = write!(svg, "<text x=\"{}\" y=\"{}\" class=\"empty\">no data</text></svg>", w / 2.0 - 30.0, h / 2.0);
        return svg;
    }
    let span = |v: &[f64]| {
        let (lo, hi) = v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
        if hi - lo < 1e-12 * hi.abs().max(1.0) {
            (lo - 1.0, hi + 1.0)
        } else {
            (lo, hi)
        }
    };
    let (x0, x1) = span(&xs);
    let (y0, y1) = span(&ys);
    let pad = (y1 - y0) * 0.06;
    let (y0, y1) = (y0 - pad, y1 + pad);
    let px = |x: f64| left + (x - x0) / (x1 - x0) * (w - left - right);
    let py = |y: f64| h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom);
    for (lo, hi, step, horizontal) in
        [(y0, y1, tick_step(y1 - y0, 5.0), true), (x0, x1, tick_step(x1 - x0, 6.0), false)]
    {
        let mut t = (lo / step).ceil() * step;
        while t <= hi + step * 1e-9 {
            let label = format_tick(t, step);
            if horizontal {
                let y = py(t);
                let _ = write!(
                    svg,
                    "<line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" class=\"grid\"/>\
                     <text x=\"{}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"end\">{label}</text>",
                    w - right,
                    left - 6.0,
                    y + 4.0
                );
            } else {
                let x = px(t);
                let _ = write!(
                    svg,
                    "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{top}\" y2=\"{}\" class=\"grid\"/>\
                     <text x=\"{x:.1}\" y=\"{}\" class=\"tick\" text-anchor=\"middle\">{label}</text>",
                    h - bottom,
                    h - bottom + 16.0
                );
            }
            t += step;
        }
    }
    let _ = write!(
        svg,
        "<line x1=\"{left}\" x2=\"{left}\" y1=\"{top}\" y2=\"{}\" class=\"axis\"/>\
         <line x1=\"{left}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" class=\"axis\"/>\
         <text x=\"{}\" y=\"{}\" class=\"label\" text-anchor=\"middle\">{}</text>",
        h - bottom,
        w - right,
        h - bottom,
        h - bottom,
        (left + w - right) / 2.0,
        h - 8.0,
        escape(x_label)
    );
    if let Some((y, label)) = reference_line {
        let _ = write!(
            svg,
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" class=\"refline\"/>\
             <text x=\"{}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"end\">{}</text>",
            w - right,
            py(y),
            py(y),
            w - right - 4.0,
            py(y) - 4.0,
            escape(label)
        );
    }
    for s in series {
        let points: Vec<(f64, f64)> = s.points.iter().copied().filter(|p| p.0.is_finite() && p.1.is_finite()).collect();
        if let Some(errors) = &s.errors {
            for (p, e) in s.points.iter().zip(errors) {
                if p.1.is_finite() && e.is_finite() && *e > 0.0 {
                    let _ = write!(
                        svg,
                        "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{}\" class=\"err\"/>",
                        py(p.1 - e),
                        py(p.1 + e),
                        s.color,
                        x = px(p.0)
                    );
                }
            }
        }
        let path: Vec<String> = points.iter().map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y))).collect();
        let _ = write!(
            svg,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" class=\"line\"/>",
            path.join(" "),
            s.color
        );
        if s.markers {
            for &(x, y) in &points {
                let _ = write!(svg, "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\" fill=\"{}\"/>", px(x), py(y), s.color);
            }
        }
    }
    // Legend in the title band, right-aligned, one entry per series from right to left.
    for (i, s) in series.iter().enumerate().rev() {
        let x = w - right - 110.0 * (series.len() - i) as f64;
        let y = 20.0;
        let _ = write!(
            svg,
            "<rect x=\"{x}\" y=\"{}\" width=\"12\" height=\"3\" fill=\"{}\"/><text x=\"{}\" y=\"{}\" class=\"legend\">{}</text>",
            y - 3.0,
            s.color,
            x + 16.0,
            y + 2.0,
            escape(&s.name)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Means over consecutive buckets, so a curve has at most `max` points (x and y averaged alike).
pub fn bucket_means(points: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    if points.len() <= max {
        return points.to_vec();
    }
    let per = points.len().div_ceil(max);
    points
        .chunks(per)
        .map(|c| {
            let n = c.len() as f64;
            (c.iter().map(|p| p.0).sum::<f64>() / n, c.iter().map(|p| p.1).sum::<f64>() / n)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_means_bound_the_point_count_and_keep_the_mean() {
        let points: Vec<(f64, f64)> = (0..1000).map(|i| (i as f64, (i % 10) as f64)).collect();
        let b = bucket_means(&points, 100);
        assert_eq!(b.len(), 100);
        assert!(b.iter().all(|p| (p.1 - 4.5).abs() < 1e-12));
        assert_eq!(bucket_means(&points[..5], 100), points[..5].to_vec());
    }

    #[test]
    fn ticks_are_round_numbers() {
        assert_eq!(tick_step(100.0, 5.0), 20.0);
        assert_eq!(tick_step(0.7, 5.0), 0.2);
        assert_eq!(tick_step(3.0, 6.0), 0.5);
        assert_eq!(format_tick(0.30000000000000004, 0.1), "0.3");
    }

    #[test]
    fn chart_escapes_labels_and_draws_every_series() {
        let s = Series {
            name: "a<b".into(),
            color: "#000",
            points: vec![(0.0, 1.0), (1.0, 2.0)],
            errors: None,
            markers: true,
        };
        let svg = line_chart("t&t", "x", &[s], None);
        assert!(svg.contains("a&lt;b") && svg.contains("t&amp;t"));
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(line_chart("empty", "x", &[], None).contains("no data"));
    }
}
