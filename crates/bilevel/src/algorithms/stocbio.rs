//! # stocBiO — stochastic bilevel optimizer with a Neumann-series hypergradient
//!
//! K. Ji, J. Yang, Y. Liang. *Bilevel optimization: convergence analysis and enhanced design.*
//! ICML 2021 (arXiv:2010.07962). algorithms.md §8.2 and §1.5.1.
//!
//! ## Update (one outer iteration t; algorithms.md §8.2)
//! 1. Inner SGD, warm-started from y_{t−1}: T steps $y \leftarrow y - \alpha \nabla_y g(x_t, y; B_s)$,
//!    a fresh minibatch B_s per step.
//! 2. One outer minibatch D_F: $b = \nabla_y f(x_t, y; D_F)$, and $\nabla_x f(x_t, y; D_F)$.
//! 3. SHIA (§1.5.1, the paper's formula — not the official code's variant that drops the i = 0
//!    term): $v = \eta \sum_{i=0}^{Q} \prod_{j \le i} (I - \eta \nabla^2_{yy} g(x_t, y; B_j))\thinspace b$,
//!    a fresh Hessian minibatch B_j per product.
//! 4. $\hat h = \nabla_x f(x_t, y; D_F) - \nabla^2_{xy} g(x_t, y; D_G)\thinspace v$ on a cross minibatch
//!    D_G, and $x_{t+1} = x_t - \beta_t \hat h$.
//!
//! ## Oracle calls per iteration (checked by `tests/it/oracle_counts.rs`)
//! | oracle | on g | on f | batch |
//! |--------|------|------|-------|
//! | grad_y | T | 1 | B_s / D_F |
//! | grad_x | – | 1 | D_F |
//! | hvp_yy | Q | – | B_1..B_Q |
//! | cross_xy | 1 | – | D_G |
//!
//! benchopt's stocBiO (as restated in algorithms.md §8.2) makes the same calls per iteration (T
//! inner SGD steps, Q SHIA products, one outer gradient pair, one cross product).
//!
//! ## Parameters
//! | field | paper | default | range |
//! |-------|-------|---------|-------|
//! | `inner_steps` | T | 10 | ≥ 0 |
//! | `inner_lr` | α | 0.1 | > 0 |
//! | `neumann.terms` | Q | 10 | ≥ 0 |
//! | `neumann.step` | η | 0.1 | > 0 (< 1/L_g) |
//! | `outer_lr` | β | `constant 0.1` | schedule |
//! | `batch_size` | |B| (all batches) | 64 | ≥ 1 |
//! | `sampling` | — | `shuffled` | `shuffled`, `with_replacement`, `contiguous` |
//!
//! Defaults are the reference benchmark's (algorithms.md §9.9: constant steps 0.1, 10 inner
//! steps, 10 SHIA steps, batch 64). The official code used T = 200, Q = 3, η = 0.5 and batch
//! 1000 on MNIST.
//!
//! ## Example
//! ```
//! use bilevel::prelude::*;
//! let problem = bilevel::problems::quadratic::tiny();
//! let solver = StocbioConfig { batch_size: 1, ..Default::default() }.build().unwrap();
//! let (x0, y0) = problem.start();
//! let mut state = solver.init(&problem, x0, y0, 0).unwrap();
//! for _ in 0..50 {
//!     solver.step(&problem, &mut state).unwrap();
//! }
//! assert_eq!(state.t, 50);
//! ```
//!
#![doc = include_str!("../../katex-header.html")] // KaTeX: renders the formulas above

use serde::{Deserialize, Serialize};

use super::double_loop::{DoubleLoop, DoubleLoopState, OuterOptimizer};
use crate::core::error::{check_at_least, check_positive};
use crate::core::{Result, SamplingMode, Schedule};
use crate::hypergrad::{Implicit, ImplicitState, LinearSystem};
use crate::linsolve::NeumannParams;

/// Configuration of stocBiO.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StocbioConfig {
    /// T: inner SGD steps per outer iteration.
    pub inner_steps: usize,
    /// α: inner step size.
    pub inner_lr: f64,
    /// Q and η of the SHIA series.
    pub neumann: NeumannParams,
    /// β_t: outer step size.
    pub outer_lr: Schedule,
    /// Size of every minibatch.
    pub batch_size: usize,
    /// How minibatches are drawn.
    pub sampling: SamplingMode,
}

impl Default for StocbioConfig {
    fn default() -> Self {
        Self {
            inner_steps: 10,
            inner_lr: 0.1,
            neumann: NeumannParams {
                terms: 10,
                step: 0.1,
            },
            outer_lr: Schedule::constant(0.1),
            batch_size: 64,
            sampling: SamplingMode::Shuffled,
        }
    }
}

/// stocBiO: a double loop over the stochastic implicit estimator with SHIA.
pub type Stocbio = DoubleLoop<Implicit>;
/// State of [`Stocbio`].
pub type StocbioState = DoubleLoopState<ImplicitState>;

impl StocbioConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        check_positive("inner_lr", self.inner_lr)?;
        self.neumann.validate("neumann")?;
        self.outer_lr.validate("outer_lr")?;
        check_at_least("batch_size", self.batch_size, 1)
    }

    /// The only constructor of [`Stocbio`].
    pub fn build(self) -> Result<Stocbio> {
        self.validate()?;
        Ok(DoubleLoop {
            name: "stocbio",
            hypergrad: Implicit {
                inner_steps: self.inner_steps,
                inner_lr: self.inner_lr,
                linear: LinearSystem::Neumann(self.neumann),
                warm_start_v: false,
                batch_size: Some(self.batch_size),
                sampling: self.sampling,
            },
            outer_lr: self.outer_lr,
            outer_optimizer: OuterOptimizer::Sgd,
        })
    }
}
