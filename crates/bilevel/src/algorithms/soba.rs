//! # SOBA — StOchastic Bilevel Algorithm
//!
//! M. Dagréou, P. Ablin, S. Vaiter, T. Moreau. *A framework for bilevel optimization that enables
//! stochastic and global variance reduction algorithms.* NeurIPS 2022 (arXiv:2201.13409).
//! algorithms.md §8.4.
//!
//! ## Update (paper, Alg. 1, with the SOBA directions of Eq. (5)) — all three directions at
//! (xₜ, yₜ, vₜ), inner batch ξ (on g), outer batch ζ (on f)
//! $$ y_{t+1} = y_t - \rho_t \nabla_y g_\xi, \qquad
//!    v_{t+1} = v_t - \rho_t\thinspace (\nabla^2_{yy} g_\xi\thinspace v_t - \nabla_y f_\zeta), \qquad
//!    x_{t+1} = x_t - \gamma_t\thinspace (\nabla_x f_\zeta - \nabla^2_{xy} g_\xi\thinspace v_t). $$
//!
//! Sign convention: the paper tracks w = −v and adds the cross term; this library tracks
//! v ≈ +[∇²ᵧᵧg]⁻¹∇ᵧf everywhere (algorithms.md §1.2), so the iterates are identical up to v = −w.
//!
//! ## Oracle calls per iteration (checked by `tests/it/oracle_counts.rs`)
//! | oracle | on g | on f | batch |
//! |--------|------|------|-------|
//! | grad_y | 1 | 1 | ξ / ζ |
//! | grad_x | – | 1 | ζ |
//! | hvp_yy | 1 | – | ξ |
//! | cross_xy | 1 | – | ξ |
//!
//! benchopt's SOBA makes the same calls per iteration (one inner and one outer minibatch). The
//! three g oracles run as one [`Objective::fused`](crate::core::Objective::fused) call (one pass
//! over ξ on data-backed problems), counted as the three calls it replaces.
//!
//! ## Parameters
//! | field | paper | default | range |
//! |-------|-------|---------|-------|
//! | `inner_lr` | ρ | `inv_power { c = 0.1, a = 0.5 }` | schedule |
//! | `outer_lr` | γ | `inv_power { c = 0.1, a = 0.5 }` | schedule |
//! | `batch_size` | — | 64 | ≥ 1 |
//! | `sampling` | — | `shuffled` | `shuffled`, `with_replacement`, `contiguous` |
//!
//! ## Example
//! ```
//! use bilevel::prelude::*;
//! let problem = bilevel::problems::quadratic::tiny();
//! let solver = SobaConfig { batch_size: 1, ..Default::default() }.build().unwrap();
//! let (x0, y0) = problem.start();
//! let mut state = solver.init(&problem, x0, y0, 0).unwrap();
//! for _ in 0..100 {
//!     solver.step(&problem, &mut state).unwrap();
//! }
//! assert_eq!(state.t, 100);
//! ```
//!
#![doc = include_str!("../../katex-header.html")] // KaTeX: renders the formulas above

use serde::{Deserialize, Serialize};

use crate::core::linalg::{Scratch, rng_from_seed, serde_vector};
use crate::core::{
    Batch, Diagnostics, Fused, MinibatchSampler, Problem, Result, SamplingMode, Schedule, Solver,
    Vector, VectorExt,
};

/// Configuration of SOBA.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SobaConfig {
    /// ρ_t: step of y and v.
    pub inner_lr: Schedule,
    /// γ_t: step of x.
    pub outer_lr: Schedule,
    /// Minibatch size of ξ and ζ.
    pub batch_size: usize,
    /// How minibatches are drawn.
    pub sampling: SamplingMode,
}

impl Default for SobaConfig {
    fn default() -> Self {
        Self {
            inner_lr: Schedule::inv_power(0.1, 0.5),
            outer_lr: Schedule::inv_power(0.1, 0.5),
            batch_size: 64,
            sampling: SamplingMode::Shuffled,
        }
    }
}

impl SobaConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        self.inner_lr.validate("inner_lr")?;
        self.outer_lr.validate("outer_lr")?;
        crate::core::error::check_at_least("batch_size", self.batch_size, 1)
    }
    /// The only constructor of [`Soba`].
    pub fn build(self) -> Result<Soba> {
        self.validate()?;
        Ok(Soba { config: self })
    }
}

/// SOBA (validated configuration).
#[derive(Clone, Debug)]
pub struct Soba {
    config: SobaConfig,
}

/// State of [`Soba`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SobaState {
    /// Outer iterate.
    #[serde(with = "serde_vector")]
    pub x: Vector,
    /// Inner iterate.
    #[serde(with = "serde_vector")]
    pub y: Vector,
    /// Linear-system iterate v ≈ [∇²ᵧᵧg]⁻¹∇ᵧf.
    #[serde(with = "serde_vector")]
    pub v: Vector,
    /// Iteration counter.
    pub t: u64,
    inner: MinibatchSampler,
    outer: MinibatchSampler,
    #[serde(skip)]
    scratch: Scratch,
}

impl Solver for Soba {
    type State = SobaState;

    fn name(&self) -> &'static str {
        "soba"
    }

    fn init(&self, problem: &Problem, x: Vector, y: Vector, seed: u64) -> Result<SobaState> {
        use rand::Rng as _;
        let mut rng = rng_from_seed(seed, 0);
        let bs = self.config.batch_size;
        let mode = self.config.sampling;
        let inner = MinibatchSampler::new(problem.g().n_samples(), bs, mode, rng.next_u64())?;
        let outer = MinibatchSampler::new(problem.f().n_samples(), bs, mode, rng.next_u64())?;
        Ok(SobaState {
            v: Vector::zeros(y.nrows()),
            x,
            y,
            t: 0,
            inner,
            outer,
            scratch: Scratch::default(),
        })
    }

    fn step(&self, problem: &Problem, s: &mut SobaState) -> Result<Diagnostics> {
        let (f, g) = (problem.f(), problem.g());
        let (dx, dy) = problem.dims();
        let [d_y, d_v, f_grad_y, d_x, cross] = s.scratch.vectors([dy, dy, dy, dx, dx]);
        let rho = self.config.inner_lr.at(s.t);
        let gamma = self.config.outer_lr.at(s.t);
        let xi = Batch::Indices(s.inner.draw());
        let zeta = Batch::Indices(s.outer.draw());

        // All directions at (x_t, y_t, v_t), before any update; the three g oracles share one
        // point and one batch, so they are one fused call (one pass over ξ).
        g.fused(
            &s.x,
            &s.y,
            Some(&s.v),
            xi,
            Fused {
                grad_y: Some(d_y),
                hvp_yy: Some(d_v),
                cross_xy: Some(cross),
                ..Fused::default()
            },
        );
        f.grad_xy(&s.x, &s.y, zeta, d_x, f_grad_y);
        // Eq. (5): D_v = ∇²ᵧᵧg_ξ v − ∇ᵧf_ζ ;  D_x = ∇ₓf_ζ − ∇²ₓᵧg_ξ v.
        d_v.axpy(-1.0, f_grad_y);
        d_x.axpy(-1.0, cross);

        // Alg. 1: y ← y − ρ D_y ; v ← v − ρ D_v ; x ← x − γ D_x.
        s.y.axpy(-rho, d_y);
        s.v.axpy(-rho, d_v);
        s.x.axpy(-gamma, d_x);
        s.t += 1;
        Ok(Diagnostics::new())
    }

    fn iterate<'s>(&self, s: &'s SobaState) -> (&'s Vector, &'s Vector) {
        (&s.x, &s.y)
    }

    fn adjoint<'s>(&self, s: &'s SobaState) -> Option<&'s Vector> {
        Some(&s.v)
    }

    fn iteration(&self, s: &SobaState) -> u64 {
        s.t
    }
}
