//! Figures (SVG and PNG, plotters with an embedded font — no system fonts or fontconfig needed):
//! one per problem, metric and x-axis (solver time, oracle calls), the median curve of each
//! solver's selected setting over seeds with a q20–q80 band.

use std::path::{Path, PathBuf};
use std::sync::Once;

use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::execute::Layout;
use crate::report::{ProblemSection, RunTrace, quantile};

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

/// Registers the embedded DejaVu Sans as plotters' "sans-serif".
pub fn register_font() {
    REGISTER.call_once(|| {
        // The font is compiled in; failing to parse it is a build defect caught by the tests.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// The x-axis of a figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Axis {
    /// Solver time (s).
    Time,
    /// Oracle calls.
    Calls,
}

impl Axis {
    fn label(self) -> &'static str {
        match self {
            Axis::Time => "solver time (s)",
            Axis::Calls => "oracle calls",
        }
    }
    fn slug(self) -> &'static str {
        match self {
            Axis::Time => "time",
            Axis::Calls => "calls",
        }
    }
}

/// One solver's median curve and band on a common grid.
#[derive(Clone, Debug)]
pub struct Curve {
    /// Legend label (the solver kind).
    pub label: String,
    /// Grid.
    pub x: Vec<f64>,
    /// Median over seeds.
    pub median: Vec<f64>,
    /// 20th percentile.
    pub q20: Vec<f64>,
    /// 80th percentile.
    pub q80: Vec<f64>,
}

/// Metrics shown on a log scale (non-negative quantities spanning orders of magnitude).
pub fn is_log_metric(metric: &str) -> bool {
    matches!(
        metric,
        "suboptimality"
            | "hypergrad_norm_sq"
            | "inner_distance"
            | "inner_grad_norm"
            | "linsys_residual"
    )
}

const GRID: usize = 80;

/// The value of `metric` at `x` for a run: the last evaluation at or before x (step function).
fn value_at(run: &RunTrace, metric: &str, axis: Axis, x: f64) -> Option<f64> {
    let position = |p: &crate::report::Point| match axis {
        Axis::Time => p.time,
        Axis::Calls => p.calls as f64,
    };
    run.points
        .iter()
        .take_while(|p| position(p) <= x)
        .last()
        .and_then(|p| p.metrics.get(metric).copied())
}

/// The curves of a problem section for `metric` against `axis`.
pub fn curves(section: &ProblemSection<'_>, metric: &str, axis: Axis) -> Vec<Curve> {
    let mut out = Vec::new();
    for result in &section.solvers {
        let runs = &result.selected.runs;
        let end = runs
            .iter()
            .filter_map(|r| r.points.last())
            .map(|p| match axis {
                Axis::Time => p.time,
                Axis::Calls => p.calls as f64,
            })
            .fold(f64::INFINITY, f64::min);
        if !end.is_finite() || end <= 0.0 {
            continue;
        }
        let mut curve = Curve {
            label: result.selected.solver.to_owned(),
            x: Vec::new(),
            median: Vec::new(),
            q20: Vec::new(),
            q80: Vec::new(),
        };
        for k in 0..GRID {
            let x = end * k as f64 / (GRID - 1) as f64;
            let values: Vec<f64> = runs
                .iter()
                .filter_map(|r| value_at(r, metric, axis, x))
                .collect();
            if let (Some(m), Some(lo), Some(hi)) = (
                quantile(&values, 0.5),
                quantile(&values, 0.2),
                quantile(&values, 0.8),
            ) {
                curve.x.push(x);
                curve.median.push(m);
                curve.q20.push(lo);
                curve.q80.push(hi);
            }
        }
        if !curve.x.is_empty() {
            out.push(curve);
        }
    }
    out
}

fn y_range(curves: &[Curve], log: bool) -> (f64, f64) {
    let values = curves
        .iter()
        .flat_map(|c| c.q20.iter().chain(&c.q80).chain(&c.median))
        .copied()
        .filter(|v| v.is_finite() && (!log || *v > 0.0));
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() {
        return if log { (1e-16, 1.0) } else { (0.0, 1.0) };
    }
    if log {
        let lo = lo.max(hi * 1e-20).max(f64::MIN_POSITIVE);
        (lo / 2.0, hi * 2.0)
    } else {
        let pad = ((hi - lo) * 0.05).max(1e-12 * hi.abs().max(1.0));
        (lo - pad, hi + pad)
    }
}

/// A short tick label: plain decimals in [1e-3, 1e4), scientific notation otherwise.
pub fn tick(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        return "0".into();
    }
    if (1e-3..1e4).contains(&a) {
        let s = format!("{v:.3}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        return s.to_owned();
    }
    let exponent = a.log10().round();
    if (a.log10() - exponent).abs() < 1e-9 {
        format!("{}1e{}", if v < 0.0 { "-" } else { "" }, exponent as i32)
    } else {
        format!("{v:.1e}")
    }
}

fn color(i: usize) -> RGBColor {
    const COLORS: [RGBColor; 10] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    COLORS[i % COLORS.len()]
}

/// Draws curves on `root` (the same code for the SVG and PNG backends).
fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    x_label: &str,
    y_label: &str,
    log: bool,
    curves: &[Curve],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("drawing: {e:?}");
    root.fill(&WHITE).map_err(err)?;
    let x_max = curves
        .iter()
        .flat_map(|c| c.x.last())
        .fold(0.0_f64, |a, &b| a.max(b))
        .max(1e-12);
    let (y_lo, y_hi) = y_range(curves, log);
    let clip = |v: f64| if log { v.max(y_lo) } else { v };
    macro_rules! plot_on {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(x_label)
                .y_desc(y_label)
                .x_label_formatter(&|v| tick(*v))
                .y_label_formatter(&|v| tick(*v))
                .label_style(("sans-serif", 14))
                .axis_desc_style(("sans-serif", 16))
                .draw()
                .map_err(err)?;
            for (i, c) in curves.iter().enumerate() {
                let col = color(i);
                let band: Vec<(f64, f64)> =
                    c.x.iter()
                        .zip(&c.q80)
                        .map(|(&x, &y)| (x, clip(y)))
                        .chain(c.x.iter().zip(&c.q20).rev().map(|(&x, &y)| (x, clip(y))))
                        .collect();
                chart
                    .draw_series(std::iter::once(Polygon::new(band, col.mix(0.18).filled())))
                    .map_err(err)?;
                chart
                    .draw_series(LineSeries::new(
                        c.x.iter().zip(&c.median).map(|(&x, &y)| (x, clip(y))),
                        col.stroke_width(2),
                    ))
                    .map_err(err)?
                    .label(c.label.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2))
                    });
            }
            chart
                .configure_series_labels()
                .label_font(("sans-serif", 14))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(err)?;
        }};
    }
    let mut builder = ChartBuilder::on(root);
    builder
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(80);
    if log {
        plot_on!(
            builder
                .build_cartesian_2d(0.0..x_max, (y_lo..y_hi).log_scale())
                .map_err(err)?
        );
    } else {
        plot_on!(
            builder
                .build_cartesian_2d(0.0..x_max, y_lo..y_hi)
                .map_err(err)?
        );
    }
    root.present().map_err(err)?;
    Ok(())
}

/// Writes `stem.svg` and `stem.png` (each through a temporary file and a rename).
pub fn write_figure(
    stem: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    log: bool,
    curves: &[Curve],
) -> Result<()> {
    register_font();
    let svg = stem.with_extension("svg");
    let png = stem.with_extension("png");
    let tmp_svg = bilevel::run::checkpoint::temporary_sibling(&svg).with_extension("svg");
    let tmp_png = bilevel::run::checkpoint::temporary_sibling(&png).with_extension("png");
    {
        let root = SVGBackend::new(&tmp_svg, (900, 560)).into_drawing_area();
        draw(&root, title, x_label, y_label, log, curves)?;
    }
    {
        let root = BitMapBackend::new(&tmp_png, (900, 560)).into_drawing_area();
        draw(&root, title, x_label, y_label, log, curves)?;
    }
    std::fs::rename(&tmp_svg, &svg)?;
    std::fs::rename(&tmp_png, &png)?;
    Ok(())
}

/// Draws every figure of the experiment under `DIR/plots/` and returns, per problem, the
/// (caption, path relative to DIR) of each figure.
pub fn plot_sections(
    layout: &Layout,
    sections: &[ProblemSection<'_>],
) -> Result<Vec<(u64, String, PathBuf)>> {
    let dir = layout.root.join("plots");
    std::fs::create_dir_all(&dir)?;
    let mut figures = Vec::new();
    for section in sections {
        let kind = section
            .problem
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or("problem");
        for metric in &section.metrics {
            for axis in [Axis::Time, Axis::Calls] {
                let curves = curves(section, metric, axis);
                if curves.is_empty() {
                    continue;
                }
                let name = format!("p{}-{metric}-{}", section.problem_index + 1, axis.slug());
                let title = format!(
                    "{kind} (problem {}): {metric} vs {}",
                    section.problem_index + 1,
                    axis.label()
                );
                write_figure(
                    &dir.join(&name),
                    &title,
                    axis.label(),
                    metric,
                    is_log_metric(metric),
                    &curves,
                )?;
                figures.push((
                    section.problem_index,
                    format!("{metric} vs {}", axis.label()),
                    PathBuf::from("plots").join(format!("{name}.svg")),
                ));
            }
        }
    }
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use super::tick;

    #[test]
    fn ticks_are_short() {
        assert_eq!(tick(0.0), "0");
        assert_eq!(tick(5000.0), "5000");
        assert_eq!(tick(0.25), "0.25");
        assert_eq!(tick(1e-6), "1e-6");
        assert_eq!(tick(0.999_999_999_999_9e-5), "1e-5");
        assert_eq!(tick(3.5e7), "3.5e7");
    }
}
