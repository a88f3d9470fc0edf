//! # ESJ (PZOBO) — bilevel optimisation with an evolution-strategies Jacobian
//!
//! D. Sow, K. Ji, Y. Liang. *ES-Based Jacobian Enables Faster Bilevel Optimization* (arXiv v1),
//! published as *On the Convergence Theory for Hessian-Free Bilevel Algorithms*, NeurIPS 2022
//! (arXiv:2110.07004), where the method is called **PZOBO** (Partial Zeroth-Order-like Bilevel
//! Optimizer). algorithms.md §4.1–4.3, §4.5.
//!
//! **Alias:** `kind = "pzobo"` is accepted everywhere `kind = "esj"` is: the same
//! [`EsjConfig`], the same solver; traces and checkpoints carry the canonical name `esj`.
//!
//! Hessian-free: only first-order oracles. The response Jacobian dy_T/dx of the T-step inner GD
//! is estimated by differencing inner trajectories run from the same start at perturbed outer
//! points (see [`crate::hypergrad::EsJacobian`]); Ĵ is never materialised.
//!
//! ## Update (one outer iteration k; algorithms.md §4.3, the lines of `hgvesj` / benchopt)
//! 1. $y_0 = y_{\mathrm{warm}}$ (the previous unperturbed output; the initial y₀ when
//!    `warm_start = false`) and $y_T = \mathrm{GD}_T(x_k; y_0)$, T steps
//!    $y \leftarrow y - \alpha \nabla_y g(x_k, y)$.
//! 2. Draw $u_1, \dots, u_Q \sim \mathcal N(0, I_p)$ (or on the unit sphere, `direction`).
//! 3. For each j: $y_T^j = \mathrm{GD}_T(x_k + \mu u_j; y_0)$ (same start) and
//!    $\delta_j = (y_T^j - y_T)/\mu$.
//! 4. $\hat h = \nabla_x f(x_k, y_T) + \frac{1}{Q} \sum_j \langle \delta_j, \nabla_y f(x_k, y_T)
//!    \rangle\thinspace u_j$ (= ∇ₓf + Ĵᵀ∇ᵧf with Ĵ = (1/Q) Σⱼ δⱼuⱼᵀ).
//! 5. $x_{k+1} = x_k - \beta_k \hat h$ (or an Adam step on ĥ, `outer_optimizer`), and
//!    $y_{\mathrm{warm}} = y_T$.
//!
//! Bias: for Gaussian u, E\[Ĵ\] = E[y_T(x + μu) uᵀ]/μ is the Jacobian of the Gaussian-smoothed
//! inner map y_T^μ(x) = E_u[y_T(x + μu)] (Stein's identity), so ĥ is unbiased for
//! ∇ₓf(x, y_T) + (∂y_T^μ/∂x)ᵀ∇ᵧf(x, y_T): a bias O(μ) in the smoothing plus the truncation of
//! y_T and J_T = ∂y_T/∂x at T steps. When y_T(x) is affine in x (quadratic g with
//! x-independent ∇²ᵧᵧg) y_T^μ = y_T, so E\[Ĵ\] = J_T for every μ, and J_T → dy*/dx as T grows
//! (both tested on the benchmark quadratic).
//!
//! ## Oracle calls per iteration (checked by `tests/it/oracle_counts.rs`)
//! | oracle | on g | on f | batch |
//! |--------|------|------|-------|
//! | grad_y | (Q + 1)·T | 1 | full |
//! | grad_x | – | 1 | full |
//! | hvp_yy, cross_xy | 0 | – | |
//!
//! The Q perturbed runs are independent (benchopt vmaps them); here they run one after the
//! other, reusing two y-sized buffers (memory: 3 copies of y, not Q + 1).
//!
//! ## Parameters
//! Defaults are benchopt's PZOBO (algorithms.md §4.5): T = 10, μ = 0.1, Q = 10, GD with warm
//! start, SGD with constant step 0.1. The official scripts use Q = 1 (and μ = 0.01 to 0.1, Adam
//! outer steps); set `directions = 1` to reproduce them.
//!
//! | field | paper | default | range |
//! |-------|-------|---------|-------|
//! | `inner_steps` | T | 10 | ≥ 1 |
//! | `inner_lr` | α | 0.1 | > 0 (≤ 1/L_g) |
//! | `directions` | Q | 10 | ≥ 1 |
//! | `smoothing` | μ | 0.1 | > 0 |
//! | `direction` | law of u | `{ kind = "gaussian" }` | `gaussian`, `unit_sphere { rescale }` |
//! | `warm_start` | — | true | |
//! | `outer_lr` | β | `constant 0.1` | schedule |
//! | `outer_optimizer` | — | `{ kind = "sgd" }` | `sgd`, `adam { beta1, beta2, eps }` |
//!
//! ## Example
//! ```
//! use bilevel::prelude::*;
//! let problem = bilevel::problems::quadratic::tiny();
//! let solver = EsjConfig {
//!     inner_steps: 20,
//!     inner_lr: 0.5,
//!     directions: 20,
//!     outer_lr: Schedule::inv_power(0.3, 0.5),
//!     ..Default::default()
//! }
//! .build()
//! .unwrap();
//! let (x0, y0) = problem.start();
//! let reference = problem.reference().unwrap();
//! let start = reference.evaluate(&x0).unwrap().hypergradient.norm();
//! let mut state = solver.init(&problem, x0, y0, 0).unwrap();
//! for _ in 0..300 {
//!     solver.step(&problem, &mut state).unwrap();
//! }
//! let end = reference.evaluate(&state.x).unwrap().hypergradient.norm();
//! assert!(end < 0.1 * start);
//! ```
//!
#![doc = include_str!("../../katex-header.html")] // KaTeX: renders the formulas above

use serde::{Deserialize, Serialize};

use super::double_loop::{DoubleLoop, DoubleLoopState, OuterOptimizer};
use crate::core::{Result, SamplingMode, Schedule};
use crate::hypergrad::{Direction, EsJacobian, EsJacobianState};

/// Configuration of ESJ (alias PZOBO).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EsjConfig {
    /// T: inner GD steps per trajectory.
    pub inner_steps: usize,
    /// α: inner step size.
    pub inner_lr: f64,
    /// Q: ES directions per outer iteration.
    pub directions: usize,
    /// μ: smoothing radius.
    pub smoothing: f64,
    /// The law of the directions.
    pub direction: Direction,
    /// Warm-start each outer iteration from the previous unperturbed y_T.
    pub warm_start: bool,
    /// β_k: outer step size.
    pub outer_lr: Schedule,
    /// SGD or Adam on ĥ.
    pub outer_optimizer: OuterOptimizer,
}

impl Default for EsjConfig {
    fn default() -> Self {
        Self {
            inner_steps: 10,
            inner_lr: 0.1,
            directions: 10,
            smoothing: 0.1,
            direction: Direction::Gaussian,
            warm_start: true,
            outer_lr: Schedule::constant(0.1),
            outer_optimizer: OuterOptimizer::Sgd,
        }
    }
}

/// ESJ: a double loop over the ES-Jacobian estimator with full-batch oracles.
pub type Esj = DoubleLoop<EsJacobian>;
/// State of [`Esj`].
pub type EsjState = DoubleLoopState<EsJacobianState>;

impl EsjConfig {
    fn estimator(&self) -> EsJacobian {
        EsJacobian {
            inner_steps: self.inner_steps,
            inner_lr: self.inner_lr,
            directions: self.directions,
            smoothing: self.smoothing,
            direction: self.direction,
            warm_start: self.warm_start,
            batch_size: None,
            sampling: SamplingMode::Shuffled,
        }
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        self.estimator().validate()?;
        self.outer_lr.validate("outer_lr")?;
        self.outer_optimizer.validate("outer_optimizer")
    }

    /// The only constructor of [`Esj`].
    pub fn build(self) -> Result<Esj> {
        self.validate()?;
        Ok(DoubleLoop {
            name: "esj",
            hypergrad: self.estimator(),
            outer_lr: self.outer_lr,
            outer_optimizer: self.outer_optimizer,
        })
    }
}
