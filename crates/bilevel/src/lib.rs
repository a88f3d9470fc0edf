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
//! ```
//! use bilevel::prelude::*;
//! let problem = bilevel::problems::quadratic::tiny();
//! let config = SolverConfig::AidCg(AidCgConfig {
//!     inner_lr: 0.5,
//!     outer_lr: Schedule::constant(0.5),
//!     ..Default::default()
//! });
//! let options = RunOptions { max_iters: Some(100), eval_every: 50, ..Default::default() };
//! let (x0, y0) = problem.start();
//! let summary = Runner::new(options).run_config(&config, &problem, x0, y0, 0).unwrap();
//! assert_eq!(summary.status, RunStatus::Done);
//! assert!(summary.final_metrics["hypergrad_norm_sq"] < 1e-10);
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod algorithms;
pub mod core;
pub mod data;
pub mod hypergrad;
pub mod inner;
pub mod linsolve;
pub mod problems;
pub mod run;
pub mod testing;

/// The names most programs need.
pub mod prelude {
    pub use crate::algorithms::*;
    pub use crate::core::{
        Batch, Counts, Error, Objective, OracleCounts, Problem, Reference, Result, SamplingMode,
        Schedule, Solver, Vector, VectorExt,
    };
    pub use crate::problems::ProblemConfig;
    pub use crate::run::{RunOptions, RunStatus, Runner};
}
