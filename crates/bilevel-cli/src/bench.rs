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
use bilevel::problems::logistic::Precision;
use serde::{Deserialize, Deserializer, Serialize};

use crate::alloc_count;
use bilevel_experiment::report::quantile;

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
            name: "covtype-shape",
            about: "logreg_hpo on the covtype twin, 371,847 x 54 train (sparse), 7 classes, \
                    one L2 hyperparameter per class",
            config: || {
                use bilevel::data::{DatasetSpec, synthetic::Twin};
                use bilevel::problems::logreg_hpo::{LogregHpoConfig, Penalty};
                Ok(ProblemConfig::LogregHpo(LogregHpoConfig {
                    dataset: DatasetSpec::twin(Twin::Covtype, 1.0),
                    // 64 % of 581,012 rows train, as in the benchmark: 20 % test, 16 %
                    // validation.
                    validation_fraction: 0.16,
                    test_fraction: 0.2,
                    penalty: Penalty::PerClass,
                    ..Default::default()
                }))
            },
        },
        Shape {
            name: "hyperclean-shape",
            about: "data_cleaning on the MNIST twin, 20,000 x 784 train, 10 classes, one weight \
                    per training sample",
            config: || {
                use bilevel::data::{DatasetSpec, synthetic::Twin};
                use bilevel::problems::data_cleaning::DataCleaningConfig;
                Ok(ProblemConfig::DataCleaning(DataCleaningConfig {
                    train: DatasetSpec::twin(Twin::Mnist, 0.4),
                    heldout_from_train: true,
                    n_train: 20_000,
                    n_validation: 2_000,
                    n_test: 2_000,
                    corruption: 0.5,
                    ..Default::default()
                }))
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

/// The precision of a report written before it was recorded.
fn f64_name() -> String {
    Precision::F64.name().to_owned()
}

/// A field missing from an older report.
fn nan() -> f64 {
    f64::NAN
}

/// JSON writes a NaN as `null` (a solver that could not run); read it back as NaN.
fn nan_from_null<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Option::<f64>::deserialize(d).map(|v| v.unwrap_or(f64::NAN))
}

/// Timing of one solver on one shape.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SolverTiming {
    /// Solver kind.
    pub solver: String,
    /// Median µs per iteration over the repeats.
    #[serde(deserialize_with = "nan_from_null")]
    pub us_per_iter_median: f64,
    /// Fastest repeat.
    #[serde(deserialize_with = "nan_from_null")]
    pub us_per_iter_min: f64,
    /// Slowest repeat.
    #[serde(deserialize_with = "nan_from_null")]
    pub us_per_iter_max: f64,
    /// Oracle calls per iteration (f and g, all kinds).
    #[serde(deserialize_with = "nan_from_null")]
    pub oracle_calls_per_iter: f64,
    /// Samples touched per iteration.
    #[serde(deserialize_with = "nan_from_null")]
    pub samples_per_iter: f64,
    /// Heap allocations per iteration (counting global allocator).
    #[serde(deserialize_with = "nan_from_null")]
    pub allocs_per_iter: f64,
    /// Heap bytes allocated per iteration.
    #[serde(deserialize_with = "nan_from_null")]
    pub bytes_per_iter: f64,
    /// Kilobytes of data (design rows and targets) the data kernels streamed per iteration
    /// (NaN for problems without data kernels, and in reports written before it was recorded).
    #[serde(default = "nan", deserialize_with = "nan_from_null")]
    pub data_kb_per_iter: f64,
    /// Status: "ok", or why the solver could not run on this shape.
    pub status: String,
}

/// Results of one shape.
#[derive(Clone, Debug, Serialize, Deserialize)]
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
    /// One exact evaluation (F and ∇F), warm-started from the previous point as in a run,
    /// milliseconds: [median, min, max] over max(`repeats`, 10) distinct points.
    pub exact_eval_ms: Option<[f64; 3]>,
    /// The first exact evaluation (at the start, cold: no previous y* or v), milliseconds.
    pub exact_eval_cold_ms: Option<f64>,
}

/// Everything `bilevel bench --json` prints.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchReport {
    /// CPUs visible to the process.
    pub cpus: usize,
    /// Threads of the pool that full passes run on (rayon; `RAYON_NUM_THREADS` sets it).
    /// Results do not depend on it: blocks are fixed by the shape, sums added in block order.
    #[serde(default)]
    pub threads: usize,
    /// Whether the pool's workers were bound one per CPU (`bilevel::run::threads`); empty in
    /// reports written before it was recorded.
    #[serde(default)]
    pub thread_binding: String,
    /// CPU model (from /proc/cpuinfo), if known.
    pub cpu_model: String,
    /// Instruction set the data kernels ran with (`plain`, `avx2`, `avx512`; cap it with
    /// `BILEVEL_SIMD`). Empty in reports written before it was recorded.
    #[serde(default)]
    pub simd: String,
    /// Git commit of the build.
    pub git_commit: String,
    /// Single-thread read bandwidth of this machine for the access pattern of a minibatch
    /// step, GB/s: random 12 KiB blocks (64 padded ijcnn1 rows) out of 32 MiB, larger than the
    /// caches of one core ([`block_read_bandwidth_gbs`]). 0 in reports written before it was
    /// recorded.
    #[serde(default)]
    pub block_read_gbs: f64,
    /// Iterations per repeat.
    pub iters: u64,
    /// Warm-up iterations.
    pub warmup: u64,
    /// Repeats.
    pub repeats: usize,
    /// Minibatch size used where a solver has one.
    pub batch_size: usize,
    /// The command line that produced the report.
    pub command: String,
    /// The stored type of the design values of the data-backed shapes (`f64` or `f32`; the
    /// arithmetic is f64 in both). `f64` in reports written before it was recorded.
    #[serde(default = "f64_name")]
    pub precision: String,
    /// Per shape.
    pub shapes: Vec<ShapeResult>,
    /// The scaling grid (`--scaling`), empty otherwise.
    pub scaling: Vec<ScalingPoint>,
}

/// One point of the scaling grid: a solver on the ijcnn1-shaped twin at width d and batch b.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScalingPoint {
    /// Solver kind.
    pub solver: String,
    /// d, the number of features.
    pub features: usize,
    /// Minibatch size.
    pub batch: usize,
    /// Iterations per timed repeat (fewer at large b·d, see [`scaling_iters`]).
    pub iters: u64,
    /// Median µs per iteration over the repeats.
    #[serde(deserialize_with = "nan_from_null")]
    pub us_per_iter_median: f64,
    /// The median divided by b·d, in nanoseconds: flat when the cost is linear in both.
    #[serde(deserialize_with = "nan_from_null")]
    pub ns_per_sample_feature: f64,
    /// Heap allocations per iteration.
    #[serde(deserialize_with = "nan_from_null")]
    pub allocs_per_iter: f64,
}

/// Widths of the scaling grid.
pub const SCALING_FEATURES: [usize; 4] = [22, 100, 500, 2_000];
/// Batch sizes of the scaling grid.
pub const SCALING_BATCHES: [usize; 4] = [16, 64, 256, 1_024];

/// Iterations per repeat at width `d` and batch `b`: `iters` at the ijcnn1 point (d = 22,
/// b = 64), fewer in proportion to b·d elsewhere (at least 20), so every point costs about the
/// same time.
pub fn scaling_iters(iters: u64, d: usize, b: usize) -> u64 {
    let ratio = (22.0 * 64.0) / (d as f64 * b as f64);
    ((iters as f64 * ratio).round() as u64).clamp(20.min(iters), iters)
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
    /// Run the scaling grid (d × batch on the ijcnn1-shaped twin) instead of the shapes.
    pub scaling: bool,
    /// The stored type of the design values of the data-backed shapes.
    pub precision: Precision,
    /// The command line, recorded in the report.
    pub command: String,
}

/// `config` with its design values stored in `precision` (the data-backed problems; the
/// others have no design and are returned as they are).
fn with_precision(config: ProblemConfig, precision: Precision) -> ProblemConfig {
    match config {
        ProblemConfig::LogregHpo(c) => {
            ProblemConfig::LogregHpo(bilevel::problems::logreg_hpo::LogregHpoConfig {
                precision,
                ..c
            })
        }
        ProblemConfig::DataCleaning(c) => {
            ProblemConfig::DataCleaning(bilevel::problems::data_cleaning::DataCleaningConfig {
                precision,
                ..c
            })
        }
        other => other,
    }
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

/// The solver's default configuration with `batch_size` and `sampling` set where the solver has
/// them (and SABA's per-block memory with contiguous sampling).
fn with_batch(config: &SolverConfig, batch: usize, sampling: &str) -> Result<SolverConfig> {
    let mut json = serde_json::to_value(config)?;
    if let Some(map) = json.as_object_mut() {
        if map.contains_key("batch_size") {
            map.insert("batch_size".into(), serde_json::json!(batch));
        }
        if map.contains_key("sampling") {
            map.insert("sampling".into(), serde_json::json!(sampling));
        }
        // SABA with contiguous blocks keeps one memory row per block, as the reference
        // benchmark does (one oracle call per iteration on each level, not one per sample).
        if map.get("kind").and_then(|k| k.as_str()) == Some("saba") && sampling == "contiguous" {
            map.insert("memory".into(), serde_json::json!("per_batch"));
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
        // Allocated before the allocation snapshot, so that only the steps are counted.
        let mut per_iter = Vec::with_capacity(self.options.repeats);
        let counts_before = problem.counts();
        let streamed_before = bilevel::problems::logistic::streamed_bytes();
        let (allocs_before, bytes_before) = alloc_count::snapshot();
        for _ in 0..self.options.repeats {
            let started = Instant::now();
            for _ in 0..self.options.iters {
                solver.step(&problem, &mut state)?;
            }
            per_iter.push(started.elapsed().as_secs_f64() * 1e6 / self.options.iters as f64);
        }
        let (allocs_after, bytes_after) = alloc_count::snapshot();
        let streamed = bilevel::problems::logistic::streamed_bytes() - streamed_before;
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
            data_kb_per_iter: if streamed > 0 {
                streamed as f64 / total / 1024.0
            } else {
                f64::NAN
            },
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
        threads: rayon::current_num_threads(),
        thread_binding: bilevel::run::threads::pinning()
            .map(|p| p.to_string())
            .unwrap_or_else(|| "not bound to CPUs (the pool was built elsewhere)".into()),
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        cpu_model: cpu_model(),
        simd: bilevel::problems::simd_level().name().to_owned(),
        git_commit: bilevel_experiment::GIT_COMMIT.to_owned(),
        block_read_gbs: if options.scaling {
            0.0
        } else {
            block_read_bandwidth_gbs()?
        },
        iters: options.iters,
        warmup: options.warmup,
        repeats: options.repeats,
        batch_size: options.batch_size,
        command: options.command.clone(),
        precision: options.precision.name().to_owned(),
        shapes: Vec::new(),
        scaling: Vec::new(),
    };
    if options.scaling {
        report.scaling = run_scaling(options, &defaults)?;
        return Ok(report);
    }
    for shape in all_shapes
        .iter()
        .filter(|s| options.shapes.is_empty() || options.shapes.iter().any(|n| n == s.name))
    {
        let started = Instant::now();
        let problem = with_precision((shape.config)()?, options.precision)
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
            exact_eval_cold_ms: None,
        };
        // The exact evaluation is timed first, so that its figure does not depend on which
        // solvers ran before it. Timed after them, the same evaluation path (same steps, same
        // passes) measured anywhere from 2.2 to 5.9 ms on ijcnn1, often slower after STABLE or
        // ESJ-S, though once as slow after SOBA alone: not separable from the machine's noise.
        if let Some(reference) = problem.reference() {
            let (cold, warm) = time_exact_evaluation(&problem, reference, options.repeats)?;
            result.exact_eval_cold_ms = Some(cold);
            result.exact_eval_ms = Some(warm);
        }
        // By default every solver except `exact_lbfgs`, whose iteration is one exact evaluation
        // (timed above): thousands of them would take hours on the wide shapes. Name it to
        // time it.
        let wanted = |c: &&SolverConfig| {
            if options.solvers.is_empty() {
                c.kind() != "exact_lbfgs"
            } else {
                options.solvers.iter().any(|n| n == c.kind())
            }
        };
        for config in defaults.iter().filter(wanted) {
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
                    data_kb_per_iter: f64::NAN,
                    status: format!("not run: {e}"),
                },
            };
            result.solvers.push(timing);
        }
        report.shapes.push(result);
    }
    Ok(report)
}

/// Single-thread read bandwidth, GB/s, for the access pattern of a minibatch step on data that
/// does not fit the caches of one core: sums of the blocks the solvers' own contiguous sampler
/// draws (64 rows of 24 f64, the padded ijcnn1 row, 12 KiB) out of a 32 MiB buffer, best of 5
/// runs of 20,000 blocks. Dividing an iteration's data traffic by it gives the time the
/// iteration needs to read its data at best, with no arithmetic at all.
pub fn block_read_bandwidth_gbs() -> Result<f64> {
    use bilevel::core::{MinibatchSampler, SamplingMode};
    const ROW: usize = 24;
    const BATCH: usize = 64;
    // Whole blocks only, so that no drawn block wraps at the end.
    const ROWS: usize = 32 * 1024 * 1024 / 8 / ROW / BATCH * BATCH;
    const READS: usize = 20_000;
    let data: Vec<f64> = (0..ROW * ROWS).map(|i| (i % 7) as f64).collect();
    let mut sampler = MinibatchSampler::new(ROWS, BATCH, SamplingMode::Contiguous, 0)?;
    let starts: Vec<usize> = (0..READS).map(|_| sampler.draw()[0]).collect();
    let mut best = f64::INFINITY;
    let mut checksum = 0.0;
    for _ in 0..5 {
        let started = Instant::now();
        let mut acc = [0.0; 8];
        for &start in &starts {
            for chunk in data[start * ROW..(start + BATCH) * ROW].as_chunks::<8>().0 {
                for k in 0..8 {
                    acc[k] += chunk[k];
                }
            }
        }
        best = best.min(started.elapsed().as_secs_f64());
        checksum += acc.iter().sum::<f64>();
    }
    std::hint::black_box(checksum);
    Ok((READS * BATCH * ROW * 8) as f64 / best / 1e9)
}

/// The scaling grid: every selected solver (default SOBA and FSLA) at every width of
/// [`SCALING_FEATURES`] and batch of [`SCALING_BATCHES`], on `logreg_hpo` over the ijcnn1-shaped
/// twin (14,169 rows, half train, half validation, per-feature L2).
fn run_scaling(options: &BenchOptions, defaults: &[SolverConfig]) -> Result<Vec<ScalingPoint>> {
    use bilevel::data::{DatasetSpec, synthetic::Twin};
    use bilevel::problems::common::ReferenceConfig;
    use bilevel::problems::logreg_hpo::LogregHpoConfig;
    let solvers: Vec<&str> = if options.solvers.is_empty() {
        vec!["soba", "fsla"]
    } else {
        options.solvers.iter().map(String::as_str).collect()
    };
    let mut points = Vec::new();
    for d in SCALING_FEATURES {
        let problem = ProblemConfig::LogregHpo(LogregHpoConfig {
            dataset: DatasetSpec {
                n_features: Some(d),
                ..DatasetSpec::twin(Twin::Ijcnn1, 0.1)
            },
            validation_fraction: 0.5,
            precision: options.precision,
            reference: ReferenceConfig {
                enabled: false,
                ..Default::default()
            },
            ..Default::default()
        })
        .build()
        .with_context(|| format!("building the scaling problem at d = {d}"))?;
        for batch in SCALING_BATCHES {
            let iters = scaling_iters(options.iters, d, batch);
            let point_options = BenchOptions {
                shapes: Vec::new(),
                solvers: Vec::new(),
                iters,
                warmup: options.warmup.min(iters),
                repeats: options.repeats,
                batch_size: batch,
                sampling: options.sampling.clone(),
                scaling: true,
                precision: options.precision,
                command: String::new(),
            };
            for &name in &solvers {
                let config = defaults
                    .iter()
                    .find(|c| c.kind() == name)
                    .expect("invariant: solver names were checked");
                let config = with_batch(config, batch, &options.sampling)?;
                let timing = config.visit(Timer {
                    problem: &problem,
                    options: &point_options,
                })??;
                points.push(ScalingPoint {
                    solver: timing.solver,
                    features: d,
                    batch,
                    iters,
                    us_per_iter_median: timing.us_per_iter_median,
                    ns_per_sample_feature: timing.us_per_iter_median * 1e3 / (batch * d) as f64,
                    allocs_per_iter: timing.allocs_per_iter,
                });
            }
        }
    }
    Ok(points)
}

/// Times exact evaluations (F and ∇F by the problem's reference): the first at the start, cold;
/// then max(`repeats`, 10) at distinct points x₀ + r·δ (r = 1, 2, …, δ = 0.01 per coordinate with
/// alternating signs), each warm-started from the previous one as consecutive evaluation points
/// of a run are. A reference caches the last point, so evaluating one x twice would time a
/// lookup: every timed point is new.
fn time_exact_evaluation(
    problem: &Problem,
    reference: &dyn bilevel::core::Reference,
    repeats: usize,
) -> Result<(f64, [f64; 3])> {
    let (x0, _) = problem.start();
    let started = Instant::now();
    reference
        .evaluate(&x0)
        .context("exact evaluation at the start")?;
    let cold = started.elapsed().as_secs_f64() * 1e3;
    let mut times = Vec::with_capacity(repeats);
    for r in 1..=repeats.max(10) {
        let mut x = x0.clone();
        for (j, xj) in x.as_mut_slice().iter_mut().enumerate() {
            let sign = if j % 2 == 0 { 1.0 } else { -1.0 };
            *xj += sign * 0.01 * r as f64;
        }
        let started = Instant::now();
        reference
            .evaluate(&x)
            .with_context(|| format!("exact evaluation at point {r}"))?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    Ok((
        cold,
        [
            quantile(&times, 0.5).unwrap_or(f64::NAN),
            times.iter().copied().fold(f64::INFINITY, f64::min),
            times.iter().copied().fold(0.0, f64::max),
        ],
    ))
}

/// The time to read `data_kb` kilobytes at `gbs` GB/s, µs (NaN when either is unknown): the
/// least an iteration can take on this machine, before any arithmetic.
pub fn read_floor_us(data_kb: f64, gbs: f64) -> f64 {
    if gbs > 0.0 && data_kb.is_finite() {
        data_kb * 1024.0 / (gbs * 1e3)
    } else {
        f64::NAN
    }
}

/// A plain-text table of the report.
pub fn table(report: &BenchReport) -> String {
    let mut out = String::new();
    if !report.scaling.is_empty() {
        out.push_str(&format!(
            "{} CPU(s), {}, kernels {}, {} storage; scaling grid, {} repeats\n{:<10} {:>6} {:>6} {:>8} {:>14} {:>16}\n",
            report.cpus,
            report.cpu_model,
            report.simd,
            report.precision,
            report.repeats,
            "solver",
            "d",
            "batch",
            "iters",
            "median us/it",
            "ns/(sample·feat)"
        ));
        for p in &report.scaling {
            out.push_str(&format!(
                "{:<10} {:>6} {:>6} {:>8} {:>14.2} {:>16.3}\n",
                p.solver,
                p.features,
                p.batch,
                p.iters,
                p.us_per_iter_median,
                p.ns_per_sample_feature
            ));
        }
        return out;
    }
    out.push_str(&format!(
        "{} CPU(s), {}, kernels {}, {} storage (arithmetic f64); {} warm-up + {} x {} \
         iterations, batch {}; random-block read bandwidth {:.1} GB/s\n\
         threads: {}, {} (full passes and exact evaluations use them all, minibatch steps \
         one; results are the same bits with any thread count)\n",
        report.cpus,
        report.cpu_model,
        report.simd,
        report.precision,
        report.warmup,
        report.repeats,
        report.iters,
        report.batch_size,
        report.block_read_gbs,
        report.threads,
        report.thread_binding,
    ));
    for shape in &report.shapes {
        out.push_str(&format!(
            "\n{} ({}; built in {:.2} s)\n{:<16} {:>12} {:>12} {:>12} {:>10} {:>10} {:>10} {:>12}\n",
            shape.shape,
            shape.about,
            shape.build_s,
            "solver",
            "median us/it",
            "min",
            "max",
            "calls/it",
            "allocs/it",
            "data KB/it",
            "read us/it"
        ));
        for s in &shape.solvers {
            if s.status.starts_with("not run") {
                out.push_str(&format!("{:<16} {}\n", s.solver, s.status));
                continue;
            }
            out.push_str(&format!(
                "{:<16} {:>12.2} {:>12.2} {:>12.2} {:>10.1} {:>10.2} {:>10.1} {:>12.2}\n",
                s.solver,
                s.us_per_iter_median,
                s.us_per_iter_min,
                s.us_per_iter_max,
                s.oracle_calls_per_iter,
                s.allocs_per_iter,
                s.data_kb_per_iter,
                read_floor_us(s.data_kb_per_iter, report.block_read_gbs)
            ));
        }
        if let Some([median, min, max]) = shape.exact_eval_ms {
            out.push_str(&format!(
                "exact evaluation (F, ∇F), warm-started at new points: median {median:.3} ms \
                 [min {min:.3}, max {max:.3}]; cold at the start {:.3} ms\n",
                shape.exact_eval_cold_ms.unwrap_or(f64::NAN)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{read_floor_us, scaling_iters};

    #[test]
    fn read_floor_is_data_over_bandwidth() {
        // 1 KiB at 1 GB/s: 1024 bytes / 1e9 bytes per second = 1.024 µs.
        assert!((read_floor_us(1.0, 1.0) - 1.024).abs() < 1e-12);
        assert!((read_floor_us(25.0, 20.0) - 1.28).abs() < 1e-12);
        // Unknown traffic or an unmeasured machine: no floor.
        assert!(read_floor_us(f64::NAN, 20.0).is_nan());
        assert!(read_floor_us(25.0, 0.0).is_nan());
    }

    #[test]
    fn scaling_iterations_keep_the_work_per_point_about_constant() {
        assert_eq!(scaling_iters(1000, 22, 64), 1000);
        assert_eq!(scaling_iters(1000, 100, 64), 220);
        assert_eq!(scaling_iters(1000, 22, 16), 1000); // never more than asked
        assert_eq!(scaling_iters(1000, 2000, 1024), 20); // at least 20
        assert_eq!(scaling_iters(5, 2000, 1024), 5); // …unless fewer were asked
    }
}
