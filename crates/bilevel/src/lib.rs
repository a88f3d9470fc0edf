//! # bilevel
//!
//! Bilevel optimization: min over x of F(x) = f(x, y*(x)), where y*(x) = argmin over y of
//! g(x, y).
//!
//! ## Notation (used everywhere: code, configs, docs)
//! | symbol | meaning | in code |
//! |--------|---------|---------|
//! | x ∈ ℝᵖ | outer variable (hyperparameters, sample weights, meta-initialisation) | `x`, `dim_x` |
//! | y ∈ ℝ^q | inner variable (model parameters) | `y`, `dim_y` |
//! | f | outer objective (validation loss) | `problem.f()` |
//! | g | inner objective (training loss), strongly convex in y | `problem.g()` |
//! | F(x) = f(x, y*(x)) | the bilevel objective | metric `value` |
//! | ∇F(x) = ∇ₓf − ∇²ₓᵧg [∇²ᵧᵧg]⁻¹ ∇ᵧf | the hypergradient | metric `hypergrad_norm_sq` = ‖∇F‖² |
//! | v ≈ [∇²ᵧᵧg]⁻¹ ∇ᵧf | the linear-system (adjoint) variable, +v convention | `v` |
//! | ∇²ᵧᵧg · v | Hessian-vector product | `hvp_yy` |
//! | ∇²ₓᵧg · v | mixed ("cross") product, y-space → x-space | `cross_xy` |
//! | ∇²ᵧₓg · u | transpose mixed product, x-space → y-space | `cross_yx` |
//! | ρ, γ | inner and outer step sizes | `inner_lr`, `outer_lr` |
//!
//! ## Layout
//! - [`core`]: [`Vector`](core::Vector), the oracle trait [`Objective`](core::Objective) with
//!   explicit minibatches ([`Batch`](core::Batch)), [`Problem`](core::Problem) (counted oracles,
//!   optional exact reference), [`Solver`](core::Solver), schedules, samplers, errors.
//! - [`linsolve`]: matrix-free CG and Neumann series; the small tridiagonal solve of Lanczos-type
//!   methods.
//! - [`inner`]: warm-started inner descent.
//! - [`hypergrad`]: hypergradient estimators for double-loop algorithms.
//! - [`algorithms`]: one file per named algorithm; the registry
//!   [`SolverConfig`](algorithms::SolverConfig).
//! - [`data`]: dataset loaders (LIBSVM, IDX, CSV, npy), splits, preprocessing, synthetic twins.
//! - [`problems`]: built-in problems with exact references.
//! - [`run`]: the runner (budgets, honest timing, metrics, divergence), observers, checkpoints.
//! - [`testing`]: finite-difference checks and the mechanical solver checks.
//!
//! ## Example
//! Solve the built-in quadratic with AID-CG and read the tuned x:
//! ```
//! use bilevel::prelude::*;
//!
//! let problem = bilevel::problems::quadratic::tiny();
//! let config = SolverConfig::AidCg(AidCgConfig {
//!     inner_lr: 0.5,
//!     outer_lr: Schedule::constant(0.5),
//!     ..Default::default()
//! });
//! let options = RunOptions { max_iters: Some(100), eval_every: 50, ..Default::default() };
//! let solution = bilevel::solve(&problem, &config, options)?;
//! assert_eq!(solution.summary.status, RunStatus::Done);
//! assert!(solution.summary.final_metrics["hypergrad_norm_sq"] < 1e-10);
//! println!("x = {:?}", solution.x.as_slice());
//! # Ok::<(), bilevel::Error>(())
//! ```
//! [`Runner`](run::Runner) does the same with observers (traces, progress, closures),
//! checkpoints and a chosen start and seed.
//!
//! ## Your own problem
//! Implement [`Objective`](core::Objective) for f and g (four required methods; the
//! second-order products default to finite differences), check it with
//! [`testing::check_objective`], build a [`Problem`](core::Problem), and attach the generic
//! exact reference with [`Problem::with_newton_reference`](core::Problem::with_newton_reference)
//! for the `value` and `hypergrad_norm_sq` metrics. The [`core::Objective`] page has the whole
//! example.
//!
//! ## Names
//! The [`prelude`] has what most programs need. It does not export a `Result`, so it never
//! shadows `std`'s: the library's is [`bilevel::Result`](Result) (`Result<T, bilevel::Error>`).
//! [`faer`] (the vector type) and [`serde_json`] (checkpoint context, solver JSON) are
//! re-exported, so a program needs neither in its own `Cargo.toml`.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod algorithms;
pub mod core;
pub mod data;
pub mod hypergrad;
pub mod inner;
pub mod linsolve;
pub mod nn;
pub mod problems;
pub mod run;
pub mod testing;

pub use crate::core::{Error, Result};

/// The README's Rust examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
pub use crate::run::{RunOptions, Solution};
pub use faer;
pub use serde_json;

/// Runs `config` on `problem` from its default start ([`Problem::start`](core::Problem::start))
/// with seed 0 under `options`, and returns the final iterate with the run's summary.
///
/// The iterate is the one the run's last record describes: for a `done` run,
/// `solution.summary.final_metrics` are the metrics at (`solution.x`, `solution.y`). A run that
/// diverges or fails still returns its last iterate, with the status saying so; an `Err` is a
/// setup error (invalid options or config, dimensions that do not match). Use a
/// [`Runner`](run::Runner) for observers, checkpoints, another start or another seed.
pub fn solve(
    problem: &core::Problem,
    config: &algorithms::SolverConfig,
    options: RunOptions,
) -> Result<Solution> {
    let (x0, y0) = problem.start();
    run::Runner::new(options).solve_config(config, problem, x0, y0, 0)
}

/// The names most programs need. No `Result` here: it would shadow `std`'s (the library's is
/// [`bilevel::Result`](crate::Result)).
pub mod prelude {
    pub use crate::algorithms::*;
    pub use crate::core::{
        Batch, Counts, Error, Objective, OracleCounts, Problem, Reference, SamplingMode, Schedule,
        Solver, Vector, VectorExt,
    };
    pub use crate::problems::ProblemConfig;
    pub use crate::run::runner::CheckpointTarget;
    pub use crate::run::{
        InMemory, Iterate, Observer, Record, RunOptions, RunStatus, RunSummary, Runner, Solution,
    };
}
