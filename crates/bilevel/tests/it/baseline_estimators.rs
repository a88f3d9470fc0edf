//! The baselines' hypergradient estimators against the closed-form ∇F of the quadratic:
//! exactness of the deterministic ones (AID-CG, AID-Neumann in both forms, ITD) and the known
//! bias of truncated back-propagation (in K) and of F2SA's penalty (in λ).

use crate::common;
use bilevel::algorithms::f2sa::penalty_hypergradient;
use bilevel::core::linalg::rng_from_seed;
use bilevel::hypergrad::Hypergradient;
use bilevel::linsolve::CgParams;
use bilevel::prelude::*;
use bilevel::problems::quadratic::random_point;

/// The required accuracy of deterministic estimators given enough steps (design.md §3.8).
const EXACT_TOL: f64 = 1e-6;
/// Enough inner steps (and Neumann terms) for the tolerance: the test problem's inner Hessian
/// has μ ≈ 0.08, so (1 − 0.5 μ)^2000 ≈ 1e-35.
const MANY: usize = 2000;
/// Inner step used below; not 1, so that a missing factor α in the AID-FP/NS normalisation
/// (hypertorch's w ≈ A⁻¹b/α) would show as a factor-2 error.
const ALPHA: f64 = 0.5;

fn relative_error(a: &Vector, b: &Vector) -> f64 {
    (a - b).norm() / b.norm()
}

/// One estimate of `estimator` at `x` from y₀ = 0, and the closed-form ∇F(x).
fn estimate_and_truth<H: Hypergradient>(
    estimator: &H,
    problem: &Problem,
    x: &Vector,
) -> (Vector, Vector) {
    let mut rng = rng_from_seed(0, 0);
    let (_, dy) = problem.dims();
    let mut state = estimator
        .init(problem, Vector::zeros(dy), &mut rng)
        .unwrap();
    let mut out = Vector::zeros(x.nrows());
    estimator
        .estimate(problem, x, &mut state, &mut rng, &mut out)
        .unwrap();
    let truth = problem
        .reference()
        .unwrap()
        .evaluate(x)
        .unwrap()
        .hypergradient;
    (out, truth)
}

#[test]
fn aid_cg_matches_the_closed_form() {
    let problem = common::quadratic_10x20();
    let (x, _) = random_point(&problem, 11);
    let solver = AidCgConfig {
        inner_steps: MANY,
        inner_lr: ALPHA,
        cg: CgParams {
            max_iters: 200,
            rel_tol: 1e-14,
        },
        warm_start_v: false,
        ..Default::default()
    }
    .build()
    .unwrap();
    let (h, truth) = estimate_and_truth(&solver.hypergrad, &problem, &x);
    let error = relative_error(&h, &truth);
    assert!(error <= EXACT_TOL, "relative error {error:.3e}");
}

#[test]
fn aid_neumann_matches_the_closed_form_in_both_forms() {
    let problem = common::quadratic_10x20();
    let (x, _) = random_point(&problem, 12);
    for form in [NeumannForm::Series, NeumannForm::FixedPoint] {
        let solver = AidNeumannConfig {
            inner_steps: MANY,
            inner_lr: ALPHA,
            terms: MANY,
            form,
            ..Default::default()
        }
        .build()
        .unwrap();
        let (h, truth) = estimate_and_truth(&solver.hypergrad, &problem, &x);
        let error = relative_error(&h, &truth);
        assert!(error <= EXACT_TOL, "{form:?}: relative error {error:.3e}");
    }
}

#[test]
fn aid_fixed_point_with_k_plus_one_steps_equals_the_series_with_k() {
    // The documented equivalence AID-FP(K + 1) = AID-NS(K), at a point where y is not converged
    // (few inner steps), to within rounding.
    let problem = common::quadratic_10x20();
    let (x, _) = random_point(&problem, 13);
    let make = |form, terms| {
        AidNeumannConfig {
            inner_steps: 3,
            inner_lr: ALPHA,
            terms,
            form,
            ..Default::default()
        }
        .build()
        .unwrap()
    };
    let (series, _) = estimate_and_truth(&make(NeumannForm::Series, 6).hypergrad, &problem, &x);
    let (fixed, _) = estimate_and_truth(&make(NeumannForm::FixedPoint, 7).hypergrad, &problem, &x);
    // Same sum, different summation order: a few ulps of the entries.
    assert!(relative_error(&fixed, &series) < 1e-12);
}

#[test]
fn itd_matches_the_closed_form_with_enough_steps() {
    let problem = common::quadratic_10x20();
    let (x, _) = random_point(&problem, 14);
    let solver = ItdConfig {
        inner_steps: MANY,
        inner_lr: ALPHA,
        warm_start: false,
        ..Default::default()
    }
    .build()
    .unwrap();
    let (h, truth) = estimate_and_truth(&solver.hypergrad, &problem, &x);
    let error = relative_error(&h, &truth);
    assert!(error <= EXACT_TOL, "relative error {error:.3e}");
}

#[test]
fn itd_with_few_steps_is_visibly_inexact() {
    // The accuracy check above must be able to fail.
    let problem = common::quadratic_10x20();
    let (x, _) = random_point(&problem, 14);
    let solver = ItdConfig {
        inner_steps: 5,
        inner_lr: ALPHA,
        warm_start: false,
        ..Default::default()
    }
    .build()
    .unwrap();
    let (h, truth) = estimate_and_truth(&solver.hypergrad, &problem, &x);
    assert!(relative_error(&h, &truth) > 1e-2);
}

#[test]
fn truncated_itd_bias_shrinks_as_more_steps_are_back_propagated() {
    // y_T ≈ y* (T = 2000), so the error is the truncation bias ≈ ∇²ₓᵧg (I − αA)^K A⁻¹∇ᵧf,
    // geometric in K at rate ≥ 1 − α L: at least visible at K = 5, at most half of it at K = 50.
    let problem = common::quadratic_10x20();
    let (x, _) = random_point(&problem, 15);
    let error_at = |k: usize| {
        let solver = ItdTruncatedConfig {
            inner_steps: MANY,
            backprop_steps: k,
            inner_lr: ALPHA,
            warm_start: false,
            ..Default::default()
        }
        .build()
        .unwrap();
        let (h, truth) = estimate_and_truth(&solver.hypergrad, &problem, &x);
        relative_error(&h, &truth)
    };
    let (short, long, full) = (error_at(5), error_at(50), error_at(MANY));
    println!("truncated ITD relative error: K=5 {short:.3e}, K=50 {long:.3e}, K=T {full:.3e}");
    assert!(short > 1e-2, "K = 5 should be visibly biased: {short:.3e}");
    assert!(
        long < 0.5 * short,
        "K = 50 ({long:.3e}) vs K = 5 ({short:.3e})"
    );
    assert!(full <= EXACT_TOL, "K = T is ITD: {full:.3e}");
}

#[test]
fn f2sa_bias_shrinks_as_the_penalty_grows() {
    // The penalty surrogate's error is O(1/λ): from λ = 100 to λ = 1000 it must fall by a
    // factor near 10 (the O(1/λ²) term is still ≈ κ/λ ≈ 10 % at λ = 100: allow 7 to 13). At
    // λ = 10 the expansion parameter κ/λ is above 1, hence the larger penalties.
    let problem = common::quadratic_10x20();
    let (x, _) = random_point(&problem, 16);
    let truth = problem
        .reference()
        .unwrap()
        .evaluate(&x)
        .unwrap()
        .hypergradient;
    let (_, dy) = problem.dims();
    let error_at = |lambda: f64| {
        // ρʸ = 1 / (1.5 (1 + λ)) < 2 / (L_f + λ L_g); 40 000 steps are plenty for the
        // y-problem's condition number ≈ 20 (contraction 1 − ρʸλμ ≈ 0.95 per step).
        let lr_y = 1.0 / (1.5 * (1.0 + lambda));
        let h = penalty_hypergradient(
            &problem,
            &x,
            lambda,
            &Vector::zeros(dy),
            20 * MANY,
            1.0,
            lr_y,
        );
        relative_error(&h, &truth)
    };
    let (small, large) = (error_at(100.0), error_at(1000.0));
    println!("F2SA relative error: λ=100 {small:.3e}, λ=1000 {large:.3e}");
    assert!(
        small > 1e-3,
        "λ = 100 should be visibly biased: {small:.3e}"
    );
    let ratio = small / large;
    assert!(
        (7.0..13.0).contains(&ratio),
        "error ratio {ratio:.2} (expected ≈ 10)"
    );
}
