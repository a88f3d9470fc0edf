//! `bilevel solve`: one solver on one built-in problem, with the final iterate printed (as
//! JSON with `--json`, numbers that read back bit for bit). The quick check between a grid
//! file and the library, and what the Python package's tests compare against.

use std::time::Instant;

use anyhow::Result;
use bilevel::algorithms::SolverConfig;
use bilevel::core::VectorExt;
use bilevel::problems::ProblemConfig;
use bilevel::run::{RunOptions, Runner};
use bilevel_experiment::ConfigError;
use clap::Args;

/// The arguments of `bilevel solve`.
#[derive(Args)]
pub struct SolveArgs {
    /// The problem kind (`bilevel list` shows them with their parameters).
    #[arg(long)]
    problem: String,
    /// A problem parameter, `KEY=VALUE` (a TOML value; a bare word is a string; `a.b=v` sets a
    /// nested table). Repeatable.
    #[arg(long = "problem-param", value_name = "KEY=VALUE")]
    problem_params: Vec<String>,
    /// The solver kind.
    #[arg(long)]
    solver: String,
    /// A solver parameter, `KEY=VALUE` as for `--problem-param`. Repeatable.
    #[arg(long = "param", short = 'p', value_name = "KEY=VALUE")]
    params: Vec<String>,
    /// Stop after this many iterations.
    #[arg(long)]
    max_iters: Option<u64>,
    /// Stop after this much solver time (seconds).
    #[arg(long)]
    max_seconds: Option<f64>,
    /// Evaluate the metrics every this many iterations.
    #[arg(long, default_value_t = 100)]
    eval_every: u64,
    /// The run's seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print x, y, v and the summary as JSON (with the wall time of the run, `wall_s`).
    #[arg(long)]
    json: bool,
}

/// Builds a JSON object `{"kind": kind, …}` from `KEY=VALUE` words.
fn config_json(kind: &str, words: &[String], flag: &str) -> Result<serde_json::Value> {
    let mut object = serde_json::Map::new();
    object.insert("kind".into(), kind.into());
    for word in words {
        let (key, raw) = word
            .split_once('=')
            .ok_or_else(|| ConfigError(format!("{flag} {word:?}: expected KEY=VALUE")))?;
        let value: serde_json::Value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
            Ok(mut table) => serde_json::to_value(table.remove("v"))?,
            Err(_) => raw.into(),
        };
        let path: Vec<&str> = key.split('.').collect();
        let mut slot = &mut object;
        for part in &path[..path.len() - 1] {
            let entry = slot
                .entry(part.to_string())
                .or_insert_with(|| serde_json::Value::Object(Default::default()));
            slot = entry
                .as_object_mut()
                .ok_or_else(|| ConfigError(format!("{flag} {word:?}: {part} is not a table")))?;
        }
        slot.insert(path[path.len() - 1].to_string(), value);
    }
    Ok(serde_json::Value::Object(object))
}

/// Runs `bilevel solve`.
pub fn run(args: SolveArgs) -> Result<()> {
    let problem: ProblemConfig = serde_json::from_value(config_json(
        &args.problem,
        &args.problem_params,
        "--problem-param",
    )?)
    .map_err(|e| ConfigError(format!("problem `{}`: {e}", args.problem)))?;
    problem
        .validate()
        .map_err(|e| ConfigError(format!("problem `{}`: {e}", args.problem)))?;
    let solver: SolverConfig =
        serde_json::from_value(config_json(&args.solver, &args.params, "--param")?)
            .map_err(|e| ConfigError(format!("solver `{}`: {e}", args.solver)))?;
    solver
        .validate()
        .map_err(|e| ConfigError(format!("solver `{}`: {e}", args.solver)))?;
    let options = RunOptions {
        max_iters: args.max_iters,
        max_seconds: args.max_seconds,
        eval_every: args.eval_every,
        ..Default::default()
    };
    options.validate().map_err(|e| ConfigError(e.to_string()))?;
    let problem = problem.build()?;
    let (x0, y0) = problem.start();
    let started = Instant::now();
    let solution = Runner::new(options)
        .solve_config(&solver, &problem, x0, y0, args.seed)
        .map_err(|e| -> anyhow::Error {
            match e {
                bilevel::Error::Unsupported(_)
                | bilevel::Error::InvalidConfig { .. }
                | bilevel::Error::DimensionMismatch { .. } => ConfigError(e.to_string()).into(),
                other => other.into(),
            }
        })?;
    let wall_s = started.elapsed().as_secs_f64();
    let summary = &solution.summary;
    if args.json {
        let json = serde_json::json!({
            "problem": problem.name(),
            "solver": solver.kind(),
            "seed": args.seed,
            "x": solution.x.as_slice(),
            "y": solution.y.as_slice(),
            "v": solution.v.as_ref().map(|v| v.as_slice().to_vec()),
            "summary": summary,
            "wall_s": wall_s,
        });
        crate::say(serde_json::to_string(&json)?)?;
        return Ok(());
    }
    crate::say(format_args!(
        "{} on {}: {} ({}) after {} iterations, {:.4} s solver time, {:.4} s wall",
        solver.kind(),
        problem.name(),
        summary.status.as_str(),
        serde_json::to_value(summary.stop_reason)?
            .as_str()
            .unwrap_or_default(),
        summary.iters,
        summary.solver_time_s,
        wall_s
    ))?;
    for (name, value) in &summary.final_metrics {
        crate::say(format_args!("  {name:<22} {value:.6e}"))?;
    }
    if let Some(message) = &summary.message {
        crate::say(format_args!("  message: {message}"))?;
    }
    for warning in &summary.warnings {
        crate::say(format_args!("  warning: {warning}"))?;
    }
    let head: Vec<String> = solution
        .x
        .as_slice()
        .iter()
        .take(8)
        .map(|v| format!("{v:.6}"))
        .collect();
    crate::say(format_args!(
        "  x = [{}{}] (dim {})",
        head.join(", "),
        if solution.x.nrows() > 8 { ", …" } else { "" },
        solution.x.nrows()
    ))?;
    Ok(())
}
