//! Figures (SVG and PNG, plotters with an embedded font — no system fonts or fontconfig needed):
//! one per problem, metric and x-axis (solver time, oracle calls, samples, draws), the median
//! curve of each solver's selected setting over seeds with a q20–q80 band.
//!
//! - Curves are step functions (the value of the last evaluation at or before x), drawn at the
//!   runs' own evaluation points as well as on a common grid, so a solver with two evaluations
//!   shows both; solvers with few evaluations get a marker at each.
//! - A solver whose seeds give the same values (a deterministic method) has no band: across
//!   its runs only the timing differs, which is not a spread of results.
//! - The legend sits in its own column right of the plot, never over the data.
//! - On log axes, values at or below the axis floor (0, or 20 orders of magnitude under the
//!   top) are marked with a downward triangle at the floor, not silently clamped; the axis
//!   spans whole decades, so it always has labelled ticks.

use std::path::{Path, PathBuf};
use std::sync::Once;

use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::layout::Layout;
pub use crate::report::Axis;
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
    /// Seeds behind the curve.
    pub seeds: usize,
    /// The seeds gave the same values (only timing differs): no band is drawn.
    pub deterministic: bool,
    /// The evaluation points of the median run, as (x, value), marked when there are few.
    pub evaluations: Vec<(f64, f64)>,
}

/// Solvers with at most this many evaluations get a marker at each.
const FEW_EVALUATIONS: usize = 25;

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
    run.points
        .iter()
        .take_while(|p| axis.position(p) <= x)
        .last()
        .and_then(|p| p.metrics.get(metric).copied())
}

/// True when every run has the same values of `metric` at its evaluations (bit for bit): the
/// runs differ only in timing.
fn same_values(runs: &[&RunTrace], metric: &str) -> bool {
    let values = |r: &RunTrace| -> Vec<Option<u64>> {
        r.points
            .iter()
            .map(|p| p.metrics.get(metric).map(|v| v.to_bits()))
            .collect()
    };
    let first = runs.first().map(|r| values(r));
    runs.len() > 1 && runs.iter().all(|r| Some(values(r)) == first)
}

/// The curves of a problem section for `metric` against `axis`.
pub fn curves(section: &ProblemSection<'_>, metric: &str, axis: Axis) -> Vec<Curve> {
    let mut out = Vec::new();
    for result in &section.solvers {
        let runs = &result.selected.runs;
        let end = runs
            .iter()
            .filter_map(|r| r.points.last())
            .map(|p| axis.position(p))
            .fold(f64::INFINITY, f64::min);
        if !end.is_finite() || end <= 0.0 {
            continue;
        }
        // A common grid, plus the runs' own evaluation points (so that a solver evaluated twice
        // shows its last value at its last point, not one grid step too late or never).
        let mut grid: Vec<f64> = (0..GRID)
            .map(|k| end * k as f64 / (GRID - 1) as f64)
            .collect();
        grid.extend(
            runs.iter()
                .flat_map(|r| r.points.iter().map(|p| axis.position(p)))
                .filter(|x| *x <= end),
        );
        grid.push(end);
        grid.sort_by(f64::total_cmp);
        grid.dedup();
        let deterministic = same_values(runs, metric);
        let mut curve = Curve {
            label: result.selected.solver.to_owned(),
            x: Vec::new(),
            median: Vec::new(),
            q20: Vec::new(),
            q80: Vec::new(),
            seeds: runs.len(),
            deterministic,
            evaluations: Vec::new(),
        };
        for x in grid {
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
                curve.q20.push(if deterministic { m } else { lo });
                curve.q80.push(if deterministic { m } else { hi });
            }
        }
        // The evaluation points: those of the run whose length is the median (a representative
        // run; for a deterministic solver they are every run's).
        let mut by_length: Vec<&&RunTrace> = runs.iter().collect();
        by_length.sort_by_key(|r| r.points.len());
        if let Some(run) = by_length.get(by_length.len() / 2)
            && run.points.len() <= FEW_EVALUATIONS
        {
            curve.evaluations = run
                .points
                .iter()
                .filter(|p| axis.position(p) <= end)
                .filter_map(|p| p.metrics.get(metric).map(|v| (axis.position(p), *v)))
                .collect();
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
        // Whole decades, at least one: the axis then has labelled ticks at powers of ten.
        let lo = lo.max(hi * 1e-20).max(f64::MIN_POSITIVE);
        let bottom = lo.log10().floor();
        let top = hi.log10().ceil().max(bottom + 1.0);
        (10f64.powf(bottom), 10f64.powf(top))
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

/// What the band of a figure shows, for its caption: "median and q20–q80 over 5 seeds".
pub fn band_note(curves: &[Curve]) -> String {
    let seeds: Vec<usize> = curves
        .iter()
        .filter(|c| !c.deterministic)
        .map(|c| c.seeds)
        .collect();
    let (lo, hi) = (
        seeds.iter().copied().min().unwrap_or(0),
        seeds.iter().copied().max().unwrap_or(0),
    );
    let mut note = match (lo, hi) {
        (_, 0) => "one run per solver".to_owned(),
        (1, 1) => "one seed per solver".to_owned(),
        (lo, hi) if lo == hi => format!("median and q20–q80 over {hi} seeds"),
        (lo, hi) => format!("median and q20–q80 over {lo}–{hi} seeds"),
    };
    if curves.iter().any(|c| c.deterministic) {
        note.push_str("; deterministic solvers: one curve (seeds differ only in timing)");
    }
    note
}

/// Width in pixels of the legend column for these labels (and the floor marker's note).
fn legend_width(curves: &[Curve], floor_note: bool) -> u32 {
    let longest = curves
        .iter()
        .map(|c| c.label.chars().count())
        .chain(floor_note.then_some("below the floor".len()))
        .max()
        .unwrap_or(0);
    (longest as u32 * 8 + 50).clamp(90, 320)
}

/// Draws curves on `root` (the same code for the SVG and PNG backends): a caption on top, the
/// chart, and the legend in a column to its right.
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
    let (width, _) = root.dim_in_pixel();
    let (header, body) = root.split_vertically(52);
    header
        .draw(&Text::new(
            title.to_owned(),
            (15, 6),
            ("sans-serif", 19).into_font(),
        ))
        .map_err(err)?;
    header
        .draw(&Text::new(
            band_note(curves),
            (15, 30),
            ("sans-serif", 13).into_font().color(&RGBColor(90, 90, 90)),
        ))
        .map_err(err)?;
    let x_max = curves
        .iter()
        .flat_map(|c| c.x.last())
        .fold(0.0_f64, |a, &b| a.max(b))
        .max(1e-12);
    let (y_lo, y_hi) = y_range(curves, log);
    let below_floor = |v: f64| log && (v.is_nan() || v < y_lo);
    let any_below = curves
        .iter()
        .any(|c| c.median.iter().any(|v| below_floor(*v)));
    let (plot_area, legend_area) = body.split_horizontally(width - legend_width(curves, any_below));
    let clip = |v: f64| if below_floor(v) { y_lo } else { v };
    // A step function through (x, y): horizontal to the next x, then vertical.
    let steps = |x: &[f64], y: &[f64]| -> Vec<(f64, f64)> {
        let mut out = Vec::with_capacity(2 * x.len());
        for k in 0..x.len() {
            if k > 0 {
                out.push((x[k], clip(y[k - 1])));
            }
            out.push((x[k], clip(y[k])));
        }
        out
    };
    let mut floor_marked = false;
    macro_rules! plot_on {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(x_label)
                .y_desc(y_label)
                .x_labels(8)
                .y_labels(10)
                .x_label_formatter(&|v| tick(*v))
                .y_label_formatter(&|v| tick(*v))
                .label_style(("sans-serif", 14))
                .axis_desc_style(("sans-serif", 16))
                .draw()
                .map_err(err)?;
            for (i, c) in curves.iter().enumerate() {
                let col = color(i);
                if !c.deterministic {
                    let upper = steps(&c.x, &c.q80);
                    let mut lower = steps(&c.x, &c.q20);
                    lower.reverse();
                    let band: Vec<(f64, f64)> = upper.into_iter().chain(lower).collect();
                    chart
                        .draw_series(std::iter::once(Polygon::new(band, col.mix(0.18).filled())))
                        .map_err(err)?;
                }
                chart
                    .draw_series(LineSeries::new(steps(&c.x, &c.median), col.stroke_width(2)))
                    .map_err(err)?;
                chart
                    .draw_series(
                        c.evaluations
                            .iter()
                            .filter(|(_, y)| !below_floor(*y))
                            .map(|&(x, y)| Circle::new((x, y), 3, col.filled())),
                    )
                    .map_err(err)?;
                // Values under the floor: a downward triangle at the floor.
                let under: Vec<f64> =
                    c.x.iter()
                        .zip(&c.median)
                        .filter(|(_, y)| below_floor(**y))
                        .map(|(x, _)| *x)
                        .collect();
                if !under.is_empty() {
                    floor_marked = true;
                    // One marker per run of consecutive grid points under the floor, at its start.
                    let mut starts = vec![under[0]];
                    for w in c.x.windows(2) {
                        if under.contains(&w[1]) && !under.contains(&w[0]) {
                            starts.push(w[1]);
                        }
                    }
                    starts.dedup();
                    chart
                        .draw_series(starts.into_iter().map(|x| {
                            EmptyElement::at((x, y_lo))
                                + Polygon::new(vec![(-6, -14), (6, -14), (0, -3)], col.filled())
                        }))
                        .map_err(err)?;
                }
            }
        }};
    }
    let mut builder = ChartBuilder::on(&plot_area);
    builder
        .margin(12)
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
    // The legend column: one line and label per solver, then the floor marker's meaning.
    let row = 22;
    for (i, c) in curves.iter().enumerate() {
        let y = 20 + row * i as i32;
        legend_area
            .draw(&PathElement::new(
                vec![(6, y), (30, y)],
                color(i).stroke_width(2),
            ))
            .map_err(err)?;
        legend_area
            .draw(&Text::new(
                c.label.clone(),
                (36, y - 8),
                ("sans-serif", 14).into_font(),
            ))
            .map_err(err)?;
    }
    if floor_marked {
        let y = 20 + row * curves.len() as i32 + 8;
        legend_area
            .draw(
                &(EmptyElement::at((18, y))
                    + Polygon::new(vec![(-6, -6), (6, -6), (0, 5)], BLACK.filled())),
            )
            .map_err(err)?;
        legend_area
            .draw(&Text::new(
                "below the floor".to_owned(),
                (36, y - 8),
                ("sans-serif", 13).into_font(),
            ))
            .map_err(err)?;
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
    options: &crate::report::ReportOptions,
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
            for &axis in &options.axes {
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
                    options.log_scale.unwrap_or(is_log_metric(metric)),
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
    use super::*;
    use crate::report::{Point, ReportOptions, analyze};
    use bilevel::run::{RunStatus, RunSummary, StopReason};

    /// A run of `solver` with (time, value) evaluations.
    fn run(solver: &str, seed: u64, evaluations: &[(f64, f64)]) -> RunTrace {
        let points: Vec<Point> = evaluations
            .iter()
            .enumerate()
            .map(|(i, &(time, value))| Point {
                time,
                calls: i as u64 * 10,
                samples: i as u64 * 640,
                draws: i as u64 * 128,
                metrics: [("value".to_owned(), value)].into_iter().collect(),
            })
            .collect();
        let last = evaluations.last().unwrap();
        RunTrace {
            run: format!("{solver}-{seed}"),
            run_index: 0,
            problem_index: 0,
            problem: serde_json::json!({"kind": "quadratic"}),
            solver: solver.into(),
            params: "{}".into(),
            points,
            summary: RunSummary {
                status: RunStatus::Done,
                stop_reason: StopReason::MaxIters,
                iters: evaluations.len() as u64,
                solver_time_s: last.0,
                counts: Default::default(),
                final_metrics: [("value".to_owned(), last.1)].into_iter().collect(),
                final_metrics_iter: Some(evaluations.len() as u64),
                eval_failures: 0,
                message: None,
                warnings: Vec::new(),
            },
        }
    }

    struct Svg {
        /// (stroke colour, points) of each polyline.
        lines: Vec<(String, Vec<(f64, f64)>)>,
        /// (x, y, content) of each text.
        texts: Vec<(f64, f64, String)>,
        /// Fill colours of the polygons.
        polygons: Vec<String>,
        circles: usize,
    }

    fn read_svg(path: &Path) -> Svg {
        let text = std::fs::read_to_string(path).unwrap();
        let doc = roxmltree::Document::parse(&text).unwrap();
        let number = |n: &roxmltree::Node, a: &str| n.attribute(a).unwrap().parse::<f64>().unwrap();
        let mut svg = Svg {
            lines: Vec::new(),
            texts: Vec::new(),
            polygons: Vec::new(),
            circles: 0,
        };
        for node in doc.descendants() {
            match node.tag_name().name() {
                "polyline" => {
                    let points = node
                        .attribute("points")
                        .unwrap()
                        .split_whitespace()
                        .map(|p| {
                            let (x, y) = p.split_once(',').unwrap();
                            (x.parse().unwrap(), y.parse().unwrap())
                        })
                        .collect();
                    let stroke = node.attribute("stroke").unwrap_or("").to_uppercase();
                    svg.lines.push((stroke, points));
                }
                "text" => svg.texts.push((
                    number(&node, "x"),
                    number(&node, "y"),
                    node.text().unwrap_or("").trim().to_owned(),
                )),
                "polygon" => svg
                    .polygons
                    .push(node.attribute("fill").unwrap_or("").to_uppercase()),
                "circle" => svg.circles += 1,
                _ => {}
            }
        }
        svg
    }

    fn hex(c: RGBColor) -> String {
        format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
    }

    #[test]
    fn a_sparse_and_a_dense_solver_are_both_visible_and_the_legend_is_beside_the_data() {
        // "sparse": 2 evaluations (start and end), the end value lower; "dense": 200.
        let traces = vec![
            run("sparse", 0, &[(0.0, 1.0), (10.0, 0.4)]),
            run(
                "dense",
                0,
                &(0..200)
                    .map(|i| (i as f64 * 10.0 / 199.0, 1.0 - 0.003 * i as f64))
                    .collect::<Vec<_>>(),
            ),
        ];
        let sections = analyze(&traces, &ReportOptions::default());
        let curves = curves(&sections[0], "value", Axis::Time);
        assert_eq!(curves.len(), 2);
        let dir = tempfile::tempdir().unwrap();
        let stem = dir.path().join("figure");
        write_figure(&stem, "title", "time", "value", false, &curves).unwrap();
        let svg = read_svg(&stem.with_extension("svg"));
        let data: Vec<&(String, Vec<(f64, f64)>)> = svg
            .lines
            .iter()
            .filter(|(stroke, p)| {
                p.len() > 2 && (*stroke == hex(color(0)) || *stroke == hex(color(1)))
            })
            .collect();
        let line_of = |label: &str| {
            let i = curves.iter().position(|c| c.label == label).unwrap();
            data.iter()
                .find(|(stroke, _)| *stroke == hex(color(i)))
                .map(|(_, p)| p.clone())
                .unwrap_or_else(|| panic!("no curve drawn for {label}"))
        };
        // The sparse solver's curve shows both its values: a drop at its last evaluation.
        let sparse = line_of("sparse");
        let ys: Vec<f64> = sparse.iter().map(|p| p.1).collect();
        let (top, bottom) = ys
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &y| {
                (a.min(y), b.max(y))
            });
        assert!(
            bottom - top > 50.0,
            "the drop 1.0 → 0.4 spans the plot: {ys:?}"
        );
        assert_eq!(
            ys.last(),
            Some(&bottom),
            "it ends at its final (lowest) value"
        );
        assert!(line_of("dense").len() >= 80);
        // Its two evaluations are marked.
        assert!(svg.circles >= 2, "{} circles", svg.circles);
        // The legend labels sit right of every data point.
        let right_edge = data
            .iter()
            .flat_map(|(_, p)| p.iter().map(|q| q.0))
            .fold(0.0, f64::max);
        for label in ["sparse", "dense"] {
            let (x, _, _) = svg
                .texts
                .iter()
                .find(|t| t.2 == label)
                .unwrap_or_else(|| panic!("legend entry {label}"));
            assert!(
                *x > right_edge,
                "legend `{label}` at x = {x}, data up to {right_edge}"
            );
        }
        // The caption says what the line and band are.
        assert!(svg.texts.iter().any(|t| t.2 == "one seed per solver"));
    }

    #[test]
    fn log_axes_have_ticks_and_values_under_the_floor_are_marked() {
        // Values within one decade, then an exact zero (under any log floor).
        let traces = vec![
            run("a", 0, &[(0.0, 0.9), (1.0, 0.5), (2.0, 0.3), (3.0, 0.0)]),
            run("a", 1, &[(0.0, 0.9), (1.0, 0.5), (2.0, 0.3), (3.0, 0.0)]),
        ];
        let sections = analyze(&traces, &ReportOptions::default());
        let curves = curves(&sections[0], "value", Axis::Time);
        // The two seeds give the same values: one curve, no band.
        assert!(curves[0].deterministic);
        let dir = tempfile::tempdir().unwrap();
        let stem = dir.path().join("figure");
        write_figure(&stem, "title", "time", "value", true, &curves).unwrap();
        let svg = read_svg(&stem.with_extension("svg"));
        // Tick labels left of the plot: at least two on the y axis.
        let y_ticks = svg
            .texts
            .iter()
            .filter(|t| t.0 < 100.0 && t.1 > 52.0 && t.2.parse::<f64>().is_ok())
            .count();
        assert!(y_ticks >= 2, "{y_ticks} y tick labels: {:?}", svg.texts);
        // The zero is marked at the floor (a triangle in the curve's colour), and explained.
        assert!(svg.polygons.contains(&hex(color(0))), "{:?}", svg.polygons);
        assert!(svg.texts.iter().any(|t| t.2 == "below the floor"));
        assert!(svg.texts.iter().any(|t| t.2.contains("deterministic")));
        // A spread of seeds gets a band and the caption says over how many.
        let traces = vec![
            run("b", 0, &[(0.0, 0.9), (1.0, 0.5)]),
            run("b", 1, &[(0.0, 0.8), (1.0, 0.4)]),
            run("b", 2, &[(0.0, 0.7), (1.0, 0.45)]),
        ];
        let sections = analyze(&traces, &ReportOptions::default());
        let spread = super::curves(&sections[0], "value", Axis::Time);
        assert!(!spread[0].deterministic);
        assert_eq!(band_note(&spread), "median and q20–q80 over 3 seeds");
    }

    #[test]
    fn ticks_are_short() {
        use super::tick;
        assert_eq!(tick(0.0), "0");
        assert_eq!(tick(5000.0), "5000");
        assert_eq!(tick(0.25), "0.25");
        assert_eq!(tick(1e-6), "1e-6");
        assert_eq!(tick(0.999_999_999_999_9e-5), "1e-5");
        assert_eq!(tick(3.5e7), "3.5e7");
    }
}
