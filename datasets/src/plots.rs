//! The report's plots, drawn with `plotters` into SVG strings: the library lays out axes,
//! ticks and legends, so labels do not overlap.

use plotters::prelude::*;

const COLORS: [RGBColor; 6] = [
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(31, 119, 180),
    RGBColor(148, 103, 189),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
];

/// Colour of the `i`-th series.
fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

/// Lines over time: one per named series, `hours` long, values in [0, 1] shown in percent.
/// An empty string if drawing fails (the report then has no plot, never a panic).
#[allow(clippy::cast_precision_loss)]
pub fn over_time(title: &str, y_label: &str, hours: f64, series: &[(&str, &[f32])]) -> String {
    let mut svg = String::new();
    let ok = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
        let root = SVGBackend::with_string(&mut svg, (900, 340)).into_drawing_area();
        root.fill(&WHITE)?;
        let top = series
            .iter()
            .flat_map(|s| s.1.iter())
            .fold(0.0f32, |a, &b| a.max(b))
            .clamp(0.05, 1.0);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..hours.max(1e-9), 0f64..f64::from(top) * 100.0 * 1.05)?;
        chart
            .configure_mesh()
            .x_desc("hours")
            .y_desc(y_label)
            .draw()?;
        for (i, (name, v)) in series.iter().enumerate() {
            if v.is_empty() {
                continue;
            }
            let dx = hours / (v.len().max(2) - 1) as f64;
            let c = color(i);
            chart
                .draw_series(LineSeries::new(
                    v.iter()
                        .enumerate()
                        .map(|(k, y)| (k as f64 * dx, f64::from(*y) * 100.0)),
                    c.stroke_width(2),
                ))?
                .label(*name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    })()
    .is_ok();
    if ok { svg } else { String::new() }
}

/// A per-node distribution: each series sorted ascending, drawn against the node's rank as a
/// share of nodes (0–100%), values in [0, 1] shown in percent.
#[allow(clippy::cast_precision_loss)]
pub fn distribution(title: &str, y_label: &str, series: &[(&str, &[f32])]) -> String {
    let mut svg = String::new();
    let ok = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
        let root = SVGBackend::with_string(&mut svg, (700, 340)).into_drawing_area();
        root.fill(&WHITE)?;
        let top = series
            .iter()
            .flat_map(|s| s.1.iter())
            .fold(0.0f32, |a, &b| a.max(b))
            .max(0.0001);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..100f64, 0f64..f64::from(top) * 100.0 * 1.05)?;
        chart
            .configure_mesh()
            .x_desc("nodes, % (sorted by the value)")
            .y_desc(y_label)
            .draw()?;
        for (i, (name, v)) in series.iter().enumerate() {
            if v.is_empty() {
                continue;
            }
            let c = color(i);
            let n = v.len().max(2) - 1;
            chart
                .draw_series(LineSeries::new(
                    v.iter()
                        .enumerate()
                        .map(|(k, y)| (k as f64 * 100.0 / n as f64, f64::from(*y) * 100.0)),
                    c.stroke_width(2),
                ))?
                .label(*name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    })()
    .is_ok();
    if ok { svg } else { String::new() }
}

/// The frontier: reclaim ratio (y) against a harm share (x, shown in percent), one line per
/// policy family through its knob values.
pub fn frontier(title: &str, x_label: &str, families: &[(&str, Vec<(f64, f64)>)]) -> String {
    let mut svg = String::new();
    let ok = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
        let root = SVGBackend::with_string(&mut svg, (700, 440)).into_drawing_area();
        root.fill(&WHITE)?;
        let max_x = families
            .iter()
            .flat_map(|f| f.1.iter())
            .map(|p| p.0 * 100.0)
            .fold(0.01, f64::max)
            * 1.1;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..max_x, 0f64..1.05f64)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc("reclaim ratio")
            .draw()?;
        for (i, (name, pts)) in families.iter().enumerate() {
            let c = color(i);
            let mut pts: Vec<(f64, f64)> = pts.iter().map(|&(x, y)| (x * 100.0, y)).collect();
            pts.sort_by(|a, b| a.1.total_cmp(&b.1));
            chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))?
                .label(*name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                });
            chart.draw_series(PointSeries::of_element(pts, 4, c.filled(), &|p, s, st| {
                Circle::new(p, s, st)
            }))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    })()
    .is_ok();
    if ok { svg } else { String::new() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_are_svg_with_their_labels() {
        let a = [0.1f32, 0.5, 0.3];
        let s = over_time(
            "CPU",
            "% of allocatable",
            2.0,
            &[("tide", &a), ("static", &a)],
        );
        assert!(
            s.starts_with("<svg") && s.contains("tide") && s.contains("static"),
            "{s}"
        );
        let f = frontier(
            "frontier",
            "HP interference, % of node-time",
            &[("tide", vec![(0.0, 0.5), (0.001, 0.7)])],
        );
        assert!(f.contains("<svg") && f.contains("reclaim ratio"));
    }
}
