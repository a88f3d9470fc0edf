//! The [`Runner`]: loops `step` under budgets, times only the solver, evaluates metrics from the
//! uncounted objectives, detects divergence, notifies observers and writes checkpoints.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::checkpoint::{CHECKPOINT_FORMAT, Checkpoint, ProblemFingerprint};
use super::observer::{Iterate, Observer};
use crate::algorithms::{SolverConfig, SolverVisitor};
use crate::core::sampler::rows_drawn;
use crate::core::{
    Counts, Diagnostics, Error, Metrics, Problem, Result, Solver, Vector, VectorExt, warnings,
};

/// Budgets and evaluation settings of one run (the `[run]` table of an experiment file).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunOptions {
    /// Stop after this many outer iterations. No budget applies unless it is set: the default
    /// has none, and [`validate`](Self::validate) asks for at least one.
    pub max_iters: Option<u64>,
    /// Stop once the solver time (evaluation excluded) reaches this many seconds.
    pub max_seconds: Option<f64>,
    /// Stop once this many oracle calls (f and g, every kind) have been made.
    pub max_oracle_calls: Option<u64>,
    /// Stop once this many samples have been touched: every oracle component on every row
    /// ([`Counts::samples`]).
    pub max_samples: Option<u64>,
    /// Stop once this many data rows have been drawn: minibatch rows, plus n per full-batch
    /// pass ([`Counts::draws`], the reference benchmark's axis).
    #[serde(default)]
    pub max_draws: Option<u64>,
    /// Stop once ‖∇F(x)‖² ≤ `tol` at an evaluation (the metric `hypergrad_norm_sq`, which needs
    /// the problem's exact reference). Stops with reason `target_reached`, like
    /// [`stop_at`](Self::stop_at), which stops on any other metric.
    #[serde(default)]
    pub tol: Option<f64>,
    /// Evaluate metrics every this many iterations (and at the start and the end). 0 evaluates
    /// by the other settings below only (at least one must then be set).
    pub eval_every: u64,
    /// Also evaluate after an iteration once this much solver time has passed since the last
    /// evaluation: one setting fits solvers whose iterations differ in cost by 1000× (a race
    /// between SOBA at µs per step and a quasi-Newton method at ms per step). Which iterations
    /// are evaluated then depends on timing; the iterates never do.
    #[serde(default)]
    pub eval_every_seconds: Option<f64>,
    /// Also evaluate once this many samples ([`Counts::samples`]) have been touched since the
    /// last evaluation: solvers whose iterations touch 64 rows and 50,000 rows get curves with
    /// points at the same spacing on a samples axis.
    #[serde(default)]
    pub eval_every_samples: Option<u64>,
    /// Also evaluate once this many rows have been drawn ([`Counts::draws`]) since the last
    /// evaluation.
    #[serde(default)]
    pub eval_every_draws: Option<u64>,
    /// End the run (`done`, stop reason `target_reached`) at the first evaluation where the
    /// metric is at or below the value.
    #[serde(default)]
    pub stop_at: Option<StopAt>,
    /// Write a checkpoint every this many iterations (needs a checkpoint path).
    pub checkpoint_every: Option<u64>,
    /// The run is `diverged` once |x| or |y| exceeds this anywhere, or anything is non-finite.
    pub divergence_threshold: f64,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            max_iters: None,
            max_seconds: None,
            max_oracle_calls: None,
            max_samples: None,
            max_draws: None,
            tol: None,
            eval_every: 100,
            eval_every_seconds: None,
            eval_every_samples: None,
            eval_every_draws: None,
            stop_at: None,
            checkpoint_every: None,
            divergence_threshold: 1e10,
        }
    }
}

impl RunOptions {
    /// Checks the options: at least one budget, positive evaluation period.
    pub fn validate(&self) -> Result<()> {
        if self.max_iters.is_none()
            && self.max_seconds.is_none()
            && self.max_oracle_calls.is_none()
            && self.max_samples.is_none()
            && self.max_draws.is_none()
        {
            return Err(Error::config(
                "run",
                "set at least one budget: max_iters, max_seconds, max_oracle_calls, max_samples \
                 or max_draws",
            ));
        }
        if self.eval_every == 0
            && self.eval_every_seconds.is_none()
            && self.eval_every_samples.is_none()
            && self.eval_every_draws.is_none()
        {
            return Err(Error::config(
                "eval_every",
                "0 (no evaluation by iterations) needs eval_every_seconds, eval_every_samples or \
                 eval_every_draws",
            ));
        }
        for (name, value) in [
            ("eval_every_samples", self.eval_every_samples),
            ("eval_every_draws", self.eval_every_draws),
        ] {
            if value == Some(0) {
                return Err(Error::config(name, "must be >= 1"));
            }
        }
        if let Some(tol) = self.tol
            && !(tol.is_finite() && tol >= 0.0)
        {
            return Err(Error::config(
                "tol",
                format!("must be a finite number >= 0, got {tol}"),
            ));
        }
        if self.checkpoint_every == Some(0) {
            return Err(Error::config("checkpoint_every", "must be >= 1"));
        }
        if let Some(s) = self.max_seconds {
            crate::core::error::check_positive("max_seconds", s)?;
        }
        if let Some(s) = self.eval_every_seconds {
            crate::core::error::check_positive("eval_every_seconds", s)?;
        }
        if let Some(stop) = &self.stop_at {
            if stop.metric.is_empty() {
                return Err(Error::config("stop_at.metric", "must name a metric"));
            }
            if !stop.value.is_finite() {
                return Err(Error::config("stop_at.value", "must be a finite number"));
            }
        }
        crate::core::error::check_positive("divergence_threshold", self.divergence_threshold)
    }
}

/// A quality target that ends a run: `metric ≤ value` at an evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopAt {
    /// A metric of the evaluation (`value`, `outer_value`, a task metric, …).
    pub metric: String,
    /// The run ends once the metric is at or below this.
    pub value: f64,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// A budget was exhausted normally.
    Done,
    /// Iterates or metrics became non-finite or exploded.
    Diverged,
    /// The solver or the problem returned an error.
    Failed,
    /// Stopped from outside before a budget ran out ([`Runner::interrupt_when`]: Ctrl-C in
    /// Python, an error in a user callback). The iterate and metrics are those where it stopped.
    Interrupted,
}

impl RunStatus {
    /// The lowercase name used in summaries.
    pub fn as_str(&self) -> &'static str {
        match self {
            RunStatus::Done => "done",
            RunStatus::Diverged => "diverged",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
        }
    }
}

/// Which condition ended the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// `max_iters` reached.
    MaxIters,
    /// `max_seconds` reached.
    MaxSeconds,
    /// `max_oracle_calls` reached.
    MaxOracleCalls,
    /// `max_samples` reached.
    MaxSamples,
    /// `max_draws` reached.
    MaxDraws,
    /// `stop_at` reached.
    TargetReached,
    /// Divergence detected.
    Divergence,
    /// An error.
    Error,
    /// The runner's interrupt check ([`Runner::interrupt_when`]) asked to stop.
    Interrupted,
}

/// What observers see at each evaluation point: plain, serializable data.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    /// Outer iterations done.
    pub iter: u64,
    /// Solver time so far (seconds; includes the solver's initialisation, excludes evaluation).
    pub solver_time_s: f64,
    /// Oracle counts so far.
    pub counts: Counts,
    /// Metrics at the current iterate (a non-finite value is written as `null` and read back
    /// as NaN). Empty when the evaluation failed.
    #[serde(deserialize_with = "metrics_with_nulls")]
    pub metrics: Metrics,
    /// The last step's diagnostics.
    #[serde(deserialize_with = "metrics_with_nulls")]
    pub diagnostics: std::collections::BTreeMap<String, f64>,
    /// Why the metrics could not be evaluated at this point (the run goes on: an evaluation
    /// never changes the iterate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_error: Option<String>,
}

/// Reads a map of metrics in which JSON `null` (how serde_json writes NaN and ±∞) stands for a
/// non-finite value: it comes back as NaN, so a trace with a diverged metric stays readable.
pub fn metrics_with_nulls<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Metrics, D::Error> {
    let raw: std::collections::BTreeMap<String, Option<f64>> =
        Deserialize::deserialize(deserializer)?;
    Ok(raw
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or(f64::NAN)))
        .collect())
}

/// The outcome of a run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunSummary {
    /// How it ended.
    pub status: RunStatus,
    /// Why it stopped.
    pub stop_reason: StopReason,
    /// Outer iterations done.
    pub iters: u64,
    /// Solver time (seconds; includes the solver's initialisation, excludes evaluation).
    pub solver_time_s: f64,
    /// Oracle counts.
    pub counts: Counts,
    /// Metrics at the last successful evaluation, which is at the last iteration for a `done`
    /// run; empty for a run that diverged (metrics of a diverged iterate mean nothing, and those
    /// of an earlier point would pass for the run's result). `null` in JSON reads back as NaN.
    #[serde(deserialize_with = "metrics_with_nulls")]
    pub final_metrics: Metrics,
    /// The iteration `final_metrics` were evaluated at (absent when there are none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_metrics_iter: Option<u64>,
    /// Evaluations that failed during the run (see [`Record::eval_error`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub eval_failures: u64,
    /// A message for `diverged` and `failed` runs, and for runs with failed evaluations.
    pub message: Option<String>,
    /// What the user should know about how the run went (a batch size clipped to the data, a
    /// run shorter than its evaluation period, …). The command line prints them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Where a run ended, and how: the final iterate with the run's summary. Returned by
/// [`solve`](crate::solve) and [`Runner::solve_config`].
#[derive(Clone, Debug)]
pub struct Solution {
    /// The final outer variable x (the tuned hyperparameters, sample weights, …).
    pub x: Vector,
    /// The final inner variable y (the model trained at x).
    pub y: Vector,
    /// The final adjoint v ≈ [∇²ᵧᵧg]⁻¹∇ᵧf, for solvers that keep one.
    pub v: Option<Vector>,
    /// Status, stop reason, iterations, counts, times and the final metrics (those of `x`, `y`
    /// for a run that is `done`).
    pub summary: RunSummary,
}

/// A run's progress, readable from another thread while it runs (a progress display): the
/// runner stores the iteration and the fraction of the budget used after every iteration (two
/// relaxed atomic stores, outside the timed step), and the last evaluated key metric at each
/// evaluation.
#[derive(Debug, Default)]
pub struct LiveStatus {
    iter: AtomicU64,
    budget_fraction: AtomicU64,
    metric: Mutex<Option<(String, f64)>>,
}

impl LiveStatus {
    /// Outer iterations done.
    pub fn iter(&self) -> u64 {
        self.iter.load(Relaxed)
    }
    /// The fraction of the budget used, in [0, 1]: the largest over the budgets that are set
    /// (iterations, seconds, calls, samples, draws); 1 once the run has ended.
    pub fn budget_fraction(&self) -> f64 {
        f64::from_bits(self.budget_fraction.load(Relaxed))
    }
    /// The last evaluation's key metric (the `stop_at` or `tol` metric, else the first present
    /// of `hypergrad_norm_sq`, `value`, `outer_value`).
    pub fn metric(&self) -> Option<(String, f64)> {
        self.metric
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
    fn store(&self, iter: u64, fraction: f64) {
        self.iter.store(iter, Relaxed);
        self.budget_fraction
            .store(fraction.clamp(0.0, 1.0).to_bits(), Relaxed);
    }
}

/// Where and with what context checkpoints are written.
#[derive(Clone, Debug)]
pub struct CheckpointTarget {
    /// The checkpoint file (overwritten atomically each time).
    pub path: PathBuf,
    /// Caller context stored in the checkpoint.
    pub context: serde_json::Value,
}

/// Runs solvers on problems under [`RunOptions`], notifying observers.
///
/// A run with a progress line, a JSON-lines trace and checkpoints, interrupted and resumed:
///
/// ```
/// use bilevel::prelude::*;
/// use bilevel::run::{Checkpoint, JsonlTrace};
/// use bilevel::serde_json::json;
///
/// let dir = std::env::temp_dir().join(format!("bilevel-runner-doc-{}", std::process::id()));
/// let problem = bilevel::problems::quadratic::tiny();
/// let config = SolverConfig::Soba(SobaConfig { batch_size: 2, ..Default::default() });
/// let options = RunOptions { max_iters: Some(40), eval_every: 10, ..Default::default() };
/// let (x0, y0) = problem.start();
///
/// // Stopped after 20 of the 40 iterations (think: the job was killed), with a checkpoint
/// // every 10.
/// let first = RunOptions { max_iters: Some(20), ..options.clone() };
/// let trace = JsonlTrace::create(&dir.join("trace.jsonl"), &json!({"seed": 7}))?;
/// Runner::new(first)
///     .observe(trace)
///     .checkpoint_to(dir.join("run.ckpt"), 10, json!({"note": "resume me"}))
///     .run_config(&config, &problem, x0.clone(), y0.clone(), 7)?;
///
/// // Continued from the checkpoint to iteration 40: the same iterates as one straight run.
/// let checkpoint = Checkpoint::load(&dir.join("run.ckpt"))?;
/// assert_eq!(checkpoint.iter, 20);
/// let resumed = Runner::new(options.clone()).resume_config(&checkpoint, &problem)?;
/// let straight = Runner::new(options).run_config(&config, &problem, x0, y0, 7)?;
/// assert_eq!(resumed.iters, 40);
/// assert_eq!(resumed.final_metrics, straight.final_metrics);
/// assert_eq!(resumed.counts, straight.counts);
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok::<(), bilevel::Error>(())
/// ```
pub struct Runner<'o> {
    /// Budgets and evaluation settings.
    pub options: RunOptions,
    /// Notified at every evaluation and at the end.
    pub observers: Vec<Box<dyn Observer + 'o>>,
    /// Where to write checkpoints, if `checkpoint_every` is set.
    pub checkpoint: Option<CheckpointTarget>,
    /// Updated as the run goes, for a progress display on another thread.
    pub live: Option<Arc<LiveStatus>>,
    /// Asked before every iteration whether to stop ([`interrupt_when`](Self::interrupt_when)).
    pub interrupt: Option<Box<dyn FnMut() -> bool + 'o>>,
}

/// Progress of a run, carried across a checkpoint.
#[derive(Clone, Copy, Debug)]
struct Progress {
    iter: u64,
    solver_time_s: f64,
}

impl<'o> Runner<'o> {
    /// A runner with no observers and no checkpoints.
    pub fn new(options: RunOptions) -> Self {
        Self {
            options,
            observers: Vec::new(),
            checkpoint: None,
            live: None,
            interrupt: None,
        }
    }

    /// Asks `check` before every iteration whether to stop; when it answers `true` the run ends
    /// with status [`RunStatus::Interrupted`] at the current iterate (evaluated, as at any
    /// other end). The Python package polls Ctrl-C and its callbacks' errors this way. `check`
    /// runs outside the timed step; keep it cheap (poll a clock or an atomic).
    pub fn interrupt_when(mut self, check: impl FnMut() -> bool + 'o) -> Self {
        self.interrupt = Some(Box::new(check));
        self
    }

    /// Reports the run's progress to `status` as it goes.
    pub fn live(mut self, status: Arc<LiveStatus>) -> Self {
        self.live = Some(status);
        self
    }

    /// Adds an observer.
    pub fn observe(mut self, observer: impl Observer + 'o) -> Self {
        self.observers.push(Box::new(observer));
        self
    }

    /// Writes a checkpoint to `path` every `every` iterations, with `context` (any JSON the
    /// caller wants back when resuming); sets [`RunOptions::checkpoint_every`].
    pub fn checkpoint_to(
        mut self,
        path: impl Into<PathBuf>,
        every: u64,
        context: serde_json::Value,
    ) -> Self {
        self.options.checkpoint_every = Some(every);
        self.checkpoint = Some(CheckpointTarget {
            path: path.into(),
            context,
        });
        self
    }

    /// Runs `config` on `problem` from (x₀, y₀) with `seed`, and returns the final iterate with
    /// the summary (what [`run_config`](Self::run_config) reports, plus x, y and v).
    pub fn solve_config(
        &mut self,
        config: &SolverConfig,
        problem: &Problem,
        x0: Vector,
        y0: Vector,
        seed: u64,
    ) -> Result<Solution> {
        config.validate()?;
        let solver_json = serde_json::to_value(config).expect("invariant: configs serialize");
        config.visit(SolveVisitor {
            runner: self,
            problem,
            x0,
            y0,
            seed,
            solver_json,
        })?
    }

    /// Runs `config` on `problem` from (x₀, y₀) with `seed` ([`solve_config`](Self::solve_config)
    /// without the final iterate).
    pub fn run_config(
        &mut self,
        config: &SolverConfig,
        problem: &Problem,
        x0: Vector,
        y0: Vector,
        seed: u64,
    ) -> Result<RunSummary> {
        self.solve_config(config, problem, x0, y0, seed)
            .map(|solution| solution.summary)
    }

    /// Continues the run saved in `checkpoint` on `problem` (which must be the same problem).
    /// The checkpoint is verified first ([`Checkpoint::verify`], the problem's fingerprint, the
    /// state's dimensions and iteration): a checkpoint that was edited, corrupted or written for
    /// another problem is refused with [`Error::Checkpoint`].
    pub fn resume_config(
        &mut self,
        checkpoint: &Checkpoint,
        problem: &Problem,
    ) -> Result<RunSummary> {
        self.resume_config_at(checkpoint, problem, std::path::Path::new("(in memory)"))
    }

    /// As [`resume_config`](Self::resume_config), naming `path` (where the checkpoint was read
    /// from) in errors.
    pub fn resume_config_at(
        &mut self,
        checkpoint: &Checkpoint,
        problem: &Problem,
        path: &std::path::Path,
    ) -> Result<RunSummary> {
        checkpoint.verify(path)?;
        checkpoint.check_problem(problem, path)?;
        let config: SolverConfig =
            serde_json::from_value(checkpoint.solver.clone()).map_err(|e| Error::Checkpoint {
                path: path.to_owned(),
                reason: format!("solver config: {e}"),
            })?;
        config.validate().map_err(|e| Error::Checkpoint {
            path: path.to_owned(),
            reason: format!("solver config: {e}"),
        })?;
        config.visit(ResumeVisitor {
            runner: self,
            problem,
            checkpoint,
            path,
        })?
    }

    /// Runs a built solver from (x₀, y₀). `solver_json` is stored in checkpoints. The
    /// problem's oracle counters are reset first: the run's counts and budgets are its own.
    pub fn run<S: Solver>(
        &mut self,
        solver: &S,
        problem: &Problem,
        x0: Vector,
        y0: Vector,
        seed: u64,
        solver_json: serde_json::Value,
    ) -> Result<RunSummary> {
        self.run_keeping_state(solver, problem, x0, y0, seed, solver_json)
            .map(|(summary, _)| summary)
    }

    /// As [`run`](Self::run), returning the final state too.
    fn run_keeping_state<S: Solver>(
        &mut self,
        solver: &S,
        problem: &Problem,
        x0: Vector,
        y0: Vector,
        seed: u64,
        solver_json: serde_json::Value,
    ) -> Result<(RunSummary, S::State)> {
        self.options.validate()?;
        self.check_targets(problem)?;
        let (dx, dy) = problem.dims();
        if x0.nrows() != dx || y0.nrows() != dy {
            return Err(Error::DimensionMismatch {
                what: "starting point (x0, y0)".into(),
                expected: if x0.nrows() != dx { dx } else { dy },
                found: if x0.nrows() != dx {
                    x0.nrows()
                } else {
                    y0.nrows()
                },
            });
        }
        // Every run counts its own oracle calls from zero, also on a `Problem` that ran before
        // (its counters would otherwise carry over into this run's counts and budgets). Runs
        // that share one `Problem` concurrently need a `problem.fresh()` copy each.
        problem.set_counts(&crate::core::Counts::default());
        // Warnings raised before this run (by code outside a runner) are not this run's.
        let _ = warnings::take();
        // Solver time includes initialisation: SABA's memory fill, SRBA's first full pass and
        // any other warm-up are work the method does, and the reference benchmark counts them.
        let drawn = rows_drawn();
        let started = Instant::now();
        let state = solver.init(problem, x0, y0, seed)?;
        let progress = Progress {
            iter: 0,
            solver_time_s: started.elapsed().as_secs_f64(),
        };
        problem.add_drawn_rows(rows_drawn() - drawn);
        self.drive(solver, problem, state, progress, true, solver_json)
    }

    /// Refuses a quality target the problem cannot report: a `stop_at` metric it does not have,
    /// or `tol` without the exact hypergradient. Such a run would never stop on it.
    fn check_targets(&self, problem: &Problem) -> Result<()> {
        if self.options.tol.is_some() && problem.reference().is_none() {
            return Err(Error::config(
                "tol",
                format!(
                    "stops on ‖∇F‖² (metric hypergrad_norm_sq), which needs an exact reference; \
                     problem `{}` has none: use stop_at on one of its metrics ({})",
                    problem.name(),
                    problem.metric_names().join(", ")
                ),
            ));
        }
        if let Some(stop) = &self.options.stop_at {
            let names = problem.metric_names();
            if !names.contains(&stop.metric) {
                return Err(Error::config(
                    "stop_at.metric",
                    format!(
                        "problem `{}` has no metric `{}`; its metrics are {}",
                        problem.name(),
                        stop.metric,
                        names.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Continues from a checkpoint with a built solver. The checkpoint must be verified
    /// ([`Checkpoint::verify`]); its state is checked against the solver and the problem here.
    pub fn resume<S: Solver>(
        &mut self,
        solver: &S,
        problem: &Problem,
        checkpoint: &Checkpoint,
    ) -> Result<RunSummary> {
        self.resume_at(
            solver,
            problem,
            checkpoint,
            std::path::Path::new("(in memory)"),
        )
        .map(|(summary, _)| summary)
    }

    fn resume_at<S: Solver>(
        &mut self,
        solver: &S,
        problem: &Problem,
        checkpoint: &Checkpoint,
        path: &std::path::Path,
    ) -> Result<(RunSummary, S::State)> {
        self.options.validate()?;
        self.check_targets(problem)?;
        let refuse = |reason: String| Error::Checkpoint {
            path: path.to_owned(),
            reason,
        };
        checkpoint.check_problem(problem, path)?;
        let state: S::State = serde_json::from_value(checkpoint.state.clone()).map_err(|e| {
            refuse(format!(
                "state does not match solver `{}`: {e}",
                solver.name()
            ))
        })?;
        // The state must be exactly this solver's: another solver's state can deserialize
        // (a SABA state holds every field of SOBA's) but then loses fields on the way back.
        let round_trip = serde_json::to_value(&state).map_err(|e| refuse(e.to_string()))?;
        if round_trip != checkpoint.state {
            let keys = |v: &serde_json::Value| -> Vec<String> {
                v.as_object()
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default()
            };
            let ours = keys(&round_trip);
            let foreign: Vec<String> = keys(&checkpoint.state)
                .into_iter()
                .filter(|k| !ours.contains(k))
                .collect();
            return Err(refuse(if foreign.is_empty() {
                format!(
                    "state does not match solver `{}` (it does not read back unchanged)",
                    solver.name()
                )
            } else {
                format!(
                    "state does not match solver `{}`: it has fields {} that `{}` does not keep",
                    solver.name(),
                    foreign.join(", "),
                    solver.name()
                )
            }));
        }
        if solver.iteration(&state) != checkpoint.iter {
            return Err(refuse(format!(
                "it says iteration {} but its state is at iteration {}",
                checkpoint.iter,
                solver.iteration(&state)
            )));
        }
        let (dx, dy) = problem.dims();
        let (x, y) = solver.iterate(&state);
        let adjoint_len = solver.adjoint(&state).map(|v| v.nrows());
        if x.nrows() != dx || y.nrows() != dy || adjoint_len.is_some_and(|n| n != dy) {
            return Err(refuse(format!(
                "its iterate has dim x {}, dim y {}{}, but the problem has dim x {dx}, dim y {dy}",
                x.nrows(),
                y.nrows(),
                adjoint_len
                    .map(|n| format!(", dim v {n}"))
                    .unwrap_or_default()
            )));
        }
        problem.set_counts(&checkpoint.counts);
        let _ = warnings::take();
        let progress = Progress {
            iter: checkpoint.iter,
            solver_time_s: checkpoint.solver_time_s,
        };
        self.drive(
            solver,
            problem,
            state,
            progress,
            false,
            checkpoint.solver.clone(),
        )
    }

    /// The fraction of the budget used (the largest over the budgets that are set).
    fn budget_fraction(&self, progress: &Progress, counts: &Counts) -> f64 {
        let o = &self.options;
        let ratio = |used: f64, limit: Option<f64>| limit.map_or(0.0, |l| used / l.max(1e-300));
        [
            ratio(progress.iter as f64, o.max_iters.map(|m| m as f64)),
            ratio(progress.solver_time_s, o.max_seconds),
            ratio(counts.calls() as f64, o.max_oracle_calls.map(|m| m as f64)),
            ratio(counts.samples() as f64, o.max_samples.map(|m| m as f64)),
            ratio(counts.draws as f64, o.max_draws.map(|m| m as f64)),
        ]
        .into_iter()
        .fold(0.0, f64::max)
    }

    fn budget_reason(&self, progress: &Progress, counts: &Counts) -> Option<StopReason> {
        let o = &self.options;
        if o.max_iters.is_some_and(|m| progress.iter >= m) {
            return Some(StopReason::MaxIters);
        }
        if o.max_seconds.is_some_and(|m| progress.solver_time_s >= m) {
            return Some(StopReason::MaxSeconds);
        }
        if o.max_oracle_calls.is_some_and(|m| counts.calls() >= m) {
            return Some(StopReason::MaxOracleCalls);
        }
        if o.max_samples.is_some_and(|m| counts.samples() >= m) {
            return Some(StopReason::MaxSamples);
        }
        if o.max_draws.is_some_and(|m| counts.draws >= m) {
            return Some(StopReason::MaxDraws);
        }
        None
    }

    fn divergence(&self, x: &Vector, y: &Vector) -> Option<String> {
        let limit = self.options.divergence_threshold;
        for (name, v) in [("x", x), ("y", y)] {
            let m = v.max_abs();
            if !m.is_finite() {
                return Some(format!("{name} is not finite"));
            }
            if m > limit {
                return Some(format!("|{name}| = {m:.3e} exceeds {limit:.1e}"));
            }
        }
        None
    }

    /// The record at the current iterate, shown to observers when `emit`. A failed metric
    /// evaluation is recorded in [`Record::eval_error`], never fatal: only an observer's
    /// failure (writing the trace) is an error here.
    fn evaluate<S: Solver>(
        &mut self,
        solver: &S,
        problem: &Problem,
        state: &S::State,
        progress: &Progress,
        diagnostics: &Diagnostics,
        emit: bool,
    ) -> Result<Record> {
        let (x, y) = solver.iterate(state);
        let v = solver.adjoint(state);
        let (metrics, eval_error) = match problem.metrics(x, y, v) {
            Ok(m) => (m, None),
            Err(e) => (Metrics::new(), Some(e.to_string())),
        };
        let record = Record {
            iter: progress.iter,
            solver_time_s: progress.solver_time_s,
            counts: problem.counts(),
            metrics,
            diagnostics: diagnostics
                .iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            eval_error,
        };
        if emit {
            for observer in &mut self.observers {
                observer.observe(&record, Iterate { x, y, v })?;
            }
        }
        if let Some(live) = &self.live {
            let wanted = [
                self.options.stop_at.as_ref().map(|s| s.metric.as_str()),
                self.options.tol.map(|_| "hypergrad_norm_sq"),
            ];
            let key = wanted
                .into_iter()
                .flatten()
                .chain(["hypergrad_norm_sq", "value", "outer_value"])
                .find_map(|k| record.metrics.get(k).map(|v| (k.to_owned(), *v)));
            if key.is_some() {
                *live.metric.lock().unwrap_or_else(|e| e.into_inner()) = key;
            }
        }
        Ok(record)
    }

    fn drive<S: Solver>(
        &mut self,
        solver: &S,
        problem: &Problem,
        mut state: S::State,
        mut progress: Progress,
        evaluate_start: bool,
        solver_json: serde_json::Value,
    ) -> Result<(RunSummary, S::State)> {
        let eval_every = self.options.eval_every;
        let by_iterations = |iter: u64| eval_every > 0 && iter.is_multiple_of(eval_every);
        let eval_seconds = self.options.eval_every_seconds;
        let eval_samples = self.options.eval_every_samples;
        let eval_draws = self.options.eval_every_draws;
        let mut last_eval_time = progress.solver_time_s;
        let mut last_eval_counts = problem.counts();
        let mut evaluations = 0u64;
        let start_iter = progress.iter;
        let mut run_warnings: Vec<String> = Vec::new();
        run_warnings.extend(warnings::take());
        let stop_at = self.options.stop_at.clone();
        let tol = self.options.tol;
        let reached = |record: &Record| {
            let at_most =
                |metric: &str, value: f64| record.metrics.get(metric).is_some_and(|v| *v <= value);
            stop_at
                .as_ref()
                .is_some_and(|stop| at_most(&stop.metric, stop.value))
                || tol.is_some_and(|tol| at_most("hypergrad_norm_sq", tol))
        };
        let mut diagnostics = Diagnostics::new();
        let mut last_record: Option<Record> = None;
        // The last record whose evaluation succeeded, and the failed evaluations.
        let mut last_good: Option<Record> = None;
        let mut failures: Vec<(u64, String)> = Vec::new();
        let mut note = |record: &Record, last_good: &mut Option<Record>| match &record.eval_error {
            Some(e) => failures.push((record.iter, e.clone())),
            None => *last_good = Some(record.clone()),
        };
        // The iteration of the last record observers have seen. A checkpoint is written after the
        // evaluation of its iteration, so a run resumed at an evaluation point has already
        // reported it.
        let mut last_emitted =
            (!evaluate_start && by_iterations(progress.iter)).then_some(progress.iter);
        if evaluate_start {
            let record = self.evaluate(solver, problem, &state, &progress, &diagnostics, true)?;
            evaluations += 1;
            note(&record, &mut last_good);
            last_record = Some(record);
            last_emitted = Some(progress.iter);
        }
        let mut outcome: Option<(RunStatus, StopReason, Option<String>)> = None;
        if let Some(record) = &last_record
            && let Some(bad) = non_finite_metric(&record.metrics)
        {
            outcome = Some((
                RunStatus::Diverged,
                StopReason::Divergence,
                Some(format!("metric {bad} is not finite at the start")),
            ));
        } else if last_record.as_ref().is_some_and(reached) {
            outcome = Some((RunStatus::Done, StopReason::TargetReached, None));
        }
        // The counts after the last step: evaluations and checkpoints count nothing, so they are
        // loaded once per step.
        let mut counts = problem.counts();
        while outcome.is_none() {
            if let Some(live) = &self.live {
                live.store(progress.iter, self.budget_fraction(&progress, &counts));
            }
            if let Some(reason) = self.budget_reason(&progress, &counts) {
                outcome = Some((RunStatus::Done, reason, None));
                break;
            }
            if let Some(check) = &mut self.interrupt
                && check()
            {
                outcome = Some((
                    RunStatus::Interrupted,
                    StopReason::Interrupted,
                    Some(format!("interrupted after {} iterations", progress.iter)),
                ));
                break;
            }
            let drawn = rows_drawn();
            let started = Instant::now();
            let step = solver.step(problem, &mut state);
            progress.solver_time_s += started.elapsed().as_secs_f64();
            problem.add_drawn_rows(rows_drawn() - drawn);
            match step {
                Ok(d) => diagnostics = d,
                Err(Error::Diverged { iter, what }) => {
                    outcome = Some((
                        RunStatus::Diverged,
                        StopReason::Divergence,
                        Some(format!(
                            "solver reported divergence at iteration {iter}: {what}"
                        )),
                    ));
                    break;
                }
                Err(e) => {
                    outcome = Some((RunStatus::Failed, StopReason::Error, Some(e.to_string())));
                    break;
                }
            }
            progress.iter += 1;
            let (x, y) = solver.iterate(&state);
            if let Some(what) = self.divergence(x, y) {
                outcome = Some((RunStatus::Diverged, StopReason::Divergence, Some(what)));
                break;
            }
            let timed_out =
                eval_seconds.is_some_and(|s| progress.solver_time_s - last_eval_time >= s);
            counts = problem.counts();
            let sampled_enough =
                eval_samples.is_some_and(|s| counts.samples() - last_eval_counts.samples() >= s);
            let drawn_enough =
                eval_draws.is_some_and(|d| counts.draws - last_eval_counts.draws >= d);
            if by_iterations(progress.iter) || timed_out || sampled_enough || drawn_enough {
                let record =
                    self.evaluate(solver, problem, &state, &progress, &diagnostics, true)?;
                evaluations += 1;
                note(&record, &mut last_good);
                last_emitted = Some(progress.iter);
                last_eval_time = progress.solver_time_s;
                last_eval_counts = counts;
                if let Some(bad) = non_finite_metric(&record.metrics) {
                    outcome = Some((
                        RunStatus::Diverged,
                        StopReason::Divergence,
                        Some(format!("metric {bad} is not finite")),
                    ));
                } else if reached(&record) {
                    outcome = Some((RunStatus::Done, StopReason::TargetReached, None));
                }
                last_record = Some(record);
            }
            if let (Some(every), Some(target)) = (self.options.checkpoint_every, &self.checkpoint)
                && progress.iter.is_multiple_of(every)
                && outcome.is_none()
            {
                let mut checkpoint = Checkpoint {
                    format: CHECKPOINT_FORMAT,
                    solver: solver_json.clone(),
                    problem: ProblemFingerprint::of(problem),
                    iter: progress.iter,
                    solver_time_s: progress.solver_time_s,
                    counts: problem.counts(),
                    state: serde_json::to_value(&state).map_err(|e| Error::Checkpoint {
                        path: target.path.clone(),
                        reason: format!("cannot serialize the state: {e}"),
                    })?,
                    context: target.context.clone(),
                    checksum: String::new(),
                };
                checkpoint.save(&target.path)?;
            }
        }
        let (status, stop_reason, message) =
            outcome.expect("invariant: the loop exits with an outcome");
        if let Some(live) = &self.live {
            live.store(progress.iter, 1.0);
        }
        run_warnings.extend(warnings::take());
        // A run shorter than its evaluation period has a curve of two points (start and end):
        // say so, since the curve hides everything in between.
        let iters_run = progress.iter - start_iter;
        if evaluations <= 1 && eval_every > iters_run && iters_run > 1 {
            run_warnings.push(format!(
                "the run made {iters_run} iterations, fewer than eval_every = {eval_every}: it \
                 was evaluated at its start and end only (lower eval_every, or evaluate by \
                 eval_every_seconds, eval_every_samples or eval_every_draws)"
            ));
        }
        // Final evaluation, unless the last record is already at this iteration or the run
        // diverged (metrics of a diverged iterate are meaningless).
        let needs_final = last_record.as_ref().is_none_or(|r| r.iter != progress.iter);
        if status != RunStatus::Diverged && needs_final {
            // Recomputed (metrics are a pure function of the state) but reported only once.
            let emit = last_emitted != Some(progress.iter);
            let record = self.evaluate(solver, problem, &state, &progress, &diagnostics, emit)?;
            if emit {
                note(&record, &mut last_good);
            } else if record.eval_error.is_none() {
                last_good = Some(record);
            }
        }
        // A diverged run reports no final metrics: those of an earlier evaluation (the start
        // point's, for a run that diverged before its first evaluation) would pass for its
        // result.
        let final_record = if status == RunStatus::Diverged {
            None
        } else {
            last_good
        };
        let message = match (message, failures.first(), failures.last()) {
            (message, Some(first), Some(last)) => {
                let failed = format!(
                    "{} evaluation(s) failed (first at iteration {}: {}{})",
                    failures.len(),
                    first.0,
                    first.1,
                    if failures.len() > 1 {
                        format!("; last at iteration {}: {}", last.0, last.1)
                    } else {
                        String::new()
                    }
                );
                Some(match message {
                    Some(m) => format!("{m}; {failed}"),
                    None => failed,
                })
            }
            (message, _, _) => message,
        };
        let summary = RunSummary {
            status,
            stop_reason,
            iters: progress.iter,
            solver_time_s: progress.solver_time_s,
            counts: problem.counts(),
            final_metrics_iter: final_record.as_ref().map(|r| r.iter),
            final_metrics: final_record.map(|r| r.metrics).unwrap_or_default(),
            eval_failures: failures.len() as u64,
            message,
            warnings: run_warnings,
        };
        for observer in &mut self.observers {
            observer.finish(&summary)?;
        }
        Ok((summary, state))
    }
}

fn non_finite_metric(metrics: &Metrics) -> Option<String> {
    metrics
        .iter()
        .find(|(_, v)| !v.is_finite())
        .map(|(k, _)| k.clone())
}

/// Resumes a checkpoint with the solver its configuration builds.
struct ResumeVisitor<'r, 'o, 'p> {
    runner: &'r mut Runner<'o>,
    problem: &'p Problem,
    checkpoint: &'p Checkpoint,
    path: &'p std::path::Path,
}

impl SolverVisitor for ResumeVisitor<'_, '_, '_> {
    type Output = Result<RunSummary>;
    fn visit<S: Solver>(self, solver: S) -> Result<RunSummary> {
        self.runner
            .resume_at(&solver, self.problem, self.checkpoint, self.path)
            .map(|(summary, _)| summary)
    }
}

/// Runs a fresh start with the solver a configuration builds, keeping the final iterate.
struct SolveVisitor<'r, 'o, 'p> {
    runner: &'r mut Runner<'o>,
    problem: &'p Problem,
    x0: Vector,
    y0: Vector,
    seed: u64,
    solver_json: serde_json::Value,
}

impl SolverVisitor for SolveVisitor<'_, '_, '_> {
    type Output = Result<Solution>;
    fn visit<S: Solver>(self, solver: S) -> Result<Solution> {
        let (summary, state) = self.runner.run_keeping_state(
            &solver,
            self.problem,
            self.x0,
            self.y0,
            self.seed,
            self.solver_json,
        )?;
        let (x, y) = solver.iterate(&state);
        Ok(Solution {
            x: x.clone(),
            y: y.clone(),
            v: solver.adjoint(&state).cloned(),
            summary,
        })
    }
}
