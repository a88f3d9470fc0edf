//! # AID-Neumann (AID-FP / AID-NS) — implicit differentiation with a Neumann / fixed-point solve
//!
//! R. Grazzi, L. Franceschi, M. Pontil, S. Salzo. *On the iteration complexity of hypergradient
//! computation.* ICML 2020 (arXiv:2006.16218), hypertorch's `fixed_point` and `neumann`; the
//! Neumann form after J. Lorraine, P. Vicol, D. Duvenaud. *Optimizing millions of
//! hyperparameters by implicit differentiation.* AISTATS 2020 (arXiv:1911.02590).
//! algorithms.md §8.2.
//!
//! ## Update (one outer iteration t; deterministic, full-batch oracles)
//! 1. Inner GD, warm-started from y_{t−1}: T steps of the map
//!    $\Psi(x, y) = y - \alpha \nabla_y g(x, y)$.
//! 2. The adjoint of the map: with $A = \nabla^2_{yy} g$, $b = \nabla_y f$ at $(x_t, y)$,
//!    - `form = "series"` (AID-NS): $w = \sum_{i=0}^{K} (I - \alpha A)^i b$ (K products);
//!    - `form = "fixed_point"` (AID-FP): $w_0 = 0$, $w_{i+1} = (I - \alpha A) w_i + b$,
//!      K steps (K products), i.e. the series with K − 1 products: AID-FP with K + 1 steps
//!      equals AID-NS with K.
//! 3. $\hat h = \nabla_x f + (\partial\Psi/\partial x)^\top w = \nabla_x f - \alpha\thinspace \nabla^2_{xy} g\thinspace w$,
//!    and $x_{t+1} = x_t - \gamma_t \hat h$.
//!
//! **Normalisation (+v convention).** hypertorch's w is the adjoint of the *map* Ψ, so
//! w ≈ A⁻¹b / α and the cross term carries the factor α. This library tracks
//! v = α w ≈ A⁻¹ b (the same v as every other solver, so `linsys_residual` is comparable) and
//! writes ĥ = ∇ₓf − ∇²ₓᵧg v: v is the Neumann series η Σ (I − ηA)^i b with η = α (series),
//! or K steps of v ← v − η(Av − b) from 0 (fixed point). The series step η defaults to the
//! inner step α (`neumann_step = None`), as in hypertorch; setting it decouples the two.
//!
//! With enough inner steps and terms ĥ matches the closed-form ∇F to relative error ≤ 1e-6
//! (`tests/it/baseline_estimators.rs`).
//!
//! ## Oracle calls per iteration (checked by `tests/it/oracle_counts.rs`)
//! | oracle | on g | on f | batch |
//! |--------|------|------|-------|
//! | grad_y | T | 1 | full |
//! | grad_x | – | 1 | full |
//! | hvp_yy | K (fixed point: fewer if `rel_tol` stops early) | – | full |
//! | cross_xy | 1 | – | full |
//!
//! ## Parameters
//! | field | paper | default | range |
//! |-------|-------|---------|-------|
//! | `inner_steps` | T | 10 | ≥ 0 |
//! | `inner_lr` | α (step of Ψ) | 0.1 | > 0 (< 2/L_g) |
//! | `terms` | K | 10 | ≥ 0 |
//! | `form` | AID-NS / AID-FP | `series` | `series`, `fixed_point` |
//! | `neumann_step` | η | `None` (= α) | > 0 |
//! | `rel_tol` | early stop of AID-FP, ‖w_{i+1} − w_i‖ ∝ ‖Av − b‖ ≤ rel_tol ‖b‖ | 0 (off) | ≥ 0 |
//! | `outer_lr` | γ | `constant 0.1` | schedule |
//! | `outer_optimizer` | — | `{ kind = "sgd" }` | `sgd`, `adam { beta1, beta2, eps }` |
//!
//! ## Example
//! ```
//! use bilevel::prelude::*;
//! let problem = bilevel::problems::quadratic::tiny();
//! let solver = AidNeumannConfig {
//!     inner_lr: 0.5,
//!     terms: 100,
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
use crate::core::error::{check_non_negative, check_positive};
use crate::core::{Result, SamplingMode, Schedule};
use crate::hypergrad::{Implicit, ImplicitState, LinearSystem};
use crate::linsolve::{GdParams, NeumannParams};

/// Which Neumann form approximates the adjoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NeumannForm {
    /// AID-NS: the summed series with K products (K + 1 terms).
    #[default]
    Series,
    /// AID-FP: K fixed-point steps from 0 (the series with K terms).
    FixedPoint,
}

/// Configuration of AID-Neumann.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AidNeumannConfig {
    /// T: inner GD steps per outer iteration.
    pub inner_steps: usize,
    /// α: inner step size (the map Ψ).
    pub inner_lr: f64,
    /// K: Hessian-vector products of the adjoint solve.
    pub terms: usize,
    /// Series (AID-NS) or fixed point (AID-FP).
    pub form: NeumannForm,
    /// η: the series step; `None` uses α.
    pub neumann_step: Option<f64>,
    /// Early stop of the fixed-point form on the relative residual (0: off).
    pub rel_tol: f64,
    /// γ_t: outer step size.
    pub outer_lr: Schedule,
    /// SGD (default) or Adam on the hypergradient.
    pub outer_optimizer: OuterOptimizer,
}

impl Default for AidNeumannConfig {
    fn default() -> Self {
        Self {
            inner_steps: 10,
            inner_lr: 0.1,
            terms: 10,
            form: NeumannForm::Series,
            neumann_step: None,
            rel_tol: 0.0,
            outer_lr: Schedule::constant(0.1),
            outer_optimizer: OuterOptimizer::Sgd,
        }
    }
}

/// AID-Neumann: a double loop over the implicit estimator with a Neumann / fixed-point solve.
pub type AidNeumann = DoubleLoop<Implicit>;
/// State of [`AidNeumann`].
pub type AidNeumannState = DoubleLoopState<ImplicitState>;

impl AidNeumannConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        check_positive("inner_lr", self.inner_lr)?;
        if let Some(eta) = self.neumann_step {
            check_positive("neumann_step", eta)?;
        }
        check_non_negative("rel_tol", self.rel_tol)?;
        if self.rel_tol > 0.0 && self.form == NeumannForm::Series {
            return Err(crate::core::Error::config(
                "rel_tol",
                "early stopping applies to form = \"fixed_point\" only",
            ));
        }
        self.outer_lr.validate("outer_lr")?;
        self.outer_optimizer.validate("outer_optimizer")
    }

    /// The only constructor of [`AidNeumann`].
    pub fn build(self) -> Result<AidNeumann> {
        self.validate()?;
        let step = self.neumann_step.unwrap_or(self.inner_lr);
        let linear = match self.form {
            // v = η Σ_{i=0..K} (I − ηA)^i b  (= α w of AID-NS)
            NeumannForm::Series => LinearSystem::Neumann(NeumannParams {
                terms: self.terms,
                step,
            }),
            // v ← v − η(Av − b), K times from 0  (= α w of AID-FP)
            NeumannForm::FixedPoint => LinearSystem::Gd(GdParams {
                steps: self.terms,
                step,
                rel_tol: self.rel_tol,
            }),
        };
        Ok(DoubleLoop {
            name: "aid_neumann",
            hypergrad: Implicit {
                inner_steps: self.inner_steps,
                inner_lr: self.inner_lr,
                linear,
                warm_start_v: false,
                batch_size: None,
                sampling: SamplingMode::Shuffled,
            },
            outer_lr: self.outer_lr,
            outer_optimizer: self.outer_optimizer,
        })
    }
}
