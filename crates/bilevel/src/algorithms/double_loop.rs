//! [`DoubleLoop`]: x ← x − γₜ ĥ(x), for any [`Hypergradient`] estimator ĥ.
//!
//! AID-CG, AID-Neumann, stocBiO, AmIGO, ITD, ESJ and UFO-BLO are constructors of this type: the
//! estimator owns the inner loop and its warm starts, the double loop owns x and the outer step.

use serde::{Deserialize, Serialize};

use crate::core::linalg::{Scratch, rng_from_seed, serde_vector};
use crate::core::{Diagnostics, Problem, Result, Rng, Schedule, Solver, Vector, VectorExt};
use crate::hypergrad::Hypergradient;

/// Estimate, then step: x_{t+1} = x_t − γ_t ĥ(x_t).
#[derive(Clone, Debug)]
pub struct DoubleLoop<H> {
    /// The solver's `kind` name.
    pub name: &'static str,
    /// The hypergradient estimator.
    pub hypergrad: H,
    /// γ_t.
    pub outer_lr: Schedule,
}

/// State of a [`DoubleLoop`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DoubleLoopState<S> {
    /// Outer iterate.
    #[serde(with = "serde_vector")]
    pub x: Vector,
    /// Outer iteration counter.
    pub t: u64,
    /// Randomness of the estimator beyond its samplers.
    pub rng: Rng,
    /// The estimator's warm starts.
    pub hypergrad: S,
    #[serde(skip)]
    scratch: Scratch,
}

impl<H: Hypergradient> Solver for DoubleLoop<H> {
    type State = DoubleLoopState<H::State>;

    fn name(&self) -> &'static str {
        self.name
    }

    fn init(&self, problem: &Problem, x0: Vector, y0: Vector, seed: u64) -> Result<Self::State> {
        let mut rng = rng_from_seed(seed, 0);
        let hypergrad = self.hypergrad.init(problem, y0, &mut rng)?;
        Ok(DoubleLoopState {
            scratch: Scratch::default(),
            x: x0,
            t: 0,
            rng,
            hypergrad,
        })
    }

    fn step(&self, problem: &Problem, s: &mut Self::State) -> Result<Diagnostics> {
        let [direction] = s.scratch.vectors([s.x.nrows()]);
        let gamma = self.outer_lr.at(s.t);
        let diagnostics =
            self.hypergrad
                .estimate(problem, &s.x, &mut s.hypergrad, &mut s.rng, direction)?;
        s.x.axpy(-gamma, direction);
        s.t += 1;
        Ok(diagnostics)
    }

    fn iterate<'s>(&self, s: &'s Self::State) -> (&'s Vector, &'s Vector) {
        (&s.x, self.hypergrad.inner_iterate(&s.hypergrad))
    }

    fn adjoint<'s>(&self, s: &'s Self::State) -> Option<&'s Vector> {
        self.hypergrad.adjoint(&s.hypergrad)
    }

    fn iteration(&self, s: &Self::State) -> u64 {
        s.t
    }
}
