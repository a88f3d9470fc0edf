//! `bilevel bench`: per-iteration speed of every solver on the standard shapes, with oracle calls
//! and heap allocations per iteration, and the time of one exact evaluation (F and ∇F).
//!
//! Method: for each (shape, solver), build the problem once, initialise the solver at the
//! problem's start, run `warmup` steps, then `repeats` timed blocks of `iters` steps each; report
//! the median, min and max over blocks of µs per iteration. Oracle calls and allocations are
//! counted over all timed blocks. Evaluation is never inside a timed block. Same problem, same
//! iterations, same seed: two invocations compute the same iterates.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use bilevel::algorithms::{SolverConfig, SolverVisitor};
use bilevel::core::{Problem, Solver};
use bilevel::problems::ProblemConfig;
use serde::Serialize;

use crate::alloc_count;
use crate::report::quantile;

/// A standard benchmark shape: a name and a problem configuration.
pub struct Shape {
    /// The name used on the command line.
    pub name: &'static str,
    /// What it is.
    pub about: &'static str,
    /// The problem.
    pub config: fn() -> Result<ProblemConfig>,
}

/// Every shape `bilevel bench` knows.
pub fn shapes() -> Vec<Shape> {
    vec![
        Shape {
            name: "ijcnn1-shape",
            about: "logreg_hpo on ijcnn1, 49,990 x 22 train, 91,701 x 22 validation, per-feature L2",
            config: || {
                Ok(ProblemConfig::LogregHpo(
                    bilevel::problems::logreg_hpo::LogregHpoConfig::default(),
                ))
            },
        },
        Shape {
            name: "quadratic",
            about: "benchmark quadratic, d_y = 100, d_x = 10, 1024 + 1024 samples",
            config: || {
                Ok(ProblemConfig::Quadratic(
                    bilevel::problems::quadratic::QuadraticConfig {
                        dim_x: 10,
                        dim_y: 100,
                        ..Default::default()
                    },
                ))
            },
        },
    ]
}

/// Timing of one solver on one shape.
#[derive(Clone, Debug, Serialize)]
pub struct SolverTiming {
    /// Solver kind.
    pub solver: String,
    /// Median µs per iteration over the repeats.
    pub us_per_iter_median: f64,
    /// Fastest repeat.
    pub us_per_iter_min: f64,
    /// Slowest repeat.
    pub us_per_iter_max: f64,
    /// Oracle calls per iteration (f and g, all kinds).
    pub oracle_calls_per_iter: f64,
    /// Samples touched per iteration.
    pub samples_per_iter: f64,
    /// Heap allocations per iteration (counting global allocator).
    pub allocs_per_iter: f64,
    /// Heap bytes allocated per iteration.
    pub bytes_per_iter: f64,
    /// Status: "ok", or why the solver could not run on this shape.
    pub status: String,
}

/// Results of one shape.
#[derive(Clone, Debug, Serialize)]
pub struct ShapeResult {
    /// Shape name.
    pub shape: String,
    /// Description.
    pub about: String,
    /// (dim x, dim y, n outer, n inner).
    pub dims: [usize; 4],
    /// Time to build the problem (data generation or loading), seconds.
    pub build_s: f64,
    /// Per solver.
    pub solvers: Vec<SolverTiming>,
    /// One exact evaluation (F and ∇F at the start), milliseconds: [median, min, max] over
    /// repeats, the first repeat cold, the others warm-started as in a run.
    pub exact_eval_ms: Option<[f64; 3]>,
}

/// Everything `bilevel bench --json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// CPUs visible to the process.
    pub cpus: usize,
    /// CPU model (from /proc/cpuinfo), if known.
    pub cpu_model: String,
    /// Git commit of the build.
    pub git_commit: String,
    /// Iterations per repeat.
    pub iters: u64,
    /// Warm-up iterations.
    pub warmup: u64,
    /// Repeats.
    pub repeats: usize,
    /// Minibatch size used where a solver has one.
    pub batch_size: usize,
    /// Per shape.
    pub shapes: Vec<ShapeResult>,
}

/// Options of `bilevel bench`.
pub struct BenchOptions {
    /// Shapes to run (names), empty = all.
    pub shapes: Vec<String>,
    /// Solvers (kinds), empty = all.
    pub solvers: Vec<String>,
    /// Iterations per timed repeat.
    pub iters: u64,
    /// Warm-up iterations.
    pub warmup: u64,
    /// Timed repeats.
    pub repeats: usize,
    /// Minibatch size for solvers that have one.
    pub batch_size: usize,
    /// Sampling mode for solvers that have one (`contiguous`, `shuffled`, `with_replacement`).
    pub sampling: String,
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The solver's default configuration with `batch_size` set where the solver has one.
fn with_batch(config: &SolverConfig, batch: usize, sampling: &str) -> Result<SolverConfig> {
    let mut json = serde_json::to_value(config)?;
    if let Some(map) = json.as_object_mut() {
        if map.contains_key("batch_size") {
            map.insert("batch_size".into(), serde_json::json!(batch));
        }
        if map.contains_key("sampling") {
            map.insert("sampling".into(), serde_json::json!(sampling));
        }
    }
    Ok(serde_json::from_value(json)?)
}

struct Timer<'a> {
    problem: &'a Problem,
    options: &'a BenchOptions,
}

impl SolverVisitor for Timer<'_> {
    type Output = Result<SolverTiming>;
    fn visit<S: Solver>(self, solver: S) -> Result<SolverTiming> {
        let problem = self.problem.fresh();
        let (x0, y0) = problem.start();
        let mut state = solver.init(&problem, x0, y0, 0)?;
        for _ in 0..self.options.warmup {
            solver.step(&problem, &mut state)?;
        }
        let counts_before = problem.counts();
        let (allocs_before, bytes_before) = alloc_count::snapshot();
        let mut per_iter = Vec::with_capacity(self.options.repeats);
        for _ in 0..self.options.repeats {
            let started = Instant::now();
            for _ in 0..self.options.iters {
                solver.step(&problem, &mut state)?;
            }
            per_iter.push(started.elapsed().as_secs_f64() * 1e6 / self.options.iters as f64);
        }
        let (allocs_after, bytes_after) = alloc_count::snapshot();
        let counts = problem.counts().since(&counts_before);
        let total = (self.options.iters * self.options.repeats as u64) as f64;
        let (x, y) = solver.iterate(&state);
        let status = if x
            .as_slice()
            .iter()
            .chain(y.as_slice())
            .all(|v| v.is_finite())
        {
            "ok".to_owned()
        } else {
            "diverged (timings still per iteration)".to_owned()
        };
        Ok(SolverTiming {
            solver: solver.name().to_owned(),
            us_per_iter_median: quantile(&per_iter, 0.5).unwrap_or(f64::NAN),
            us_per_iter_min: per_iter.iter().copied().fold(f64::INFINITY, f64::min),
            us_per_iter_max: per_iter.iter().copied().fold(0.0, f64::max),
            oracle_calls_per_iter: counts.calls() as f64 / total,
            samples_per_iter: counts.samples() as f64 / total,
            allocs_per_iter: (allocs_after - allocs_before) as f64 / total,
            bytes_per_iter: (bytes_after - bytes_before) as f64 / total,
            status,
        })
    }
}

use bilevel::core::VectorExt;

/// Runs the benchmark.
pub fn run(options: &BenchOptions) -> Result<BenchReport> {
    if options.iters == 0 || options.repeats == 0 {
        bail!("--iters and --repeats must be >= 1");
    }
    let all_shapes = shapes();
    for name in &options.shapes {
        if !all_shapes.iter().any(|s| s.name == name) {
            bail!(
                "unknown shape `{name}`; known: {}",
                all_shapes
                    .iter()
                    .map(|s| s.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    let defaults = SolverConfig::all_defaults();
    for name in &options.solvers {
        if !defaults.iter().any(|c| c.kind() == name) {
            bail!("unknown solver `{name}` (see `bilevel list`)");
        }
    }
    let mut report = BenchReport {
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        cpu_model: cpu_model(),
        git_commit: crate::execute::GIT_COMMIT.to_owned(),
        iters: options.iters,
        warmup: options.warmup,
        repeats: options.repeats,
        batch_size: options.batch_size,
        shapes: Vec::new(),
    };
    for shape in all_shapes
        .iter()
        .filter(|s| options.shapes.is_empty() || options.shapes.iter().any(|n| n == s.name))
    {
        let started = Instant::now();
        let problem = (shape.config)()?
            .build()
            .with_context(|| format!("building shape {}", shape.name))?;
        let build_s = started.elapsed().as_secs_f64();
        let (dx, dy) = problem.dims();
        let mut result = ShapeResult {
            shape: shape.name.to_owned(),
            about: shape.about.to_owned(),
            dims: [dx, dy, problem.f().n_samples(), problem.g().n_samples()],
            build_s,
            solvers: Vec::new(),
            exact_eval_ms: None,
        };
        for config in defaults
            .iter()
            .filter(|c| options.solvers.is_empty() || options.solvers.iter().any(|n| n == c.kind()))
        {
            let config = with_batch(config, options.batch_size, &options.sampling)?;
            let outcome = match config.visit(Timer {
                problem: &problem,
                options,
            }) {
                Ok(inner) => inner,
                Err(e) => Err(e.into()),
            };
            let timing = match outcome {
                Ok(t) => t,
                Err(e) => SolverTiming {
                    solver: config.kind().to_owned(),
                    us_per_iter_median: f64::NAN,
                    us_per_iter_min: f64::NAN,
                    us_per_iter_max: f64::NAN,
                    oracle_calls_per_iter: f64::NAN,
                    samples_per_iter: f64::NAN,
                    allocs_per_iter: f64::NAN,
                    bytes_per_iter: f64::NAN,
                    status: format!("not run: {e}"),
                },
            };
            result.solvers.push(timing);
        }
        if let Some(reference) = problem.reference() {
            let (x0, _) = problem.start();
            let mut times = Vec::new();
            for _ in 0..options.repeats.max(3) {
                let started = Instant::now();
                reference.evaluate(&x0)?;
                times.push(started.elapsed().as_secs_f64() * 1e3);
            }
            result.exact_eval_ms = Some([
                quantile(&times, 0.5).unwrap_or(f64::NAN),
                times.iter().copied().fold(f64::INFINITY, f64::min),
                times.iter().copied().fold(0.0, f64::max),
            ]);
        }
        report.shapes.push(result);
    }
    Ok(report)
}

/// A plain-text table of the report.
pub fn table(report: &BenchReport) -> String {
    let mut out = format!(
        "{} CPU(s), {}; {} warm-up + {} x {} iterations, batch {}\n",
        report.cpus,
        report.cpu_model,
        report.warmup,
        report.repeats,
        report.iters,
        report.batch_size
    );
    for shape in &report.shapes {
        out.push_str(&format!(
            "\n{} ({}; built in {:.2} s)\n{:<16} {:>12} {:>12} {:>12} {:>10} {:>10}\n",
            shape.shape,
            shape.about,
            shape.build_s,
            "solver",
            "median us/it",
            "min",
            "max",
            "calls/it",
            "allocs/it"
        ));
        for s in &shape.solvers {
            if s.status.starts_with("not run") {
                out.push_str(&format!("{:<16} {}\n", s.solver, s.status));
                continue;
            }
            out.push_str(&format!(
                "{:<16} {:>12.2} {:>12.2} {:>12.2} {:>10.1} {:>10.2}\n",
                s.solver,
                s.us_per_iter_median,
                s.us_per_iter_min,
                s.us_per_iter_max,
                s.oracle_calls_per_iter,
                s.allocs_per_iter
            ));
        }
        if let Some([median, min, max]) = shape.exact_eval_ms {
            out.push_str(&format!(
                "exact evaluation (F, ∇F): median {median:.3} ms [min {min:.3}, max {max:.3}]\n"
            ));
        }
    }
    out
}
