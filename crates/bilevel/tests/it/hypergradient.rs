//! Hypergradient estimators against the closed-form ∇F of the quadratic.

use crate::common;
use bilevel::core::linalg::rng_from_seed;
use bilevel::hypergrad::{Hypergradient, Implicit, LinearSystem};
use bilevel::linsolve::{CgParams, NeumannParams};
use bilevel::prelude::*;
use bilevel::problems::quadratic::random_point;

/// The requirement for deterministic estimators given enough inner and CG steps.
const EXACT_TOL: f64 = 1e-6;

fn relative_error(a: &Vector, b: &Vector) -> f64 {
    (a - b).norm() / b.norm()
}

fn estimate(estimator: &Implicit, problem: &Problem, x: &Vector) -> Vector {
    let mut rng = rng_from_seed(0, 0);
    let (_, dy) = problem.dims();
    let mut state = estimator
        .init(problem, Vector::zeros(dy), &mut rng)
        .unwrap();
    let mut out = Vector::zeros(x.nrows());
    estimator
        .estimate(problem, x, &mut state, &mut rng, &mut out)
        .unwrap();
    out
}

#[test]
fn aid_cg_matches_the_closed_form_hypergradient() {
    let problem = common::quadratic_10x20();
    let (x, _) = random_point(&problem, 5);
    let truth = problem
        .reference()
        .unwrap()
        .evaluate(&x)
        .unwrap()
        .hypergradient;
    let estimator = Implicit {
        inner_steps: 2000,
        inner_lr: 1.0,
        linear: LinearSystem::Cg(CgParams {
            max_iters: 100,
            rel_tol: 1e-14,
        }),
        warm_start_v: false,
        batch_size: None,
        sampling: SamplingMode::Shuffled,
    };
    let error = relative_error(&estimate(&estimator, &problem, &x), &truth);
    assert!(error <= EXACT_TOL, "relative error {error:.3e}");
}

#[test]
fn aid_cg_with_few_steps_is_visibly_inexact() {
    // The same check must be able to fail: 2 inner steps leave y far from y*.
    let problem = common::quadratic_10x20();
    let (x, _) = random_point(&problem, 5);
    let truth = problem
        .reference()
        .unwrap()
        .evaluate(&x)
        .unwrap()
        .hypergradient;
    let estimator = Implicit {
        inner_steps: 2,
        inner_lr: 1.0,
        linear: LinearSystem::Cg(CgParams::default()),
        warm_start_v: false,
        batch_size: None,
        sampling: SamplingMode::Shuffled,
    };
    let error = relative_error(&estimate(&estimator, &problem, &x), &truth);
    assert!(error > 1e-3, "relative error {error:.3e}");
}

#[test]
fn neumann_estimator_converges_to_the_closed_form() {
    let problem = common::quadratic_10x20();
    let (x, _) = random_point(&problem, 6);
    let truth = problem
        .reference()
        .unwrap()
        .evaluate(&x)
        .unwrap()
        .hypergradient;
    let estimator = Implicit {
        inner_steps: 2000,
        inner_lr: 1.0,
        linear: LinearSystem::Neumann(NeumannParams {
            terms: 2000,
            step: 1.0,
        }),
        warm_start_v: false,
        batch_size: None,
        sampling: SamplingMode::Shuffled,
    };
    let error = relative_error(&estimate(&estimator, &problem, &x), &truth);
    assert!(error <= EXACT_TOL, "relative error {error:.3e}");
}
