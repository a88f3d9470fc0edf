//! # SubBiO — subspace-based bilevel optimization
//!
//! Y. Yang, B. Gao, Y. Yuan (author order as in algorithms.md §3). *LancBiO: dynamic
//! Lanczos-aided bilevel optimization via Krylov subspace.* ICLR 2025 (arXiv:2404.03331): SubBiO
//! is the paper's simpler companion method. algorithms.md §3.3.
//!
//! Each outer iteration takes v as the exact minimiser of the quadratic model
//! ½ vᵀA v − bᵀv (A = ∇²ᵧᵧg, b = ∇ᵧf) over the two-dimensional subspace span{b, (I − ηA)v_prev}.
//! That subspace contains the SOBA/FSLA step v_prev − η(A v_prev − b) = (I − ηA)v_prev + ηb, so
//! the model value of SubBiO's v is never worse than that step's from the same v_prev (tested).
//!
//! ## Update (one outer iteration; from the official SubBiO solvers, algorithms.md §3.3)
//! 1. Inner GD, warm-started: T steps of $y \leftarrow y - \theta \nabla_y g(x, y)$.
//! 2. $b = \nabla_y f(x, y)$, $w_1 = b$, $w_2 = v - \eta \nabla^2_{yy} g(x, y)\thinspace v$ (Hessian at
//!    (x, y): the official synthetic code's `g_hessian_y(x, v, …)` passes v as y, a bug not
//!    reproduced).
//! 3. Orthonormalise by Gram–Schmidt (applied twice, "twice is enough"): $e_1 = b/\lVert b\rVert$,
//!    $w_2^\perp = w_2 - (e_1^\top w_2)\thinspace e_1$, $e_2 = w_2^\perp / \lVert w_2^\perp\rVert$ (the
//!    hyper-cleaning code projects with the unnormalised b, a quirk not reproduced).
//! 4. $M = W^\top A W$ (2 HVPs, 2 × 2 SPD), $s = M^{-1} W^\top b$, $v = W s$ with W = [e₁, e₂].
//! 5. $x \leftarrow x - \lambda\big(\nabla_x f(x, y) - \nabla^2_{xy} g(x, y)\thinspace v\big)$.
//!
//! Guards: when ‖w₂⊥‖ ≤ 10⁻¹⁰‖w₂‖ (b and w₂ parallel to working precision), or when the 2 × 2
//! system is not numerically positive definite, the solve falls back to the 1-D minimiser along
//! b, v = (e₁ᵀb / e₁ᵀAe₁) e₁; if even e₁ᵀAe₁ ≤ 0 (possible with a rank-deficient minibatch
//! Hessian) v is kept. When b = 0 the minimiser is v = 0 and no HVP is made.
//!
//! ## Oracle calls per iteration (checked by `tests/it/oracle_counts.rs`)
//! | oracle | on g | on f | batch |
//! |--------|------|------|-------|
//! | grad_y | T | 1 (fused with grad_x) | inner / outer |
//! | grad_x | – | 1 | outer |
//! | hvp_yy | 3 (2 when ‖w₂⊥‖ ≈ 0, e.g. the first step from v = 0; 0 when b = 0) | – | hessian |
//! | cross_xy | 1 | – | cross |
//!
//! Full batch by default; with `batch_size` each role draws a minibatch (the iteration's three
//! HVPs share one Hessian batch, so A is one operator).
//!
//! ## Parameters
//! | field | paper / code | default | range |
//! |-------|-------|---------|-------|
//! | `inner_steps` | T | 5 | ≥ 0 |
//! | `inner_lr` | θ | `constant 0.1` | schedule |
//! | `v_lr` | η (in (I − ηA)v) | 0.05 | > 0 |
//! | `outer_lr` | λ | `constant 1.0` | schedule |
//! | `batch_size` | — | none (full batch) | ≥ 1 |
//! | `sampling` | — | `shuffled` | `shuffled`, `with_replacement`, `contiguous` |
//!
//! Defaults (algorithms.md §3.6, §8.7): T = 5, θ = 0.1 and η = 0.05 of the hyper-cleaning code
//! (the synthetic code sets η = θ), λ = 1 of the synthetic experiment (λ is problem-dependent).
//!
//! ## Example
//! ```
//! use bilevel::prelude::*;
//! let problem = bilevel::problems::quadratic::tiny();
//! let solver = SubbioConfig {
//!     inner_lr: Schedule::constant(0.5),
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

use crate::core::OracleSamplers;
use crate::core::error::{Error, check_positive};
use crate::core::linalg::{Scratch, rng_from_seed, serde_vector};
use crate::core::{
    Batch, Diagnostics, Problem, Result, SamplingMode, Schedule, Solver, Vector, VectorExt,
};
use crate::inner::descend;

/// The second direction counts as parallel to b when its component orthogonal to b is at most
/// this fraction of its norm: the normalised e₂ would then carry rounding noise only.
pub const SUBSPACE_TOL: f64 = 1e-10;

/// The 2 × 2 model M is treated as singular when det M ≤ this fraction of M₁₁M₂₂ (for an
/// orthonormal W this bounds the condition number of M by about 1/SUBSPACE_COND).
pub const SUBSPACE_COND: f64 = 1e-12;

/// Configuration of SubBiO.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SubbioConfig {
    /// T: inner GD steps per outer iteration.
    pub inner_steps: usize,
    /// θ: inner step size.
    pub inner_lr: Schedule,
    /// η: the step defining the second direction (I − ηA)v.
    pub v_lr: f64,
    /// λ: outer step size.
    pub outer_lr: Schedule,
    /// Minibatch size of every oracle, or `None` for full-batch oracles.
    pub batch_size: Option<usize>,
    /// How minibatches are drawn.
    pub sampling: SamplingMode,
}

impl Default for SubbioConfig {
    fn default() -> Self {
        Self {
            inner_steps: 5,
            inner_lr: Schedule::constant(0.1),
            v_lr: 0.05,
            outer_lr: Schedule::constant(1.0),
            batch_size: None,
            sampling: SamplingMode::Shuffled,
        }
    }
}

impl SubbioConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        self.inner_lr.validate("inner_lr")?;
        check_positive("v_lr", self.v_lr)?;
        self.outer_lr.validate("outer_lr")?;
        if self.batch_size == Some(0) {
            return Err(Error::config("batch_size", "must be >= 1"));
        }
        Ok(())
    }
    /// The only constructor of [`Subbio`].
    pub fn build(self) -> Result<Subbio> {
        self.validate()?;
        Ok(Subbio { config: self })
    }
}

/// SubBiO (validated configuration).
#[derive(Clone, Debug)]
pub struct Subbio {
    config: SubbioConfig,
}

/// State of [`Subbio`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SubbioState {
    /// Outer iterate x.
    #[serde(with = "serde_vector")]
    pub x: Vector,
    /// Inner iterate y (warm start).
    #[serde(with = "serde_vector")]
    pub y: Vector,
    /// Linear-system iterate v ≈ [∇²ᵧᵧg]⁻¹∇ᵧf.
    #[serde(with = "serde_vector")]
    pub v: Vector,
    /// Iterations done.
    pub t: u64,
    samplers: Option<OracleSamplers>,
    #[serde(skip)]
    scratch: Scratch,
}

impl Solver for Subbio {
    type State = SubbioState;

    fn name(&self) -> &'static str {
        "subbio"
    }

    /// Minibatch sampler seeds, in order from `rng_from_seed(seed, 0)`: inner, outer, Hessian,
    /// cross.
    fn init(&self, problem: &Problem, x: Vector, y: Vector, seed: u64) -> Result<SubbioState> {
        let mut rng = rng_from_seed(seed, 0);
        let samplers = OracleSamplers::for_problem(
            problem,
            self.config.batch_size,
            self.config.sampling,
            &mut rng,
        )?;
        Ok(SubbioState {
            v: Vector::zeros(y.nrows()),
            x,
            y,
            t: 0,
            samplers,
            scratch: Scratch::default(),
        })
    }

    fn step(&self, problem: &Problem, s: &mut SubbioState) -> Result<Diagnostics> {
        let (f, g) = (problem.f(), problem.g());
        let (dx, dy) = problem.dims();
        let c = &self.config;
        let [grad_y, b, e1, e2, a_e1, a_e2, f_grad_x, cross] =
            s.scratch.vectors([dy, dy, dy, dy, dy, dy, dx, dx]);
        let mut diagnostics = Diagnostics::new();

        // 1. T warm-started GD steps on the inner problem.
        let inner_sampler = s.samplers.as_mut().map(|sm| &mut sm.inner);
        descend(
            g,
            &s.x,
            &mut s.y,
            c.inner_steps,
            c.inner_lr.at(s.t),
            inner_sampler,
            grad_y,
        );
        let (outer_batch, hessian_batch, cross_batch) = match s.samplers.as_mut() {
            Some(sm) => (
                Batch::Indices(sm.outer.draw()),
                Batch::Indices(sm.hessian.draw()),
                Batch::Indices(sm.cross.draw()),
            ),
            None => (Batch::Full, Batch::Full, Batch::Full),
        };

        // 2. b = ∇ᵧf(x, y) (with ∇ₓf for step 5); w₁ = b; w₂ = (I − ηA) v_prev.
        f.grad_xy(&s.x, &s.y, outer_batch, f_grad_x, b);
        let b_norm = b.norm();
        if b_norm == 0.0 || b_norm.is_nan() {
            // b = 0: the model ½vᵀAv is minimised by v = 0.
            s.v.set_zero();
            diagnostics.set("subspace_dim", 0.0);
        } else {
            let w2 = e2;
            g.hvp_yy(&s.x, &s.y, &s.v, hessian_batch, a_e2);
            w2.assign(&s.v);
            w2.axpy(-c.v_lr, a_e2);

            // 3. Gram–Schmidt: e₁ = b/‖b‖, e₂ = w₂⊥/‖w₂⊥‖ (two passes).
            e1.assign(b);
            e1.scale(1.0 / b_norm);
            let w2_norm = w2.norm();
            for _ in 0..2 {
                let proj = e1.dot(w2);
                w2.axpy(-proj, e1);
            }
            let perp_norm = w2.norm();
            let two_d = perp_norm.is_finite() && perp_norm > SUBSPACE_TOL * w2_norm;

            // 4. M = WᵀAW, s = M⁻¹Wᵀb, v = Ws.
            g.hvp_yy(&s.x, &s.y, e1, hessian_batch, a_e1);
            let m11 = e1.dot(a_e1);
            let rhs1 = e1.dot(b);
            let mut solved = false;
            if two_d {
                let e2 = w2;
                e2.scale(1.0 / perp_norm);
                g.hvp_yy(&s.x, &s.y, e2, hessian_batch, a_e2);
                let m22 = e2.dot(a_e2);
                // Symmetrise the off-diagonal (A is symmetric; rounding is not).
                let m12 = 0.5 * (e1.dot(a_e2) + e2.dot(a_e1));
                let rhs2 = e2.dot(b);
                let det = m11 * m22 - m12 * m12;
                if m11 > 0.0 && m22 > 0.0 && det > SUBSPACE_COND * m11 * m22 {
                    let s1 = (m22 * rhs1 - m12 * rhs2) / det;
                    let s2 = (m11 * rhs2 - m12 * rhs1) / det;
                    s.v.assign(e1);
                    s.v.scale(s1);
                    s.v.axpy(s2, e2);
                    solved = true;
                    diagnostics.set("subspace_dim", 2.0);
                }
            }
            if !solved {
                if m11 > 0.0 {
                    // 1-D fallback: the minimiser along b.
                    s.v.assign(e1);
                    s.v.scale(rhs1 / m11);
                    diagnostics.set("subspace_dim", 1.0);
                } else {
                    diagnostics.set("subspace_dim", 0.0);
                }
            }
        }

        // 5. x ← x − λ (∇ₓf − ∇²ₓᵧg v).
        g.cross_xy(&s.x, &s.y, &s.v, cross_batch, cross);
        f_grad_x.axpy(-1.0, cross);
        s.x.axpy(-c.outer_lr.at(s.t), f_grad_x);
        s.t += 1;
        Ok(diagnostics)
    }

    fn iterate<'s>(&self, s: &'s SubbioState) -> (&'s Vector, &'s Vector) {
        (&s.x, &s.y)
    }

    fn adjoint<'s>(&self, s: &'s SubbioState) -> Option<&'s Vector> {
        Some(&s.v)
    }

    fn iteration(&self, s: &SubbioState) -> u64 {
        s.t
    }
}
