//! Estimator-level tests of FSLA, MRBO, VRBO, LancBiO and SubBiO (algorithms.md §10):
//! - LancBiO with a constant (A, b) is Lanczos/CG: exact after dim y steps without restart, and
//!   equal to CG restarted from v̄ every m steps with restarts;
//! - SubBiO's v is never worse (quadratic-model value) than the SOBA/FSLA step from the same v;
//! - with deterministic oracles the recursive estimators of FSLA, MRBO and VRBO reproduce the
//!   plain estimator exactly, and momentum weight 1 reduces FSLA and MRBO to plain methods;
//! - every estimator matches the closed-form ∇F of the quadratic at a fixed x with y = y*(x).

use crate::common;
use std::sync::Arc;

use bilevel::core::linalg::rng_from_seed;
use bilevel::core::{MinibatchSampler, Objective};
use bilevel::hypergrad::{NeumannEstimator, PhiHat, PhiHatDraw, PhiHatWork};
use bilevel::linsolve::{CgParams, CgWorkspace, NeumannParams, cg, cg_in_place};
use bilevel::prelude::*;
use bilevel::problems::quadratic::QuadraticConfig;

/// Relative accuracy required of an estimator that has converged at a fixed x (linear rates,
/// long enough runs: the error is at rounding level, ~1e-13, far below this bound).
const HYPERGRAD_TOL: f64 = 1e-8;

/// Relative agreement of LancBiO with CG on the same constant system. Both are the same Krylov
/// method in exact arithmetic; on a 6-dimensional system with condition number ~10 their
/// rounding paths differ by far less than this.
const KRYLOV_TOL: f64 = 1e-9;

/// One level (f or g) of a problem seen through full-batch oracles (so every batch-driven method
/// becomes deterministic), optionally with x frozen at `frozen_x` (the objective ignores the x it
/// is given, so (A, b) stay fixed while a solver's x moves).
struct View {
    problem: Arc<Problem>,
    outer: bool,
    frozen_x: Option<Vector>,
}

impl View {
    fn level(&self) -> &dyn Objective {
        if self.outer {
            self.problem.f()
        } else {
            self.problem.g()
        }
    }
    fn x<'a>(&'a self, x: &'a Vector) -> &'a Vector {
        self.frozen_x.as_ref().unwrap_or(x)
    }
}

impl Objective for View {
    fn dims(&self) -> (usize, usize) {
        self.problem.dims()
    }
    fn value(&self, x: &Vector, y: &Vector, _: Batch<'_>) -> f64 {
        self.level().value(self.x(x), y, Batch::Full)
    }
    fn grad_x(&self, x: &Vector, y: &Vector, _: Batch<'_>, out: &mut Vector) {
        self.level().grad_x(self.x(x), y, Batch::Full, out)
    }
    fn grad_y(&self, x: &Vector, y: &Vector, _: Batch<'_>, out: &mut Vector) {
        self.level().grad_y(self.x(x), y, Batch::Full, out)
    }
    fn hvp_yy(&self, x: &Vector, y: &Vector, v: &Vector, _: Batch<'_>, out: &mut Vector) {
        self.level().hvp_yy(self.x(x), y, v, Batch::Full, out)
    }
    fn cross_xy(&self, x: &Vector, y: &Vector, v: &Vector, _: Batch<'_>, out: &mut Vector) {
        self.level().cross_xy(self.x(x), y, v, Batch::Full, out)
    }
    fn cross_yx(&self, x: &Vector, y: &Vector, u: &Vector, _: Batch<'_>, out: &mut Vector) {
        self.level().cross_yx(self.x(x), y, u, Batch::Full, out)
    }
}

/// `problem` with full-batch oracles (and x frozen if asked), started at (x0, y0).
fn deterministic(problem: &Arc<Problem>, frozen_x: Option<Vector>, y0: Vector) -> Problem {
    let (x0, _) = problem.start();
    let view = |outer| View {
        problem: problem.clone(),
        outer,
        frozen_x: frozen_x.clone(),
    };
    Problem::new("deterministic", view(true), view(false))
        .unwrap()
        .with_start(x0, y0)
        .unwrap()
}

/// A small quadratic (dim x = 2, dim y = 6) for the Krylov tests.
fn small_quadratic() -> Arc<Problem> {
    Arc::new(
        QuadraticConfig {
            dim_x: 2,
            dim_y: 6,
            n_inner: 64,
            n_outer: 64,
            seed: 3,
            ..Default::default()
        }
        .build()
        .unwrap(),
    )
}

fn rel_err(a: &Vector, b: &Vector) -> f64 {
    (a - b).norm() / b.norm()
}

/// A⁻¹b and b for A = ∇²ᵧᵧg, b = ∇ᵧf at (x, y) of `problem` (full batch, CG to rounding level).
fn adjoint_solution(problem: &Problem, x: &Vector, y: &Vector) -> (Vector, Vector) {
    let dy = y.nrows();
    let mut b = Vector::zeros(dy);
    problem.f().grad_y(x, y, Batch::Full, &mut b);
    let (v, info) = cg(
        |p, out| problem.g().hvp_yy(x, y, p, Batch::Full, out),
        &b,
        None,
        &CgParams {
            max_iters: 10 * dy,
            rel_tol: 1e-14,
        },
    );
    assert!(info.converged, "reference CG: {info:?}");
    (v, b)
}

/// ĥ = ∇ₓf − ∇²ₓᵧg v at (x, y) (full batch).
fn hypergradient_from(problem: &Problem, x: &Vector, y: &Vector, v: &Vector) -> Vector {
    let dx = x.nrows();
    let (mut h, mut cross) = (Vector::zeros(dx), Vector::zeros(dx));
    problem.f().grad_x(x, y, Batch::Full, &mut h);
    problem.g().cross_xy(x, y, v, Batch::Full, &mut cross);
    h.axpy(-1.0, &cross);
    h
}

// ---------------------------------------------------------------------------------------------
// LancBiO with a constant (A, b) is Lanczos / CG.

/// LancBiO on the frozen small quadratic: no inner steps (y fixed), x frozen, so A and b are
/// constant; a fixed restart period m.
fn constant_system_lancbio(m: usize) -> (Arc<Problem>, Problem, Lancbio, LancbioState) {
    let base = small_quadratic();
    let (x0, y0) = base.start();
    let problem = deterministic(&base, Some(x0.clone()), y0.clone());
    let solver = LancbioConfig {
        inner_steps: 0,
        restart_period: m,
        restart_growth: 1.0,
        restart_period_max: m,
        ..Default::default()
    }
    .build()
    .unwrap();
    let state = solver.init(&problem, x0, y0, 0).unwrap();
    (base, problem, solver, state)
}

/// The j-th CG iterate on A v = b from `start` (j matvecs after the initial residual).
fn cg_iterate(
    problem: &Problem,
    x: &Vector,
    y: &Vector,
    b: &Vector,
    start: &Vector,
    j: usize,
) -> Vector {
    let mut v = start.clone();
    let mut ws = CgWorkspace::new(b.nrows());
    cg_in_place(
        |p, out| problem.g().hvp_yy(x, y, p, Batch::Full, out),
        b,
        &mut v,
        &CgParams {
            max_iters: j,
            rel_tol: 0.0,
        },
        &mut ws,
    );
    v
}

#[test]
fn lancbio_without_restart_is_cg_and_exact_after_dim_steps() {
    let dim = 6;
    let (base, problem, solver, mut state) = constant_system_lancbio(dim + 4);
    let (x0, y0) = base.start();
    let (v_star, b) = adjoint_solution(&base, &x0, &y0);
    let zero = Vector::zeros(dim);
    for j in 1..=dim {
        let d = solver.step(&problem, &mut state).unwrap();
        assert_eq!(d.get("restart"), Some(if j == 1 { 1.0 } else { 0.0 }));
        // Iterate j of LancBiO = iterate j of CG from v̄ = 0.
        let cg_j = cg_iterate(&base, &x0, &y0, &b, &zero, j);
        let err = (&state.v - &cg_j).norm() / v_star.norm();
        assert!(
            err < KRYLOV_TOL,
            "iteration {j}: differs from CG by {err:e}"
        );
    }
    let err = rel_err(&state.v, &v_star);
    assert!(
        err < KRYLOV_TOL,
        "after dim y steps: relative error {err:e}"
    );
}

#[test]
fn lancbio_with_restarts_is_restarted_cg_from_the_anchor() {
    let m = 3;
    let (base, problem, solver, mut state) = constant_system_lancbio(m);
    let (x0, y0) = base.start();
    let (v_star, b) = adjoint_solution(&base, &x0, &y0);
    let mut anchor = Vector::zeros(y0.nrows());
    for k in 1..=4 * m {
        let d = solver.step(&problem, &mut state).unwrap();
        let j = (k - 1) % m + 1;
        assert_eq!(
            d.get("restart"),
            Some(if j == 1 { 1.0 } else { 0.0 }),
            "k = {k}"
        );
        assert_eq!(state.vbar.as_slice(), anchor.as_slice(), "k = {k}: anchor");
        let cg_j = cg_iterate(&base, &x0, &y0, &b, &anchor, j);
        let err = (&state.v - &cg_j).norm() / v_star.norm();
        assert!(
            err < KRYLOV_TOL,
            "k = {k}: differs from restarted CG by {err:e}"
        );
        if j == m {
            anchor = state.v.clone();
        }
    }
    // Restarted CG(3) on a 6-dimensional system still converges (slower than plain CG).
    assert!(rel_err(&state.v, &v_star) < 1e-3);
}

// ---------------------------------------------------------------------------------------------
// SubBiO's subspace contains the SOBA/FSLA step.

#[test]
fn subbio_is_never_worse_than_the_gradient_step_on_the_model() {
    let problem = common::quadratic_10x20();
    let eta = 0.05;
    let solver = SubbioConfig {
        inner_lr: Schedule::constant(0.5),
        outer_lr: Schedule::constant(0.5),
        v_lr: eta,
        inner_steps: 2,
        ..Default::default()
    }
    .build()
    .unwrap();
    let (x0, y0) = problem.start();
    let mut state = solver.init(&problem, x0, y0, 0).unwrap();
    let dy = state.y.nrows();
    let (mut av, mut b) = (Vector::zeros(dy), Vector::zeros(dy));
    let mut strictly_better = 0;
    for _ in 0..60 {
        let (x_before, v_before) = (state.x.clone(), state.v.clone());
        solver.step(&problem, &mut state).unwrap();
        // The model of this iteration: A, b at (x_k, y after the inner steps).
        let y = &state.y;
        let model = |v: &Vector, av: &mut Vector, b: &mut Vector| {
            problem.g().hvp_yy(&x_before, y, v, Batch::Full, av);
            problem.f().grad_y(&x_before, y, Batch::Full, b);
            0.5 * v.dot(av) - b.dot(v)
        };
        let q_subbio = model(&state.v, &mut av, &mut b);
        // SOBA/FSLA step from the same v: v − η(A v − b).
        model(&v_before, &mut av, &mut b);
        let mut v_sgd = v_before.clone();
        v_sgd.axpy(-eta, &av);
        v_sgd.axpy(eta, &b);
        let q_sgd = model(&v_sgd, &mut av, &mut b);
        // "Never worse" up to rounding of the model values (O(ε · |q|)).
        assert!(
            q_subbio <= q_sgd + 1e-12 * (1.0 + q_sgd.abs()),
            "SubBiO {q_subbio} vs gradient step {q_sgd}"
        );
        if q_subbio < q_sgd - 1e-9 * (1.0 + q_sgd.abs()) {
            strictly_better += 1;
        }
    }
    // The test can fail: SubBiO must actually improve on the gradient step most of the time.
    assert!(
        strictly_better > 50,
        "strictly better only {strictly_better}/60 times"
    );
}

// ---------------------------------------------------------------------------------------------
// Deterministic oracles: the recursive estimators telescope exactly.

fn assert_same_iterates(a: (&Vector, &Vector), b: (&Vector, &Vector), what: &str) {
    assert_eq!(a.0.as_slice(), b.0.as_slice(), "{what}: x differs");
    assert_eq!(a.1.as_slice(), b.1.as_slice(), "{what}: y differs");
}

#[test]
fn fsla_storm_reproduces_the_plain_method_with_deterministic_oracles() {
    let base = Arc::new(common::quadratic_10x20());
    let (x0, y0) = base.start();
    let problem = deterministic(&base, None, y0.clone());
    let config = |outer_direction| FslaConfig {
        inner_lr: Schedule::inv_power(0.5, 0.25),
        v_lr: Schedule::inv_power(0.5, 0.25),
        outer_lr: Schedule::inv_power(0.5, 0.25),
        momentum: Schedule::inv_power(0.3, 0.5),
        outer_direction,
        ..Default::default()
    };
    let steps = 40;
    let run = |direction| {
        let solver = config(direction).build().unwrap();
        let mut s = solver.init(&problem, x0.clone(), y0.clone(), 1).unwrap();
        for _ in 0..steps {
            solver.step(&problem, &mut s).unwrap();
        }
        s
    };
    let storm = run(OuterDirection::Storm);
    let plain = run(OuterDirection::Plain);
    assert_same_iterates((&storm.x, &storm.y), (&plain.x, &plain.y), "storm vs plain");
    assert_eq!(storm.v.as_slice(), plain.v.as_slice());

    // ... and the plain method is the hand-written alternating loop of algorithms.md §2.3.
    let c = config(OuterDirection::Plain);
    let (f, g) = (problem.f(), problem.g());
    let (mut x, mut y, mut v) = (x0.clone(), y0.clone(), Vector::zeros(y0.nrows()));
    let (dx, dy) = problem.dims();
    let (mut gy, mut hv, mut fy, mut h, mut cross) = (
        Vector::zeros(dy),
        Vector::zeros(dy),
        Vector::zeros(dy),
        Vector::zeros(dx),
        Vector::zeros(dx),
    );
    for t in 0..steps {
        g.grad_y(&x, &y, Batch::Full, &mut gy);
        y.axpy(-c.inner_lr.at(t), &gy);
        g.hvp_yy(&x, &y, &v, Batch::Full, &mut hv);
        f.grad_y(&x, &y, Batch::Full, &mut fy);
        hv.axpy(-1.0, &fy);
        v.axpy(-c.v_lr.at(t), &hv);
        f.grad_x(&x, &y, Batch::Full, &mut h);
        g.cross_xy(&x, &y, &v, Batch::Full, &mut cross);
        h.axpy(-1.0, &cross);
        x.axpy(-c.outer_lr.at(t), &h);
    }
    assert_same_iterates((&plain.x, &plain.y), (&x, &y), "plain vs reference loop");
}

#[test]
fn fsla_with_momentum_weight_one_is_the_plain_method() {
    let problem = common::quadratic_10x20();
    let (x0, y0) = problem.start();
    let run = |direction, momentum| {
        let solver = FslaConfig {
            outer_direction: direction,
            momentum,
            batch_size: 16,
            ..Default::default()
        }
        .build()
        .unwrap();
        let mut s = solver.init(&problem, x0.clone(), y0.clone(), 4).unwrap();
        for _ in 0..30 {
            solver.step(&problem, &mut s).unwrap();
        }
        s
    };
    let storm = run(OuterDirection::Storm, Schedule::constant(1.0));
    let plain = run(OuterDirection::Plain, Schedule::constant(1.0));
    assert_same_iterates((&storm.x, &storm.y), (&plain.x, &plain.y), "a = 1");
    // With a < 1 the stochastic STORM direction differs from the plain one (the test can fail).
    let momentum = run(OuterDirection::Storm, Schedule::constant(0.5));
    assert_ne!(momentum.x.as_slice(), plain.x.as_slice());
}

/// The plain method MRBO reduces to: x ← x − λη Φ̂(x, y), y ← y − γη ∇ᵧg(x, y) (stocBiO with
/// one inner step), with Φ̂ and ∇ᵧg drawn as MRBO draws them.
#[test]
fn mrbo_reproduces_the_plain_method_with_deterministic_oracles() {
    let base = Arc::new(common::quadratic_10x20());
    let (x0, y0) = base.start();
    let problem = deterministic(&base, None, y0.clone());
    let config = MrboConfig {
        step: Schedule::inv_power(0.5, 1.0 / 3.0),
        momentum: MrboMomentum::Theory {
            outer: 2.0,
            inner: 3.0,
        },
        neumann: NeumannParams {
            terms: 20,
            step: 0.5,
        },
        ..Default::default()
    };
    let solver = config.clone().build().unwrap();
    let mut state = solver.init(&problem, x0.clone(), y0.clone(), 2).unwrap();
    let steps = 25;
    for _ in 0..steps {
        solver.step(&problem, &mut state).unwrap();
    }
    let est = PhiHat {
        neumann: NeumannEstimator::Shia(config.neumann),
        batch_size: 1,
        sampling: SamplingMode::Shuffled,
    };
    let draw = PhiHatDraw::full(config.neumann.terms);
    let mut work = PhiHatWork::default();
    let (dx, dy) = problem.dims();
    let (mut x, mut y) = (x0, y0);
    let (mut v, mut u) = (Vector::zeros(dx), Vector::zeros(dy));
    for t in 0..steps {
        est.evaluate(&problem, &x, &y, &draw, &mut v, &mut work);
        problem.g().grad_y(&x, &y, Batch::Full, &mut u);
        let eta = config.step.at(t);
        x.axpy(-(config.outer_scale * eta), &v);
        y.axpy(-(config.inner_scale * eta), &u);
    }
    assert_same_iterates((&state.x, &state.y), (&x, &y), "MRBO vs plain loop");
}

#[test]
fn mrbo_with_momentum_weights_one_is_the_plain_method() {
    use rand::Rng as _;
    let problem = common::quadratic_10x20();
    let (x0, y0) = problem.start();
    let (bs, seed) = (16, 5);
    let config = MrboConfig {
        momentum: MrboMomentum::Constant {
            outer: 1.0,
            inner: 1.0,
        },
        neumann: NeumannParams {
            terms: 5,
            step: 0.5,
        },
        batch_size: bs,
        ..Default::default()
    };
    let solver = config.clone().build().unwrap();
    let mut state = solver.init(&problem, x0.clone(), y0.clone(), seed).unwrap();
    let steps = 20;
    for _ in 0..steps {
        solver.step(&problem, &mut state).unwrap();
    }
    // The same batch streams, seeded as `Mrbo::init` documents: Φ̂'s samplers, then B′'s.
    let est = PhiHat {
        neumann: NeumannEstimator::Shia(config.neumann),
        batch_size: bs,
        sampling: config.sampling,
    };
    let mut rng = rng_from_seed(seed, 0);
    let mut samplers = est.samplers(&problem, &mut rng).unwrap();
    let mut inner =
        MinibatchSampler::new(problem.g().n_samples(), bs, config.sampling, rng.next_u64())
            .unwrap();
    let mut draw = PhiHatDraw::default();
    let mut work = PhiHatWork::default();
    let (dx, dy) = problem.dims();
    let (mut x, mut y) = (x0, y0);
    let (mut v, mut u) = (Vector::zeros(dx), Vector::zeros(dy));
    // v₀, u₀; then each step moves and re-estimates at the new point only.
    est.draw(&mut samplers, &mut rng, &mut draw);
    est.evaluate(&problem, &x, &y, &draw, &mut v, &mut work);
    problem
        .g()
        .grad_y(&x, &y, Batch::Indices(inner.draw()), &mut u);
    for t in 0..steps {
        let eta = config.step.at(t);
        x.axpy(-(config.outer_scale * eta), &v);
        y.axpy(-(config.inner_scale * eta), &u);
        est.draw(&mut samplers, &mut rng, &mut draw);
        est.evaluate(&problem, &x, &y, &draw, &mut v, &mut work);
        problem
            .g()
            .grad_y(&x, &y, Batch::Indices(inner.draw()), &mut u);
    }
    // Equal up to rounding: MRBO adds 0 · (v − Φ̂_old), which is exact, but its (v − Φ̂_old)
    // itself is formed first; the results agree to the last bit or nearly.
    let err = rel_err(&state.x, &x).max(rel_err(&state.y, &y));
    assert!(
        err < 1e-14,
        "MRBO with weights 1 vs plain stocBiO-1 loop: {err:e}"
    );
}

/// VRBO with deterministic oracles: u = ∇ᵧg and v = Φ̂ at the current point, so it is
/// x ← x − αΦ̂(x_k, y_k) followed by m + 1 gradient steps on y at x_{k+1}.
#[test]
fn vrbo_spider_corrections_telescope_with_deterministic_oracles() {
    let base = Arc::new(common::quadratic_10x20());
    let (x0, y0) = base.start();
    let problem = deterministic(&base, None, y0.clone());
    let config = |correct_last_inner_step| VrboConfig {
        outer_lr: Schedule::constant(0.5),
        inner_lr: Schedule::constant(0.3),
        inner_steps: 3,
        period: 4,
        neumann: NeumannParams {
            terms: 20,
            step: 0.5,
        },
        correct_last_inner_step,
        ..Default::default()
    };
    let steps = 10;
    let run = |c: VrboConfig| {
        let solver = c.build().unwrap();
        let mut s = solver.init(&problem, x0.clone(), y0.clone(), 8).unwrap();
        for _ in 0..steps {
            solver.step(&problem, &mut s).unwrap();
        }
        s
    };
    let fixed = run(config(true));
    let c = config(true);
    let est = PhiHat {
        neumann: NeumannEstimator::Shia(c.neumann),
        batch_size: 1,
        sampling: SamplingMode::Shuffled,
    };
    let draw = PhiHatDraw::full(c.neumann.terms);
    let mut work = PhiHatWork::default();
    let (dx, dy) = problem.dims();
    let (mut x, mut y) = (x0.clone(), y0.clone());
    let (mut phi, mut gy) = (Vector::zeros(dx), Vector::zeros(dy));
    for t in 0..steps {
        est.evaluate(&problem, &x, &y, &draw, &mut phi, &mut work);
        x.axpy(-c.outer_lr.at(t), &phi);
        for _ in 0..=c.inner_steps {
            problem.g().grad_y(&x, &y, Batch::Full, &mut gy);
            y.axpy(-c.inner_lr.at(t), &gy);
        }
    }
    assert_same_iterates((&fixed.x, &fixed.y), (&x, &y), "VRBO vs plain loop");
    // The official code's stale anchor (no `elif` correction) gives a different path.
    let official = run(config(false));
    assert_ne!(official.x.as_slice(), x.as_slice());
}

// ---------------------------------------------------------------------------------------------
// Every estimator against the closed-form ∇F at a fixed x with y = y*(x).

/// The test quadratic with x frozen at x₀ and every oracle full-batch, started at y*(x₀); and
/// the exact ∇F(x₀).
fn frozen_at_optimum() -> (Arc<Problem>, Problem, Vector, Vector, Vector) {
    let base = Arc::new(common::quadratic_10x20());
    let (x0, _) = base.start();
    let truth = base.reference().unwrap().evaluate(&x0).unwrap();
    let y_star = truth.y_star.unwrap();
    let problem = deterministic(&base, Some(x0.clone()), y_star.clone());
    (base, problem, x0, y_star, truth.hypergradient)
}

fn assert_close(estimate: &Vector, truth: &Vector, what: &str) {
    let err = rel_err(estimate, truth);
    assert!(err < HYPERGRAD_TOL, "{what}: relative error {err:e}");
}

#[test]
fn full_batch_phi_hat_with_a_long_series_at_y_star_is_the_hypergradient() {
    let (_, problem, x0, y_star, truth) = frozen_at_optimum();
    // η = 1: I − ηA has spectral radius max(|1 − λ|) ≈ 0.9 on spectrum ≈ [0.1, 1.15], so 3000
    // terms leave a truncation bias of 0.9^3000 ≈ 1e-137.
    let est = PhiHat {
        neumann: NeumannEstimator::Shia(NeumannParams {
            terms: 3000,
            step: 1.0,
        }),
        batch_size: 1,
        sampling: SamplingMode::Shuffled,
    };
    let mut out = Vector::zeros(x0.nrows());
    est.evaluate(
        &problem,
        &x0,
        &y_star,
        &PhiHatDraw::full(3000),
        &mut out,
        &mut PhiHatWork::default(),
    );
    assert_close(&out, &truth, "Φ̂");
}

#[test]
fn lancbio_v_gives_the_hypergradient_at_a_fixed_x() {
    let (base, problem, x0, y_star, truth) = frozen_at_optimum();
    let solver = LancbioConfig {
        inner_steps: 0,
        restart_period: 10,
        restart_growth: 1.0,
        restart_period_max: 10,
        ..Default::default()
    }
    .build()
    .unwrap();
    let mut state = solver
        .init(&problem, x0.clone(), y_star.clone(), 0)
        .unwrap();
    for _ in 0..60 {
        solver.step(&problem, &mut state).unwrap();
    }
    let h = hypergradient_from(&base, &x0, &y_star, &state.v);
    assert_close(&h, &truth, "LancBiO");
}

#[test]
fn subbio_v_gives_the_hypergradient_at_a_fixed_x() {
    let (base, problem, x0, y_star, truth) = frozen_at_optimum();
    let solver = SubbioConfig {
        inner_steps: 0,
        v_lr: 0.5,
        ..Default::default()
    }
    .build()
    .unwrap();
    let mut state = solver
        .init(&problem, x0.clone(), y_star.clone(), 0)
        .unwrap();
    for _ in 0..400 {
        solver.step(&problem, &mut state).unwrap();
    }
    let h = hypergradient_from(&base, &x0, &y_star, &state.v);
    assert_close(&h, &truth, "SubBiO");
}

#[test]
fn fsla_direction_gives_the_hypergradient_at_a_fixed_x() {
    let (base, problem, x0, y_star, truth) = frozen_at_optimum();
    for direction in [OuterDirection::Storm, OuterDirection::Plain] {
        // Constant steps: v contracts by 1 − ημ ≈ 0.95 per step; 1500 steps reach rounding.
        let solver = FslaConfig {
            inner_lr: Schedule::constant(0.5),
            v_lr: Schedule::constant(0.5),
            momentum: Schedule::constant(0.5),
            outer_lr: Schedule::constant(0.1),
            outer_direction: direction,
            ..Default::default()
        }
        .build()
        .unwrap();
        let mut state = solver
            .init(&problem, x0.clone(), y_star.clone(), 0)
            .unwrap();
        for _ in 0..1500 {
            solver.step(&problem, &mut state).unwrap();
        }
        assert_close(&state.d, &truth, "FSLA direction");
        let h = hypergradient_from(&base, &x0, &state.y, &state.v);
        assert_close(&h, &truth, "FSLA v");
    }
}

#[test]
fn mrbo_and_vrbo_estimates_are_the_hypergradient_at_a_fixed_x() {
    let (_, problem, x0, y_star, truth) = frozen_at_optimum();
    // η_N = 1 and Q = 400: truncation bias ≈ 0.9^401 ≈ 4e-19.
    let neumann = NeumannParams {
        terms: 400,
        step: 1.0,
    };
    let mrbo = MrboConfig {
        neumann,
        ..Default::default()
    }
    .build()
    .unwrap();
    let mut state = mrbo.init(&problem, x0.clone(), y_star.clone(), 0).unwrap();
    for _ in 0..5 {
        mrbo.step(&problem, &mut state).unwrap();
    }
    assert_close(&state.v, &truth, "MRBO v");

    let vrbo = VrboConfig {
        neumann,
        inner_steps: 2,
        ..Default::default()
    }
    .build()
    .unwrap();
    let mut state = vrbo.init(&problem, x0, y_star, 0).unwrap();
    for _ in 0..5 {
        vrbo.step(&problem, &mut state).unwrap();
    }
    assert_close(&state.v, &truth, "VRBO v");
}

/// Regression: on the benchmark quadratic (dim y = 100) with the default m schedule (up to 80),
/// the basis loses orthogonality within a cycle. Unguarded, LancBiO converges and then drifts
/// away (‖∇F‖² ≈ 1e-24 at 1000 iterations, ≈ 0.26 at 4000); the semi-orthogonality guard
/// restarts instead and stays at rounding level.
#[test]
fn lancbio_orthogonality_guard_keeps_long_cycles_stable() {
    let problem = QuadraticConfig::default().build().unwrap();
    let run = |orthogonality_guard| {
        let solver = LancbioConfig {
            inner_lr: Schedule::constant(1.0),
            orthogonality_guard,
            ..Default::default()
        }
        .build()
        .unwrap();
        let (x0, y0) = problem.start();
        let mut state = solver.init(&problem, x0, y0, 0).unwrap();
        for _ in 0..4000 {
            solver.step(&problem, &mut state).unwrap();
        }
        problem.metrics(&state.x, &state.y, None).unwrap()["hypergrad_norm_sq"]
    };
    let guarded = run(true);
    let unguarded = run(false);
    // ‖∇F(x₀)‖² ≈ 1.2e2; rounding level of ‖∇F‖² is ~1e-30.
    assert!(guarded < 1e-20, "guarded: {guarded:e}");
    assert!(
        unguarded > 1e-10,
        "the unguarded run no longer drifts ({unguarded:e}): re-check"
    );
}
