//! # AID-CG — approximate implicit differentiation with conjugate gradient
//!
//! F. Pedregosa. *Hyperparameter optimization with approximate gradient.* ICML 2016
//! (arXiv:1602.02355); in the form of R. Grazzi, L. Franceschi, M. Pontil, S. Salzo. *On the
//! iteration complexity of hypergradient computation.* ICML 2020 (arXiv:2006.16218), hypertorch's
//! `CG`. algorithms.md §8.2.
//!
//! ## Update (one outer iteration t)
//! 1. Inner GD, warm-started from y_{t−1}: T steps of
//!    $y \leftarrow y - \alpha \nabla_y g(x_t, y)$.
//! 2. K conjugate-gradient iterations on $\nabla^2_{yy} g(x_t, y)\thinspace v = \nabla_y f(x_t, y)$,
//!    warm-started from v_{t−1} (`warm_start_v`; hypertorch starts from 0).
//! 3. $\hat h = \nabla_x f(x_t, y) - \nabla^2_{xy} g(x_t, y)\thinspace v$ and
//!    $x_{t+1} = x_t - \gamma_t \hat h$.
//!
//! Deterministic (full-batch) oracles throughout by default; with `batch_size` every oracle
//! runs on a fresh minibatch instead (the stochastic AID-CG of the PyTorch libraries, which
//! `bilevel bench` times at batch 64). With enough inner and CG steps ĥ matches the
//! closed-form ∇F to relative error ≤ 1e-6 (tested).
//!
//! ## Oracle calls per iteration (checked by `tests/it/oracle_counts.rs`)
//! | oracle | on g | on f | batch |
//! |--------|------|------|-------|
//! | grad_y | T | 1 | full |
//! | grad_x | – | 1 | full |
//! | hvp_yy | ≤ K (+1 for the warm-start residual when v ≠ 0) | – | full |
//! | cross_xy | 1 | – | full |
//!
//! benchopt does not ship AID-CG; PyTorch libraries (TorchOpt, Betty, BOAT) count one outer
//! iteration as 10 inner GD steps + 10 CG steps, the default here.
//!
//! ## Parameters
//! | field | paper | default | range |
//! |-------|-------|---------|-------|
//! | `inner_steps` | T | 10 | ≥ 0 |
//! | `inner_lr` | α | 0.1 | > 0 (≤ 1/L_g) |
//! | `cg.max_iters` | K | 10 | ≥ 1 |
//! | `cg.rel_tol` | — | 1e-10 | ≥ 0 |
//! | `warm_start_v` | — | true | |
//! | `outer_lr` | γ | `constant 0.1` | schedule |
//! | `outer_optimizer` | — | `{ kind = "sgd" }` | `sgd`, `adam { beta1, beta2, eps }` |
//! | `batch_size` | — | absent (full batch) | ≥ 1 |
//! | `sampling` | — | `shuffled` | `shuffled`, `with_replacement`, `contiguous` |
//!
//! ## Example
//! ```
//! use bilevel::prelude::*;
//! let problem = bilevel::problems::quadratic::tiny();
//! let solver = AidCgConfig {
//!     inner_lr: 0.5,
//!     outer_lr: Schedule::constant(0.5),
//!     ..Default::default()
//! }
//! .build()
//! .unwrap();
//! let (x0, y0) = problem.start();
//! let mut state = solver.init(&problem, x0, y0, 0).unwrap();
//! for _ in 0..200 {
//!     solver.step(&problem, &mut state).unwrap();
//! }
//! let truth = problem.reference().unwrap().evaluate(&state.x).unwrap();
//! assert!(truth.hypergradient.norm() < 1e-6);
//! ```
//!
#![doc = include_str!("../../katex-header.html")] // KaTeX: renders the formulas above

use serde::{Deserialize, Serialize};

use super::double_loop::{DoubleLoop, DoubleLoopState, OuterOptimizer};
use crate::core::error::check_positive;
use crate::core::{Result, SamplingMode, Schedule};
use crate::hypergrad::{Implicit, ImplicitState, LinearSystem};
use crate::linsolve::CgParams;

/// Configuration of AID-CG.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AidCgConfig {
    /// T: inner GD steps per outer iteration.
    pub inner_steps: usize,
    /// α: inner step size.
    pub inner_lr: f64,
    /// K and the tolerance of the CG solve.
    pub cg: CgParams,
    /// Warm-start CG from the previous v.
    pub warm_start_v: bool,
    /// γ_t: outer step size.
    pub outer_lr: Schedule,
    /// SGD (default) or Adam on the hypergradient.
    pub outer_optimizer: OuterOptimizer,
    /// Minibatch size of every oracle (a fresh minibatch per inner step, one for the CG
    /// products, one for ∇f and one for the cross product); absent: full batch (the default,
    /// deterministic).
    pub batch_size: Option<usize>,
    /// How minibatches are drawn (with `batch_size`).
    pub sampling: SamplingMode,
}

impl Default for AidCgConfig {
    fn default() -> Self {
        Self {
            inner_steps: 10,
            inner_lr: 0.1,
            cg: CgParams {
                max_iters: 10,
                rel_tol: 1e-10,
            },
            warm_start_v: true,
            outer_lr: Schedule::constant(0.1),
            outer_optimizer: OuterOptimizer::Sgd,
            batch_size: None,
            sampling: SamplingMode::Shuffled,
        }
    }
}

/// AID-CG: a double loop over the implicit estimator with a CG solve.
pub type AidCg = DoubleLoop<Implicit>;
/// State of [`AidCg`].
pub type AidCgState = DoubleLoopState<ImplicitState>;

impl AidCgConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        check_positive("inner_lr", self.inner_lr)?;
        if self.batch_size == Some(0) {
            return Err(crate::core::Error::config("batch_size", "must be >= 1"));
        }
        self.cg.validate("cg")?;
        self.outer_lr.validate("outer_lr")?;
        self.outer_optimizer.validate("outer_optimizer")
    }

    /// The only constructor of [`AidCg`].
    pub fn build(self) -> Result<AidCg> {
        self.validate()?;
        Ok(DoubleLoop {
            name: "aid_cg",
            hypergrad: Implicit {
                inner_steps: self.inner_steps,
                inner_lr: self.inner_lr,
                linear: LinearSystem::Cg(self.cg),
                warm_start_v: self.warm_start_v,
                batch_size: self.batch_size,
                sampling: self.sampling,
            },
            outer_lr: self.outer_lr,
            outer_optimizer: self.outer_optimizer,
        })
    }
}
