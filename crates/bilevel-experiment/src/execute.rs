//! Running a grid: one thread per job, one trace per run, checkpoints, and the summary.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use bilevel::core::{Problem, Vector};
use bilevel::run::observer::partial_path;
use bilevel::run::runner::CheckpointTarget;
use bilevel::run::{
    Checkpoint, JsonlTrace, LiveStatus, Record, RunOptions, RunStatus, RunSummary, Runner,
};
use serde::{Deserialize, Serialize};

use crate::GIT_COMMIT;
use crate::error::ConfigError;
use crate::experiment::{BudgetOverride, Experiment, RunSpec, Start};
pub use crate::layout::{BUDGET_OVERRIDE, EXPERIMENT_COPY, Layout};
use crate::report::{self, ReportOptions};
use crate::{plot, summary};

/// Reads the experiment copy of an output directory, with the command-line budget it was run
/// under, if any.
pub fn experiment_copy(out_dir: &Path) -> Result<Experiment> {
    let path = out_dir.join(EXPERIMENT_COPY);
    if !path.exists() {
        return Err(ConfigError(format!(
            "{}: no {EXPERIMENT_COPY} here; is this an output directory of `bilevel run`?",
            out_dir.display()
        ))
        .into());
    }
    let mut experiment = crate::experiment::load(&path)?;
    let budget_path = out_dir.join(BUDGET_OVERRIDE);
    if budget_path.exists() {
        let text = std::fs::read_to_string(&budget_path)
            .with_context(|| format!("reading {}", budget_path.display()))?;
        let budget: BudgetOverride = serde_json::from_str(&text)
            .map_err(|e| ConfigError(format!("{}: {e}", budget_path.display())))?;
        experiment.apply_budget_override(budget)?;
    }
    Ok(experiment)
}

/// Records the command-line budget of a grid in `out_dir` (or removes a stale record).
pub fn write_budget_override(out_dir: &Path, budget: Option<&BudgetOverride>) -> Result<()> {
    let path = out_dir.join(BUDGET_OVERRIDE);
    match budget {
        Some(b) => {
            let text = serde_json::to_string_pretty(b).expect("invariant: budgets serialize");
            bilevel::run::write_atomic(&path, text.as_bytes())?;
        }
        None => {
            if path.exists() {
                std::fs::remove_file(&path)
                    .with_context(|| format!("removing {}", path.display()))?;
            }
        }
    }
    Ok(())
}

/// What a checkpoint of the CLI carries besides the solver state: enough to continue the run
/// and finish its trace without the experiment file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunContext {
    /// The run.
    pub spec: RunSpec,
    /// Position of the run in the experiment.
    pub run_index: usize,
    /// The starting point specification.
    pub start: Start,
    /// Budgets and evaluation.
    pub options: RunOptions,
    /// The command-line budget that replaced the file's (already applied to `options`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_override: Option<BudgetOverride>,
    /// Where the run reports its progress for the progress line (not saved in checkpoints).
    #[serde(skip)]
    pub live: Option<Arc<LiveStatus>>,
}

impl RunContext {
    /// The context of run `run_index` of `experiment`.
    pub fn for_run(experiment: &Experiment, run_index: usize) -> Self {
        Self {
            spec: experiment.runs[run_index].clone(),
            run_index,
            start: experiment.start.clone(),
            options: experiment.runs[run_index].options(&experiment.run),
            budget_override: experiment.budget_override,
            live: None,
        }
    }
}

/// The trace header of a run.
pub fn header(context: &RunContext, experiment_name: &str) -> serde_json::Value {
    let mut header = serde_json::json!({
        "run": context.spec.id,
        "run_index": context.run_index,
        "experiment": experiment_name,
        "problem": context.spec.problem,
        "problem_index": context.spec.problem_index,
        "solver": context.spec.solver,
        "seed": context.spec.seed,
        "start": context.start,
        "options": context.options,
        "bilevel_version": bilevel_version(),
        "git_commit": GIT_COMMIT,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    });
    if let Some(label) = &context.spec.label {
        header["label"] = serde_json::Value::String(label.clone());
    }
    if let Some(budget) = &context.budget_override {
        // `options` holds the budgets in force; this records that they came from the command
        // line rather than from the file's [run] table.
        header["budget_override"] =
            serde_json::to_value(budget).expect("invariant: budgets serialize");
    }
    header
}

fn bilevel_version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// The outcome of one run of the grid.
pub struct Outcome {
    /// The run.
    pub spec: RunSpec,
    /// Its summary (a `failed` summary when the run could not proceed).
    pub summary: RunSummary,
}

/// Builds each problem of the suite once, and resolves the start for each. Also checks that
/// the `[report]` table names metrics these problems report.
pub fn build_problems(experiment: &Experiment) -> Result<Vec<(Problem, Vector, Vector)>> {
    let mut built = Vec::new();
    for (i, config) in experiment.problems.iter().enumerate() {
        let problem = config.build().map_err(|e| {
            ConfigError(format!(
                "{}: problem #{} (kind = \"{}\"): {e}",
                experiment.path.display(),
                i + 1,
                config.kind()
            ))
        })?;
        let (x0, y0) = experiment
            .start
            .resolve(&problem)
            .map_err(|e| ConfigError(format!("{}: [start]: {e}", experiment.path.display())))?;
        built.push((problem, x0, y0));
    }
    check_report_metrics(experiment, &built)?;
    Ok(built)
}

/// `[report]` may only name metrics that some problem of the suite reports: a misspelt
/// `selection_metric` would make parameter selection meaningless.
fn check_report_metrics(
    experiment: &Experiment,
    built: &[(Problem, Vector, Vector)],
) -> Result<()> {
    let mut known: Vec<String> = built
        .iter()
        .flat_map(|(p, _, _)| p.metric_names())
        .collect();
    known.sort();
    known.dedup();
    let report = &experiment.report;
    let named = report
        .selection_metric
        .iter()
        .map(|m| ("selection_metric", m))
        .chain(report.metrics.iter().map(|m| ("metrics", m)));
    for (field, metric) in named {
        if !known.contains(metric) {
            return Err(ConfigError(format!(
                "{}: [report] {field}: `{metric}` is not a metric of this experiment's problems; \
                 they report {}",
                experiment.path.display(),
                known.join(", ")
            ))
            .into());
        }
    }
    Ok(())
}

/// Builds every distinct solver of the grid and initialises it on its problem (what a run
/// does before its first step), so that a dry run catches solvers that cannot run on their
/// problem (a meta-learning solver on a problem that is not unrolled, STABLE above its
/// `max_dim_y`, …).
pub fn check_runs(experiment: &Experiment, built: &[(Problem, Vector, Vector)]) -> Result<()> {
    struct Init<'a> {
        problem: &'a Problem,
        x0: &'a Vector,
        y0: &'a Vector,
        seed: u64,
    }
    impl bilevel::algorithms::SolverVisitor for Init<'_> {
        type Output = bilevel::core::Result<()>;
        fn visit<S: bilevel::core::Solver>(self, solver: S) -> Self::Output {
            solver
                .init(self.problem, self.x0.clone(), self.y0.clone(), self.seed)
                .map(|_| ())
        }
    }
    // One check per (problem, solver setting): the seeds of a setting share it.
    let mut seen = std::collections::HashSet::new();
    let mut errors = Vec::new();
    for spec in &experiment.runs {
        let key = (
            spec.problem_index,
            serde_json::to_string(&spec.solver).expect("invariant: configs serialize"),
        );
        if !seen.insert(key) {
            continue;
        }
        let (problem, x0, y0) = &built[spec.problem_index];
        let problem = problem.fresh();
        let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            spec.solver.visit(Init {
                problem: &problem,
                x0,
                y0,
                seed: spec.seed,
            })
        }));
        let message = match checked {
            Ok(Ok(Ok(()))) => continue,
            Ok(Ok(Err(e))) | Ok(Err(e)) => e.to_string(),
            Err(payload) => format!("panic: {}", panic_message(payload.as_ref())),
        };
        errors.push(format!(
            "  {} on problem #{} (kind = \"{}\"): {message}",
            spec.solver.kind(),
            spec.problem_index + 1,
            spec.problem.kind()
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ConfigError(format!(
            "{}: {} solver setting(s) cannot run on their problem:\n{}",
            experiment.path.display(),
            errors.len(),
            errors.join("\n")
        ))
        .into())
    }
}

/// The text of a caught panic.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_owned()
    }
}

/// One attempt at a run: its trace is written as it goes; an error (or a panic) is handled by
/// [`execute_run`].
pub type Attempt<'a> = dyn Fn(
        &RunContext,
        &Path,
        &serde_json::Value,
        &Problem,
        &Vector,
        &Vector,
        Option<(&Checkpoint, &Path)>,
    ) -> Result<RunSummary>
    + Sync
    + 'a;

/// The real attempt: a [`Runner`] with the run's trace (new, or continued from the checkpoint)
/// and checkpoints.
pub fn attempt_run(
    context: &RunContext,
    out_dir: &Path,
    header: &serde_json::Value,
    problem: &Problem,
    x0: &Vector,
    y0: &Vector,
    checkpoint: Option<(&Checkpoint, &Path)>,
) -> Result<RunSummary> {
    let layout = Layout::new(out_dir);
    let trace_path = layout.trace(&context.spec.id);
    let trace = match checkpoint {
        Some((c, _)) => JsonlTrace::resume(&trace_path, c.iter)?,
        None => JsonlTrace::create(&trace_path, header)?,
    };
    let mut runner = Runner::new(context.options.clone()).observe(trace);
    if let Some(live) = &context.live {
        runner = runner.live(live.clone());
    }
    if context.options.checkpoint_every.is_some() {
        runner.checkpoint = Some(CheckpointTarget {
            path: layout.checkpoint(&context.spec.id),
            context: serde_json::to_value(context).expect("invariant: contexts serialize"),
        });
    }
    Ok(match checkpoint {
        Some((c, path)) => runner.resume_config_at(c, problem, path)?,
        None => runner.run_config(
            &context.spec.solver,
            problem,
            x0.clone(),
            y0.clone(),
            context.spec.seed,
        )?,
    })
}

/// Runs one run from scratch (or from `checkpoint`) with `attempt`, writing its trace. Never
/// panics and never loses what a run wrote: an error or a panic ends the run `failed`, with
/// its records kept and the reason in its summary line; its checkpoint is kept, so that
/// `--resume` can continue it.
pub fn execute_run(
    context: &RunContext,
    out_dir: &Path,
    experiment_name: &str,
    problem: &Problem,
    x0: &Vector,
    y0: &Vector,
    checkpoint: Option<(&Checkpoint, &Path)>,
    attempt: &Attempt<'_>,
) -> RunSummary {
    let layout = Layout::new(out_dir);
    let trace_path = layout.trace(&context.spec.id);
    let header = header(context, experiment_name);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        attempt(context, out_dir, &header, problem, x0, y0, checkpoint)
    }));
    let message = match outcome {
        Ok(Ok(summary)) => {
            let _ = std::fs::remove_file(layout.checkpoint(&context.spec.id));
            return summary;
        }
        Ok(Err(e)) => format!("{e:#}"),
        Err(payload) => format!("panic: {}", panic_message(payload.as_ref())),
    };
    match finish_failed_trace(&trace_path, &header, &message) {
        Ok(summary) => summary,
        Err(e) => {
            let mut summary = failed_summary(message);
            summary.message = Some(format!(
                "{}; and the trace could not be finished: {e:#}",
                summary.message.unwrap_or_default()
            ));
            summary
        }
    }
}

fn failed_summary(message: String) -> RunSummary {
    RunSummary {
        status: RunStatus::Failed,
        stop_reason: bilevel::run::StopReason::Error,
        iters: 0,
        solver_time_s: 0.0,
        counts: Default::default(),
        final_metrics: Default::default(),
        final_metrics_iter: None,
        eval_failures: 0,
        message: Some(message),
        warnings: Vec::new(),
    }
}

/// Ends the trace of a run that failed: the records its partial trace holds are kept (the
/// progress they show becomes the summary's), a `failed` summary line with `message` is
/// appended, and the trace is made complete atomically. Without a partial trace, the trace is
/// the header and the summary.
fn finish_failed_trace(
    trace_path: &Path,
    header: &serde_json::Value,
    message: &str,
) -> Result<RunSummary> {
    let partial = partial_path(trace_path);
    let mut lines: Vec<String> = Vec::new();
    let mut summary = failed_summary(message.to_owned());
    if let Ok(text) = std::fs::read_to_string(&partial) {
        for (number, line) in text.lines().enumerate() {
            let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
                break; // a line cut by the failure: nothing after it is trusted
            };
            match value.get("type").and_then(|t| t.as_str()) {
                Some("header") if number == 0 => lines.push(line.to_owned()),
                Some("record") if !lines.is_empty() => {
                    let Ok(record) = serde_json::from_value::<Record>(value) else {
                        break;
                    };
                    summary.iters = record.iter;
                    summary.solver_time_s = record.solver_time_s;
                    summary.counts = record.counts;
                    match &record.eval_error {
                        Some(_) => summary.eval_failures += 1,
                        None => {
                            summary.final_metrics = record.metrics.clone();
                            summary.final_metrics_iter = Some(record.iter);
                        }
                    }
                    lines.push(line.to_owned());
                }
                _ => break,
            }
        }
    }
    if lines.is_empty() {
        let mut with_type = header.clone();
        with_type["type"] = serde_json::Value::String("header".into());
        lines.push(with_type.to_string());
    }
    let mut summary_line =
        serde_json::to_value(&summary).expect("invariant: run summaries serialize");
    summary_line["type"] = serde_json::Value::String("summary".into());
    lines.push(summary_line.to_string());
    let mut text = lines.join("\n");
    text.push('\n');
    if let Some(dir) = trace_path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    bilevel::run::write_atomic(trace_path, text.as_bytes())?;
    let _ = std::fs::remove_file(&partial);
    Ok(summary)
}

/// Whether `dir` already holds results of a run.
pub fn has_results(dir: &Path) -> bool {
    let layout = Layout::new(dir);
    let non_empty = |p: PathBuf| std::fs::read_dir(p).is_ok_and(|mut d| d.next().is_some());
    non_empty(layout.traces()) || non_empty(layout.checkpoints()) || layout.summary().exists()
}

/// Runs every run of `experiment` whose index is in `todo` on `jobs` threads.
pub fn run_grid(
    experiment: &Experiment,
    out_dir: &Path,
    jobs: usize,
    todo: &[usize],
    resume_from: &[(usize, Checkpoint, PathBuf)],
    show_progress: bool,
) -> Result<Vec<Outcome>> {
    let problems = build_problems(experiment)?;
    run_grid_with(
        experiment,
        &problems,
        out_dir,
        jobs,
        todo,
        resume_from,
        show_progress,
        &attempt_run,
    )
}

/// [`run_grid`] with the problems built and a given attempt (tests inject failures here).
pub fn run_grid_with(
    experiment: &Experiment,
    problems: &[(Problem, Vector, Vector)],
    out_dir: &Path,
    jobs: usize,
    todo: &[usize],
    resume_from: &[(usize, Checkpoint, PathBuf)],
    show_progress: bool,
    attempt: &Attempt<'_>,
) -> Result<Vec<Outcome>> {
    let layout = Layout::new(out_dir);
    for dir in [layout.traces(), layout.checkpoints()] {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if let Some(bad) = experiment
        .runs
        .iter()
        .find(|r| !crate::outdir::valid_run_id(&r.id))
    {
        anyhow::bail!("invariant: run id `{}` is not a plain file name", bad.id);
    }
    // The bar counts per-mille of runs: finished runs count 1000, running ones the fraction of
    // their budget used, so the position and the ETA move within a long run too.
    let bar = if show_progress {
        indicatif::ProgressBar::new(todo.len() as u64 * 1000)
    } else {
        indicatif::ProgressBar::hidden()
    };
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {percent:>3}% ETA {eta} {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(experiment.name.clone());
    let next = AtomicUsize::new(0);
    let outcomes = Mutex::new(Vec::new());
    let failed = AtomicUsize::new(0);
    let finished = AtomicUsize::new(0);
    // The runs in progress: (run index, its status).
    let running: Mutex<Vec<(usize, Arc<LiveStatus>)>> = Mutex::new(Vec::new());
    let all_done = std::sync::atomic::AtomicBool::new(false);
    let show = |bar: &indicatif::ProgressBar| {
        let running = running.lock().unwrap_or_else(|p| p.into_inner());
        let done = finished.load(Ordering::Relaxed);
        let partial: f64 = running.iter().map(|(_, s)| s.budget_fraction()).sum();
        bar.set_position(done as u64 * 1000 + (partial * 1000.0) as u64);
        // The first run in progress, in detail; the others as a count.
        let detail = running.first().map(|(index, status)| {
            let spec = &experiment.runs[*index];
            let name = spec.label.as_deref().unwrap_or(spec.solver.kind());
            let metric = status
                .metric()
                .map(|(k, v)| format!(", {k} = {v:.3e}"))
                .unwrap_or_default();
            format!(
                "{name} seed {}: iter {} ({:.0} %){metric}",
                spec.seed,
                status.iter(),
                100.0 * status.budget_fraction()
            )
        });
        let failed = failed.load(Ordering::Relaxed);
        bar.set_message(format!(
            "{done}/{} runs{}{}{}",
            todo.len(),
            detail.map(|d| format!(" | {d}")).unwrap_or_default(),
            if running.len() > 1 {
                format!(" (+{} running)", running.len() - 1)
            } else {
                String::new()
            },
            if failed > 0 {
                format!(" | {failed} not done")
            } else {
                String::new()
            }
        ));
    };
    let jobs = jobs.clamp(1, todo.len().max(1));
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs)
            .map(|_| {
                scope.spawn(|| {
                    loop {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&run_index) = todo.get(k) else { break };
                        let spec = &experiment.runs[run_index];
                        let (problem, x0, y0) = &problems[spec.problem_index];
                        let mut context = RunContext::for_run(experiment, run_index);
                        let status = Arc::new(LiveStatus::default());
                        context.live = Some(status.clone());
                        let checkpoint = resume_from
                            .iter()
                            .find(|(i, _, _)| *i == run_index)
                            .map(|(_, c, p)| (c, p.as_path()));
                        running
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((run_index, status.clone()));
                        let summary = execute_run(
                            &context,
                            out_dir,
                            &experiment.name,
                            &problem.fresh(),
                            x0,
                            y0,
                            checkpoint,
                            attempt,
                        );
                        if summary.status != RunStatus::Done {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                        running
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .retain(|(_, s)| !Arc::ptr_eq(s, &status));
                        finished.fetch_add(1, Ordering::Relaxed);
                        outcomes
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(Outcome {
                                spec: spec.clone(),
                                summary,
                            });
                    }
                })
            })
            .collect();
        if show_progress {
            // Redraws the line (positions, the running run's iteration and metric) until every
            // worker has finished.
            scope.spawn(|| {
                while !all_done.load(Ordering::Relaxed) {
                    show(&bar);
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
            });
        }
        for worker in workers {
            // A worker never panics (execute_run catches a run's panic); if one did, the others'
            // outcomes are still reported.
            let _ = worker.join();
        }
        all_done.store(true, Ordering::Relaxed);
    });
    bar.finish_and_clear();
    let mut outcomes = outcomes.into_inner().unwrap_or_else(|p| p.into_inner());
    let order = |o: &Outcome| experiment.runs.iter().position(|r| r.id == o.spec.id);
    outcomes.sort_by_key(order);
    Ok(outcomes)
}

/// Regenerates `summary.csv`, the figures (unless `plots` is false) and `report.md` from the
/// traces of `DIR`.
pub fn finalize(
    out_dir: &Path,
    experiment: &str,
    options: &ReportOptions,
    plots: bool,
) -> Result<()> {
    let layout = Layout::new(out_dir);
    summary::write_summary(&layout)?;
    let traces = report::load_traces(&layout)?;
    // A metric asked for by name must be in the traces (a typo would give empty figures).
    let present: std::collections::BTreeSet<&str> = traces
        .iter()
        .flat_map(|t| t.points.iter().flat_map(|p| p.metrics.keys()))
        .map(String::as_str)
        .collect();
    for metric in options.metrics.iter().chain(&options.selection_metric) {
        if !traces.is_empty() && !present.contains(metric.as_str()) {
            return Err(ConfigError(format!(
                "metric `{metric}` is not in the traces of {}; they have {}",
                out_dir.display(),
                present.iter().copied().collect::<Vec<_>>().join(", ")
            ))
            .into());
        }
    }
    let sections = report::analyze(&traces, options);
    let figures = if plots {
        plot::plot_sections(&layout, &sections, options)?
    } else {
        Vec::new()
    };
    let markdown = report::render(experiment, &sections, options, &|p| {
        figures
            .iter()
            .filter(|f| f.0 == p)
            .map(|f| (f.1.clone(), f.2.display().to_string()))
            .collect()
    });
    bilevel::run::write_atomic(&layout.root.join("report.md"), markdown.as_bytes())?;
    Ok(())
}

/// Turns the complete trace of a failed run back into its partial trace, so that resuming from
/// the run's checkpoint keeps the records it wrote (its summary line is dropped on resume).
pub fn reopen_trace(trace: &Path) -> Result<()> {
    std::fs::rename(trace, partial_path(trace))
        .with_context(|| format!("reopening {}", trace.display()))
}

/// Loads the checkpoint at `path` and checks that it belongs to run `spec` on `problem`: its
/// checksum ([`Checkpoint::load`]), the problem's fingerprint, and the run it says it is (id,
/// problem, solver and seed equal to the experiment's). A checkpoint that fails is refused
/// with a message naming it; nothing is written.
pub fn verified_checkpoint(path: &Path, spec: &RunSpec, problem: &Problem) -> Result<Checkpoint> {
    let checkpoint = Checkpoint::load(path)?;
    checkpoint.check_problem(problem, path)?;
    let refuse = |reason: String| bilevel::core::Error::Checkpoint {
        path: path.to_owned(),
        reason,
    };
    let context: RunContext = serde_json::from_value(checkpoint.context.clone())
        .map_err(|e| refuse(format!("not a checkpoint of `bilevel run` (context: {e})")))?;
    if context.spec.id != spec.id
        || json(&context.spec.problem) != json(&spec.problem)
        || json(&context.spec.solver) != json(&spec.solver)
        || context.spec.seed != spec.seed
        || checkpoint.solver != json(&spec.solver)
    {
        return Err(refuse(format!(
            "it is not a checkpoint of run `{}` of this experiment (its run: `{}`, solver {})",
            spec.id, context.spec.id, checkpoint.solver
        ))
        .into());
    }
    Ok(checkpoint)
}

/// A configuration as a JSON value, for comparing configurations.
fn json<T: Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).expect("invariant: configs serialize")
}

/// Continues one run from its checkpoint file (`DIR/checkpoints/<run>.json`), then refreshes
/// the experiment's summary. Everything is written inside DIR, the folder the checkpoint sits
/// in, whatever the checkpoint says; the run must be one of the experiment copy's runs.
pub fn resume_checkpoint(path: &Path) -> Result<RunSummary> {
    let (out_dir, id) = crate::outdir::checkpoint_home(path)?;
    let _lock = crate::outdir::FolderLock::acquire(&out_dir)?;
    let experiment = experiment_copy(&out_dir)?;
    let Some(run_index) = experiment.runs.iter().position(|r| r.id == id) else {
        return Err(ConfigError(format!(
            "{}: run `{id}` is not a run of the experiment in {}",
            path.display(),
            out_dir.display()
        ))
        .into());
    };
    let spec = &experiment.runs[run_index];
    let layout = Layout::new(&out_dir);
    let trace = layout.trace(&id);
    if trace.exists() {
        match crate::summary::read_trace_summary(&trace) {
            Ok(row) if row.summary.status == RunStatus::Failed => {
                // A failed attempt: continue from the checkpoint with the records it kept.
                reopen_trace(&trace)?;
            }
            _ => {
                return Err(ConfigError(format!(
                    "{}: run `{id}` is already complete ({})",
                    path.display(),
                    trace.display()
                ))
                .into());
            }
        }
    }
    if !partial_path(&trace).exists() {
        return Err(ConfigError(format!(
            "{}: the run's partial trace {} is missing; start the run again with `bilevel run \
             --resume {}` after deleting the checkpoint",
            path.display(),
            partial_path(&trace).display(),
            out_dir.display()
        ))
        .into());
    }
    let config = &experiment.problems[spec.problem_index];
    let problem = config.build().map_err(|e| {
        ConfigError(format!(
            "{}: cannot rebuild the problem: {e}",
            path.display()
        ))
    })?;
    let (x0, y0) = experiment
        .start
        .resolve(&problem)
        .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
    let checkpoint = verified_checkpoint(path, spec, &problem)?;
    let context = RunContext::for_run(&experiment, run_index);
    let summary = execute_run(
        &context,
        &out_dir,
        &experiment.name,
        &problem,
        &x0,
        &y0,
        Some((&checkpoint, path)),
        &attempt_run,
    );
    finalize(&out_dir, &experiment.name, &experiment.report, true)?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRID: &str = r#"
name = "grid"
seeds = [1, 2, 3]
[problem]
kind = "quadratic_tiny"
[run]
max_iters = 30
eval_every = 10
[[solver]]
kind = "soba"
batch_size = 4
"#;

    #[test]
    fn a_panicking_run_is_recorded_and_the_others_finish() {
        let dir = tempfile::tempdir().unwrap();
        let experiment = crate::experiment::parse(GRID, Path::new("grid.toml")).unwrap();
        let problems = build_problems(&experiment).unwrap();
        let doomed = experiment.runs[1].id.clone();
        let attempt = |context: &RunContext,
                       out: &Path,
                       header: &serde_json::Value,
                       problem: &Problem,
                       x0: &Vector,
                       y0: &Vector,
                       checkpoint: Option<(&Checkpoint, &Path)>|
         -> Result<RunSummary> {
            if context.spec.id == doomed {
                // Part of the trace is written before the panic: it must be kept.
                let trace = JsonlTrace::create(&Layout::new(out).trace(&context.spec.id), header)?;
                drop(trace);
                panic!("index out of bounds: the len is 3 but the index is 7");
            }
            attempt_run(context, out, header, problem, x0, y0, checkpoint)
        };
        let todo: Vec<usize> = (0..experiment.runs.len()).collect();
        let outcomes = run_grid_with(
            &experiment,
            &problems,
            dir.path(),
            2,
            &todo,
            &[],
            false,
            &attempt,
        )
        .unwrap();
        let statuses: Vec<RunStatus> = outcomes.iter().map(|o| o.summary.status).collect();
        assert_eq!(
            statuses,
            [RunStatus::Done, RunStatus::Failed, RunStatus::Done]
        );
        finalize(dir.path(), "grid", &ReportOptions::default(), false).unwrap();
        let csv = std::fs::read_to_string(dir.path().join("summary.csv")).unwrap();
        assert_eq!(csv.lines().count(), 4, "a header and three runs:\n{csv}");
        let line = csv.lines().find(|l| l.starts_with(&doomed)).unwrap();
        assert!(
            line.contains("failed") && line.contains("panic: index out of bounds"),
            "{line}"
        );
    }

    #[test]
    fn a_failed_run_keeps_the_records_it_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let trace = dir
            .path()
            .join("traces")
            .join("soba-0123456789abcdef-seed1.jsonl");
        let header = serde_json::json!({"run": "soba-0123456789abcdef-seed1"});
        let mut writer = JsonlTrace::create(&trace, &header).unwrap();
        let record = |iter: u64, value: f64| Record {
            iter,
            solver_time_s: iter as f64 * 0.01,
            counts: Default::default(),
            metrics: [("value".to_owned(), value)].into_iter().collect(),
            diagnostics: Default::default(),
            eval_error: None,
        };
        use bilevel::run::Observer;
        let (x, y) = (
            bilevel::core::linalg::zeros(1),
            bilevel::core::linalg::zeros(1),
        );
        let at = bilevel::run::Iterate {
            x: &x,
            y: &y,
            v: None,
        };
        writer.observe(&record(0, 2.0), at).unwrap();
        writer.observe(&record(100, 1.0), at).unwrap();
        drop(writer);
        // A line cut by the failure is dropped, the records before it are kept.
        let partial = partial_path(&trace);
        let mut text = std::fs::read_to_string(&partial).unwrap();
        text.push_str("{\"type\":\"record\",\"it");
        std::fs::write(&partial, text).unwrap();
        let summary =
            finish_failed_trace(&trace, &header, "dense Newton did not converge").unwrap();
        assert_eq!(summary.status, RunStatus::Failed);
        assert_eq!(
            (summary.iters, summary.final_metrics_iter),
            (100, Some(100))
        );
        assert_eq!(summary.final_metrics["value"], 1.0);
        assert!(!partial.exists());
        let lines: Vec<String> = std::fs::read_to_string(&trace)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(lines.len(), 4, "header, two records, summary: {lines:?}");
        let row = crate::summary::read_trace_summary(&trace).unwrap();
        assert_eq!(row.summary.iters, 100);
    }
}
