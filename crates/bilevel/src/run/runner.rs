//! The [`Runner`]: loops `step` under budgets, times only the solver, evaluates metrics from the
//! uncounted objectives, detects divergence, notifies observers and writes checkpoints.

use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::checkpoint::{CHECKPOINT_FORMAT, Checkpoint, ProblemFingerprint};
use super::observer::Observer;
use crate::algorithms::{SolverConfig, SolverVisitor};
use crate::core::{
    Counts, Diagnostics, Error, Metrics, Problem, Result, Solver, Vector, VectorExt,
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
    /// Stop once this many samples have been touched (the machine-independent axis).
    pub max_samples: Option<u64>,
    /// Evaluate metrics every this many iterations (and at the start and the end).
    pub eval_every: u64,
    /// Also evaluate after an iteration once this much solver time has passed since the last
    /// evaluation: one setting fits solvers whose iterations differ in cost by 1000× (a race
    /// between SOBA at µs per step and a quasi-Newton method at ms per step). Which iterations
    /// are evaluated then depends on timing; the iterates never do.
    #[serde(default)]
    pub eval_every_seconds: Option<f64>,
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
            eval_every: 100,
            eval_every_seconds: None,
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
        {
            return Err(Error::config(
                "run",
                "set at least one budget: max_iters, max_seconds, max_oracle_calls or max_samples",
            ));
        }
        if self.eval_every == 0 {
            return Err(Error::config("eval_every", "must be >= 1"));
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
}

impl RunStatus {
    /// The lowercase name used in summaries.
    pub fn as_str(&self) -> &'static str {
        match self {
            RunStatus::Done => "done",
            RunStatus::Diverged => "diverged",
            RunStatus::Failed => "failed",
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
    /// `stop_at` reached.
    TargetReached,
    /// Divergence detected.
    Divergence,
    /// An error.
    Error,
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
}

fn is_zero(n: &u64) -> bool {
    *n == 0
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
pub struct Runner<'o> {
    /// Budgets and evaluation settings.
    pub options: RunOptions,
    /// Notified at every evaluation and at the end.
    pub observers: Vec<Box<dyn Observer + 'o>>,
    /// Where to write checkpoints, if `checkpoint_every` is set.
    pub checkpoint: Option<CheckpointTarget>,
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
        }
    }

    /// Adds an observer.
    pub fn observe(mut self, observer: impl Observer + 'o) -> Self {
        self.observers.push(Box::new(observer));
        self
    }

    /// Runs `config` on `problem` from (x₀, y₀) with `seed`.
    pub fn run_config(
        &mut self,
        config: &SolverConfig,
        problem: &Problem,
        x0: Vector,
        y0: Vector,
        seed: u64,
    ) -> Result<RunSummary> {
        config.validate()?;
        let solver_json = serde_json::to_value(config).expect("invariant: configs serialize");
        config.visit(RunVisitor {
            runner: self,
            problem,
            start: Start::Fresh { x0, y0, seed },
            solver_json,
        })?
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
        config.visit(RunVisitor {
            runner: self,
            problem,
            start: Start::Checkpoint(checkpoint, path),
            solver_json: checkpoint.solver.clone(),
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
        self.options.validate()?;
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
        // Solver time includes initialisation: SABA's memory fill, SRBA's first full pass and
        // any other warm-up are work the method does, and the reference benchmark counts them.
        let started = Instant::now();
        let state = solver.init(problem, x0, y0, seed)?;
        let progress = Progress {
            iter: 0,
            solver_time_s: started.elapsed().as_secs_f64(),
        };
        self.drive(solver, problem, state, progress, true, solver_json)
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
    }

    fn resume_at<S: Solver>(
        &mut self,
        solver: &S,
        problem: &Problem,
        checkpoint: &Checkpoint,
        path: &std::path::Path,
    ) -> Result<RunSummary> {
        self.options.validate()?;
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
        let (metrics, eval_error) = match problem.metrics(x, y, solver.adjoint(state)) {
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
                observer.observe(&record)?;
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
    ) -> Result<RunSummary> {
        let eval_every = self.options.eval_every;
        let eval_seconds = self.options.eval_every_seconds;
        let mut last_eval_time = progress.solver_time_s;
        let stop_at = self.options.stop_at.clone();
        let reached = |record: &Record| {
            stop_at.as_ref().is_some_and(|stop| {
                record
                    .metrics
                    .get(&stop.metric)
                    .is_some_and(|v| *v <= stop.value)
            })
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
            (!evaluate_start && progress.iter.is_multiple_of(eval_every)).then_some(progress.iter);
        if evaluate_start {
            let record = self.evaluate(solver, problem, &state, &progress, &diagnostics, true)?;
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
        while outcome.is_none() {
            if let Some(reason) = self.budget_reason(&progress, &problem.counts()) {
                outcome = Some((RunStatus::Done, reason, None));
                break;
            }
            let started = Instant::now();
            let step = solver.step(problem, &mut state);
            progress.solver_time_s += started.elapsed().as_secs_f64();
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
            if progress.iter.is_multiple_of(eval_every) || timed_out {
                let record =
                    self.evaluate(solver, problem, &state, &progress, &diagnostics, true)?;
                note(&record, &mut last_good);
                last_emitted = Some(progress.iter);
                last_eval_time = progress.solver_time_s;
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
        };
        for observer in &mut self.observers {
            observer.finish(&summary)?;
        }
        Ok(summary)
    }
}

fn non_finite_metric(metrics: &Metrics) -> Option<String> {
    metrics
        .iter()
        .find(|(_, v)| !v.is_finite())
        .map(|(k, _)| k.clone())
}

enum Start<'a> {
    Fresh { x0: Vector, y0: Vector, seed: u64 },
    Checkpoint(&'a Checkpoint, &'a std::path::Path),
}

struct RunVisitor<'r, 'o, 'p> {
    runner: &'r mut Runner<'o>,
    problem: &'p Problem,
    start: Start<'p>,
    solver_json: serde_json::Value,
}

impl SolverVisitor for RunVisitor<'_, '_, '_> {
    type Output = Result<RunSummary>;
    fn visit<S: Solver>(self, solver: S) -> Result<RunSummary> {
        match self.start {
            Start::Fresh { x0, y0, seed } => {
                self.runner
                    .run(&solver, self.problem, x0, y0, seed, self.solver_json)
            }
            Start::Checkpoint(c, path) => self.runner.resume_at(&solver, self.problem, c, path),
        }
    }
}
