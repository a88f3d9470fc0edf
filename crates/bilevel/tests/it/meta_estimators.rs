//! The Hessian-free and meta-learning estimators against exact quantities:
//! - UFO-BLO: exact expectation over ξ ~ Bernoulli(q) equals the exact meta-gradient, Monte Carlo
//!   agrees, q = 0 is FO-MAML and q = 1 is MAML bit for bit, and on the §7.5 counter-example
//!   FO-MAML stalls at |∇M| = 0.1 while UFO-BLO drives ∇M to 0;
//! - MAML / ANIL: the reverse sweep equals the forward-mode Reference and finite differences of M;
//! - ESJ: on the quadratic (y_T affine in x) E[Ĵ] = dy_T/dx, ĥ → ∇F as T grows; ESJ-S replays one
//!   batch sequence on every trajectory (common random numbers).

use crate::common;
use std::sync::Mutex;

use bilevel::algorithms::imaml::ImplicitMetaGradient;
use bilevel::algorithms::maml::ExactMetaGradient;
use bilevel::algorithms::ufo_blo::UfoEstimator;
use bilevel::core::linalg::{normal_vector, rng_from_seed};
use bilevel::core::{Diagnostics, MinibatchSampler};
use bilevel::hypergrad::meta_unrolled::MetaBatch;
use bilevel::hypergrad::{Direction, EsJacobian, Hypergradient};
use bilevel::inner::descend;
use bilevel::linsolve::CgParams;
use bilevel::prelude::*;
use bilevel::problems::meta_linear::MetaLinearConfig;
use bilevel::problems::quadratic::QuadraticConfig;
use bilevel::problems::ufo_toy::UfoToyConfig;
use bilevel::testing::iterate_after;

/// Reverse mode (the solvers) and forward mode (the Reference) evaluate the same product in a
/// different order: they agree to rounding, a few hundred ulps of the result at most.
const REVERSE_VS_FORWARD: f64 = 1e-10;
/// Central differences of M with h ≈ 1e-5: truncation O(h²·M''') ≈ 1e-10 and rounding
/// O(ε·M/h) ≈ 1e-11, relative; 1e-6 leaves a wide margin and still catches any missing term.
const FD_TOL: f64 = 1e-6;

fn relative_error(a: &Vector, b: &Vector) -> f64 {
    (a - b).norm() / b.norm().max(1e-300)
}

fn reference_gradient(problem: &Problem, phi: &Vector) -> Vector {
    problem
        .reference()
        .unwrap()
        .evaluate(phi)
        .unwrap()
        .hypergradient
}

fn reference_value(problem: &Problem, phi: &Vector) -> f64 {
    problem.reference().unwrap().evaluate(phi).unwrap().value
}

fn all_tasks(problem: &Problem) -> MetaBatch {
    MetaBatch {
        size: problem.g().n_samples(),
        sampling: SamplingMode::Shuffled,
    }
}

/// One estimate of `estimator` at φ with a fresh state (inner start: the problem's y₀) seeded by
/// `seed`.
fn estimate_once<H: Hypergradient>(
    estimator: &H,
    problem: &Problem,
    phi: &Vector,
    seed: u64,
) -> (Vector, Diagnostics) {
    let mut rng = rng_from_seed(seed, 0);
    let mut state = estimator
        .init(problem, problem.start().1, &mut rng)
        .unwrap();
    let mut out = Vector::zeros(phi.nrows());
    let diagnostics = estimator
        .estimate(problem, phi, &mut state, &mut rng, &mut out)
        .unwrap();
    (out, diagnostics)
}

fn ufo(q: f64, batch: MetaBatch) -> UfoEstimator {
    UfoEstimator {
        exact_prob: ExactProb::Fixed(q),
        clip: None,
        batch,
    }
}

fn maml(batch: MetaBatch, head_only: bool) -> ExactMetaGradient {
    ExactMetaGradient {
        name: if head_only { "anil" } else { "maml" },
        batch,
        head_only,
    }
}

fn random_phi(problem: &Problem, seed: u64) -> Vector {
    let mut rng = rng_from_seed(seed, 9);
    normal_vector(&mut rng, problem.dims().0)
}

// ───────────────────────────── UFO-BLO ─────────────────────────────

#[test]
fn ufom_exact_expectation_over_xi_is_the_exact_meta_gradient() {
    // One task with a separate query set: the first-order branch is visibly biased.
    let problem = MetaLinearConfig {
        tasks: 1,
        ..Default::default()
    }
    .build()
    .unwrap();
    let phi = random_phi(&problem, 1);
    let truth = reference_gradient(&problem, &phi);
    for q in [0.1, 0.3, 0.8] {
        let estimator = ufo(q, all_tasks(&problem));
        // Find one draw of each branch (diagnostic `exact_fraction` says which fired).
        let (mut g0, mut g1) = (None, None);
        for seed in 0..200 {
            let (g, d) = estimate_once(&estimator, &problem, &phi, seed);
            match d.get("exact_fraction") {
                Some(1.0) => g1 = Some(g),
                Some(0.0) => g0 = Some(g),
                other => panic!("unexpected exact_fraction {other:?}"),
            }
            if g0.is_some() && g1.is_some() {
                break;
            }
        }
        let (g0, g1) = (g0.expect("an FO draw"), g1.expect("an exact draw"));
        // E_ξ[g] = q·g(ξ=1) + (1 − q)·g(ξ=0).
        let mut expectation = g1.clone();
        expectation.scale(q);
        expectation.axpy(1.0 - q, &g0);
        let error = relative_error(&expectation, &truth);
        // Rounding of g_ex/q + (1 − 1/q)g_FO is amplified by 1/q ≤ 10.
        assert!(
            error < 10.0 * REVERSE_VS_FORWARD,
            "q = {q}: error {error:.3e}"
        );
        // The test can fail: the first-order branch alone is biased by far more.
        let bias = relative_error(&g0, &truth);
        assert!(bias > 1e-2, "FO bias {bias:.3e} too small to be a test");
    }
}

#[test]
fn ufom_monte_carlo_mean_is_the_exact_meta_gradient() {
    let problem = common::meta_linear();
    let phi = random_phi(&problem, 2);
    let truth = reference_gradient(&problem, &phi);
    let estimator = ufo(0.3, all_tasks(&problem));
    let varied = common::assert_unbiased(&estimator, &problem, &phi, &truth, 20_000, 17, 0.0);
    assert_eq!(
        varied,
        phi.nrows(),
        "every coordinate must be random: the check would be vacuous"
    );
}

#[test]
fn ufom_with_q_zero_is_fomaml_and_with_q_one_is_maml_bit_for_bit() {
    let problem = common::meta_linear();
    let lr = Schedule::constant(0.2);
    let ufo = |q| {
        SolverConfig::UfoBlo(UfoBloConfig {
            exact_prob: ExactProb::Fixed(q),
            meta_batch: 3,
            outer_lr: lr,
            ..Default::default()
        })
    };
    let fomaml = SolverConfig::Fomaml(FomamlConfig {
        meta_batch: 3,
        outer_lr: lr,
        ..Default::default()
    });
    let maml = SolverConfig::Maml(MamlConfig {
        meta_batch: 3,
        outer_lr: lr,
        ..Default::default()
    });
    let bits = |v: &Vector| v.as_slice().iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for seed in [1, 2] {
        let (a, ya) = iterate_after(&ufo(0.0), &problem, 25, seed);
        let (b, yb) = iterate_after(&fomaml, &problem, 25, seed);
        assert_eq!(bits(&a), bits(&b), "q = 0 vs fomaml, seed {seed}");
        assert_eq!(bits(&ya), bits(&yb));
        let (a, _) = iterate_after(&ufo(1.0), &problem, 25, seed);
        let (b, _) = iterate_after(&maml, &problem, 25, seed);
        assert_eq!(bits(&a), bits(&b), "q = 1 vs maml, seed {seed}");
    }
    // And the two are genuinely different algorithms here.
    let (a, _) = iterate_after(&fomaml, &problem, 25, 1);
    let (b, _) = iterate_after(&maml, &problem, 25, 1);
    assert!((&a - &b).norm() > 1e-6);
}

/// FO-MAML converges to φ_FO, where |∇M| equals the toy's `stall_gradient` (0.1).
/// UFO-BLO (q = 0.1) converges to φ*: with step c/(k+1), c = 10, the SGD error at φ* has
/// variance ≈ c²σ²/((2cλ − 1)k), λ = ½(e₁ + e₂) ≈ 0.119 the curvature of M and σ² ≈ 0.83 the
/// variance of the estimate at φ* (¼Σⱼ Dⱼ²(1 − q)/q, Dⱼ = (wⱼ − eⱼ)(φ* − cⱼ) ≈ (0.099, −0.600)).
/// At k = 50 000 the standard deviation of ∇M is λ·√(60.4/k) ≈ 0.0041.
const UFO_ITERS: usize = 50_000;
/// 6 standard deviations at UFO_ITERS, and 4× below FO-MAML's stall value 0.1.
const UFO_FINAL_TOL: f64 = 0.025;
/// FO-MAML is deterministic here (both tasks every step) and converges like k^(−cλ_FO),
/// cλ_FO ≈ 3: after 50 000 steps it sits on φ_FO to far better than 1e-6.
const FOM_TOL: f64 = 1e-6;

#[test]
fn on_the_toy_fomaml_stalls_and_ufo_blo_reaches_a_stationary_point() {
    let toy = UfoToyConfig::default();
    let problem = toy.build().unwrap();
    let closed = toy.closed_form();
    let step = Schedule::InvPower {
        c: 10.0,
        a: 1.0,
        t0: 1.0,
    };
    let ufo = |q| {
        SolverConfig::UfoBlo(UfoBloConfig {
            exact_prob: ExactProb::Fixed(q),
            meta_batch: 2,
            outer_lr: step,
            ..Default::default()
        })
    };
    let fomaml = SolverConfig::Fomaml(FomamlConfig {
        meta_batch: 2,
        outer_lr: step,
        ..Default::default()
    });
    for config in [ufo(0.0), fomaml] {
        let (phi, _) = iterate_after(&config, &problem, UFO_ITERS, 1);
        let grad = reference_gradient(&problem, &phi)[0];
        assert!(
            (phi[0] - closed.phi_fo).abs() < FOM_TOL,
            "{}: φ = {}, φ_FO = {}",
            config.kind(),
            phi[0],
            closed.phi_fo
        );
        assert!(
            (grad - toy.stall_gradient).abs() < FOM_TOL,
            "{}: ∇M = {grad}",
            config.kind()
        );
    }
    for seed in [1, 2, 3] {
        let (phi, _) = iterate_after(&ufo(0.1), &problem, UFO_ITERS, seed);
        let grad = reference_gradient(&problem, &phi)[0];
        assert!(
            grad.abs() < UFO_FINAL_TOL,
            "seed {seed}: |∇M| = {} at φ = {} (φ* = {})",
            grad.abs(),
            phi[0],
            closed.phi_star
        );
    }
    // The reference agrees with the closed form: ∇M(φ*) = 0 and ∇M(φ_FO) = D.
    let at = |p: f64| reference_gradient(&problem, &Vector::from_fn(1, |_| p))[0];
    assert!(at(closed.phi_star).abs() < 1e-12);
    assert!((at(closed.phi_fo) - toy.stall_gradient).abs() < 1e-12);
}

#[test]
fn adaptive_q_stays_in_range_and_converges_on_the_toy() {
    let problem = common::ufo_toy();
    let config = UfoBloConfig {
        exact_prob: ExactProb::adaptive(),
        meta_batch: 2,
        outer_lr: Schedule::InvPower {
            c: 10.0,
            a: 1.0,
            t0: 1.0,
        },
        ..Default::default()
    };
    let solver = config.build().unwrap();
    let (x0, y0) = problem.start();
    let mut state = solver.init(&problem, x0, y0, 4).unwrap();
    let mut qs = Vec::new();
    for _ in 0..UFO_ITERS {
        let d = solver.step(&problem, &mut state).unwrap();
        qs.push(d.get("q").unwrap());
    }
    assert!(qs.iter().all(|&q| (0.05..=1.0).contains(&q)));
    assert!(qs.iter().any(|&q| q != 0.05), "q never adapted");
    let grad = reference_gradient(&problem, &state.x)[0];
    // q ≥ q_min = 0.05 keeps the estimator unbiased (given q); the variance is at most that of
    // q = 0.05, twice q = 0.1's, so √2 × the fixed-q tolerance.
    assert!(grad.abs() < 1.5 * UFO_FINAL_TOL, "|∇M| = {}", grad.abs());
}

// ───────────────────────────── MAML / ANIL ─────────────────────────────

fn fd_directional(problem: &Problem, phi: &Vector, dir: &Vector) -> f64 {
    let h = 1e-5 * (1.0 + phi.max_abs());
    let mut plus = phi.clone();
    plus.axpy(h, dir);
    let mut minus = phi.clone();
    minus.axpy(-h, dir);
    (reference_value(problem, &plus) - reference_value(problem, &minus)) / (2.0 * h)
}

#[test]
fn maml_meta_gradient_matches_the_reference_and_finite_differences() {
    let problem = common::meta_linear();
    let estimator = maml(all_tasks(&problem), false);
    for seed in [1, 2, 3] {
        let phi = random_phi(&problem, seed);
        let (grad, _) = estimate_once(&estimator, &problem, &phi, seed);
        let truth = reference_gradient(&problem, &phi);
        let error = relative_error(&grad, &truth);
        assert!(
            error < REVERSE_VS_FORWARD,
            "reverse vs forward: {error:.3e}"
        );
        let mut rng = rng_from_seed(seed, 4);
        for _ in 0..3 {
            let dir = normal_vector(&mut rng, phi.nrows());
            let fd = fd_directional(&problem, &phi, &dir);
            let exact = grad.dot(&dir);
            let scale = grad.norm() * dir.norm();
            assert!(
                (fd - exact).abs() <= FD_TOL * scale,
                "directional derivative: fd {fd:.10e} vs {exact:.10e}"
            );
        }
    }
}

#[test]
fn maml_on_the_toy_matches_the_product_formula_in_every_zone() {
    let toy = UfoToyConfig::default();
    let problem = toy.build().unwrap();
    let estimator = maml(all_tasks(&problem), false);
    // Points in the quadratic zones, the cubic transitions and the linear tails of both tasks.
    for p in [-6.0, -3.9, -2.0, 0.5, 1.7, 3.0, 7.2, 7.9, 12.0] {
        let phi = Vector::from_fn(1, |_| p);
        let (grad, _) = estimate_once(&estimator, &problem, &phi, 0);
        let truth = reference_gradient(&problem, &phi);
        assert!(
            relative_error(&grad, &truth) < REVERSE_VS_FORWARD,
            "φ = {p}"
        );
        let fd = fd_directional(&problem, &phi, &Vector::from_fn(1, |_| 1.0));
        assert!(
            (fd - grad[0]).abs() <= FD_TOL * grad[0].abs().max(1.0),
            "φ = {p}: fd {fd} vs {}",
            grad[0]
        );
    }
}

#[test]
fn anil_meta_gradient_matches_the_head_only_reference() {
    let problem = common::meta_linear_head();
    let estimator = maml(all_tasks(&problem), true);
    let full = maml(all_tasks(&problem), false);
    for seed in [4, 5] {
        let phi = random_phi(&problem, seed);
        let (grad, _) = estimate_once(&estimator, &problem, &phi, seed);
        let truth = reference_gradient(&problem, &phi);
        assert!(relative_error(&grad, &truth) < REVERSE_VS_FORWARD);
        let mut rng = rng_from_seed(seed, 5);
        let dir = normal_vector(&mut rng, phi.nrows());
        let fd = fd_directional(&problem, &phi, &dir);
        assert!((fd - grad.dot(&dir)).abs() <= FD_TOL * grad.norm() * dir.norm());
        // ANIL's objective differs from MAML's: the body gradient is not MAML's.
        let (maml_grad, _) = estimate_once(&full, &problem, &phi, seed);
        assert!(relative_error(&grad, &maml_grad) > 1e-3);
    }
    // On a problem without a head range ANIL refuses to run.
    let toy = common::ufo_toy();
    let mut rng = rng_from_seed(0, 0);
    let err = estimator
        .init(&toy, Vector::zeros(1), &mut rng)
        .unwrap_err()
        .to_string();
    assert!(err.contains("head"), "{err}");
}

#[test]
fn meta_solvers_refuse_a_problem_that_is_not_unrolled() {
    let problem = common::quadratic_10x20();
    let err = SolverConfig::Maml(MamlConfig::default())
        .visit(InitCheck(&problem))
        .unwrap();
    assert!(err.contains("unrolled"), "{err}");
}

struct InitCheck<'a>(&'a Problem);

impl bilevel::algorithms::SolverVisitor for InitCheck<'_> {
    type Output = String;
    fn visit<S: Solver>(self, solver: S) -> String {
        let (x0, y0) = self.0.start();
        match solver.init(self.0, x0, y0, 0) {
            Ok(_) => "initialised".into(),
            Err(e) => e.to_string(),
        }
    }
}

// ───────────────────────────── ESJ ─────────────────────────────

/// A small quadratic: dim x = 3, dim y = 5, well conditioned (μ = 0.3) so that T = 100 inner
/// steps of size 1 converge to machine precision ((1 − 0.3)^100 ≈ 3e-16).
fn small_quadratic() -> Problem {
    QuadraticConfig {
        dim_x: 3,
        dim_y: 5,
        n_inner: 64,
        n_outer: 64,
        mu: 0.3,
        seed: 3,
        ..QuadraticConfig::default()
    }
    .build()
    .unwrap()
}

fn esj(t: usize, lr: f64, q: usize, direction: Direction, batch: Option<usize>) -> EsJacobian {
    EsJacobian {
        inner_steps: t,
        inner_lr: lr,
        directions: q,
        smoothing: 0.1,
        direction,
        warm_start: true,
        batch_size: batch,
        sampling: SamplingMode::Shuffled,
    }
}

/// dy_T/dx of the full-batch GD map y ← y − α∇ᵧg(x, y) from a start independent of x, by
/// forward mode with the exact oracles: J₀ = 0, J_{t+1} = J_t − α(∇²ᵧᵧg J_t + ∇²ᵧₓg).
/// Columns j = 0..dim x.
fn gd_jacobian(problem: &Problem, x: &Vector, y0: &Vector, t: usize, lr: f64) -> Vec<Vector> {
    let (dx, dy) = problem.dims();
    let g = problem.g();
    let mut y = y0.clone();
    let mut columns: Vec<Vector> = (0..dx).map(|_| Vector::zeros(dy)).collect();
    let (mut hv, mut cu, mut grad) = (Vector::zeros(dy), Vector::zeros(dy), Vector::zeros(dy));
    for _ in 0..t {
        for (j, col) in columns.iter_mut().enumerate() {
            let e = Vector::from_fn(dx, |i| if i == j { 1.0 } else { 0.0 });
            g.hvp_yy(x, &y, col, Batch::Full, &mut hv);
            g.cross_yx(x, &y, &e, Batch::Full, &mut cu);
            col.axpy(-lr, &hv);
            col.axpy(-lr, &cu);
        }
        g.grad_y(x, &y, Batch::Full, &mut grad);
        y.axpy(-lr, &grad);
    }
    columns
}

/// Ĵ of one ES draw (Q directions from `rng`), recovered entry by entry as Ĵᵀe_k with the same
/// directions for every k. Returned as columns j = 0..dim x.
fn es_jacobian_draw(
    estimator: &EsJacobian,
    problem: &Problem,
    x: &Vector,
    y0: &Vector,
    y_t: &Vector,
    rng: &mut bilevel::core::Rng,
) -> Vec<Vector> {
    let (dx, dy) = problem.dims();
    let mut columns: Vec<Vector> = (0..dx).map(|_| Vector::zeros(dy)).collect();
    let start = rng.clone();
    let mut row = Vector::zeros(dx);
    for k in 0..dy {
        *rng = start.clone();
        let e = Vector::from_fn(dy, |i| if i == k { 1.0 } else { 0.0 });
        estimator.jacobian_transpose_product(problem.g(), x, y0, y_t, &e, None, rng, &mut row);
        for j in 0..dx {
            columns[j].as_mut_slice()[k] = row[j];
        }
    }
    columns
}

fn frobenius_distance(a: &[Vector], b: &[Vector], scale_b: f64) -> f64 {
    a.iter()
        .zip(b)
        .map(|(ca, cb)| {
            let mut d = ca.clone();
            d.axpy(-scale_b, cb);
            d.norm_sq()
        })
        .sum::<f64>()
        .sqrt()
}

#[test]
fn esj_jacobian_is_unbiased_when_the_inner_map_is_affine() {
    let problem = small_quadratic();
    let (dx, dy) = problem.dims();
    let mut rng = rng_from_seed(5, 1);
    let x = normal_vector(&mut rng, dx);
    let y0 = normal_vector(&mut rng, dy);
    let (t, lr, q, draws) = (5, 0.5, 10, 2000);
    let truth = gd_jacobian(&problem, &x, &y0, t, lr);
    let truth_fro = frobenius_distance(&truth, &truth, 0.0);
    let mut y_t = y0.clone();
    let mut grad = Vector::zeros(dy);
    descend(problem.g(), &x, &mut y_t, t, lr, None, &mut grad);
    for (direction, expected_scale) in [
        (Direction::Gaussian, 1.0),
        (Direction::UnitSphere { rescale: true }, 1.0),
        (Direction::UnitSphere { rescale: false }, 1.0 / dx as f64),
    ] {
        let estimator = esj(t, lr, q, direction, None);
        let mut rng = rng_from_seed(11, 0);
        let mut mean: Vec<Vector> = (0..dx).map(|_| Vector::zeros(dy)).collect();
        for _ in 0..draws {
            let draw = es_jacobian_draw(&estimator, &problem, &x, &y0, &y_t, &mut rng);
            for (m, d) in mean.iter_mut().zip(&draw) {
                m.axpy(1.0 / draws as f64, d);
            }
        }
        // For one Gaussian direction Var(Ĵ_kl) = ‖J_k‖² + J_kl², so E‖mean − J‖_F² =
        // (p + 1)‖J‖_F²/(N·Q) (p = dim x); unit-sphere directions rescaled by p have smaller
        // variance (p/(p+2) and 3p/(p+2) − 1 instead of 1 and 2). Allow 3× the RMS error.
        let rms = ((dx + 1) as f64 / (draws * q) as f64).sqrt() * truth_fro * expected_scale;
        let error = frobenius_distance(&mean, &truth, expected_scale);
        assert!(
            error <= 3.0 * rms,
            "{direction:?}: ‖E[Ĵ] − c·J‖_F = {error:.3e}, 3·rms = {:.3e}",
            3.0 * rms
        );
        // Non-vacuous: the mean is far from zero and from the unscaled Jacobian when c ≠ 1.
        assert!(frobenius_distance(&mean, &truth, 0.0) > 10.0 * rms);
        if expected_scale != 1.0 {
            assert!(frobenius_distance(&mean, &truth, 1.0) > 10.0 * rms);
        }
    }
}

#[test]
fn esj_hypergradient_converges_to_the_true_one_as_t_grows() {
    let problem = small_quadratic();
    let dx = problem.dims().0;
    let mut rng = rng_from_seed(6, 1);
    let x = normal_vector(&mut rng, dx);
    let point = problem.reference().unwrap().evaluate(&x).unwrap();
    let truth = point.hypergradient;
    // The implicit part z = ∇F − ∇ₓf(x, y*) = J*ᵀ∇ᵧf(x, y*): the ES term's target.
    let mut gx = Vector::zeros(dx);
    problem
        .f()
        .grad_x(&x, point.y_star.as_ref().unwrap(), Batch::Full, &mut gx);
    let z = &truth - &gx;
    let q = 20_000;
    // The ES noise of ĥ has RMS ‖z_T‖√((p + 1)/Q) (E‖S z − z‖² = (p + 1)‖z‖²/Q for
    // S = (1/Q)Σuuᵀ, Gaussian u); 4 RMS bounds it with a wide margin (its square is a sum of
    // Q i.i.d. terms divided by Q²).
    let noise = 4.0 * z.norm() * ((dx + 1) as f64 / q as f64).sqrt();
    let mut errors = Vec::new();
    for t in [1, 3, 10, 100] {
        // The same seed for every T: the same directions, so the noise is common.
        let (h, _) = estimate_once(&esj(t, 1.0, q, Direction::Gaussian, None), &problem, &x, 8);
        errors.push((t, (&h - &truth).norm()));
    }
    let err = |t| errors.iter().find(|e| e.0 == t).unwrap().1;
    assert!(err(100) <= noise, "{errors:?}, noise bound {noise:.3e}");
    assert!(err(1) > err(3) && err(3) > err(10), "{errors:?}");
    assert!(
        err(1) > 5.0 * noise,
        "T = 1 must be visibly biased: {errors:?}"
    );
}

/// An objective that forwards to a problem's g and records the batch of every grad_y call.
struct RecordingG {
    problem: Problem,
    calls: Mutex<Vec<Vec<usize>>>,
}

impl Objective for RecordingG {
    fn dims(&self) -> (usize, usize) {
        self.problem.dims()
    }
    fn n_samples(&self) -> usize {
        self.problem.g().n_samples()
    }
    fn value(&self, x: &Vector, y: &Vector, batch: Batch<'_>) -> f64 {
        self.problem.g().value(x, y, batch)
    }
    fn grad_x(&self, x: &Vector, y: &Vector, batch: Batch<'_>, out: &mut Vector) {
        self.problem.g().grad_x(x, y, batch, out)
    }
    fn grad_y(&self, x: &Vector, y: &Vector, batch: Batch<'_>, out: &mut Vector) {
        let indices = match batch {
            Batch::Full => Vec::new(),
            Batch::Indices(i) => i.to_vec(),
        };
        self.calls.lock().unwrap().push(indices);
        self.problem.g().grad_y(x, y, batch, out)
    }
}

struct ForwardF(Problem);

impl Objective for ForwardF {
    fn dims(&self) -> (usize, usize) {
        self.0.dims()
    }
    fn n_samples(&self) -> usize {
        self.0.f().n_samples()
    }
    fn value(&self, x: &Vector, y: &Vector, batch: Batch<'_>) -> f64 {
        self.0.f().value(x, y, batch)
    }
    fn grad_x(&self, x: &Vector, y: &Vector, batch: Batch<'_>, out: &mut Vector) {
        self.0.f().grad_x(x, y, batch, out)
    }
    fn grad_y(&self, x: &Vector, y: &Vector, batch: Batch<'_>, out: &mut Vector) {
        self.0.f().grad_y(x, y, batch, out)
    }
}

#[test]
fn esj_s_replays_one_batch_sequence_on_every_trajectory() {
    let base = common::quadratic_10x20();
    let g = std::sync::Arc::new(RecordingG {
        problem: base.fresh(),
        calls: Mutex::new(Vec::new()),
    });
    let problem = Problem::from_arcs(
        "recorded",
        std::sync::Arc::new(ForwardF(base.fresh())),
        g.clone(),
    )
    .unwrap();
    let (t, q, bs) = (6, 4, 8);
    let estimator = esj(t, 0.5, q, Direction::Gaussian, Some(bs));
    let (dx, dy) = problem.dims();
    let mut rng = rng_from_seed(3, 0);
    let mut state = estimator
        .init(&problem, Vector::zeros(dy), &mut rng)
        .unwrap();
    let mut out = Vector::zeros(dx);
    for step in 0..3 {
        g.calls.lock().unwrap().clear();
        estimator
            .estimate(&problem, &Vector::zeros(dx), &mut state, &mut rng, &mut out)
            .unwrap();
        let calls = g.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), (q + 1) * t, "step {step}");
        for (i, batch) in calls.iter().enumerate() {
            assert_eq!(batch.len(), bs);
            // Trajectory i / t at inner step i % t uses the unperturbed trajectory's batch.
            assert_eq!(batch, &calls[i % t], "step {step}: call {i}");
        }
        // …and the T batches of one trajectory are not all the same (the sampler moves).
        assert!(calls[..t].windows(2).any(|w| w[0] != w[1]));
    }
}

#[test]
fn with_common_random_numbers_the_es_term_is_stable_as_mu_shrinks() {
    let problem = common::quadratic_10x20();
    let (dx, dy) = problem.dims();
    let mut rng = rng_from_seed(9, 1);
    let x = normal_vector(&mut rng, dx);
    let y0 = normal_vector(&mut rng, dy);
    let w = normal_vector(&mut rng, dy);
    let (t, bs) = (5, 8);
    let mut sampler =
        MinibatchSampler::new(problem.g().n_samples(), bs, SamplingMode::Shuffled, 1).unwrap();
    let draw =
        |s: &mut MinibatchSampler| (0..t).flat_map(|_| s.draw().to_vec()).collect::<Vec<_>>();
    let batches = draw(&mut sampler);
    let other = draw(&mut sampler);
    // y_T on the batches B_1..B_T.
    let mut y_t = y0.clone();
    let mut grad = Vector::zeros(dy);
    for k in 0..t {
        problem.g().grad_y(
            &x,
            &y_t,
            Batch::Indices(&batches[k * bs..(k + 1) * bs]),
            &mut grad,
        );
        y_t.axpy(-0.5, &grad);
    }
    let term = |mu: f64, perturbed_batches: &[usize]| {
        let mut estimator = esj(t, 0.5, 3, Direction::Gaussian, Some(bs));
        estimator.smoothing = mu;
        let mut rng = rng_from_seed(4, 0);
        let mut out = Vector::zeros(dx);
        estimator.jacobian_transpose_product(
            problem.g(),
            &x,
            &y0,
            &y_t,
            &w,
            Some(perturbed_batches),
            &mut rng,
            &mut out,
        );
        out
    };
    // Common random numbers: the perturbed trajectories differ from y_T by O(μ) (exactly J u μ
    // here, the map being affine), so Ĵᵀw does not depend on μ up to rounding ε‖y‖/μ.
    let reference = term(1e-1, &batches);
    for mu in [1e-3, 1e-5, 1e-7] {
        let error = relative_error(&term(mu, &batches), &reference);
        // Rounding: ε·‖y‖/(μ·‖δ‖) ≈ 2e-16·10/1e-7 ≈ 2e-8 at the smallest μ.
        assert!(error < 1e-6, "μ = {mu}: relative change {error:.3e}");
    }
    // Without them (other batches on the perturbed runs) the difference is O(1) and the term
    // blows up like 1/μ.
    let small = term(1e-5, &other).norm();
    let large = term(1e-1, &other).norm();
    assert!(small > 1e3 * large, "{small} vs {large}");
}

/// iMAML (Rajeswaran et al. 2019, eq. 6–7): with each task's proximal problem solved to
/// convergence and CG run to 1e-13, the estimate is the gradient of the proximal
/// meta-objective M_λ(φ) = mean_j L_j(θ_j*(φ)), θ_j* = argmin l_j(θ) + (λ/2)‖θ − φ‖². Checked
/// against central differences of M_λ, whose inner solves are written out here.
#[test]
fn imaml_is_the_gradient_of_the_proximal_meta_objective() {
    let problem = MetaLinearConfig {
        tasks: 3,
        ..Default::default()
    }
    .build()
    .unwrap();
    let (lambda, alpha, steps) = (1.0, 0.1, 1500);
    let estimator = ImplicitMetaGradient {
        batch: all_tasks(&problem),
        lambda,
        inner_steps: Some(steps),
        inner_lr: Some(alpha),
        cg: CgParams {
            max_iters: 500,
            rel_tol: 1e-13,
        },
    };
    let (f, g) = problem.uncounted_objectives();
    let tasks = g.n_samples();
    // M_λ(φ) by gradient descent on each proximal problem, checked converged.
    let meta_objective = |phi: &Vector| -> f64 {
        let mut total = 0.0;
        for j in 0..tasks {
            let batch = Batch::Indices(&[j]);
            let mut theta = phi.clone();
            let mut grad = Vector::zeros(phi.nrows());
            for _ in 0..steps {
                g.grad_y(phi, &theta, batch, &mut grad);
                grad.axpy(lambda, &theta);
                grad.axpy(-lambda, phi);
                theta.axpy(-alpha, &grad);
            }
            // The proximal gradient is (numerically) zero: θ is θ_j* to about 1e-10, far below
            // what the 1e-6 difference test can see.
            assert!(
                grad.norm() < 1e-10,
                "task {j}: |prox grad| = {:e}",
                grad.norm()
            );
            total += f.value(phi, &theta, batch);
        }
        total / tasks as f64
    };
    let phi = problem.start().0;
    let (h, diagnostics) = estimate_once(&estimator, &problem, &phi, 0);
    assert!(diagnostics.get("cg_rel_residual").unwrap() < 1e-12);
    let mut rng = rng_from_seed(11, 0);
    for trial in 0..3 {
        let u = normal_vector(&mut rng, phi.nrows());
        let step = 1e-5;
        let fd = (meta_objective(&(&phi + &u * faer::Scale(step)))
            - meta_objective(&(&phi - &u * faer::Scale(step))))
            / (2.0 * step);
        let directional = h.dot(&u);
        assert!(
            (fd - directional).abs() < FD_TOL * directional.abs().max(1.0),
            "direction {trial}: {fd} vs {directional}"
        );
    }
    // λ → ∞ pins θ* to φ: the estimate tends to the first-order mean_j ∇L_j(φ).
    let stiff = ImplicitMetaGradient {
        lambda: 1e8,
        inner_steps: Some(3),
        inner_lr: Some(1e-9),
        ..estimator
    };
    let (h_stiff, _) = estimate_once(&stiff, &problem, &phi, 0);
    let mut first_order = Vector::zeros(phi.nrows());
    let mut grad = Vector::zeros(phi.nrows());
    for j in 0..tasks {
        f.grad_y(&phi, &phi, Batch::Indices(&[j]), &mut grad);
        first_order.axpy(1.0 / tasks as f64, &grad);
    }
    assert!(relative_error(&h_stiff, &first_order) < 1e-6);
}
