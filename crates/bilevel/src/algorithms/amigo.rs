//! # AmIGO — amortized implicit gradient optimization
//!
//! M. Arbel, J. Mairal. *Amortized implicit differentiation for stochastic bilevel
//! optimization.* ICLR 2022 (arXiv:2111.14580). algorithms.md §8.2.
//!
//! ## Update (one outer iteration t, amortized (warm-started) inner solvers; algorithms.md §8.2)
//! 1. Inner SGD, warm-started from y_{t−1}: T steps $y \leftarrow y - \alpha \nabla_y g(x_t, y; B_s)$.
//! 2. One outer minibatch D_F: $b = \nabla_y f(x_t, y; D_F)$, $\nabla_x f(x_t, y; D_F)$.
//! 3. The linear system, warm-started from v_{t−1} (the amortization):
//!    - `linear.kind = "gd"` (AmIGO-GD): K steps
//!      $v \leftarrow v - \rho\thinspace (\nabla^2_{yy} g(x_t, y; B_k)\thinspace v - b)$, a fresh Hessian batch
//!      B_k per step, b fixed over the K steps (§1.5.4);
//!    - `linear.kind = "cg"` (AmIGO-CG): K conjugate-gradient iterations on one Hessian
//!      minibatch (CG needs a fixed operator).
//! 4. $\hat h = \nabla_x f(x_t, y; D_F) - \nabla^2_{xy} g(x_t, y; D_G)\thinspace v$, and
//!    $x_{t+1} = x_t - \gamma_t \hat h$.
//!
//! Choice (ambiguous in our sources): b is drawn once per outer iteration and kept over the K
//! linear-system steps, as for stocBiO's D_F; the paper's analysis also allows a fresh outer
//! batch per step.
//!
//! ## Oracle calls per iteration (checked by `tests/it/oracle_counts.rs`)
//! | oracle | on g | on f | batch |
//! |--------|------|------|-------|
//! | grad_y | T | 1 | B_s / D_F |
//! | grad_x | – | 1 | D_F |
//! | hvp_yy | GD: K; CG: ≤ K (+1 for the warm-start residual once v ≠ 0) | – | B_k / one batch |
//! | cross_xy | 1 | – | D_G |
//!
//! benchopt's AmIGO (GD form), as restated in algorithms.md §8.2, makes the same calls per
//! iteration: T inner SGD steps, K SGD steps on the quadratic, one outer gradient pair and one
//! cross product.
//!
//! ## Parameters
//! | field | paper | default | range |
//! |-------|-------|---------|-------|
//! | `inner_steps` | T | 10 | ≥ 0 |
//! | `inner_lr` | α | 0.1 | > 0 |
//! | `linear` | GD (K, ρ) or CG (K, tol) | `{ kind = "gd", steps = 10, step = 0.1 }` | |
//! | `outer_lr` | γ | `constant 0.1` | schedule |
//! | `batch_size` | — | 64 | ≥ 1 |
//! | `sampling` | — | `shuffled` | `shuffled`, `with_replacement`, `contiguous` |
//!
//! Defaults: the reference benchmark's (algorithms.md §9.9: constant steps 0.1, 10 inner steps,
//! batch 64); K = 10 linear-system steps with the inner step.
//!
//! ## Example
//! ```
//! use bilevel::prelude::*;
//! let problem = bilevel::problems::quadratic::tiny();
//! let solver = AmigoConfig { batch_size: 1, ..Default::default() }.build().unwrap();
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
use crate::linsolve::{CgParams, GdParams};

/// AmIGO's warm-started linear solver.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AmigoLinearSystem {
    /// AmIGO-GD: K SGD steps on ½ vᵀAv − bᵀv.
    Gd(GdParams),
    /// AmIGO-CG: K CG iterations on one minibatch.
    Cg(CgParams),
}

/// Configuration of AmIGO.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AmigoConfig {
    /// T: inner SGD steps per outer iteration.
    pub inner_steps: usize,
    /// α: inner step size.
    pub inner_lr: f64,
    /// The warm-started linear solver.
    pub linear: AmigoLinearSystem,
    /// γ_t: outer step size.
    pub outer_lr: Schedule,
    /// Size of every minibatch.
    pub batch_size: usize,
    /// How minibatches are drawn.
    pub sampling: SamplingMode,
}

impl Default for AmigoConfig {
    fn default() -> Self {
        Self {
            inner_steps: 10,
            inner_lr: 0.1,
            linear: AmigoLinearSystem::Gd(GdParams {
                steps: 10,
                step: 0.1,
                rel_tol: 0.0,
            }),
            outer_lr: Schedule::constant(0.1),
            batch_size: 64,
            sampling: SamplingMode::Shuffled,
        }
    }
}

/// AmIGO: a double loop over the stochastic implicit estimator with warm-started v.
pub type Amigo = DoubleLoop<Implicit>;
/// State of [`Amigo`].
pub type AmigoState = DoubleLoopState<ImplicitState>;

impl AmigoConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        check_positive("inner_lr", self.inner_lr)?;
        match &self.linear {
            AmigoLinearSystem::Gd(p) => p.validate("linear")?,
            AmigoLinearSystem::Cg(p) => p.validate("linear")?,
        }
        self.outer_lr.validate("outer_lr")?;
        check_at_least("batch_size", self.batch_size, 1)
    }

    /// The only constructor of [`Amigo`].
    pub fn build(self) -> Result<Amigo> {
        self.validate()?;
        Ok(DoubleLoop {
            name: "amigo",
            hypergrad: Implicit {
                inner_steps: self.inner_steps,
                inner_lr: self.inner_lr,
                linear: match self.linear {
                    AmigoLinearSystem::Gd(p) => LinearSystem::Gd(p),
                    AmigoLinearSystem::Cg(p) => LinearSystem::Cg(p),
                },
                warm_start_v: true,
                batch_size: Some(self.batch_size),
                sampling: self.sampling,
            },
            outer_lr: self.outer_lr,
            outer_optimizer: OuterOptimizer::Sgd,
        })
    }
}
