//! `bilevel`: run bilevel-optimization experiments from TOML files.
//!
//! - `bilevel run EXPERIMENT.toml [--out DIR] [--jobs N]`: expand the grid, run it in parallel,
//!   write `DIR/traces/<run>.jsonl` and `DIR/summary.csv`, print a table.
//! - `bilevel list [--json]`: solvers and problems with their parameters and defaults.
//! - `bilevel resume CHECKPOINT`: continue a checkpointed run.
//! - `bilevel data fetch NAME` / `bilevel data list`: download datasets, checksum-verified.
//!
//! Exit codes: 0 success, 1 runtime failure, 2 bad configuration or usage.

mod data_cmd;
mod execute;
mod experiment;
mod summary;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use bilevel::algorithms::SolverConfig;
use bilevel::problems::ProblemConfig;
use clap::{Parser, Subcommand};

use crate::experiment::ConfigError;

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
        /// The experiment (TOML).
        experiment: PathBuf,
        /// Output directory (default: results/<experiment name>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Parallel runs (default: all cores).
        #[arg(long)]
        jobs: Option<usize>,
        /// Validate the file and list the runs without running them.
        #[arg(long)]
        dry_run: bool,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
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
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
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
            jobs,
            dry_run,
            quiet,
        } => run(&experiment, out, jobs, dry_run, quiet),
        Command::List { json } => list(json),
        Command::Data { command } => data_cmd::run(command),
        Command::Resume { checkpoint } => {
            let summary = execute::resume_checkpoint(&checkpoint)?;
            println!(
                "{}: {} after {} iterations ({:.3} s solver time)",
                checkpoint.display(),
                summary.status.as_str(),
                summary.iters,
                summary.solver_time_s
            );
            Ok(())
        }
    }
}

fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn run(
    path: &Path,
    out: Option<PathBuf>,
    jobs: Option<usize>,
    dry_run: bool,
    quiet: bool,
) -> Result<()> {
    let experiment = experiment::load(path)?;
    if jobs == Some(0) {
        return Err(ConfigError("--jobs must be >= 1".into()).into());
    }
    if dry_run {
        // Building the problems checks data files and dimensions too.
        execute::build_problems(&experiment)?;
        println!(
            "{}: ok ({} problem(s), {} run(s))",
            path.display(),
            experiment.problems.len(),
            experiment.runs.len()
        );
        for spec in &experiment.runs {
            println!("  {}", spec.id);
        }
        return Ok(());
    }
    let out = out.unwrap_or_else(|| PathBuf::from("results").join(&experiment.name));
    let todo: Vec<usize> = (0..experiment.runs.len()).collect();
    let started = std::time::Instant::now();
    let outcomes = execute::run_grid(
        &experiment,
        &out,
        jobs.unwrap_or_else(default_jobs),
        &todo,
        &[],
        !quiet,
    )?;
    let rows = summary::read_rows(&execute::Layout::new(&out))?;
    println!("{}", summary::table(&rows));
    let not_done = outcomes
        .iter()
        .filter(|o| o.summary.status != bilevel::run::RunStatus::Done)
        .count();
    println!(
        "\n{} run(s) in {:.1} s ({} not done); traces in {}, summary in {}",
        outcomes.len(),
        started.elapsed().as_secs_f64(),
        not_done,
        out.join("traces").display(),
        out.join("summary.csv").display()
    );
    Ok(())
}

fn list(json: bool) -> Result<()> {
    let solvers: Vec<serde_json::Value> = SolverConfig::all_defaults()
        .iter()
        .map(|c| {
            serde_json::json!({
                "kind": c.kind(),
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
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "solvers": solvers,
                "problems": problems,
            }))?
        );
        return Ok(());
    }
    println!("Solvers (kind = \"...\" in [[solver]] tables):");
    for s in &solvers {
        println!(
            "\n  {}  ({})",
            s["kind"].as_str().unwrap_or(""),
            s["paper"].as_str().unwrap_or("")
        );
        print_parameters(&s["parameters"], "    ");
    }
    println!("\nProblems (kind = \"...\" in [problem] tables):");
    for p in &problems {
        println!(
            "\n  {}  ({})",
            p["kind"].as_str().unwrap_or(""),
            p["about"].as_str().unwrap_or("")
        );
        print_parameters(&p["parameters"], "    ");
    }
    Ok(())
}

fn print_parameters(params: &serde_json::Value, indent: &str) {
    match params.as_object() {
        Some(map) if !map.is_empty() => {
            for (k, v) in map {
                println!("{indent}{k} = {v}");
            }
        }
        _ => println!("{indent}(no parameters)"),
    }
}
