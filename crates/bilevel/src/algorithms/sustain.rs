//! # SUSTAIN — stochastic bilevel optimization with double momentum
//!
//! P. Khanduri, S. Zeng, M. Hong, H.-T. Wai, Z. Wang, Z. Yang. *A near-optimal algorithm for
//! stochastic bilevel optimization via double-momentum.* NeurIPS 2021 (arXiv:2102.07367).
//! algorithms.md §8.4: the MRBO recursion (§5.3) on both directions, with the HIA
//! hypergradient (§1.5.2).
//!
//! ## Update (iteration t; benchopt's "eta form" of the recursion)
//! Initialisation (t = 0): $d_0 = \hat\Phi(x_0, y_0; \mathcal B_0)$,
//! $u_0 = \nabla_y g(x_0, y_0; B'_0)$. Then
//! $$ x_{t+1} = x_t - \gamma_t d_t, \qquad y_{t+1} = y_t - \rho_t u_t, $$
//! $$ d_{t+1} = \hat\Phi(x_{t+1}, y_{t+1}; \mathcal B) + (1 - a_t)\big(d_t - \hat\Phi(x_t, y_t; \mathcal B)\big), $$
//! $$ u_{t+1} = \nabla_y g(x_{t+1}, y_{t+1}; B') + (1 - a_t)\big(u_t - \nabla_y g(x_t, y_t; B')\big), $$
//! where both Φ̂ evaluations share **all** batches and the HIA truncation P (one
//! `hypergrad::PhiHatDraw` replayed at the two points), and both ∇ᵧg share B'.
//!
//! ## Oracle calls per iteration (checked by `tests/it/oracle_counts.rs`)
//! | oracle | on g | on f | batch |
//! |--------|------|------|-------|
//! | grad_y | 2 | 2 | B' (twice) / B_F (twice) |
//! | grad_x | – | 2 | B_F |
//! | hvp_yy | 2P, P ∈ {0, …, N − 1} (random, shared by both points) | – | B_1..B_P |
//! | cross_xy | 2 | – | B_G |
//!
//! The first iteration adds the initialisation: one Φ̂ (f: grad_x 1, grad_y 1; g: hvp P₀,
//! cross 1) and one grad_y on g. benchopt's SUSTAIN (the MRBO recursion
//! with HIA, algorithms.md §8.4) makes the same calls per iteration.
//!
//! ## Parameters
//! | field | paper | default | range |
//! |-------|-------|---------|-------|
//! | `inner_lr` | ρ_t (γ η_t) | `inv_power { c = 0.1, a = 1/3 }` | schedule |
//! | `outer_lr` | γ_t (λ η_t) | `inv_power { c = 0.1, a = 1/3 }` | schedule |
//! | `momentum` | a_t (c η_t²) | `inv_power { c = 0.5, a = 2/3 }` | schedule, values in (0, 1] |
//! | `hia.max_terms` | N | 10 | ≥ 1 |
//! | `hia.step` | η | 0.1 | > 0 (< 1/L_g) |
//! | `batch_size` | — | 64 | ≥ 1 |
//! | `sampling` | — | `shuffled` | `shuffled`, `with_replacement`, `contiguous` |
//!
//! Defaults: the reference benchmark's (algorithms.md §9.9: c = 0.1 with exponent 1/3 for both
//! steps, momentum 0.5/(t+1)^{2/3}, 10 Neumann steps, batch 64).
//!
//! ## Example
//! ```
//! use bilevel::prelude::*;
//! let problem = bilevel::problems::quadratic::tiny();
//! let solver = SustainConfig { batch_size: 1, ..Default::default() }.build().unwrap();
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

use crate::core::error::{Error, check_at_least};
use crate::core::linalg::{Scratch, rng_from_seed, serde_vector};
use crate::core::{
    Batch, Diagnostics, MinibatchSampler, Problem, Result, Rng, SamplingMode, Schedule, Solver,
    Vector, VectorExt,
};
use crate::hypergrad::{NeumannEstimator, PhiHat, PhiHatDraw, PhiHatSamplers, PhiHatWork};
use crate::linsolve::HiaParams;

/// Checks that a momentum-weight schedule stays in (0, 1] (its largest value is at t = 0).
pub(crate) fn validate_weight(field: &str, schedule: &Schedule) -> Result<()> {
    schedule.validate(field)?;
    let first = schedule.at(0);
    if first > 1.0 {
        return Err(Error::config(
            field,
            format!("momentum weights must stay in (0, 1]; the first is {first}"),
        ));
    }
    Ok(())
}

/// Configuration of SUSTAIN.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SustainConfig {
    /// ρ_t: step of y.
    pub inner_lr: Schedule,
    /// γ_t: step of x.
    pub outer_lr: Schedule,
    /// a_t: momentum weight of both recursions.
    pub momentum: Schedule,
    /// N and η of the HIA estimator.
    pub hia: HiaParams,
    /// Size of every minibatch.
    pub batch_size: usize,
    /// How minibatches are drawn.
    pub sampling: SamplingMode,
}

impl Default for SustainConfig {
    fn default() -> Self {
        Self {
            inner_lr: Schedule::inv_power(0.1, 1.0 / 3.0),
            outer_lr: Schedule::inv_power(0.1, 1.0 / 3.0),
            momentum: Schedule::inv_power(0.5, 2.0 / 3.0),
            hia: HiaParams {
                max_terms: 10,
                step: 0.1,
            },
            batch_size: 64,
            sampling: SamplingMode::Shuffled,
        }
    }
}

impl SustainConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        self.inner_lr.validate("inner_lr")?;
        self.outer_lr.validate("outer_lr")?;
        validate_weight("momentum", &self.momentum)?;
        self.hia.validate("hia")?;
        check_at_least("batch_size", self.batch_size, 1)
    }

    /// The only constructor of [`Sustain`].
    pub fn build(self) -> Result<Sustain> {
        self.validate()?;
        let phi = PhiHat {
            neumann: NeumannEstimator::Hia(self.hia),
            batch_size: self.batch_size,
            sampling: self.sampling,
        };
        Ok(Sustain { config: self, phi })
    }
}

/// SUSTAIN (validated configuration).
#[derive(Clone, Debug)]
pub struct Sustain {
    config: SustainConfig,
    phi: PhiHat,
}

/// State of [`Sustain`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SustainState {
    /// Outer iterate.
    #[serde(with = "serde_vector")]
    pub x: Vector,
    /// Inner iterate.
    #[serde(with = "serde_vector")]
    pub y: Vector,
    /// Outer direction d_t (recursive hypergradient estimate).
    #[serde(with = "serde_vector")]
    pub d: Vector,
    /// Inner direction u_t (recursive estimate of ∇ᵧg).
    #[serde(with = "serde_vector")]
    pub u: Vector,
    /// Iteration counter.
    pub t: u64,
    /// Draws HIA's truncation P.
    pub rng: Rng,
    inner: MinibatchSampler,
    phi: PhiHatSamplers,
    #[serde(skip)]
    draw: PhiHatDraw,
    #[serde(skip)]
    work: PhiHatWork,
    #[serde(skip)]
    batch: Vec<usize>,
    #[serde(skip)]
    scratch: Scratch,
}

impl Solver for Sustain {
    type State = SustainState;

    fn name(&self) -> &'static str {
        "sustain"
    }

    fn init(&self, problem: &Problem, x: Vector, y: Vector, seed: u64) -> Result<SustainState> {
        use rand::Rng as _;
        let mut rng = rng_from_seed(seed, 0);
        let inner = MinibatchSampler::new(
            problem.g().n_samples(),
            self.config.batch_size,
            self.config.sampling,
            rng.next_u64(),
        )?;
        let phi = self.phi.samplers(problem, &mut rng)?;
        Ok(SustainState {
            d: Vector::zeros(x.nrows()),
            u: Vector::zeros(y.nrows()),
            x,
            y,
            t: 0,
            rng,
            inner,
            phi,
            draw: PhiHatDraw::default(),
            work: PhiHatWork::default(),
            batch: Vec::new(),
            scratch: Scratch::default(),
        })
    }

    fn step(&self, problem: &Problem, s: &mut SustainState) -> Result<Diagnostics> {
        let g = problem.g();
        let (dx, dy) = problem.dims();
        let [x_old, y_old, h_new, h_old, g_new, g_old] =
            s.scratch.vectors([dx, dy, dx, dx, dy, dy]);
        if s.t == 0 {
            // Initialisation: d_0 = Φ̂(x_0, y_0; 𝓑_0), u_0 = ∇ᵧg(x_0, y_0; B'_0).
            self.phi.draw(&mut s.phi, &mut s.rng, &mut s.draw);
            self.phi
                .evaluate(problem, &s.x, &s.y, &s.draw, &mut s.d, &mut s.work);
            g.grad_y(&s.x, &s.y, Batch::Indices(s.inner.draw()), &mut s.u);
        }
        let gamma = self.config.outer_lr.at(s.t);
        let rho = self.config.inner_lr.at(s.t);
        let a = self.config.momentum.at(s.t);

        // x_{t+1} = x_t − γ_t d_t ;  y_{t+1} = y_t − ρ_t u_t.
        x_old.assign(&s.x);
        y_old.assign(&s.y);
        s.x.axpy(-gamma, &s.d);
        s.y.axpy(-rho, &s.u);

        // d_{t+1} = Φ̂(x_{t+1}, y_{t+1}; 𝓑) + (1 − a_t)(d_t − Φ̂(x_t, y_t; 𝓑)), shared 𝓑 and P.
        self.phi.draw(&mut s.phi, &mut s.rng, &mut s.draw);
        self.phi
            .evaluate(problem, &s.x, &s.y, &s.draw, h_new, &mut s.work);
        self.phi
            .evaluate(problem, x_old, y_old, &s.draw, h_old, &mut s.work);
        s.d.axpy(-1.0, h_old);
        s.d.scale_add(1.0 - a, h_new);

        // u_{t+1} = ∇ᵧg(x_{t+1}, y_{t+1}; B') + (1 − a_t)(u_t − ∇ᵧg(x_t, y_t; B')), shared B'.
        s.inner.draw_into(&mut s.batch);
        g.grad_y(&s.x, &s.y, Batch::Indices(&s.batch), g_new);
        g.grad_y(x_old, y_old, Batch::Indices(&s.batch), g_old);
        s.u.axpy(-1.0, g_old);
        s.u.scale_add(1.0 - a, g_new);

        s.t += 1;
        Ok(Diagnostics::new().with("hia_terms", s.draw.terms() as f64))
    }

    fn iterate<'s>(&self, s: &'s SustainState) -> (&'s Vector, &'s Vector) {
        (&s.x, &s.y)
    }

    fn iteration(&self, s: &SustainState) -> u64 {
        s.t
    }
}
