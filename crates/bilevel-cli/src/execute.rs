//! Running a grid: one thread per job, one trace per run, checkpoints, and the summary.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use bilevel::core::{Problem, Vector};
use bilevel::run::observer::partial_path;
use bilevel::run::runner::CheckpointTarget;
use bilevel::run::{Checkpoint, JsonlTrace, RunOptions, RunStatus, RunSummary, Runner};
use serde::{Deserialize, Serialize};

use crate::experiment::{BudgetOverride, ConfigError, Experiment, RunSpec, Start};
use crate::report::{self, ReportOptions};
use crate::{plot, summary};

/// The copy of the experiment file kept in an output directory.
pub const EXPERIMENT_COPY: &str = "experiment.toml";

/// The command-line budget of a grid (`--max-iters`, `--max-seconds`), kept next to the
/// experiment copy so that `--resume` continues under the same budget.
pub const BUDGET_OVERRIDE: &str = "budget_override.json";

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

/// The build's git commit (from build.rs), or "unknown".
pub const GIT_COMMIT: &str = match option_env!("BILEVEL_GIT_COMMIT") {
    Some(c) => c,
    None => "unknown",
};

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
    /// The output directory of the experiment.
    pub out_dir: PathBuf,
    /// The command-line budget that replaced the file's (already applied to `options`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_override: Option<BudgetOverride>,
}

/// Output layout of an experiment directory.
pub struct Layout {
    /// The directory.
    pub root: PathBuf,
}

impl Layout {
    /// The layout under `root`.
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
        }
    }
    /// `traces/`.
    pub fn traces(&self) -> PathBuf {
        self.root.join("traces")
    }
    /// `checkpoints/`.
    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }
    /// The trace of run `id`.
    pub fn trace(&self, id: &str) -> PathBuf {
        self.traces().join(format!("{id}.jsonl"))
    }
    /// The checkpoint of run `id`.
    pub fn checkpoint(&self, id: &str) -> PathBuf {
        self.checkpoints().join(format!("{id}.json"))
    }
    /// `summary.csv`.
    pub fn summary(&self) -> PathBuf {
        self.root.join("summary.csv")
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

fn failed_summary(message: String) -> RunSummary {
    RunSummary {
        status: RunStatus::Failed,
        stop_reason: bilevel::run::StopReason::Error,
        iters: 0,
        solver_time_s: 0.0,
        counts: Default::default(),
        final_metrics: Default::default(),
        message: Some(message),
    }
}

/// Builds each problem of the suite once, and resolves the start for each.
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
    Ok(built)
}

/// Runs one run from scratch (or from `checkpoint`), writing its trace; never panics on a bad
/// run: failures become a `failed` summary and trace.
pub fn execute_run(
    context: &RunContext,
    experiment_name: &str,
    problem: &Problem,
    x0: &Vector,
    y0: &Vector,
    checkpoint: Option<&Checkpoint>,
) -> RunSummary {
    let layout = Layout::new(&context.out_dir);
    let trace_path = layout.trace(&context.spec.id);
    let header = header(context, experiment_name);
    let attempt = || -> bilevel::core::Result<RunSummary> {
        let trace = match checkpoint {
            Some(c) => JsonlTrace::resume(&trace_path, c.iter)?,
            None => JsonlTrace::create(&trace_path, &header)?,
        };
        let mut runner = Runner::new(context.options.clone()).observe(trace);
        if context.options.checkpoint_every.is_some() {
            runner.checkpoint = Some(CheckpointTarget {
                path: layout.checkpoint(&context.spec.id),
                context: serde_json::to_value(context).expect("invariant: contexts serialize"),
            });
        }
        match checkpoint {
            Some(c) => runner.resume_config(c, problem),
            None => runner.run_config(
                &context.spec.solver,
                problem,
                x0.clone(),
                y0.clone(),
                context.spec.seed,
            ),
        }
    };
    match attempt() {
        Ok(summary) => {
            let _ = std::fs::remove_file(layout.checkpoint(&context.spec.id));
            summary
        }
        Err(e) => {
            let summary = failed_summary(e.to_string());
            // Replace whatever partial trace there is by a complete one that says why.
            if let Ok(mut trace) = JsonlTrace::create(&trace_path, &header) {
                use bilevel::run::Observer;
                let _ = trace.finish(&summary);
            }
            summary
        }
    }
}

/// Runs every run of `experiment` whose index is in `todo` on `jobs` threads.
pub fn run_grid(
    experiment: &Experiment,
    out_dir: &Path,
    jobs: usize,
    todo: &[usize],
    resume_from: &[(usize, Checkpoint)],
    show_progress: bool,
) -> Result<Vec<Outcome>> {
    let layout = Layout::new(out_dir);
    for dir in [layout.traces(), layout.checkpoints()] {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let problems = build_problems(experiment)?;
    let bar = if show_progress {
        indicatif::ProgressBar::new(todo.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{prefix} [{bar:30}] {pos}/{len} runs, ETA {eta} {msg}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(experiment.name.clone());
    let next = AtomicUsize::new(0);
    let outcomes = Mutex::new(Vec::new());
    let failed = AtomicUsize::new(0);
    let running = AtomicUsize::new(0);
    let update = |bar: &indicatif::ProgressBar| {
        bar.set_message(format!(
            "{} running, {} not done",
            running.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed)
        ));
    };
    let jobs = jobs.clamp(1, todo.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&run_index) = todo.get(k) else { break };
                    let spec = &experiment.runs[run_index];
                    let (problem, x0, y0) = &problems[spec.problem_index];
                    let context = RunContext {
                        spec: spec.clone(),
                        run_index,
                        start: experiment.start.clone(),
                        options: experiment.run.clone(),
                        out_dir: out_dir.to_owned(),
                        budget_override: experiment.budget_override,
                    };
                    let checkpoint = resume_from
                        .iter()
                        .find(|(i, _)| *i == run_index)
                        .map(|(_, c)| c);
                    running.fetch_add(1, Ordering::Relaxed);
                    update(&bar);
                    let summary = execute_run(
                        &context,
                        &experiment.name,
                        &problem.fresh(),
                        x0,
                        y0,
                        checkpoint,
                    );
                    if summary.status != RunStatus::Done {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    bar.inc(1);
                    bar.set_message(format!("({} not done)", failed.load(Ordering::Relaxed)));
                    outcomes
                        .lock()
                        .expect("invariant: no thread panics holding the lock")
                        .push(Outcome {
                            spec: spec.clone(),
                            summary,
                        });
                }
            });
        }
    });
    bar.finish_and_clear();
    let mut outcomes = outcomes
        .into_inner()
        .expect("invariant: no thread panicked holding the lock");
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
    let sections = report::analyze(&traces, options);
    let figures = if plots {
        plot::plot_sections(&layout, &sections)?
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

/// Continues one run from its checkpoint file, then refreshes the experiment's summary.
pub fn resume_checkpoint(path: &Path) -> Result<RunSummary> {
    let checkpoint = Checkpoint::load(path)?;
    let context: RunContext = serde_json::from_value(checkpoint.context.clone()).map_err(|e| {
        ConfigError(format!(
            "{}: not a checkpoint of `bilevel run` (context: {e})",
            path.display()
        ))
    })?;
    let problem = context.spec.problem.build().map_err(|e| {
        ConfigError(format!(
            "{}: cannot rebuild the problem: {e}",
            path.display()
        ))
    })?;
    let (x0, y0) = context
        .start
        .resolve(&problem)
        .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
    let trace = Layout::new(&context.out_dir).trace(&context.spec.id);
    if !partial_path(&trace).exists() {
        anyhow::bail!(
            "{}: the run's partial trace {} is missing",
            path.display(),
            partial_path(&trace).display()
        );
    }
    let experiment_name = context
        .out_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let summary = execute_run(
        &context,
        &experiment_name,
        &problem,
        &x0,
        &y0,
        Some(&checkpoint),
    );
    // The experiment's own name and report settings, from the copy in the output directory.
    let (name, report_options) = match experiment_copy(&context.out_dir) {
        Ok(e) => (e.name, e.report),
        Err(_) => (experiment_name, ReportOptions::default()),
    };
    finalize(&context.out_dir, &name, &report_options, true)?;
    Ok(summary)
}
