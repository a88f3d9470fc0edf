//! # ITD — iterative differentiation (reverse mode through the unrolled inner loop)
//!
//! L. Franceschi, M. Donini, P. Frasconi, M. Pontil. *Forward and reverse gradient-based
//! hyperparameter optimization.* ICML 2017 (arXiv:1703.01785); hypertorch's `reverse` (R. Grazzi,
//! L. Franceschi, M. Pontil, S. Salzo, ICML 2020, arXiv:2006.16218). algorithms.md §8.3
//! ("reverse" in the MRBO/VRBO comparisons).
//!
//! ## Update (one outer iteration t)
//! 1. Forward: T inner GD steps $y_{s+1} = \Psi(x_t, y_s) = y_s - \alpha \nabla_y g(x_t, y_s)$
//!    from $y_0$ (the previous $y_T$ with `warm_start`, else the initial y), storing
//!    $y_0, \dots, y_T$ (`inner::descend_recording`).
//! 2. Reverse sweep (`hypergrad::reverse_sweep`): $a_T = \nabla_y f(x_t, y_T)$; for
//!    s = T−1 down to 0: $\hat h \mathrel{+}= -\alpha \nabla^2_{xy} g(x_t, y_s)\thinspace a_{s+1}$,
//!    $a_s = a_{s+1} - \alpha \nabla^2_{yy} g(x_t, y_s)\thinspace a_{s+1}$, from
//!    $\hat h = \nabla_x f(x_t, y_T)$.
//! 3. $x_{t+1} = x_t - \gamma_t \hat h$.
//!
//! ĥ is the exact gradient of x ↦ f(x, y_T(x)) with y₀ held constant; with enough steps it
//! matches the closed-form ∇F to relative error ≤ 1e-6 (`tests/it/baseline_estimators.rs`).
//! With `batch_size` set, every forward step uses a fresh minibatch and the reverse sweep
//! replays it.
//!
//! ## Oracle calls per iteration (checked by `tests/it/oracle_counts.rs`)
//! | oracle | on g | on f | batch |
//! |--------|------|------|-------|
//! | grad_y | T | 1 | full (or B_s / D_F) |
//! | grad_x | – | 1 | full (or D_F) |
//! | hvp_yy | T | – | full (or the replayed B_s) |
//! | cross_xy | T | – | full (or the replayed B_s) |
//!
//! Memory: T + 1 stored inner iterates.
//!
//! ## Parameters
//! | field | paper | default | range |
//! |-------|-------|---------|-------|
//! | `inner_steps` | T | 10 | ≥ 1 |
//! | `inner_lr` | α | 0.1 | > 0 (< 2/L_g) |
//! | `warm_start` | — | true | |
//! | `outer_lr` | γ | `constant 0.1` | schedule |
//! | `outer_optimizer` | — | `{ kind = "sgd" }` | `sgd`, `adam { beta1, beta2, eps }` |
//! | `batch_size` | — | none (full batch) | ≥ 1 |
//! | `sampling` | — | `shuffled` | `shuffled`, `with_replacement`, `contiguous` |
//!
//! ## Example
//! ```
//! use bilevel::prelude::*;
//! let problem = bilevel::problems::quadratic::tiny();
//! let solver = ItdConfig {
//!     inner_steps: 100,
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
//! assert!(truth.hypergradient.norm() < 1e-3);
//! ```
//!
#![doc = include_str!("../../katex-header.html")] // KaTeX: renders the formulas above

use serde::{Deserialize, Serialize};

use super::double_loop::{DoubleLoop, DoubleLoopState, OuterOptimizer};
use crate::core::{Result, SamplingMode, Schedule};
use crate::hypergrad::{Reverse, ReverseState};

/// Configuration of ITD.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ItdConfig {
    /// T: unrolled inner steps per outer iteration.
    pub inner_steps: usize,
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
    /// SGD (default) or Adam on the hypergradient.
    pub outer_optimizer: OuterOptimizer,
}

impl Default for ItdConfig {
    fn default() -> Self {
        Self {
            inner_steps: 10,
            inner_lr: 0.1,
            warm_start: true,
            outer_lr: Schedule::constant(0.1),
            outer_optimizer: OuterOptimizer::Sgd,
            batch_size: None,
            sampling: SamplingMode::Shuffled,
        }
    }
}

/// ITD: a double loop over the reverse-mode unrolled estimator.
pub type Itd = DoubleLoop<Reverse>;
/// State of [`Itd`].
pub type ItdState = DoubleLoopState<ReverseState>;

impl ItdConfig {
    fn estimator(&self) -> Reverse {
        Reverse {
            inner_steps: self.inner_steps,
            inner_lr: self.inner_lr,
            backprop_steps: None,
            warm_start: self.warm_start,
            batch_size: self.batch_size,
            sampling: self.sampling,
        }
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        self.estimator().validate()?;
        self.outer_lr.validate("outer_lr")?;
        self.outer_optimizer.validate("outer_optimizer")
    }

    /// The only constructor of [`Itd`].
    pub fn build(self) -> Result<Itd> {
        self.validate()?;
        Ok(DoubleLoop {
            name: "itd",
            hypergrad: self.estimator(),
            outer_lr: self.outer_lr,
            outer_optimizer: self.outer_optimizer,
        })
    }
}
