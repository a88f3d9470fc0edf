//! # SRBA — stochastic recursive bilevel algorithm (SARAH on the SOBA directions)
//!
//! M. Dagréou, T. Moreau, S. Vaiter, P. Ablin. *A lower bound and a near-optimal algorithm for
//! bilevel empirical risk minimization.* AISTATS 2024 (arXiv:2302.08766). algorithms.md §9.9
//! (benchmark defaults).
//!
//! ## Update (iteration t, period q)
//! With the SOBA directions (+v convention)
//! $D(y, v, x) = \big(\nabla_y g,\ \nabla^2_{yy} g\thinspace v - \nabla_y f,\ \nabla_x f - \nabla^2_{xy} g\thinspace v\big)$:
//! - every q iterations (t ≡ 0 mod q): the full-batch directions $D_t = D(y_t, v_t, x_t)$;
//! - otherwise the SARAH recursion on one pair of minibatches (ξ on g, ζ on f) evaluated at the
//!   current and the previous point:
//!   $D_t = D_{t-1} + D_{\xi,\zeta}(y_t, v_t, x_t) - D_{\xi,\zeta}(y_{t-1}, v_{t-1}, x_{t-1})$;
//! - then $y_{t+1} = y_t - \rho D_{t,y}$, $v_{t+1} = v_t - \rho D_{t,v}$,
//!   $x_{t+1} = x_t - \gamma D_{t,x}$.
//!
//! The paper's analysis adds a projection of v onto a ball; it is not needed on the problems
//! here and is omitted (benchopt omits it too).
//!
//! ## Oracle calls per iteration (checked by `tests/it/oracle_counts.rs`)
//! | oracle | on g | on f | batch |
//! |--------|------|------|-------|
//! | grad_y | 2 (full pass: 1) | 2 (full pass: 1) | ξ / ζ at two points (full) |
//! | grad_x | – | 2 (full pass: 1) | ζ at two points (full) |
//! | hvp_yy | 2 (full pass: 1) | – | ξ at two points (full) |
//! | cross_xy | 2 (full pass: 1) | – | ξ at two points (full) |
//!
//! benchopt's SRBA makes the same calls per iteration (checked against its source: full-batch
//! directions every period, otherwise the same batch at the current and the previous point).
//!
//! ## Parameters
//! | field | paper | default | range |
//! |-------|-------|---------|-------|
//! | `inner_lr` | ρ | `constant 0.1` | schedule |
//! | `outer_lr` | γ | `constant 0.1` | schedule |
//! | `period` | q | (n_inner + n_outer) / (2 · batch_size), at least 1 | ≥ 1 |
//! | `batch_size` | — | 64 | ≥ 1 |
//! | `sampling` | — | `shuffled` | `shuffled`, `with_replacement`, `contiguous` |
//!
//! Defaults: algorithms.md §9.9 (constant steps 0.1, batch 64, a full pass every
//! (n_in + n_out)/(2 · 64) iterations, i.e. about one epoch of samples between full passes).
//!
//! ## Example
//! ```
//! use bilevel::prelude::*;
//! let problem = bilevel::problems::quadratic::tiny();
//! let solver = SrbaConfig { batch_size: 1, ..Default::default() }.build().unwrap();
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

use crate::core::error::check_at_least;
use crate::core::linalg::{Scratch, rng_from_seed, serde_vector};
use crate::core::{
    Batch, Diagnostics, Fused, MinibatchSampler, Problem, Result, SamplingMode, Schedule, Solver,
    Vector, VectorExt,
};

/// Configuration of SRBA.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SrbaConfig {
    /// ρ: step of y and v.
    pub inner_lr: Schedule,
    /// γ: step of x.
    pub outer_lr: Schedule,
    /// q: iterations between full-batch passes; absent: (n_inner + n_outer) / (2 batch_size).
    pub period: Option<usize>,
    /// Minibatch size of ξ and ζ.
    pub batch_size: usize,
    /// How minibatches are drawn.
    pub sampling: SamplingMode,
}

impl Default for SrbaConfig {
    fn default() -> Self {
        Self {
            inner_lr: Schedule::constant(0.1),
            outer_lr: Schedule::constant(0.1),
            period: None,
            batch_size: 64,
            sampling: SamplingMode::Shuffled,
        }
    }
}

impl SrbaConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        self.inner_lr.validate("inner_lr")?;
        self.outer_lr.validate("outer_lr")?;
        if let Some(q) = self.period {
            check_at_least("period", q, 1)?;
        }
        check_at_least("batch_size", self.batch_size, 1)
    }
    /// The only constructor of [`Srba`].
    pub fn build(self) -> Result<Srba> {
        self.validate()?;
        Ok(Srba { config: self })
    }
}

/// SRBA (validated configuration).
#[derive(Clone, Debug)]
pub struct Srba {
    config: SrbaConfig,
}

/// State of [`Srba`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SrbaState {
    /// Outer iterate.
    #[serde(with = "serde_vector")]
    pub x: Vector,
    /// Inner iterate.
    #[serde(with = "serde_vector")]
    pub y: Vector,
    /// Linear-system iterate v ≈ [∇²ᵧᵧg]⁻¹∇ᵧf.
    #[serde(with = "serde_vector")]
    pub v: Vector,
    /// The previous point (x_{t−1}, y_{t−1}, v_{t−1}).
    #[serde(with = "serde_vector")]
    pub x_prev: Vector,
    /// y_{t−1}.
    #[serde(with = "serde_vector")]
    pub y_prev: Vector,
    /// v_{t−1}.
    #[serde(with = "serde_vector")]
    pub v_prev: Vector,
    /// The recursive directions D_y, D_v, D_x.
    #[serde(with = "serde_vector")]
    pub d_y: Vector,
    /// D_v.
    #[serde(with = "serde_vector")]
    pub d_v: Vector,
    /// D_x.
    #[serde(with = "serde_vector")]
    pub d_x: Vector,
    /// Iteration counter.
    pub t: u64,
    /// q, resolved at `init`.
    pub period: u64,
    inner: MinibatchSampler,
    outer: MinibatchSampler,
    #[serde(skip)]
    batch: Vec<usize>,
    #[serde(skip)]
    scratch: Scratch,
}

/// The SOBA directions at (x, y, v) on (`xi` on g, `zeta` on f) into (d_y, d_v, d_x);
/// `f_grad_y` and `cross` are scratch.
#[allow(clippy::too_many_arguments)]
fn directions(
    problem: &Problem,
    x: &Vector,
    y: &Vector,
    v: &Vector,
    xi: Batch<'_>,
    zeta: Batch<'_>,
    d_y: &mut Vector,
    d_v: &mut Vector,
    d_x: &mut Vector,
    f_grad_y: &mut Vector,
    cross: &mut Vector,
) {
    let (f, g) = (problem.f(), problem.g());
    // D_y = ∇ᵧg ; D_v = ∇²ᵧᵧg v − ∇ᵧf ; D_x = ∇ₓf − ∇²ₓᵧg v (the g terms in one fused call)
    g.fused(
        x,
        y,
        Some(v),
        xi,
        Fused {
            grad_y: Some(d_y),
            hvp_yy: Some(d_v),
            cross_xy: Some(cross),
            ..Fused::default()
        },
    );
    f.grad_xy(x, y, zeta, d_x, f_grad_y);
    d_v.axpy(-1.0, f_grad_y);
    d_x.axpy(-1.0, cross);
}

impl Solver for Srba {
    type State = SrbaState;

    fn name(&self) -> &'static str {
        "srba"
    }

    fn init(&self, problem: &Problem, x: Vector, y: Vector, seed: u64) -> Result<SrbaState> {
        use rand::Rng as _;
        let (n_g, n_f) = (problem.g().n_samples(), problem.f().n_samples());
        let mut rng = rng_from_seed(seed, 0);
        let bs = self.config.batch_size;
        let mode = self.config.sampling;
        let inner = MinibatchSampler::new(n_g, bs, mode, rng.next_u64())?;
        let outer = MinibatchSampler::new(n_f, bs, mode, rng.next_u64())?;
        let period = self
            .config
            .period
            .unwrap_or(((n_g + n_f) / (2 * bs)).max(1)) as u64;
        let (dx, dy) = (x.nrows(), y.nrows());
        Ok(SrbaState {
            v: Vector::zeros(dy),
            x_prev: x.clone(),
            y_prev: y.clone(),
            v_prev: Vector::zeros(dy),
            d_y: Vector::zeros(dy),
            d_v: Vector::zeros(dy),
            d_x: Vector::zeros(dx),
            x,
            y,
            t: 0,
            period,
            inner,
            outer,
            batch: Vec::new(),
            scratch: Scratch::default(),
        })
    }

    fn step(&self, problem: &Problem, s: &mut SrbaState) -> Result<Diagnostics> {
        let (dx, dy) = problem.dims();
        let [n_y, n_v, n_x, o_y, o_v, o_x, f_grad_y, cross] =
            s.scratch.vectors([dy, dy, dx, dy, dy, dx, dy, dx]);
        let rho = self.config.inner_lr.at(s.t);
        let gamma = self.config.outer_lr.at(s.t);
        let full = s.t.is_multiple_of(s.period);
        if full {
            // Full pass (t ≡ 0 mod q): D_t = D(y_t, v_t, x_t) on all samples.
            directions(
                problem,
                &s.x,
                &s.y,
                &s.v,
                Batch::Full,
                Batch::Full,
                &mut s.d_y,
                &mut s.d_v,
                &mut s.d_x,
                f_grad_y,
                cross,
            );
        } else {
            // SARAH step: D_t = D_{t−1} + D_{ξ,ζ}(current) − D_{ξ,ζ}(previous).
            s.inner.draw_into(&mut s.batch);
            let xi = Batch::Indices(&s.batch);
            let zeta = Batch::Indices(s.outer.draw());
            directions(
                problem, &s.x, &s.y, &s.v, xi, zeta, n_y, n_v, n_x, f_grad_y, cross,
            );
            directions(
                problem, &s.x_prev, &s.y_prev, &s.v_prev, xi, zeta, o_y, o_v, o_x, f_grad_y, cross,
            );
            s.d_y.axpy(1.0, n_y);
            s.d_y.axpy(-1.0, o_y);
            s.d_v.axpy(1.0, n_v);
            s.d_v.axpy(-1.0, o_v);
            s.d_x.axpy(1.0, n_x);
            s.d_x.axpy(-1.0, o_x);
        }
        s.x_prev.assign(&s.x);
        s.y_prev.assign(&s.y);
        s.v_prev.assign(&s.v);
        // y ← y − ρ D_y ; v ← v − ρ D_v ; x ← x − γ D_x.
        s.y.axpy(-rho, &s.d_y);
        s.v.axpy(-rho, &s.d_v);
        s.x.axpy(-gamma, &s.d_x);
        s.t += 1;
        Ok(Diagnostics::new().with("full_pass", if full { 1.0 } else { 0.0 }))
    }

    fn iterate<'s>(&self, s: &'s SrbaState) -> (&'s Vector, &'s Vector) {
        (&s.x, &s.y)
    }

    fn adjoint<'s>(&self, s: &'s SrbaState) -> Option<&'s Vector> {
        Some(&s.v)
    }

    fn iteration(&self, s: &SrbaState) -> u64 {
        s.t
    }
}
