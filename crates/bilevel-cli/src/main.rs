//! `bilevel`: run bilevel-optimization experiments from TOML files.
//!
//! - `bilevel run EXPERIMENT.toml [--out DIR] [--jobs N]`: expand the grid, run it in parallel,
//!   write `DIR/traces/<run>.jsonl` and `DIR/summary.csv`, print a table. `--max-iters N` and
//!   `--max-seconds S` replace the file's budgets (reduced runs, e.g. in CI);
//!   `--fail-on-not-done` exits 1 when a run diverges or fails.
//! - `bilevel solve --problem KIND --solver KIND [-p KEY=VALUE]… --max-iters N [--json]`: one
//!   run, its final iterate and summary printed.
//! - `bilevel list [--json]`: solvers and problems with their parameters and defaults.
//! - `bilevel resume CHECKPOINT`: continue a checkpointed run.
//! - `bilevel data fetch NAME` / `bilevel data list`: download datasets, checksum-verified.
//!
//! Exit codes: 0 success, 1 runtime failure, 2 bad configuration or usage.
//!
//! The experiment engine (files, grids, execution, resume, summaries, reports, figures) is the
//! `bilevel-experiment` library; this crate parses arguments and prints, and owns `bench`,
//! `bench-md` and `data`.

mod alloc_count;
mod bench;
mod bench_md;
mod data_cmd;
mod solve_cmd;

use bilevel_experiment::{execute, experiment, plot, report, session, shard, slurm, summary};

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use bilevel::algorithms::SolverConfig;
use bilevel::problems::ProblemConfig;
use clap::{Parser, Subcommand};

use bilevel_experiment::ConfigError;

#[global_allocator]
static ALLOCATOR: alloc_count::CountingAllocator = alloc_count::CountingAllocator;

#[derive(Parser)]
#[command(name = "bilevel", version, about = "Bilevel optimization experiments", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run an experiment file: every solver × parameter grid point × seed.
    Run {
        /// The experiment (TOML). Optional with --resume.
        #[arg(required_unless_present = "resume")]
        experiment: Option<PathBuf>,
        /// Output directory (default: `results/<experiment name>`).
        #[arg(long, conflicts_with = "resume")]
        out: Option<PathBuf>,
        /// Continue an interrupted grid in DIR: skip completed runs, resume checkpointed ones,
        /// start the others.
        #[arg(long, value_name = "DIR")]
        resume: Option<PathBuf>,
        /// Replace the results of an earlier run in the output directory.
        #[arg(long)]
        overwrite: bool,
        /// Skip the figures (report and summary only).
        #[arg(long)]
        no_plots: bool,
        /// Parallel runs (default: all cores).
        #[arg(long)]
        jobs: Option<usize>,
        /// Validate the file and list the runs without running them.
        #[arg(long)]
        dry_run: bool,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        /// Replace the [run] table's max_iters (for reduced runs; the file's other budgets still
        /// apply, eval_every is clamped to N). Recorded in each trace header.
        #[arg(long, value_name = "N", conflicts_with = "resume")]
        max_iters: Option<u64>,
        /// Replace the [run] table's max_seconds (solver time per run).
        #[arg(long, value_name = "S", conflicts_with = "resume")]
        max_seconds: Option<f64>,
        /// Exit with status 1 when a run ends other than `done` (diverged, failed, ...).
        #[arg(long)]
        fail_on_not_done: bool,
        /// Run only part K of N of the grid (runs K, K+N, K+2N, … in the file's order), beside
        /// the other parts, into the same --out folder; complete runs are skipped, so a shard
        /// can be run again. `bilevel merge DIR` then writes the summary and report.
        #[arg(long, value_name = "K/N", value_parser = parse_shard)]
        shard: Option<shard::Shard>,
    },
    /// Gather the results of a sharded grid (`run --shard`, `slurm`) into summary.csv, report.md
    /// and figures; name the missing and failed runs and print the command that runs them.
    /// Exits with status 1 while runs are missing or failed.
    Merge {
        /// The output folder of the shards.
        dir: PathBuf,
        /// Skip the figures.
        #[arg(long)]
        no_plots: bool,
    },
    /// Run an experiment grid as a Slurm job array: write `DIR/slurm/array.sh` (task K runs
    /// `bilevel run --resume DIR --shard K/N`) and `DIR/slurm/merge.sh`, submit both (the merge
    /// after the array ends) and print the job ids. Extra `#SBATCH` lines come from the file's
    /// `[slurm]` table (`mem = "4G"` gives `--mem=4G`).
    Slurm {
        /// The experiment (TOML).
        experiment: PathBuf,
        /// Output directory (default: `results/<experiment name>`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Tasks in the array (default: one per run, at most 1000).
        #[arg(long, value_name = "N")]
        array_size: Option<usize>,
        /// Slurm partition.
        #[arg(long, value_name = "P")]
        partition: Option<String>,
        /// Time limit per task (Slurm's format, e.g. 30, 02:00:00, 1-00).
        #[arg(long, value_name = "T")]
        time: Option<String>,
        /// CPUs per task; each task runs that many runs at once (default 1).
        #[arg(long, value_name = "C")]
        cpus: Option<usize>,
        /// Replace the [run] table's max_iters, as `bilevel run --max-iters`.
        #[arg(long, value_name = "N")]
        max_iters: Option<u64>,
        /// Replace the [run] table's max_seconds.
        #[arg(long, value_name = "S")]
        max_seconds: Option<f64>,
        /// Do not submit the merge job.
        #[arg(long)]
        no_merge_job: bool,
        /// Print the scripts; write and submit nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Run one solver on one built-in problem and print the result (`--json`: x, y, v and
    /// the summary, numbers exact).
    Solve(solve_cmd::SolveArgs),
    /// List solvers and problems with their parameters and defaults.
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Continue a run from its checkpoint file.
    Resume {
        /// A checkpoint written by `bilevel run` (`DIR/checkpoints/<run>.json`).
        checkpoint: PathBuf,
    },
    /// Datasets: `fetch NAME` downloads the canonical files (checksum-verified), `list` shows them.
    Data {
        #[command(subcommand)]
        command: data_cmd::DataCommand,
    },
    /// Draw the figures of an experiment directory (SVG and PNG) and refresh its report.
    Plot {
        /// An output directory of `bilevel run`.
        dir: PathBuf,
        #[command(flatten)]
        view: ViewArgs,
    },
    /// Time every solver per iteration on the standard shapes (median/min/max over repeats,
    /// oracle calls and heap allocations per iteration) and one exact evaluation.
    Bench {
        /// Shapes, comma-separated (default: all).
        #[arg(long, value_delimiter = ',')]
        problem: Vec<String>,
        /// Solvers, comma-separated (default: all).
        #[arg(long, value_delimiter = ',')]
        solvers: Vec<String>,
        /// Iterations per timed repeat.
        #[arg(long, default_value_t = 1000)]
        iters: u64,
        /// Warm-up iterations before timing.
        #[arg(long, default_value_t = 100)]
        warmup: u64,
        /// Timed repeats (median, min and max are over these).
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// Minibatch size for solvers that have one.
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Minibatch sampling: `contiguous` (the reference benchmark's blocks), `shuffled` or
        /// `with_replacement`.
        #[arg(long, default_value = "contiguous")]
        sampling: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Run the scaling grid instead of the shapes: d in {22, 100, 500, 2000} x batch in
        /// {16, 64, 256, 1024} on the ijcnn1-shaped twin (default solvers: soba, fsla).
        #[arg(long)]
        scaling: bool,
        /// The stored type of the design values of the data-backed shapes: `f64`, or `f32`
        /// (half the bytes per pass; data rounded to f32 once, arithmetic still f64).
        #[arg(long, alias = "storage", default_value = "f64", value_parser = parse_precision)]
        precision: bilevel::problems::logistic::Precision,
    },
    /// Write BENCHMARKS.md from `bilevel bench --json` reports and, for ratios, the peer timing
    /// files of the same sitting.
    BenchMd {
        /// JSON reports of `bilevel bench --json`.
        #[arg(required = true)]
        reports: Vec<PathBuf>,
        /// Output file (written atomically).
        #[arg(long, default_value = "BENCHMARKS.md")]
        out: PathBuf,
        /// Peer timing files of the same sitting (`jax_timing.py` output, one per shape and
        /// round, in round order); without them no ratio to a peer is shown.
        #[arg(long, num_args = 1..)]
        peers: Vec<PathBuf>,
        /// Markdown sections written by other benchmark scripts (each starting with a `## `
        /// heading and naming its command, e.g. `crates/bilevel-py/bench/overhead.py
        /// --markdown`), appended verbatim.
        #[arg(long, num_args = 1..)]
        include: Vec<PathBuf>,
    },
    /// Regenerate `summary.csv` and `report.md` of an experiment directory (no figures).
    Report {
        /// An output directory of `bilevel run`.
        dir: PathBuf,
        #[command(flatten)]
        view: ViewArgs,
    },
}

/// What `bilevel plot` and `bilevel report` show, over the experiment's `[report]` table.
#[derive(clap::Args, Debug, Default)]
struct ViewArgs {
    /// Metrics to tabulate and plot, comma-separated (replaces the `[report]` list).
    #[arg(long, value_delimiter = ',')]
    metric: Vec<String>,
    /// X-axes of the figures, comma-separated: time, calls, samples, draws.
    #[arg(long, value_delimiter = ',')]
    axis: Vec<String>,
    /// Log-scale y-axes for every metric.
    #[arg(long, conflicts_with = "linear")]
    log: bool,
    /// Linear y-axes for every metric.
    #[arg(long)]
    linear: bool,
    /// Parameter selection rule: early_median, final_median or time_to_target.
    #[arg(long)]
    selection: Option<String>,
    /// The metric that selects parameters (lower is better).
    #[arg(long)]
    selection_metric: Option<String>,
    /// Absolute target of the selection metric (for time_to_target).
    #[arg(long)]
    target: Option<f64>,
}

impl ViewArgs {
    /// `report` with these choices applied, checked.
    fn apply(&self, report: &report::ReportOptions) -> Result<report::ReportOptions> {
        let mut out = report.clone();
        if !self.metric.is_empty() {
            out.metrics = self.metric.clone();
        }
        if !self.axis.is_empty() {
            out.axes = self
                .axis
                .iter()
                .map(|a| {
                    plot::Axis::parse(a).ok_or_else(|| {
                        ConfigError(format!(
                            "--axis {a}: expected time, calls, samples or draws"
                        ))
                    })
                })
                .collect::<std::result::Result<_, _>>()?;
        }
        if self.log {
            out.log_scale = Some(true);
        }
        if self.linear {
            out.log_scale = Some(false);
        }
        if let Some(rule) = &self.selection {
            out.selection = serde_json::from_value(serde_json::Value::String(rule.clone()))
                .map_err(|_| {
                    ConfigError(format!(
                        "--selection {rule}: expected early_median, final_median or \
                         time_to_target"
                    ))
                })?;
        }
        if let Some(metric) = &self.selection_metric {
            out.selection_metric = Some(metric.clone());
        }
        if let Some(target) = self.target {
            out.target = Some(target);
        }
        out.validate().map_err(ConfigError)?;
        Ok(out)
    }
}

fn main() -> ExitCode {
    // One full-pass worker per CPU, each on its own (values do not depend on it).
    bilevel::run::threads::pin_pool_threads();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    if let Ok(value) = std::env::var("BILEVEL_SIMD")
        && bilevel::problems::SimdLevel::parse(&value).is_none()
    {
        eprintln!(
            "error: BILEVEL_SIMD = `{value}` is not an instruction-set cap; use plain, avx2 or \
             avx512 (or unset it)"
        );
        return ExitCode::from(2);
    }
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<StdoutClosed>().is_some() => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(config) = e.downcast_ref::<ConfigError>() {
                eprintln!("error: {config}");
                ExitCode::from(2)
            } else if let Some(bilevel::core::Error::InvalidConfig { .. }) =
                e.downcast_ref::<bilevel::core::Error>()
            {
                eprintln!("error: {e}");
                ExitCode::from(2)
            } else {
                eprintln!("error: {e:#}");
                ExitCode::from(1)
            }
        }
    }
}

fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run {
            experiment,
            out,
            resume,
            overwrite,
            no_plots,
            jobs,
            dry_run,
            quiet,
            max_iters,
            max_seconds,
            fail_on_not_done,
            shard,
        } => run(RunArgs {
            experiment,
            out,
            resume,
            overwrite,
            plots: !no_plots,
            jobs,
            dry_run,
            quiet,
            budget: experiment::BudgetOverride {
                max_iters,
                max_seconds,
            },
            fail_on_not_done,
            shard,
        }),
        Command::Merge { dir, no_plots } => merge(&dir, !no_plots),
        Command::Slurm {
            experiment,
            out,
            array_size,
            partition,
            time,
            cpus,
            max_iters,
            max_seconds,
            no_merge_job,
            dry_run,
        } => {
            let request = slurm::SlurmRequest {
                experiment,
                out,
                array_size,
                partition,
                time,
                cpus,
                budget: experiment::BudgetOverride {
                    max_iters,
                    max_seconds,
                },
                bilevel: std::env::current_exe()
                    .context("finding the path of this bilevel binary")?,
                merge_job: !no_merge_job,
            };
            slurm_cmd(&request, dry_run)
        }
        Command::Plot { dir, view } => {
            let _lock = session::lock_existing(&dir)?;
            let experiment = execute::experiment_copy(&dir)?;
            let options = view.apply(&experiment.report)?;
            execute::finalize(&dir, &experiment.name, &options, true)?;
            say(format_args!(
                "figures in {}, report in {}",
                dir.join("plots").display(),
                dir.join("report.md").display()
            ))?;
            Ok(())
        }
        Command::Bench {
            problem,
            solvers,
            iters,
            warmup,
            repeats,
            batch,
            sampling,
            json,
            scaling,
            precision,
        } => {
            let report = bench::run(&bench::BenchOptions {
                shapes: problem,
                solvers,
                iters,
                warmup,
                repeats,
                batch_size: batch,
                sampling,
                scaling,
                precision,
                command: command_line(),
            })
            .map_err(|e| ConfigError(format!("{e:#}")))?;
            if json {
                say(format_args!("{}", serde_json::to_string_pretty(&report)?))?;
            } else {
                print!("{}", bench::table(&report));
            }
            Ok(())
        }
        Command::BenchMd {
            reports,
            out,
            peers,
            include,
        } => {
            let loaded = bench_md::load(&reports).map_err(|e| ConfigError(format!("{e:#}")))?;
            let peers = bench_md::load_peers(&peers).map_err(|e| ConfigError(format!("{e:#}")))?;
            let includes =
                bench_md::load_includes(&include).map_err(|e| ConfigError(format!("{e:#}")))?;
            let markdown = bench_md::render(&loaded, &peers, &includes, &out);
            bilevel::run::write_atomic(&out, markdown.as_bytes())?;
            eprintln!("wrote {}", out.display());
            Ok(())
        }
        Command::Report { dir, view } => {
            let _lock = session::lock_existing(&dir)?;
            let experiment = execute::experiment_copy(&dir)?;
            let options = view.apply(&experiment.report)?;
            execute::finalize(&dir, &experiment.name, &options, false)?;
            say(format_args!("{}", dir.join("report.md").display()))?;
            Ok(())
        }
        Command::List { json } => list(json),
        Command::Solve(args) => solve_cmd::run(args),
        Command::Data { command } => data_cmd::run(command),
        Command::Resume { checkpoint } => {
            let summary = execute::resume_checkpoint(&checkpoint)?;
            say(format_args!(
                "{}: {} after {} iterations ({:.3} s solver time)",
                checkpoint.display(),
                summary.status.as_str(),
                summary.iters,
                summary.solver_time_s
            ))?;
            Ok(())
        }
    }
}

/// The command line as typed (program name shortened to `bilevel`), for reports.
/// `f64` or `f32` (`--precision`).
fn parse_precision(
    name: &str,
) -> std::result::Result<bilevel::problems::logistic::Precision, String> {
    use bilevel::problems::logistic::Precision;
    match name {
        "f64" => Ok(Precision::F64),
        "f32" => Ok(Precision::F32),
        other => Err(format!("unknown precision `{other}`; use `f64` or `f32`")),
    }
}

fn command_line() -> String {
    let mut words = vec!["bilevel".to_owned()];
    words.extend(std::env::args().skip(1));
    words.join(" ")
}

struct RunArgs {
    experiment: Option<PathBuf>,
    out: Option<PathBuf>,
    resume: Option<PathBuf>,
    overwrite: bool,
    plots: bool,
    jobs: Option<usize>,
    dry_run: bool,
    quiet: bool,
    budget: experiment::BudgetOverride,
    fail_on_not_done: bool,
    shard: Option<shard::Shard>,
}

fn parse_shard(text: &str) -> std::result::Result<shard::Shard, String> {
    shard::Shard::parse(text).map_err(|e| e.0)
}

/// Prints `text` and a newline on stdout; a closed pipe (`bilevel … | head`) is not an error.
fn say(text: impl std::fmt::Display) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        other => Ok(other?),
    }
}

/// Standard output was closed by the reader: stop quietly with status 0.
#[derive(Debug)]
struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output closed")
    }
}

impl std::error::Error for StdoutClosed {}

fn run(args: RunArgs) -> Result<()> {
    let request = session::RunRequest {
        experiment: args.experiment,
        out: args.out,
        resume: args.resume,
        overwrite: args.overwrite,
        plots: args.plots,
        jobs: args.jobs,
        progress: !args.quiet,
        budget: args.budget,
        shard: args.shard,
    };
    let resolved = session::resolve(&request)?;
    if args.dry_run {
        let experiment = &resolved.experiment;
        // Building the problems checks data files, dimensions and report metrics; initialising
        // each solver on its problem checks that they go together.
        let built = execute::build_problems(experiment)?;
        execute::check_runs(experiment, &built)?;
        say(format_args!(
            "{}: ok ({} problem(s), {} run(s); {})",
            experiment.path.display(),
            experiment.problems.len(),
            experiment.runs.len(),
            budget_line(&experiment.run, experiment.budget_override.is_some()),
        ))?;
        for (i, spec) in experiment.runs.iter().enumerate() {
            if args.shard.is_some_and(|s| !s.contains(i)) {
                continue;
            }
            match &spec.label {
                Some(label) => say(format_args!("  {}  [{label}]", spec.id))?,
                None => say(format_args!("  {}", spec.id))?,
            }
        }
        return Ok(());
    }
    for warning in resolved.experiment.warnings() {
        eprintln!("warning: {warning}");
    }
    let report = session::run_experiment(&request, resolved)?;
    if let Some(shard) = report.shard {
        return shard_done(&report, shard, args.fail_on_not_done);
    }
    say(summary::table(
        &report.rows()?,
        report.experiment.report.selection_metric.as_deref(),
    ))?;
    // What the runs warned about, once each (a grid repeats the same warning per seed).
    for (warning, names) in report.warnings() {
        eprintln!("warning ({}): {warning}", names.join(", "));
    }
    let not_done = report.not_done();
    say(format_args!(
        "\n{}; results in {} (summary.csv, report.md, traces/)",
        runs_line(&report),
        report.out.display(),
    ))?;
    if args.fail_on_not_done && !not_done.is_empty() {
        let ids: Vec<String> = not_done
            .iter()
            .map(|o| format!("{} ({})", o.spec.id, o.summary.status.as_str()))
            .collect();
        anyhow::bail!("{} run(s) not done: {}", not_done.len(), ids.join(", "));
    }
    Ok(())
}

/// "N run(s) in T s (K not done[, S already complete])", for `run` and for a shard.
fn runs_line(report: &session::RunReport) -> String {
    format!(
        "{} run(s) in {:.1} s ({} not done{})",
        report.outcomes.len(),
        report.elapsed_s,
        report.not_done().len(),
        if report.skipped > 0 {
            format!(", {} already complete", report.skipped)
        } else {
            String::new()
        },
    )
}

/// What a shard prints: its runs, and how to gather the shards.
fn shard_done(
    report: &session::RunReport,
    shard: shard::Shard,
    fail_on_not_done: bool,
) -> Result<()> {
    for outcome in &report.outcomes {
        say(format_args!(
            "  {}  {} after {} iterations",
            outcome.spec.id,
            outcome.summary.status.as_str(),
            outcome.summary.iters
        ))?;
    }
    for (warning, names) in report.warnings() {
        eprintln!("warning ({}): {warning}", names.join(", "));
    }
    let not_done = report.not_done();
    say(format_args!(
        "shard {shard}: {}; gather the shards with `bilevel merge {}`",
        runs_line(report),
        shard::shell_quote(&report.out.display().to_string()),
    ))?;
    if fail_on_not_done && !not_done.is_empty() {
        anyhow::bail!("{} run(s) of shard {shard} not done", not_done.len());
    }
    Ok(())
}

/// `bilevel merge DIR`.
fn merge(dir: &std::path::Path, plots: bool) -> Result<()> {
    let report = shard::merge(dir, plots)?;
    let rows = summary::read_rows(&bilevel_experiment::layout::Layout::new(dir))?;
    say(summary::table(
        &rows,
        report.experiment.report.selection_metric.as_deref(),
    ))?;
    let complete = report.in_state(&shard::RunState::Complete).len();
    say(format_args!(
        "\n{complete} of {} run(s) complete ({} shard(s)); summary.csv and report.md in {}",
        report.runs.len(),
        report.count,
        dir.display()
    ))?;
    if !report.running.is_empty() {
        say(format_args!(
            "still running: shard(s) {}",
            report
                .running
                .iter()
                .map(|k| format!("{k}/{}", report.count))
                .collect::<Vec<_>>()
                .join(", ")
        ))?;
    }
    for (state, what) in [
        (shard::RunState::Failed, "failed"),
        (shard::RunState::Missing, "missing"),
    ] {
        let runs = report.in_state(&state);
        if !runs.is_empty() {
            say(format_args!("{} run(s) {what}:", runs.len()))?;
            for (id, k) in runs {
                say(format_args!("  {id}  (shard {k}/{})", report.count))?;
            }
        }
    }
    if report.is_complete() {
        return Ok(());
    }
    let bilevel = std::env::current_exe()
        .map(|p| shard::shell_quote(&p.display().to_string()))
        .unwrap_or_else(|_| "bilevel".into());
    match report.resubmit_command(&bilevel) {
        Some(command) => say(format_args!(
            "run them again (complete runs are skipped):\n{command}"
        ))?,
        None => say("their shards are still running: merge again when they end")?,
    }
    // Reported above; exit with status 1.
    anyhow::bail!("the grid is not complete")
}

/// `bilevel slurm`.
fn slurm_cmd(request: &slurm::SlurmRequest, dry_run: bool) -> Result<()> {
    let prepared = slurm::prepare(request)?;
    if dry_run {
        say(format_args!(
            "# {}\n{}\n# {}\n{}",
            prepared.array_script.0.display(),
            prepared.array_script.1,
            prepared.merge_script.0.display(),
            prepared.merge_script.1
        ))?;
        return Ok(());
    }
    slurm::write(&prepared)?;
    let submitted = slurm::submit(&prepared, request.merge_job)?;
    say(format_args!(
        "submitted job array {} ({} task(s), {} run(s)) for {}",
        submitted.array,
        prepared.count,
        prepared.experiment.runs.len(),
        prepared.out.display()
    ))?;
    if let Some(merge) = &submitted.merge {
        say(format_args!(
            "merge job {merge} runs `bilevel merge` when the array ends"
        ))?;
    }
    say(format_args!(
        "follow it with `squeue -j {}`; results in {}",
        submitted.array,
        prepared.out.display()
    ))?;
    Ok(())
}

/// The budgets in force, for `--dry-run`.
fn budget_line(run: &bilevel::run::RunOptions, overridden: bool) -> String {
    let mut parts = Vec::new();
    if let Some(n) = run.max_iters {
        parts.push(format!("max_iters = {n}"));
    }
    if let Some(s) = run.max_seconds {
        parts.push(format!("max_seconds = {s}"));
    }
    if let Some(n) = run.max_oracle_calls {
        parts.push(format!("max_oracle_calls = {n}"));
    }
    if let Some(n) = run.max_samples {
        parts.push(format!("max_samples = {n}"));
    }
    if let Some(n) = run.max_draws {
        parts.push(format!("max_draws = {n}"));
    }
    parts.push(format!("eval_every = {}", run.eval_every));
    let source = if overridden {
        " (command-line budget)"
    } else {
        ""
    };
    format!("{}{source}", parts.join(", "))
}

fn list(json: bool) -> Result<()> {
    let solvers: Vec<serde_json::Value> = SolverConfig::all_defaults()
        .iter()
        .map(|c| {
            serde_json::json!({
                "kind": c.kind(),
                "aliases": c.aliases(),
                "paper": c.paper(),
                "parameters": c.parameters(),
            })
        })
        .collect();
    let problems: Vec<serde_json::Value> = ProblemConfig::catalog()
        .into_iter()
        .map(|(kind, about, params)| {
            serde_json::json!({"kind": kind, "about": about, "parameters": params})
        })
        .collect();
    if json {
        say(format_args!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "solvers": solvers,
                "problems": problems,
            }))?
        ))?;
        return Ok(());
    }
    say(format_args!(
        "Solvers (kind = \"...\" in [[solver]] tables):"
    ))?;
    for s in &solvers {
        let aliases: Vec<&str> = s["aliases"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        let aliases = if aliases.is_empty() {
            String::new()
        } else {
            format!(" [alias: {}]", aliases.join(", "))
        };
        say(format_args!(
            "\n  {}{aliases}  ({})",
            s["kind"].as_str().unwrap_or(""),
            s["paper"].as_str().unwrap_or("")
        ))?;
        print_parameters(&s["parameters"], "    ")?;
    }
    say(format_args!(
        "\nProblems (kind = \"...\" in [problem] tables):"
    ))?;
    for p in &problems {
        say(format_args!(
            "\n  {}  ({})",
            p["kind"].as_str().unwrap_or(""),
            p["about"].as_str().unwrap_or("")
        ))?;
        print_parameters(&p["parameters"], "    ")?;
    }
    Ok(())
}

fn print_parameters(params: &serde_json::Value, indent: &str) -> Result<()> {
    match params.as_object() {
        Some(map) if !map.is_empty() => {
            for (k, v) in map {
                match toml_value(v) {
                    Some(t) => say(format_args!("{indent}{k} = {t}"))?,
                    // TOML has no null: an unset optional parameter is shown as a comment.
                    None => say(format_args!("{indent}# {k}: unset by default"))?,
                }
            }
            Ok(())
        }
        _ => say(format_args!("{indent}(no parameters)")),
    }
}

/// A default value as TOML (inline tables for objects), so that `bilevel list` lines can be
/// pasted into an experiment file; `None` for null (and null entries are left out of tables).
fn toml_value(v: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    match v {
        Value::Null => None,
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        // A JSON string literal is a valid TOML basic string.
        Value::String(_) => Some(v.to_string()),
        Value::Array(items) => Some(format!(
            "[{}]",
            items
                .iter()
                .filter_map(toml_value)
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Value::Object(map) => {
            let fields: Vec<String> = map
                .iter()
                .filter_map(|(k, v)| toml_value(v).map(|t| format!("{k} = {t}")))
                .collect();
            Some(if fields.is_empty() {
                "{}".to_owned()
            } else {
                format!("{{ {} }}", fields.join(", "))
            })
        }
    }
}
