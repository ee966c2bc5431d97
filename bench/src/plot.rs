//! The latency plot: write-to-receive p50, p99 and p99.9 against the number of subscribers of
//! the fan-out runs, one colour per system, as SVG (text is left to the viewer, so no font
//! library is needed).

use std::path::Path;

use plotters::prelude::*;

use crate::record::{Percentiles, Status};
use crate::report::Results;

/// One colour per system, in `PeerKind::ALL` order; others get the last.
const COLOURS: [RGBColor; 4] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x7f, 0x7f, 0x7f),
];

/// (percentile name, pick, line width, opacity): the higher the percentile, the thinner and
/// paler its line.
type Line = (&'static str, fn(&Percentiles) -> f64, u32, f64);

const LINES: [Line; 3] = [
    ("p50", |p| p.p50, 3, 1.0),
    ("p99", |p| p.p99, 2, 0.75),
    ("p99.9", |p| p.p999, 1, 0.5),
];

/// Writes `<dir>/<name>-latency.svg`; `Ok(false)` when no fan-out run has latencies.
pub fn latency(results: &Results, dir: &Path) -> Result<bool, String> {
    let mut systems: Vec<&str> = Vec::new();
    let mut points: Vec<(&str, f64, Percentiles)> = Vec::new();
    for run in &results.runs {
        if run.scenario != "fanout" || run.status == Status::Skipped {
            continue;
        }
        let Some(p) = run.figures.as_ref().and_then(|f| f.latency_ms) else {
            continue;
        };
        if !systems.contains(&run.system.as_str()) {
            systems.push(&run.system);
        }
        points.push((&run.system, run.clients as f64, p));
    }
    if points.is_empty() {
        return Ok(false);
    }
    let x_max = points.iter().map(|p| p.1).fold(1.0, f64::max) * 2.0;
    let y_all = points.iter().flat_map(|(_, _, p)| [p.p50, p.p99, p.p999]);
    let y_min = y_all.clone().fold(f64::MAX, f64::min).max(0.01) / 2.0;
    let y_max = y_all.fold(0.0, f64::max).max(y_min * 4.0) * 2.0;

    let path = dir.join(format!("{}-latency.svg", results.name));
    let root = SVGBackend::new(&path, (960, 600)).into_drawing_area();
    let draw = || -> Result<(), Box<dyn std::error::Error + '_>> {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "fan-out write→receive latency ({} events/s, {})",
                    results
                        .runs
                        .iter()
                        .find_map(|r| (r.scenario == "fanout").then_some(r.target_rate).flatten())
                        .unwrap_or(0.0),
                    results.name
                ),
                ("sans-serif", 20),
            )
            .margin(20)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d((0.5f64..x_max).log_scale(), (y_min..y_max).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("subscribers")
            .y_desc("latency (ms)")
            .draw()?;
        for (i, system) in systems.iter().enumerate() {
            let colour = COLOURS[i.min(COLOURS.len() - 1)];
            for (name, pick, width, opacity) in LINES {
                let colour = colour.mix(opacity);
                let mut series: Vec<(f64, f64)> = points
                    .iter()
                    .filter(|p| p.0 == *system)
                    .map(|p| (p.1, pick(&p.2)))
                    .collect();
                series.sort_by(|a, b| a.0.total_cmp(&b.0));
                chart
                    .draw_series(LineSeries::new(series.clone(), colour.stroke_width(width)))?
                    .label(format!("{system} {name}"))
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(width))
                    });
                chart.draw_series(
                    series
                        .into_iter()
                        .map(|p| Circle::new(p, width + 1, colour.filled())),
                )?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .border_style(BLACK)
            .background_style(WHITE.mix(0.85))
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| format!("draw {}: {e}", path.display()))?;
    Ok(true)
}
