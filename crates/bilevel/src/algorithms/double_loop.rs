//! [`DoubleLoop`]: x ← x − γₜ ĥ(x), for any [`Hypergradient`] estimator ĥ.
//!
//! AID-CG, AID-Neumann, stocBiO, AmIGO, ITD, ESJ and UFO-BLO are constructors of this type: the
//! estimator owns the inner loop and its warm starts, the double loop owns x and the outer step.

use serde::{Deserialize, Serialize};

use crate::core::error::{check_in_range, check_positive};
use crate::core::linalg::{Scratch, rng_from_seed, serde_vector, serde_vectors};
use crate::core::{Diagnostics, Problem, Result, Rng, Schedule, Solver, Vector, VectorExt};
use crate::hypergrad::Hypergradient;

/// The outer optimizer of a double loop.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OuterOptimizer {
    /// x ← x − γ_t ĥ.
    #[default]
    Sgd,
    /// Adam (Kingma & Ba, ICLR 2015) on ĥ with step γ_t, as the ESJ and deep hyper-representation
    /// scripts use: m ← β₁m + (1−β₁)ĥ, s ← β₂s + (1−β₂)ĥ², x ← x − γ_t m̂ / (√ŝ + ε) with
    /// bias-corrected m̂, ŝ.
    Adam {
        /// β₁ (default 0.9).
        #[serde(default = "default_beta1")]
        beta1: f64,
        /// β₂ (default 0.999).
        #[serde(default = "default_beta2")]
        beta2: f64,
        /// ε (default 1e-8).
        #[serde(default = "default_eps")]
        eps: f64,
    },
}

fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.999
}
fn default_eps() -> f64 {
    1e-8
}

impl OuterOptimizer {
    /// Checks the parameters.
    pub fn validate(&self, field: &str) -> Result<()> {
        if let OuterOptimizer::Adam { beta1, beta2, eps } = *self {
            check_in_range(&format!("{field}.beta1"), beta1, 0.0, 1.0 - f64::EPSILON)?;
            check_in_range(&format!("{field}.beta2"), beta2, 0.0, 1.0 - f64::EPSILON)?;
            check_positive(&format!("{field}.eps"), eps)?;
        }
        Ok(())
    }
}

/// Estimate, then step: x_{t+1} = x_t − γ_t ĥ(x_t) (or an Adam step on ĥ).
#[derive(Clone, Debug)]
pub struct DoubleLoop<H> {
    /// The solver's `kind` name.
    pub name: &'static str,
    /// The hypergradient estimator.
    pub hypergrad: H,
    /// γ_t.
    pub outer_lr: Schedule,
    /// SGD (default) or Adam.
    pub outer_optimizer: OuterOptimizer,
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
    /// Adam's first and second moments (empty for SGD).
    #[serde(with = "serde_vectors")]
    pub moments: Vec<Vector>,
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
            moments: Vec::new(),
        })
    }

    fn step(&self, problem: &Problem, s: &mut Self::State) -> Result<Diagnostics> {
        let [direction] = s.scratch.vectors([s.x.nrows()]);
        let gamma = self.outer_lr.at(s.t);
        let diagnostics =
            self.hypergrad
                .estimate(problem, &s.x, &mut s.hypergrad, &mut s.rng, direction)?;
        match self.outer_optimizer {
            OuterOptimizer::Sgd => s.x.axpy(-gamma, direction),
            OuterOptimizer::Adam { beta1, beta2, eps } => {
                if s.moments.len() != 2 {
                    s.moments = vec![Vector::zeros(s.x.nrows()), Vector::zeros(s.x.nrows())];
                }
                let (m, rest) = s.moments.split_at_mut(1);
                let (m, v) = (m[0].as_mut_slice(), rest[0].as_mut_slice());
                let step = (s.t + 1) as i32;
                let (c1, c2) = (1.0 - beta1.powi(step), 1.0 - beta2.powi(step));
                let x = s.x.as_mut_slice();
                for (i, &h) in direction.as_slice().iter().enumerate() {
                    m[i] = beta1 * m[i] + (1.0 - beta1) * h;
                    v[i] = beta2 * v[i] + (1.0 - beta2) * h * h;
                    x[i] -= gamma * (m[i] / c1) / ((v[i] / c2).sqrt() + eps);
                }
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algorithms::AidCgConfig;

    #[test]
    fn adam_first_step_moves_each_coordinate_by_the_step_size() {
        // At t = 0 the bias-corrected moments are ĥ and ĥ², so every coordinate moves by
        // γ ĥᵢ / (|ĥᵢ| + ε) ≈ γ sign(ĥᵢ).
        let problem = crate::problems::quadratic::tiny();
        let mut solver = AidCgConfig::default().build().unwrap();
        solver.outer_optimizer = OuterOptimizer::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        };
        let (x0, y0) = problem.start();
        let mut state = solver.init(&problem, x0.clone(), y0, 0).unwrap();
        solver.step(&problem, &mut state).unwrap();
        let gamma = solver.outer_lr.at(0);
        for (a, b) in state.x.as_slice().iter().zip(x0.as_slice()) {
            assert!(((a - b).abs() - gamma).abs() < 1e-6, "moved {}", a - b);
        }
        let json = serde_json::to_string(&state).unwrap();
        let back: DoubleLoopState<crate::hypergrad::ImplicitState> =
            serde_json::from_str(&json).unwrap();
        assert_eq!(back.moments.len(), 2);
    }
}
