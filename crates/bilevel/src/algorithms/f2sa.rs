//! # F2SA — fully first-order stochastic approximation (penalty method)
//!
//! J. Kwon, D. Kwon, S. Wright, R. Nowak. *A fully first-order method for stochastic bilevel
//! optimization.* ICML 2023 (arXiv:2301.10945). algorithms.md §8.5 and §9.9.
//!
//! ## Update (iteration k; algorithms.md §8.5)
//! The penalty (value-function) Lagrangian
//! $\mathcal L_\lambda(x, y) = f(x, y) + \lambda\thinspace \big(g(x, y) - \min_z g(x, z)\big)$ has gradient in x
//! $\nabla_x f(x, y_\lambda) + \lambda\big(\nabla_x g(x, y_\lambda) - \nabla_x g(x, z^*)\big)$ at
//! $y_\lambda = \arg\min_y f + \lambda g$, $z^* = \arg\min_z g$. F2SA tracks both minimisers:
//! 1. T inner steps (fresh minibatches B_s on g, B'_s on f, shared by the two updates of a step):
//!    $z \leftarrow z - \rho^z_k \nabla_y g(x_k, z; B_s)$,
//!    $y \leftarrow y - \rho^y_k \big(\nabla_y f(x_k, y; B'_s) + \lambda_k \nabla_y g(x_k, y; B_s)\big)$.
//! 2. Outer step (ζ on f, ξ on g, the same ξ at both points):
//!    $x_{k+1} = x_k - \gamma_k \big(\nabla_x f(x_k, y; \zeta) + \lambda_k (\nabla_x g(x_k, y; \xi) - \nabla_x g(x_k, z; \xi))\big)$.
//! 3. $\lambda_{k+1} = \min(\lambda_k + \delta_k, \lambda_{\max})$.
//!
//! No second-order oracle is used. The inner iterate reported to the runner (metrics) is z, the
//! estimate of y*(x); y is the penalised iterate. **Bias:** for a fixed λ the direction is the gradient of the
//! penalty function, not ∇F; the difference is O(1/λ) (y_λ − y* = O(1/λ)). With λ growing
//! (λ_k ~ Σ δ_k) the bias vanishes; with λ capped (`max_penalty`) F2SA converges to a
//! neighbourhood of a stationary point of size O(1/λ_max). `tests/it/baseline_estimators.rs`
//! checks that the error of [`penalty_hypergradient`] against the closed form shrinks from
//! λ = 10 to λ = 100.
//!
//! ## Oracle calls per iteration (checked by `tests/it/oracle_counts.rs`)
//! | oracle | on g | on f | batch |
//! |--------|------|------|-------|
//! | grad_y | 2T | T | B_s / B'_s |
//! | grad_x | 2 | 1 | ξ (twice) / ζ |
//! | hvp_yy, cross | – | – | |
//!
//! ## Parameters
//! | field | paper | default | range |
//! |-------|-------|---------|-------|
//! | `inner_steps` | T | 10 | ≥ 1 |
//! | `inner_lr` | ρ^y_k (y) | `inv_power { c = 0.01, a = 5/7 }` | schedule |
//! | `z_lr` | ρ^z_k (z) | `inv_power { c = 0.01, a = 4/7 }` | schedule |
//! | `outer_lr` | γ_k | `inv_power { c = 0.01, a = 4/7 }` | schedule |
//! | `penalty` | λ₀ | 1 | > 0 |
//! | `penalty_increment` | δ_k | `inv_power { c = 0.1, a = 1/7 }` | schedule |
//! | `max_penalty` | λ_max | none | ≥ λ₀ |
//! | `batch_size` | — | 64 | ≥ 1 |
//! | `sampling` | — | `shuffled` | `shuffled`, `with_replacement`, `contiguous` |
//!
//! Defaults: the reference benchmark's (algorithms.md §9.9: step 0.01, λ₀ = 1, δλ = 0.1, 10 inner
//! steps, exponents 5/7, 4/7, 4/7, 1/7). Note that ρ^y must stay below 2/(L_f + λ L_g): with
//! λ growing, choose ρ^y accordingly (or cap λ).
//!
//! ## Example
//! ```
//! use bilevel::prelude::*;
//! let problem = bilevel::problems::quadratic::tiny();
//! let solver = F2saConfig { batch_size: 1, ..Default::default() }.build().unwrap();
//! let (x0, y0) = problem.start();
//! let mut state = solver.init(&problem, x0, y0, 0).unwrap();
//! for _ in 0..100 {
//!     solver.step(&problem, &mut state).unwrap();
//! }
//! assert!(state.penalty > 1.0);
//! ```
//!
#![doc = include_str!("../../katex-header.html")] // KaTeX: renders the formulas above

use serde::{Deserialize, Serialize};

use crate::core::error::{Error, check_at_least, check_positive};
use crate::core::linalg::{Scratch, rng_from_seed, serde_vector};
use crate::core::{
    Batch, Diagnostics, MinibatchSampler, Problem, Result, SamplingMode, Schedule, Solver, Vector,
    VectorExt,
};

/// Configuration of F2SA.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct F2saConfig {
    /// T: inner steps on y and z per outer iteration.
    pub inner_steps: usize,
    /// ρ^y_k: step of y (on f + λ g).
    pub inner_lr: Schedule,
    /// ρ^z_k: step of z (on g).
    pub z_lr: Schedule,
    /// γ_k: step of x.
    pub outer_lr: Schedule,
    /// λ₀: initial penalty.
    pub penalty: f64,
    /// δ_k: penalty increment after iteration k.
    pub penalty_increment: Schedule,
    /// λ_max: cap on the penalty (none: unbounded).
    pub max_penalty: Option<f64>,
    /// Size of every minibatch.
    pub batch_size: usize,
    /// How minibatches are drawn.
    pub sampling: SamplingMode,
}

impl Default for F2saConfig {
    fn default() -> Self {
        Self {
            inner_steps: 10,
            inner_lr: Schedule::inv_power(0.01, 5.0 / 7.0),
            z_lr: Schedule::inv_power(0.01, 4.0 / 7.0),
            outer_lr: Schedule::inv_power(0.01, 4.0 / 7.0),
            penalty: 1.0,
            penalty_increment: Schedule::inv_power(0.1, 1.0 / 7.0),
            max_penalty: None,
            batch_size: 64,
            sampling: SamplingMode::Shuffled,
        }
    }
}

impl F2saConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        check_at_least("inner_steps", self.inner_steps, 1)?;
        self.inner_lr.validate("inner_lr")?;
        self.z_lr.validate("z_lr")?;
        self.outer_lr.validate("outer_lr")?;
        check_positive("penalty", self.penalty)?;
        self.penalty_increment.validate("penalty_increment")?;
        if let Some(max) = self.max_penalty {
            check_positive("max_penalty", max)?;
            if max < self.penalty {
                return Err(Error::config(
                    "max_penalty",
                    format!("must be >= penalty ({}), got {max}", self.penalty),
                ));
            }
        }
        check_at_least("batch_size", self.batch_size, 1)
    }
    /// The only constructor of [`F2sa`].
    pub fn build(self) -> Result<F2sa> {
        self.validate()?;
        Ok(F2sa { config: self })
    }
}

/// F2SA (validated configuration).
#[derive(Clone, Debug)]
pub struct F2sa {
    config: F2saConfig,
}

/// State of [`F2sa`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct F2saState {
    /// Outer iterate.
    #[serde(with = "serde_vector")]
    pub x: Vector,
    /// y ≈ argmin f + λ g.
    #[serde(with = "serde_vector")]
    pub y: Vector,
    /// z ≈ argmin g = y*(x) (the inner iterate reported to the runner).
    #[serde(with = "serde_vector")]
    pub z: Vector,
    /// λ_k.
    pub penalty: f64,
    /// Iteration counter.
    pub t: u64,
    inner_g: MinibatchSampler,
    inner_f: MinibatchSampler,
    outer_g: MinibatchSampler,
    outer_f: MinibatchSampler,
    #[serde(skip)]
    batch: Vec<usize>,
    #[serde(skip)]
    scratch: Scratch,
}

/// The F2SA direction ∇ₓf(x, y) + λ(∇ₓg(x, y) − ∇ₓg(x, z)) on (`zeta` on f, `xi` on g) into
/// `out`; `tmp` is x-space scratch.
#[allow(clippy::too_many_arguments)]
fn penalty_direction(
    problem: &Problem,
    x: &Vector,
    y: &Vector,
    z: &Vector,
    penalty: f64,
    xi: Batch<'_>,
    zeta: Batch<'_>,
    out: &mut Vector,
    tmp: &mut Vector,
) {
    let (f, g) = (problem.f(), problem.g());
    f.grad_x(x, y, zeta, out);
    g.grad_x(x, y, xi, tmp);
    out.axpy(penalty, tmp);
    g.grad_x(x, z, xi, tmp);
    out.axpy(-penalty, tmp);
}

/// F2SA's hypergradient surrogate at x for a fixed penalty λ, with full-batch inner solves:
/// z ≈ argmin g(x, ·) and y ≈ argmin f(x, ·) + λ g(x, ·) by `steps` GD steps from `y0` (step
/// `lr_z` for z, `lr_y` for y), then ∇ₓf(x, y) + λ(∇ₓg(x, y) − ∇ₓg(x, z)). Its distance to ∇F(x)
/// is O(1/λ): the bias F2SA trades for being first order.
pub fn penalty_hypergradient(
    problem: &Problem,
    x: &Vector,
    penalty: f64,
    y0: &Vector,
    steps: usize,
    lr_z: f64,
    lr_y: f64,
) -> Vector {
    let (f, g) = (problem.f(), problem.g());
    let (dx, dy) = problem.dims();
    let (mut y, mut z) = (y0.clone(), y0.clone());
    let (mut gy, mut fy) = (Vector::zeros(dy), Vector::zeros(dy));
    for _ in 0..steps {
        g.grad_y(x, &z, Batch::Full, &mut gy);
        z.axpy(-lr_z, &gy);
        f.grad_y(x, &y, Batch::Full, &mut fy);
        g.grad_y(x, &y, Batch::Full, &mut gy);
        fy.axpy(penalty, &gy);
        y.axpy(-lr_y, &fy);
    }
    let (mut out, mut tmp) = (Vector::zeros(dx), Vector::zeros(dx));
    penalty_direction(
        problem,
        x,
        &y,
        &z,
        penalty,
        Batch::Full,
        Batch::Full,
        &mut out,
        &mut tmp,
    );
    out
}

impl Solver for F2sa {
    type State = F2saState;

    fn name(&self) -> &'static str {
        "f2sa"
    }

    fn init(&self, problem: &Problem, x: Vector, y: Vector, seed: u64) -> Result<F2saState> {
        use rand::Rng as _;
        let (n_g, n_f) = (problem.g().n_samples(), problem.f().n_samples());
        let mut rng = rng_from_seed(seed, 0);
        let bs = self.config.batch_size;
        let mode = self.config.sampling;
        let mut make = |n| MinibatchSampler::new(n, bs, mode, rng.next_u64());
        let (inner_g, inner_f, outer_g, outer_f) = (make(n_g)?, make(n_f)?, make(n_g)?, make(n_f)?);
        Ok(F2saState {
            z: y.clone(),
            x,
            y,
            penalty: self.config.penalty,
            t: 0,
            inner_g,
            inner_f,
            outer_g,
            outer_f,
            batch: Vec::new(),
            scratch: Scratch::default(),
        })
    }

    fn step(&self, problem: &Problem, s: &mut F2saState) -> Result<Diagnostics> {
        let (f, g) = (problem.f(), problem.g());
        let (dx, dy) = problem.dims();
        let [g_y, f_y, d_x, tmp] = s.scratch.vectors([dy, dy, dx, dx]);
        let c = &self.config;
        let (rho_y, rho_z) = (c.inner_lr.at(s.t), c.z_lr.at(s.t));
        let gamma = c.outer_lr.at(s.t);
        let lambda = s.penalty;

        for _ in 0..c.inner_steps {
            s.inner_g.draw_into(&mut s.batch);
            let b = Batch::Indices(&s.batch);
            // Step 1: z ← z − ρᶻ ∇ᵧg(x, z; B_s)
            g.grad_y(&s.x, &s.z, b, g_y);
            s.z.axpy(-rho_z, g_y);
            // Step 1: y ← y − ρʸ (∇ᵧf(x, y; B'_s) + λ ∇ᵧg(x, y; B_s))
            f.grad_y(&s.x, &s.y, Batch::Indices(s.inner_f.draw()), f_y);
            g.grad_y(&s.x, &s.y, b, g_y);
            f_y.axpy(lambda, g_y);
            s.y.axpy(-rho_y, f_y);
        }
        // Step 2: x ← x − γ (∇ₓf(x, y; ζ) + λ(∇ₓg(x, y; ξ) − ∇ₓg(x, z; ξ)))
        s.outer_g.draw_into(&mut s.batch);
        penalty_direction(
            problem,
            &s.x,
            &s.y,
            &s.z,
            lambda,
            Batch::Indices(&s.batch),
            Batch::Indices(s.outer_f.draw()),
            d_x,
            tmp,
        );
        s.x.axpy(-gamma, d_x);
        // Step 3: λ ← min(λ + δ_k, λ_max)
        s.penalty = lambda + c.penalty_increment.at(s.t);
        if let Some(max) = c.max_penalty {
            s.penalty = s.penalty.min(max);
        }
        s.t += 1;
        Ok(Diagnostics::new().with("penalty", lambda))
    }

    fn iterate<'s>(&self, s: &'s F2saState) -> (&'s Vector, &'s Vector) {
        (&s.x, &s.z)
    }

    fn iteration(&self, s: &F2saState) -> u64 {
        s.t
    }
}
