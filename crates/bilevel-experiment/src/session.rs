//! A whole experiment run, as `bilevel run` does it: resolve the experiment (a file, or the copy
//! in a folder being resumed), lock the output folder, plan what to run (everything, or what a
//! `--resume` still needs), run the grid, and write the summary, the report and the figures.
//!
//! The command line and the Python package both call [`run_experiment`]; they differ only in how
//! they print.

use std::path::{Path, PathBuf};

use anyhow::Result;
use bilevel::run::RunStatus;

use crate::error::ConfigError;
pub use crate::execute::has_results;
use crate::execute::{
    self, EXPERIMENT_COPY, Outcome, build_problems, experiment_copy, reopen_trace, run_grid,
    verified_checkpoint, write_budget_override,
};
use crate::experiment::{self, BudgetOverride, Experiment};
use crate::layout::Layout;
use crate::outdir::{self, FolderLock, NamedLock};
use crate::shard::{self, Shard};
use crate::summary;

/// What to run and how (the options of `bilevel run`).
#[derive(Clone, Debug, Default)]
pub struct RunRequest {
    /// The experiment file (not needed with `resume`).
    pub experiment: Option<PathBuf>,
    /// The output folder (default `results/<experiment name>`).
    pub out: Option<PathBuf>,
    /// Continue the grid in this output folder.
    pub resume: Option<PathBuf>,
    /// Replace the results of an earlier run in the output folder.
    pub overwrite: bool,
    /// Draw the figures.
    pub plots: bool,
    /// Runs in parallel (default: every core).
    pub jobs: Option<usize>,
    /// Show a progress line on a terminal.
    pub progress: bool,
    /// A budget that replaces the file's (`--max-iters`, `--max-seconds`).
    pub budget: BudgetOverride,
    /// Run only this part of the grid (`--shard K/N`), beside the other shards, into the same
    /// folder; the summary, report and figures are then [`shard::merge`]'s.
    pub shard: Option<Shard>,
}

/// The experiment a request names, its output folder, and the folder's lock when it was
/// resolved from an existing folder (`resume`).
pub struct Resolved {
    /// The validated experiment, with the request's budget applied.
    pub experiment: Experiment,
    /// Its output folder.
    pub out: PathBuf,
    /// Held while the folder is read (resume): another process may be writing it.
    pub lock: Option<FolderLock>,
}

/// Loads and validates the experiment of `request`, without running anything (what `--dry-run`
/// checks first).
pub fn resolve(request: &RunRequest) -> Result<Resolved> {
    if request.jobs == Some(0) {
        return Err(ConfigError("--jobs must be >= 1".into()).into());
    }
    Ok(match &request.resume {
        Some(dir) => {
            // A shard shares the folder with the other shards (it takes its locks when it runs).
            let lock = match request.shard {
                None => Some(lock_existing(dir)?),
                Some(_) if !dir.is_dir() => {
                    return Err(ConfigError(format!(
                        "{}: no such folder; is this an output directory of `bilevel run`?",
                        dir.display()
                    ))
                    .into());
                }
                Some(_) => None,
            };
            Resolved {
                experiment: experiment_copy(dir)?,
                out: dir.clone(),
                lock,
            }
        }
        None => {
            let path = request.experiment.as_deref().ok_or_else(|| {
                ConfigError("no experiment file given (and no folder to resume)".into())
            })?;
            let mut experiment = experiment::load(path)?;
            experiment.apply_budget_override(request.budget)?;
            let out = request
                .out
                .clone()
                .unwrap_or_else(|| PathBuf::from("results").join(&experiment.name));
            Resolved {
                experiment,
                out,
                lock: None,
            }
        }
    })
}

/// What a run of an experiment did.
pub struct RunReport {
    /// The experiment.
    pub experiment: Experiment,
    /// Its output folder.
    pub out: PathBuf,
    /// The runs run now, in the experiment's order.
    pub outcomes: Vec<Outcome>,
    /// Runs already complete in the folder (resume), not run again.
    pub skipped: usize,
    /// Wall time of the grid (s).
    pub elapsed_s: f64,
    /// The shard that was run (`--shard`); its folder has no new summary until a merge.
    pub shard: Option<Shard>,
}

impl RunReport {
    /// The runs that did not end `done`.
    pub fn not_done(&self) -> Vec<&Outcome> {
        self.outcomes
            .iter()
            .filter(|o| o.summary.status != RunStatus::Done)
            .collect()
    }
    /// What the runs warned about, once per warning, with the solvers (labels) that raised it.
    pub fn warnings(&self) -> Vec<(String, Vec<String>)> {
        let mut warnings: Vec<(String, Vec<String>)> = Vec::new();
        for outcome in &self.outcomes {
            let name = outcome
                .spec
                .label
                .clone()
                .unwrap_or_else(|| outcome.spec.solver.kind().to_owned());
            for warning in &outcome.summary.warnings {
                match warnings.iter_mut().find(|(w, _)| w == warning) {
                    Some((_, names)) if !names.contains(&name) => names.push(name.clone()),
                    Some(_) => {}
                    None => warnings.push((warning.clone(), vec![name.clone()])),
                }
            }
        }
        warnings
    }
    /// The rows of the folder's `summary.csv` (every run, including those of earlier sessions).
    pub fn rows(&self) -> Result<Vec<summary::Row>> {
        summary::read_rows(&Layout::new(&self.out))
    }
}

/// Runs the experiment of `request` (resolved by [`resolve`]) and writes its summary, report
/// and figures.
pub fn run_experiment(request: &RunRequest, resolved: Resolved) -> Result<RunReport> {
    let Resolved {
        experiment,
        out,
        lock,
    } = resolved;
    if out.exists() && !out.is_dir() {
        return Err(ConfigError(format!(
            "--out {}: exists and is not a folder",
            out.display()
        ))
        .into());
    }
    if let Some(shard) = request.shard {
        drop(lock);
        return run_shard(request, experiment, out, shard);
    }
    // One process at a time in a folder: a second `run` or `resume` on it is refused.
    let _lock = match lock {
        Some(lock) => lock,
        None => outdir::FolderLock::acquire(&out)?,
    };
    let layout = Layout::new(&out);
    let (todo, checkpoints) = if request.resume.is_some() {
        let plan = plan_resume(&experiment, &layout, None)?;
        (plan.todo, plan.checkpoints)
    } else {
        if has_results(&out) {
            if !request.overwrite {
                return Err(ConfigError(format!(
                    "{} already holds results: continue them with `bilevel run --resume {}`, \
                     or replace them with --overwrite",
                    out.display(),
                    out.display()
                ))
                .into());
            }
            if !outdir::has_marker(&out) {
                return Err(ConfigError(format!(
                    "{} holds a summary, traces or checkpoints that bilevel did not write (no {} \
                     marker); --overwrite deletes only its own output folders: remove them \
                     yourself or choose another --out",
                    out.display(),
                    outdir::MARKER_FILE
                ))
                .into());
            }
            for dir in [layout.traces(), layout.checkpoints(), out.join("plots")] {
                if dir.exists() {
                    std::fs::remove_dir_all(&dir)
                        .map_err(|e| anyhow::anyhow!("removing {}: {e}", dir.display()))?;
                }
            }
            let sharding = out.join(shard::SHARDING_FILE);
            if sharding.exists() {
                std::fs::remove_file(&sharding)
                    .map_err(|e| anyhow::anyhow!("removing {}: {e}", sharding.display()))?;
            }
        }
        outdir::write_marker(&out)?;
        let text = std::fs::read(&experiment.path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", experiment.path.display()))?;
        bilevel::run::write_atomic(&out.join(EXPERIMENT_COPY), &text)?;
        write_budget_override(&out, experiment.budget_override.as_ref())?;
        ((0..experiment.runs.len()).collect(), Vec::new())
    };
    let started = std::time::Instant::now();
    let outcomes = run_grid(
        &experiment,
        &out,
        request.jobs.unwrap_or_else(default_jobs),
        &todo,
        &checkpoints,
        request.progress,
    )?;
    execute::finalize(&out, &experiment.name, &experiment.report, request.plots)?;
    Ok(RunReport {
        skipped: experiment.runs.len() - todo.len(),
        experiment,
        out,
        outcomes,
        elapsed_s: started.elapsed().as_secs_f64(),
        shard: None,
    })
}

/// One shard of a grid: set up or check the shared folder, then run the shard's runs that are
/// not complete yet (continuing checkpointed ones), beside the other shards.
fn run_shard(
    request: &RunRequest,
    experiment: Experiment,
    out: PathBuf,
    shard: Shard,
) -> Result<RunReport> {
    if request.overwrite {
        return Err(ConfigError(
            "--shard with --overwrite would delete the other shards' results; remove the \
             folder first, or run without --overwrite (a shard skips its complete runs)"
                .into(),
        )
        .into());
    }
    let _folder = FolderLock::acquire_shared(&out)?;
    let _shard = NamedLock::acquire(&out, &shard.lock_name(), &format!("shard {shard}"))?;
    let text = std::fs::read(&experiment.path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", experiment.path.display()))?;
    shard::init_folder(&out, &experiment, &text, shard.count)?;
    let layout = Layout::new(&out);
    let plan = plan_resume(&experiment, &layout, Some(&shard))?;
    let started = std::time::Instant::now();
    let outcomes = run_grid(
        &experiment,
        &out,
        request.jobs.unwrap_or_else(default_jobs),
        &plan.todo,
        &plan.checkpoints,
        request.progress,
    )?;
    Ok(RunReport {
        skipped: shard.runs(experiment.runs.len()).len() - plan.todo.len(),
        experiment,
        out,
        outcomes,
        elapsed_s: started.elapsed().as_secs_f64(),
        shard: Some(shard),
    })
}

fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Locks an output folder that must exist already (`--resume`, `report`, `plot`).
pub fn lock_existing(dir: &Path) -> Result<outdir::FolderLock> {
    if !dir.is_dir() {
        return Err(ConfigError(format!(
            "{}: no such folder; is this an output directory of `bilevel run`?",
            dir.display()
        ))
        .into());
    }
    outdir::FolderLock::acquire(dir)
}

/// What `--resume` does with each run of the grid.
pub struct ResumePlan {
    /// The runs to run (again or on), by index.
    pub todo: Vec<usize>,
    /// The runs that continue from a verified checkpoint: (index, checkpoint, its path).
    pub checkpoints: Vec<(usize, bilevel::run::Checkpoint, PathBuf)>,
}

/// Plans a `--resume` (of the runs of `shard` only, when given): runs whose trace is complete
/// and not `failed` are kept; a run with a verified checkpoint continues from it (a failed trace
/// is reopened, so its records are kept); every other run starts again. A checkpoint that fails
/// verification refuses the whole command, before anything is written.
pub fn plan_resume(
    experiment: &experiment::Experiment,
    layout: &Layout,
    shard: Option<&Shard>,
) -> Result<ResumePlan> {
    let mut plan = ResumePlan {
        todo: Vec::new(),
        checkpoints: Vec::new(),
    };
    let mut problems: Option<
        Vec<(
            bilevel::core::Problem,
            bilevel::core::Vector,
            bilevel::core::Vector,
        )>,
    > = None;
    let mut refused = Vec::new();
    let mut reopen = Vec::new();
    for (i, spec) in experiment.runs.iter().enumerate() {
        if shard.is_some_and(|s| !s.contains(i)) {
            continue;
        }
        let trace = layout.trace(&spec.id);
        let failed_trace = if trace.exists() {
            match summary::read_trace_summary(&trace) {
                Ok(row) if row.summary.status != bilevel::run::RunStatus::Failed => continue,
                _ => true,
            }
        } else {
            false
        };
        let checkpoint_path = layout.checkpoint(&spec.id);
        let partial = bilevel::run::observer::partial_path(&trace);
        if checkpoint_path.exists() && (failed_trace || partial.exists()) {
            if problems.is_none() {
                problems = Some(build_problems(experiment)?);
            }
            let problem = &problems.as_ref().expect("invariant: just built")[spec.problem_index].0;
            match verified_checkpoint(&checkpoint_path, spec, problem) {
                Ok(c) => {
                    if failed_trace {
                        reopen.push(trace.clone());
                    }
                    plan.checkpoints.push((i, c, checkpoint_path));
                }
                Err(e) => refused.push(format!("  {e:#}")),
            }
        }
        plan.todo.push(i);
    }
    if !refused.is_empty() {
        return Err(ConfigError(format!(
            "{} checkpoint(s) refused; nothing was run or written (delete a checkpoint to start \
             its run again from scratch):\n{}",
            refused.len(),
            refused.join("\n")
        ))
        .into());
    }
    for trace in reopen {
        reopen_trace(&trace)?;
    }
    Ok(plan)
}
