//! `report.md`: per problem, each solver's selected parameters, its final metrics as
//! median [q20, q80] over seeds, and the solver time and oracle calls it needs to reach a target.
//!
//! Parameter selection follows the reference benchmark: among a solver's parameter settings, the
//! selected one has the lowest median of the selection metric over the first fraction of the
//! evaluations (pooled over seeds). A setting with a diverged or failed seed is never selected
//! while another setting has all seeds done.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::{Context, Result};
use bilevel::run::{RunStatus, RunSummary};
use serde::{Deserialize, Serialize};

use crate::layout::Layout;

/// How parameters are selected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SelectionRule {
    /// Lowest median of the metric over the first `selection_fraction` of the evaluations
    /// (the initial evaluation excluded), pooled over seeds.
    #[default]
    EarlyMedian,
    /// Lowest median over seeds of the final metric.
    FinalMedian,
    /// Lowest median over seeds of the solver time to reach the absolute `target` (a seed
    /// that never reaches it counts as infinite time, so a setting is only selected when more
    /// than half of its seeds reach it); requires `target`.
    TimeToTarget,
}

/// The `[report]` table of an experiment file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReportOptions {
    /// The metric that selects parameters and defines the target (lower is better). Default:
    /// the first present of `suboptimality`, `value`, `hypergrad_norm_sq`, `outer_value`.
    pub selection_metric: Option<String>,
    /// The selection rule.
    pub selection: SelectionRule,
    /// Fraction of the evaluations used by `early_median` (0, 1].
    pub selection_fraction: f64,
    /// The target is best + target_fraction · (start − best) of the selection metric, where
    /// start is the median initial value and best the lowest value any run reached.
    pub target_fraction: f64,
    /// An absolute target of the selection metric (`metric ≤ target`), replacing the
    /// `target_fraction` rule: for races to a fixed quality such as F(x) ≤ 0.21 on ijcnn1.
    pub target: Option<f64>,
    /// Metrics to tabulate and plot (default: the selection metric, then `hypergrad_norm_sq`,
    /// `value`, `suboptimality`, `linsys_residual` and every task metric present).
    pub metrics: Vec<String>,
    /// The x-axes of the figures: `time`, `calls`, `samples`, `draws` (default: all four).
    pub axes: Vec<Axis>,
    /// Log (true) or linear (false) y-axes for every metric; default: log for the metrics that
    /// span orders of magnitude (‖∇F‖², suboptimality, distances, residuals), linear otherwise.
    pub log_scale: Option<bool>,
}

impl Default for ReportOptions {
    fn default() -> Self {
        Self {
            selection_metric: None,
            selection: SelectionRule::EarlyMedian,
            selection_fraction: 0.5,
            target_fraction: 1e-3,
            target: None,
            metrics: Vec::new(),
            axes: Axis::ALL.to_vec(),
            log_scale: None,
        }
    }
}

impl ReportOptions {
    /// Checks the values.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.selection_fraction > 0.0 && self.selection_fraction <= 1.0) {
            return Err(format!(
                "selection_fraction must be in (0, 1], got {}",
                self.selection_fraction
            ));
        }
        if !(self.target_fraction > 0.0 && self.target_fraction < 1.0) {
            return Err(format!(
                "target_fraction must be in (0, 1), got {}",
                self.target_fraction
            ));
        }
        if let Some(t) = self.target
            && !t.is_finite()
        {
            return Err(format!("target must be a finite number, got {t}"));
        }
        if self.selection == SelectionRule::TimeToTarget && self.target.is_none() {
            return Err("selection = \"time_to_target\" needs an absolute `target`".into());
        }
        if self.axes.is_empty() {
            return Err("axes must name at least one of time, calls, samples, draws".into());
        }
        Ok(())
    }
}

/// The x-axis of a figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Axis {
    /// Solver time (s).
    Time,
    /// Oracle calls.
    Calls,
    /// Samples touched (every oracle component on every row).
    Samples,
    /// Data rows drawn (minibatch rows, n per full-batch pass).
    Draws,
}

impl Axis {
    /// Every axis, in figure order.
    pub const ALL: [Axis; 4] = [Axis::Time, Axis::Calls, Axis::Samples, Axis::Draws];
    /// The axis label of a figure.
    pub fn label(self) -> &'static str {
        match self {
            Axis::Time => "solver time (s)",
            Axis::Calls => "oracle calls",
            Axis::Samples => "samples (rows × oracle components)",
            Axis::Draws => "rows drawn",
        }
    }
    /// The name in file names, options and the command line.
    pub fn slug(self) -> &'static str {
        match self {
            Axis::Time => "time",
            Axis::Calls => "calls",
            Axis::Samples => "samples",
            Axis::Draws => "draws",
        }
    }
    /// The axis named `slug`.
    pub fn parse(slug: &str) -> Option<Axis> {
        Axis::ALL.into_iter().find(|a| a.slug() == slug)
    }
    /// The position of an evaluation on this axis.
    pub fn position(self, p: &Point) -> f64 {
        match self {
            Axis::Time => p.time,
            Axis::Calls => p.calls as f64,
            Axis::Samples => p.samples as f64,
            Axis::Draws => p.draws as f64,
        }
    }
}

/// One evaluation of a run.
#[derive(Clone, Debug)]
pub struct Point {
    /// Solver time (s).
    pub time: f64,
    /// Oracle calls so far.
    pub calls: u64,
    /// Samples touched so far (every oracle component on every row).
    pub samples: u64,
    /// Data rows drawn so far (minibatch rows, n per full-batch pass).
    pub draws: u64,
    /// Metrics.
    pub metrics: BTreeMap<String, f64>,
}

/// A complete run read back from its trace.
#[derive(Clone, Debug)]
pub struct RunTrace {
    /// Run id.
    pub run: String,
    /// Position in the experiment.
    pub run_index: u64,
    /// Problem position in the suite.
    pub problem_index: u64,
    /// The problem's configuration.
    pub problem: serde_json::Value,
    /// Solver name: the table's `label`, else the kind.
    pub solver: String,
    /// Solver parameters (compact JSON without `kind`).
    pub params: String,
    /// The evaluations.
    pub points: Vec<Point>,
    /// The summary.
    pub summary: RunSummary,
}

/// The most evaluation points kept per trace in memory (and in the figures): longer traces are
/// thinned evenly while they are read.
pub const MAX_POINTS: usize = 5_000;

/// Reads a complete trace (thinned to at most 2 × [`MAX_POINTS`] points).
pub fn read_trace(path: &Path) -> Result<RunTrace> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut header: Option<serde_json::Value> = None;
    let mut points = Vec::new();
    let mut summary = None;
    // A trace of any length is read in bounded memory: past MAX_POINTS records, every other
    // kept point is dropped and the stride doubles (evenly spaced points stay; the last
    // record is always kept, below).
    let mut stride = 1usize;
    let mut seen = 0usize;
    let mut last_point: Option<Point> = None;
    for (number, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        let value: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("{}: line {}: invalid JSON", path.display(), number + 1))?;
        match value.get("type").and_then(|t| t.as_str()) {
            Some("header") => header = Some(value),
            Some("record") => {
                let metrics = value
                    .get("metrics")
                    .and_then(|m| m.as_object())
                    .map(|m| {
                        m.iter()
                            .filter_map(|(k, v)| v.as_f64().map(|v| (k.clone(), v)))
                            .collect()
                    })
                    .unwrap_or_default();
                let counts: bilevel::core::Counts = value
                    .get("counts")
                    .cloned()
                    .map(serde_json::from_value)
                    .transpose()
                    .with_context(|| format!("{}: line {}: counts", path.display(), number + 1))?
                    .unwrap_or_default();
                let point = Point {
                    time: value
                        .get("solver_time_s")
                        .and_then(|v| v.as_f64())
                        .unwrap_or(0.0),
                    calls: counts.calls(),
                    samples: counts.samples(),
                    draws: counts.draws,
                    metrics,
                };
                if seen.is_multiple_of(stride) {
                    points.push(point);
                    last_point = None;
                    if points.len() == 2 * MAX_POINTS {
                        let mut k = 0;
                        points.retain(|_| {
                            k += 1;
                            k % 2 == 1
                        });
                        stride *= 2;
                    }
                } else {
                    last_point = Some(point);
                }
                seen += 1;
            }
            Some("summary") => {
                summary = Some(
                    serde_json::from_value(value)
                        .with_context(|| format!("{}: malformed summary", path.display()))?,
                )
            }
            _ => {}
        }
    }
    points.extend(last_point);
    let header = header.with_context(|| format!("{}: no header line", path.display()))?;
    let summary = summary.with_context(|| format!("{}: no summary line", path.display()))?;
    // The solver's name: its table's `label` when it has one, else its kind.
    let kind = header
        .get("label")
        .and_then(|l| l.as_str())
        .or_else(|| {
            header
                .get("solver")
                .and_then(|s| s.get("kind"))
                .and_then(|k| k.as_str())
        })
        .unwrap_or("")
        .to_owned();
    let mut params = header.get("solver").cloned().unwrap_or_default();
    if let Some(map) = params.as_object_mut() {
        map.remove("kind");
    }
    Ok(RunTrace {
        run: header
            .get("run")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_owned(),
        run_index: header
            .get("run_index")
            .and_then(|v| v.as_u64())
            .unwrap_or(0),
        problem_index: header
            .get("problem_index")
            .and_then(|v| v.as_u64())
            .unwrap_or(0),
        problem: header.get("problem").cloned().unwrap_or_default(),
        solver: kind,
        params: params.to_string(),
        points,
        summary,
    })
}

/// Every complete trace of the experiment directory, in run order.
pub fn load_traces(layout: &Layout) -> Result<Vec<RunTrace>> {
    let mut traces = Vec::new();
    let dir = layout.traces();
    if dir.exists() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?
        {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "jsonl") {
                traces.push(read_trace(&path)?);
            }
        }
    }
    traces.sort_by(|a, b| (a.run_index, &a.run).cmp(&(b.run_index, &b.run)));
    Ok(traces)
}

/// The q-quantile (linear interpolation between order statistics) of finite values.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Some(v[lo] + (v[hi] - v[lo]) * (pos - lo as f64))
}

/// median [q20, q80].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    /// Median.
    pub median: f64,
    /// 20th percentile.
    pub q20: f64,
    /// 80th percentile.
    pub q80: f64,
}

impl Spread {
    /// The spread of finite values, if any.
    pub fn of(values: &[f64]) -> Option<Spread> {
        Some(Spread {
            median: quantile(values, 0.5)?,
            q20: quantile(values, 0.2)?,
            q80: quantile(values, 0.8)?,
        })
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.3e} [{:.3e}, {:.3e}]",
            self.median, self.q20, self.q80
        )
    }
}

/// One parameter setting of a solver: its runs over seeds.
#[derive(Clone, Debug)]
pub struct Setting<'a> {
    /// Solver name: the table's `label`, else the kind.
    pub solver: &'a str,
    /// Parameters (compact JSON).
    pub params: &'a str,
    /// The runs (one per seed).
    pub runs: Vec<&'a RunTrace>,
}

/// The selection score of a setting (lower is better; +∞ when a seed did not finish `done` or
/// the metric is missing).
pub fn selection_score(setting: &Setting<'_>, metric: &str, options: &ReportOptions) -> f64 {
    if setting
        .runs
        .iter()
        .any(|r| r.summary.status != RunStatus::Done)
    {
        return f64::INFINITY;
    }
    let mut pooled = Vec::new();
    for run in &setting.runs {
        match options.selection {
            SelectionRule::TimeToTarget => {
                let target = options.target.unwrap_or(f64::NEG_INFINITY);
                pooled.push(time_to_target(run, metric, target).map_or(f64::INFINITY, |r| r.0));
            }
            SelectionRule::FinalMedian => {
                if let Some(v) = run.summary.final_metrics.get(metric) {
                    pooled.push(*v);
                }
            }
            SelectionRule::EarlyMedian => {
                let evaluations = run.points.len().saturating_sub(1);
                let k = ((options.selection_fraction * evaluations as f64).ceil() as usize)
                    .clamp(1.min(evaluations), evaluations);
                pooled.extend(
                    run.points
                        .iter()
                        .skip(1)
                        .take(k)
                        .filter_map(|p| p.metrics.get(metric).copied()),
                );
            }
        }
    }
    quantile(&pooled, 0.5).unwrap_or(f64::INFINITY)
}

/// The index of the selected setting: the lowest score; ties go to the first listed.
pub fn select(settings: &[Setting<'_>], metric: &str, options: &ReportOptions) -> Option<usize> {
    let scores: Vec<f64> = settings
        .iter()
        .map(|s| selection_score(s, metric, options))
        .collect();
    (0..settings.len()).min_by(|&a, &b| scores[a].total_cmp(&scores[b]))
}

/// The result of one solver on one problem.
#[derive(Clone, Debug)]
pub struct SolverResult<'a> {
    /// The selected setting.
    pub selected: Setting<'a>,
    /// Its score.
    pub score: f64,
    /// How many settings were compared.
    pub candidates: usize,
}

/// Everything the report says about one problem.
#[derive(Clone, Debug)]
pub struct ProblemSection<'a> {
    /// Position in the suite.
    pub problem_index: u64,
    /// The problem's configuration.
    pub problem: serde_json::Value,
    /// The selection metric.
    pub metric: String,
    /// Metrics tabulated and plotted.
    pub metrics: Vec<String>,
    /// The target value of the selection metric.
    pub target: Option<f64>,
    /// Per solver, in order of first appearance.
    pub solvers: Vec<SolverResult<'a>>,
}

fn default_selection_metric(traces: &[&RunTrace]) -> String {
    for m in ["suboptimality", "value", "hypergrad_norm_sq", "outer_value"] {
        if traces
            .iter()
            .any(|t| t.summary.final_metrics.contains_key(m))
        {
            return m.to_owned();
        }
    }
    "outer_value".into()
}

fn default_metrics(metric: &str, traces: &[&RunTrace]) -> Vec<String> {
    let mut out = vec![metric.to_owned()];
    let present = |m: &str| {
        traces
            .iter()
            .any(|t| t.summary.final_metrics.contains_key(m))
    };
    for m in [
        "hypergrad_norm_sq",
        "value",
        "suboptimality",
        "linsys_residual",
    ] {
        if present(m) && !out.iter().any(|o| o == m) {
            out.push(m.into());
        }
    }
    let standard = [
        "hypergrad_norm_sq",
        "value",
        "suboptimality",
        "linsys_residual",
        "outer_value",
        "inner_grad_norm",
        "inner_distance",
    ];
    let mut task: Vec<String> = traces
        .iter()
        .flat_map(|t| t.summary.final_metrics.keys())
        .filter(|k| !standard.contains(&k.as_str()) && !out.contains(k))
        .cloned()
        .collect();
    task.sort();
    task.dedup();
    out.extend(task);
    out
}

/// Groups traces by problem and solver, selects parameters and computes targets.
pub fn analyze<'a>(traces: &'a [RunTrace], options: &ReportOptions) -> Vec<ProblemSection<'a>> {
    let mut problem_indices: Vec<u64> = traces.iter().map(|t| t.problem_index).collect();
    problem_indices.sort_unstable();
    problem_indices.dedup();
    let mut sections = Vec::new();
    for p in problem_indices {
        let runs: Vec<&RunTrace> = traces.iter().filter(|t| t.problem_index == p).collect();
        let metric = options
            .selection_metric
            .clone()
            .unwrap_or_else(|| default_selection_metric(&runs));
        let metrics = if options.metrics.is_empty() {
            default_metrics(&metric, &runs)
        } else {
            options.metrics.clone()
        };
        // Settings in order of first appearance, grouped by solver.
        let mut settings: Vec<Setting<'a>> = Vec::new();
        for run in &runs {
            match settings
                .iter_mut()
                .find(|s| s.solver == run.solver && s.params == run.params)
            {
                Some(s) => s.runs.push(run),
                None => settings.push(Setting {
                    solver: &run.solver,
                    params: &run.params,
                    runs: vec![run],
                }),
            }
        }
        let mut solvers: Vec<&str> = Vec::new();
        for s in &settings {
            if !solvers.contains(&s.solver) {
                solvers.push(s.solver);
            }
        }
        let mut results = Vec::new();
        for solver in solvers {
            let candidates: Vec<Setting<'a>> = settings
                .iter()
                .filter(|s| s.solver == solver)
                .cloned()
                .collect();
            if let Some(best) = select(&candidates, &metric, options) {
                results.push(SolverResult {
                    score: selection_score(&candidates[best], &metric, options),
                    candidates: candidates.len(),
                    selected: candidates[best].clone(),
                });
            }
        }
        let starts: Vec<f64> = runs
            .iter()
            .filter_map(|r| {
                r.points
                    .first()
                    .and_then(|p| p.metrics.get(&metric))
                    .copied()
            })
            .collect();
        let best = runs
            .iter()
            .filter(|r| r.summary.status == RunStatus::Done)
            .flat_map(|r| {
                r.points
                    .iter()
                    .filter_map(|p| p.metrics.get(&metric).copied())
            })
            .filter(|v| v.is_finite())
            .fold(f64::INFINITY, f64::min);
        let target = options.target.or_else(|| {
            quantile(&starts, 0.5)
                .filter(|_| best.is_finite())
                .map(|start| best + options.target_fraction * (start - best))
        });
        sections.push(ProblemSection {
            problem_index: p,
            problem: runs[0].problem.clone(),
            metric,
            metrics,
            target,
            solvers: results,
        });
    }
    sections
}

/// (solver time, oracle calls) when the run first reaches `metric ≤ target`.
pub fn time_to_target(run: &RunTrace, metric: &str, target: f64) -> Option<(f64, u64)> {
    run.points
        .iter()
        .find(|p| p.metrics.get(metric).is_some_and(|v| *v <= target))
        .map(|p| (p.time, p.calls))
}

fn problem_title(section: &ProblemSection<'_>) -> String {
    let kind = section
        .problem
        .get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or("problem");
    format!("Problem {}: `{kind}`", section.problem_index + 1)
}

fn compact_params(problem: &serde_json::Value) -> String {
    let mut p = problem.clone();
    if let Some(map) = p.as_object_mut() {
        map.remove("kind");
    }
    p.to_string()
}

/// Renders the report. `figures(problem_index)` lists (caption, relative path) of the figures
/// to embed for each problem.
pub fn render(
    experiment: &str,
    sections: &[ProblemSection<'_>],
    options: &ReportOptions,
    figures: &dyn Fn(u64) -> Vec<(String, String)>,
) -> String {
    let mut md = format!("# Experiment `{experiment}`\n\n");
    let rule = match options.selection {
        SelectionRule::EarlyMedian => format!(
            "lowest median over the first {:.0}% of the evaluations, pooled over seeds",
            100.0 * options.selection_fraction
        ),
        SelectionRule::FinalMedian => "lowest median over seeds of the final value".to_owned(),
        SelectionRule::TimeToTarget => {
            "lowest median over seeds of the solver time to reach the target (a seed that never \
             reaches it counts as infinite)"
                .to_owned()
        }
    };
    md.push_str(&format!(
        "Generated by bilevel {} (commit {}). Parameters are selected per solver by the {rule}; \
         a setting with a seed that did not finish `done` is not selected. Values are median \
         [q20, q80] over seeds of the selected setting. Time is solver time (evaluation \
         excluded).\n\n",
        env!("CARGO_PKG_VERSION"),
        crate::GIT_COMMIT
    ));
    for section in sections {
        md.push_str(&format!("## {}\n\n", problem_title(section)));
        md.push_str(&format!(
            "Parameters: `{}`\n\n",
            compact_params(&section.problem)
        ));
        let target_text = section
            .target
            .map(|t| format!("{t:.3e}"))
            .unwrap_or_else(|| "n/a".into());
        let target_rule = match options.target {
            Some(_) => "fixed in the experiment file".to_owned(),
            None => format!("best + {:.0e} · (start − best)", options.target_fraction),
        };
        md.push_str(&format!(
            "Selection metric: `{}`. Target: `{}` ≤ {target_text} ({target_rule}).\n\n",
            section.metric, section.metric
        ));
        let mut header = String::from("| solver | selected parameters | done |");
        let mut rule_line = String::from("|---|---|---|");
        for m in &section.metrics {
            header.push_str(&format!(" {m} |"));
            rule_line.push_str("---|");
        }
        header.push_str(" time to target (s) | oracle calls to target |\n");
        rule_line.push_str("---|---|\n");
        md.push_str(&header);
        md.push_str(&rule_line);
        for result in &section.solvers {
            let runs = &result.selected.runs;
            let done = runs
                .iter()
                .filter(|r| r.summary.status == RunStatus::Done)
                .count();
            let choice = if result.candidates > 1 {
                format!(
                    " (best of {}, score {:.3e})",
                    result.candidates, result.score
                )
            } else {
                String::new()
            };
            let mut row = format!(
                "| `{}` | `{}`{choice} | {done}/{} |",
                result.selected.solver,
                result.selected.params,
                runs.len()
            );
            for m in &section.metrics {
                let values: Vec<f64> = runs
                    .iter()
                    .filter_map(|r| r.summary.final_metrics.get(m).copied())
                    .collect();
                row.push_str(&match Spread::of(&values) {
                    Some(s) => format!(" {s} |"),
                    None => " – |".into(),
                });
            }
            let reached: Vec<(f64, u64)> = section
                .target
                .map(|t| {
                    runs.iter()
                        .filter_map(|r| time_to_target(r, &section.metric, t))
                        .collect()
                })
                .unwrap_or_default();
            if reached.is_empty() {
                row.push_str(" not reached | not reached |\n");
            } else {
                let times: Vec<f64> = reached.iter().map(|r| r.0).collect();
                let calls: Vec<f64> = reached.iter().map(|r| r.1 as f64).collect();
                let note = if reached.len() < runs.len() {
                    format!(" ({}/{} seeds)", reached.len(), runs.len())
                } else {
                    String::new()
                };
                let (t, c) = (Spread::of(&times), Spread::of(&calls));
                row.push_str(&format!(
                    " {}{note} | {}{note} |\n",
                    t.map(|s| s.to_string()).unwrap_or_default(),
                    c.map(|s| format!("{:.0} [{:.0}, {:.0}]", s.median, s.q20, s.q80))
                        .unwrap_or_default()
                ));
            }
            md.push_str(&row);
        }
        md.push('\n');
        for (caption, path) in figures(section.problem_index) {
            md.push_str(&format!("![{caption}]({path})\n\n"));
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(solver: &str, params: &str, seed: u64, values: &[f64], status: RunStatus) -> RunTrace {
        let points = values
            .iter()
            .enumerate()
            .map(|(i, v)| Point {
                time: i as f64 * 0.1,
                calls: i as u64 * 100,
                samples: i as u64 * 6400,
                draws: i as u64 * 128,
                metrics: [("value".to_owned(), *v)].into_iter().collect(),
            })
            .collect();
        RunTrace {
            run: format!("{solver}-{params}-{seed}"),
            run_index: 0,
            problem_index: 0,
            problem: serde_json::json!({"kind": "quadratic"}),
            solver: solver.into(),
            params: params.into(),
            points,
            summary: RunSummary {
                status,
                stop_reason: bilevel::run::StopReason::MaxIters,
                iters: 10 * (values.len() as u64 - 1),
                solver_time_s: 0.1 * (values.len() - 1) as f64,
                counts: Default::default(),
                final_metrics: [("value".to_owned(), *values.last().unwrap())]
                    .into_iter()
                    .collect(),
                final_metrics_iter: Some(10 * (values.len() as u64 - 1)),
                eval_failures: 0,
                message: None,
                warnings: Vec::new(),
            },
        }
    }

    #[test]
    fn quantiles_interpolate() {
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.5), Some(2.0));
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.2), Some(1.8));
        assert_eq!(quantile(&[f64::NAN], 0.5), None);
    }

    /// A hand-computed selection. Five evaluations after the start, fraction 0.5 → the first
    /// three (ceil(2.5)) are pooled over the two seeds:
    /// - setting A: seed 1 [5, 4, 3], seed 2 [6, 5, 4] → pooled median of {3,4,4,5,5,6} = 4.5
    /// - setting B: seed 1 [9, 2, 1], seed 2 [8, 3, 1] → median of {1,1,2,3,8,9} = 2.5
    /// - setting C: better values, but seed 2 diverged → never selected.
    ///
    /// B is selected under `early_median`. Under `final_median` the final values are A: {0.5,
    /// 0.6} → 0.55 and B: {0.9, 0.7} → 0.8, so A wins.
    #[test]
    fn selection_matches_a_hand_computed_case() {
        let traces = vec![
            trace(
                "soba",
                "A",
                1,
                &[10.0, 5.0, 4.0, 3.0, 1.0, 0.5],
                RunStatus::Done,
            ),
            trace(
                "soba",
                "A",
                2,
                &[10.0, 6.0, 5.0, 4.0, 1.0, 0.6],
                RunStatus::Done,
            ),
            trace(
                "soba",
                "B",
                1,
                &[10.0, 9.0, 2.0, 1.0, 1.0, 0.9],
                RunStatus::Done,
            ),
            trace(
                "soba",
                "B",
                2,
                &[10.0, 8.0, 3.0, 1.0, 1.0, 0.7],
                RunStatus::Done,
            ),
            trace(
                "soba",
                "C",
                1,
                &[10.0, 0.1, 0.1, 0.1, 0.1, 0.1],
                RunStatus::Done,
            ),
            trace("soba", "C", 2, &[10.0, 0.1, 0.1], RunStatus::Diverged),
        ];
        let options = ReportOptions {
            selection_metric: Some("value".into()),
            ..Default::default()
        };
        let sections = analyze(&traces, &options);
        let result = &sections[0].solvers[0];
        assert_eq!(result.selected.params, "B");
        assert_eq!(result.score, 2.5);
        assert_eq!(result.candidates, 3);
        let final_rule = ReportOptions {
            selection: SelectionRule::FinalMedian,
            ..options.clone()
        };
        let sections = analyze(&traces, &final_rule);
        assert_eq!(sections[0].solvers[0].selected.params, "A");
        // Target: start 10, best 0.1 (the diverged run is excluded, C seed 1 reached 0.1),
        // fraction 1e-3 → 0.1 + 1e-3 · 9.9.
        let target = sections[0].target.unwrap();
        assert!((target - (0.1 + 1e-3 * 9.9)).abs() < 1e-12);
        let md = render("t", &sections, &final_rule, &|_| Vec::new());
        assert!(
            md.contains("| `soba` | `A` (best of 3, score 5.500e-1) | 2/2 |"),
            "{md}"
        );
    }
}
