//! # Truncated ITD — truncated back-propagation through the inner loop
//!
//! A. Shaban, C.-A. Cheng, N. Hatch, B. Boots. *Truncated back-propagation for bilevel
//! optimization.* AISTATS 2019 (arXiv:1810.10667). algorithms.md §8.3.
//!
//! ## Update (one outer iteration t)
//! 1. Forward: T inner GD steps $y_{s+1} = y_s - \alpha \nabla_y g(x_t, y_s)$ from $y_0$ (the
//!    previous $y_T$ with `warm_start`), storing the iterates.
//! 2. Reverse sweep over the **last K** steps only (`hypergrad::reverse_sweep`):
//!    $a_T = \nabla_y f(x_t, y_T)$; for s = T−1 down to T−K:
//!    $\hat h \mathrel{+}= -\alpha \nabla^2_{xy} g(x_t, y_s)\thinspace a_{s+1}$,
//!    $a_s = a_{s+1} - \alpha \nabla^2_{yy} g(x_t, y_s)\thinspace a_{s+1}$, from
//!    $\hat h = \nabla_x f(x_t, y_T)$.
//! 3. $x_{t+1} = x_t - \gamma_t \hat h$.
//!
//! Known bias: near y*, the dropped steps carry $-\alpha \sum_{s<T-K} \nabla^2_{xy}g\thinspace
//! (I - \alpha A)^{T-1-s} \nabla_y f$, i.e. ĥ − ∇F ≈ $\nabla^2_{xy} g\thinspace (I - \alpha A)^K A^{-1}
//! \nabla_y f$: it shrinks geometrically in K, at rate 1 − αμ (tested at two K against the
//! closed form in `tests/it/baseline_estimators.rs`). K = T is ITD.
//!
//! ## Oracle calls per iteration (checked by `tests/it/oracle_counts.rs`)
//! | oracle | on g | on f | batch |
//! |--------|------|------|-------|
//! | grad_y | T | 1 | full (or B_s / D_F) |
//! | grad_x | – | 1 | full (or D_F) |
//! | hvp_yy | K | – | full (or the replayed B_s) |
//! | cross_xy | K | – | full (or the replayed B_s) |
//!
//! Memory: T + 1 stored iterates (only the last K + 1 are read by the sweep).
//!
//! ## Parameters
//! | field | paper | default | range |
//! |-------|-------|---------|-------|
//! | `inner_steps` | T | 10 | ≥ 1 |
//! | `backprop_steps` | K | 5 | 1 ≤ K ≤ T |
//! | `inner_lr` | α | 0.1 | > 0 (< 2/L_g) |
//! | `warm_start` | — | true | |
//! | `outer_lr` | γ | `constant 0.1` | schedule |
//! | `batch_size` | — | none (full batch) | ≥ 1 |
//! | `sampling` | — | `shuffled` | `shuffled`, `with_replacement`, `contiguous` |
//!
//! Defaults T = 10, K = 5 are ours (algorithms.md gives none); Shaban et al. show that a few
//! back-propagated steps suffice on strongly convex inner problems.
//!
//! ## Example
//! ```
//! use bilevel::prelude::*;
//! let problem = bilevel::problems::quadratic::tiny();
//! let solver = ItdTruncatedConfig {
//!     inner_steps: 100,
//!     backprop_steps: 50,
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
//! assert!(truth.hypergradient.norm() < 1e-2);
//! ```
//!
#![doc = include_str!("../../katex-header.html")] // KaTeX: renders the formulas above

use serde::{Deserialize, Serialize};

use super::double_loop::{DoubleLoop, DoubleLoopState, OuterOptimizer};
use crate::core::{Result, SamplingMode, Schedule};
use crate::hypergrad::{Reverse, ReverseState};

/// Configuration of truncated ITD.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ItdTruncatedConfig {
    /// T: unrolled inner steps per outer iteration.
    pub inner_steps: usize,
    /// K: back-propagated (last) steps.
    pub backprop_steps: usize,
    /// α: inner step size.
    pub inner_lr: f64,
    /// Unroll from the previous y_T (true) or from the initial y every time.
    pub warm_start: bool,
    /// γ_t: outer step size.
    pub outer_lr: Schedule,
    /// Minibatch size; absent: full-batch (deterministic) oracles.
    pub batch_size: Option<usize>,
    /// How minibatches are drawn.
    pub sampling: SamplingMode,
}

impl Default for ItdTruncatedConfig {
    fn default() -> Self {
        Self {
            inner_steps: 10,
            backprop_steps: 5,
            inner_lr: 0.1,
            warm_start: true,
            outer_lr: Schedule::constant(0.1),
            batch_size: None,
            sampling: SamplingMode::Shuffled,
        }
    }
}

/// Truncated ITD: a double loop over the reverse-mode estimator truncated to K steps.
pub type ItdTruncated = DoubleLoop<Reverse>;
/// State of [`ItdTruncated`].
pub type ItdTruncatedState = DoubleLoopState<ReverseState>;

impl ItdTruncatedConfig {
    fn estimator(&self) -> Reverse {
        Reverse {
            inner_steps: self.inner_steps,
            inner_lr: self.inner_lr,
            backprop_steps: Some(self.backprop_steps),
            warm_start: self.warm_start,
            batch_size: self.batch_size,
            sampling: self.sampling,
        }
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        self.estimator().validate()?;
        self.outer_lr.validate("outer_lr")
    }

    /// The only constructor of [`ItdTruncated`].
    pub fn build(self) -> Result<ItdTruncated> {
        self.validate()?;
        Ok(DoubleLoop {
            name: "itd_truncated",
            hypergrad: self.estimator(),
            outer_lr: self.outer_lr,
            outer_optimizer: OuterOptimizer::Sgd,
        })
    }
}
