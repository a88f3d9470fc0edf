//! The test kit, public so that users check their own objectives and solvers the way the
//! library checks its own.
//!
//! - [`check_objective`] compares every oracle of an [`Objective`] (gradients, the three
//!   second-order products, the fused calls and the dense Hessian) with central finite
//!   differences at one point, and returns the worst relative error of each
//!   ([`FdReport`]); [`assert_objective_matches_fd`] does it at several random points. The
//!   example on [`Objective`] checks a user objective this way.
//! - [`assert_resumes_bit_exact`] and [`assert_deterministic`] are the mechanical checks every
//!   solver passes: stopping, serializing the state, and continuing gives the same bits as a
//!   straight run; the same seed gives the same run.
//! - [`counts_per_steps`] measures the oracle calls of a number of steps (the per-iteration
//!   counts each algorithm file documents).
//!
//! ```
//! use bilevel::prelude::*;
//! use bilevel::testing::{assert_deterministic, assert_resumes_bit_exact, counts_per_steps};
//!
//! let problem = bilevel::problems::quadratic::tiny();
//! let config = SolverConfig::Soba(SobaConfig { batch_size: 2, ..Default::default() });
//! assert_resumes_bit_exact(&config, &problem, 10, 3);
//! assert_deterministic(&config, &problem, 10, 3);
//! // SOBA's documented cost per iteration, measured after a warm-up step:
//! let counts = counts_per_steps(&config, &problem, 1, 1, 0);
//! assert_eq!((counts.g.grad_y, counts.g.hvp_yy, counts.g.cross_xy), (1, 1, 1));
//! assert_eq!((counts.f.grad_x, counts.f.grad_y), (1, 1));
//! ```

use crate::algorithms::{SolverConfig, SolverVisitor};
use crate::core::linalg::{normal_vector, rng_from_seed};
use crate::core::{Batch, Counts, Fused, Objective, Problem, Solver, Vector, VectorExt};

/// Largest relative error of each oracle against finite differences.
#[derive(Clone, Copy, Debug, Default)]
pub struct FdReport {
    /// ∇ₓh against differences of h.
    pub grad_x: f64,
    /// ∇ᵧh against differences of h.
    pub grad_y: f64,
    /// The fused `grad_xy` against `grad_x` and `grad_y`.
    pub grad_xy: f64,
    /// ∇²ᵧᵧh v against differences of ∇ᵧh.
    pub hvp_yy: f64,
    /// ∇²ₓᵧh v against differences of ∇ₓh.
    pub cross_xy: f64,
    /// ∇²ᵧₓh u against differences of ∇ᵧh.
    pub cross_yx: f64,
    /// [`Objective::fused`] (all five outputs at once, and {h, ∇ₓh, ∇ᵧh} alone) against the
    /// component calls.
    pub fused: f64,
    /// [`Objective::value_grad_hess_yy`] (value, ∇ᵧh and the dense ∇²ᵧᵧh) against `value`,
    /// `grad_y` and `hvp_yy` along every coordinate; 0 when the objective has no dense Hessian.
    pub dense_hessian: f64,
}

impl FdReport {
    /// The worst error.
    pub fn worst(&self) -> f64 {
        [
            self.grad_x,
            self.grad_y,
            self.grad_xy,
            self.hvp_yy,
            self.cross_xy,
            self.cross_yx,
            self.fused,
            self.dense_hessian,
        ]
        .into_iter()
        .fold(0.0, f64::max)
    }
}

fn rel_error(exact: &Vector, approx: &Vector) -> f64 {
    let diff = (exact - approx).norm();
    let scale = exact.norm().max(approx.norm()).max(1e-6);
    diff / scale
}

/// Central-difference gradient of `h` at `point`: by coordinates when dim ≤ 64, else the
/// projection on 8 random directions (compared through directional derivatives).
fn fd_gradient_error(h: impl Fn(&Vector) -> f64, point: &Vector, exact: &Vector, seed: u64) -> f64 {
    let n = point.nrows();
    let step = |p: &Vector, dir: &Vector| {
        let eps = 1e-5 * (1.0 + p.max_abs()) / dir.norm().max(1e-300);
        let mut plus = p.clone();
        plus.axpy(eps, dir);
        let mut minus = p.clone();
        minus.axpy(-eps, dir);
        (h(&plus) - h(&minus)) / (2.0 * eps)
    };
    if n <= 64 {
        let approx = Vector::from_fn(n, |i| {
            let dir = Vector::from_fn(n, |j| if i == j { 1.0 } else { 0.0 });
            step(point, &dir)
        });
        rel_error(exact, &approx)
    } else {
        let mut rng = rng_from_seed(seed, 7);
        let mut worst: f64 = 0.0;
        for _ in 0..8 {
            let dir = normal_vector(&mut rng, n);
            let approx = step(point, &dir);
            let exact_dd = exact.dot(&dir);
            let scale = (exact.norm() * dir.norm()).max(1e-6);
            worst = worst.max((approx - exact_dd).abs() / scale);
        }
        worst
    }
}

/// Central difference of a vector-valued map along `dir`.
fn fd_directional(
    map: impl Fn(&Vector, &mut Vector),
    point: &Vector,
    dir: &Vector,
    out_len: usize,
) -> Vector {
    let eps = 1e-5 * (1.0 + point.max_abs()) / dir.norm().max(1e-300);
    let mut plus = point.clone();
    plus.axpy(eps, dir);
    let mut minus = point.clone();
    minus.axpy(-eps, dir);
    let (mut gp, mut gm) = (Vector::zeros(out_len), Vector::zeros(out_len));
    map(&plus, &mut gp);
    map(&minus, &mut gm);
    let mut d = gp;
    d.axpy(-1.0, &gm);
    d.scale(1.0 / (2.0 * eps));
    d
}

/// Compares every oracle of `h` at (x, y) on `batch` with central finite differences (directions
/// v in y-space and u in x-space drawn from `seed`).
pub fn check_objective(
    h: &dyn Objective,
    x: &Vector,
    y: &Vector,
    batch: Batch<'_>,
    seed: u64,
) -> FdReport {
    let (dx, dy) = h.dims();
    assert_eq!(
        (x.nrows(), y.nrows()),
        (dx, dy),
        "check_objective: point dimensions"
    );
    let mut rng = rng_from_seed(seed, 3);
    let v = normal_vector(&mut rng, dy);
    let u = normal_vector(&mut rng, dx);
    let (mut gx, mut gy) = (Vector::zeros(dx), Vector::zeros(dy));
    h.grad_x(x, y, batch, &mut gx);
    h.grad_y(x, y, batch, &mut gy);
    let (mut fx, mut fy) = (Vector::zeros(dx), Vector::zeros(dy));
    h.grad_xy(x, y, batch, &mut fx, &mut fy);
    let mut report = FdReport {
        grad_x: fd_gradient_error(|p| h.value(p, y, batch), x, &gx, seed),
        grad_y: fd_gradient_error(|p| h.value(x, p, batch), y, &gy, seed),
        grad_xy: rel_error(&gx, &fx).max(rel_error(&gy, &fy)),
        ..FdReport::default()
    };
    let mut hv = Vector::zeros(dy);
    h.hvp_yy(x, y, &v, batch, &mut hv);
    let fd = fd_directional(|p, o| h.grad_y(x, p, batch, o), y, &v, dy);
    report.hvp_yy = rel_error(&hv, &fd);
    let mut cv = Vector::zeros(dx);
    h.cross_xy(x, y, &v, batch, &mut cv);
    let fd = fd_directional(|p, o| h.grad_x(x, p, batch, o), y, &v, dx);
    report.cross_xy = rel_error(&cv, &fd);
    let mut cu = Vector::zeros(dy);
    h.cross_yx(x, y, &u, batch, &mut cu);
    let fd = fd_directional(|p, o| h.grad_y(p, y, batch, o), x, &u, dy);
    report.cross_yx = rel_error(&cu, &fd);
    let value = h.value(x, y, batch);
    // A value the fused call did not write stays NaN: an infinite error (f64::max would drop
    // a NaN).
    let value_error = |fused: f64| {
        let e = (fused - value).abs() / value.abs().max(1e-6);
        if e.is_nan() { f64::INFINITY } else { e }
    };
    let (mut val, mut ox, mut oy, mut ohv, mut ocv) = (
        f64::NAN,
        Vector::zeros(dx),
        Vector::zeros(dy),
        Vector::zeros(dy),
        Vector::zeros(dx),
    );
    h.fused(
        x,
        y,
        Some(&v),
        batch,
        Fused {
            value: Some(&mut val),
            grad_x: Some(&mut ox),
            grad_y: Some(&mut oy),
            hvp_yy: Some(&mut ohv),
            cross_xy: Some(&mut ocv),
        },
    );
    report.fused = value_error(val)
        .max(rel_error(&gx, &ox))
        .max(rel_error(&gy, &oy))
        .max(rel_error(&hv, &ohv))
        .max(rel_error(&cv, &ocv));
    let (mut val, mut ox, mut oy) = (f64::NAN, Vector::zeros(dx), Vector::zeros(dy));
    h.fused(
        x,
        y,
        None,
        batch,
        Fused {
            value: Some(&mut val),
            grad_x: Some(&mut ox),
            grad_y: Some(&mut oy),
            ..Fused::default()
        },
    );
    report.fused = report
        .fused
        .max(value_error(val))
        .max(rel_error(&gx, &ox))
        .max(rel_error(&gy, &oy));
    if dy <= 512 {
        let (mut dg, mut dh) = (Vector::zeros(dy), vec![f64::NAN; dy * dy]);
        if let Some(dval) = h.value_grad_hess_yy(x, y, batch, &mut dg, &mut dh) {
            let mut worst = value_error(dval).max(rel_error(&gy, &dg));
            let mut column = Vector::zeros(dy);
            for j in 0..dy {
                let e = Vector::from_fn(dy, |i| f64::from(u8::from(i == j)));
                h.hvp_yy(x, y, &e, batch, &mut column);
                let dense = Vector::from_fn(dy, |i| dh[i * dy + j]);
                let scale = Vector::from_fn(dy, |i| dh[i * dy + i].abs()).max_abs();
                let e = (&column - &dense).max_abs() / scale.max(1e-6);
                worst = worst.max(if e.is_nan() { f64::INFINITY } else { e });
            }
            report.dense_hessian = worst;
        }
    }
    report
}

/// Relative error allowed between two exact computations of one quantity (the fused oracle and
/// the dense Hessian against the component oracles): they differ only in summation order, so
/// rounding-level agreement is expected; 1e-10 leaves room for cancellation in long sums.
pub const EXACT_AGREEMENT_TOL: f64 = 1e-10;

/// Panics unless every oracle of `h` matches finite differences to relative error `tol` at
/// `points` random points, on the full batch and on a minibatch of the first samples, and the
/// fused oracle and the dense Hessian agree with the component oracles to
/// [`EXACT_AGREEMENT_TOL`].
#[track_caller]
pub fn assert_objective_matches_fd(h: &dyn Objective, points: usize, tol: f64, seed: u64) {
    let (dx, dy) = h.dims();
    let n = h.n_samples();
    let minibatch: Vec<usize> = (0..n.min(5)).chain([0]).collect();
    for k in 0..points as u64 {
        let mut rng = rng_from_seed(seed, 100 + k);
        let x = normal_vector(&mut rng, dx);
        let y = normal_vector(&mut rng, dy);
        for batch in [Batch::Full, Batch::Indices(&minibatch)] {
            let report = check_objective(h, &x, &y, batch, seed + k);
            assert!(
                report.worst() <= tol,
                "oracle/finite-difference mismatch at point {k} on {batch:?}: {report:?} \
                 (tolerance {tol})"
            );
            assert!(
                report.fused.max(report.dense_hessian) <= EXACT_AGREEMENT_TOL,
                "fused or dense-Hessian oracle disagrees with the component oracles at point \
                 {k} on {batch:?}: {report:?} (tolerance {EXACT_AGREEMENT_TOL})"
            );
        }
    }
}

/// Runs `steps` steps of `config` from the problem's start.
struct Steps {
    problem: Problem,
    steps: usize,
    seed: u64,
}

/// The bit patterns of (x, y) after `steps` steps.
fn bits(x: &Vector, y: &Vector) -> Vec<u64> {
    x.as_slice()
        .iter()
        .chain(y.as_slice())
        .map(|v| v.to_bits())
        .collect()
}

struct ResumeCheck(Steps);

impl SolverVisitor for ResumeCheck {
    type Output = Result<(), String>;
    fn visit<S: Solver>(self, solver: S) -> Result<(), String> {
        let Steps {
            problem,
            steps,
            seed,
        } = self.0;
        let (x0, y0) = problem.start();
        let mut straight = solver
            .init(&problem, x0.clone(), y0.clone(), seed)
            .map_err(|e| e.to_string())?;
        for _ in 0..2 * steps {
            solver
                .step(&problem, &mut straight)
                .map_err(|e| e.to_string())?;
        }
        let resumed_problem = problem.fresh();
        let mut first = solver
            .init(&resumed_problem, x0, y0, seed)
            .map_err(|e| e.to_string())?;
        for _ in 0..steps {
            solver
                .step(&resumed_problem, &mut first)
                .map_err(|e| e.to_string())?;
        }
        let json = serde_json::to_string(&first).map_err(|e| e.to_string())?;
        drop(first);
        let mut second: S::State = serde_json::from_str(&json).map_err(|e| e.to_string())?;
        for _ in 0..steps {
            solver
                .step(&resumed_problem, &mut second)
                .map_err(|e| e.to_string())?;
        }
        let (xa, ya) = solver.iterate(&straight);
        let (xb, yb) = solver.iterate(&second);
        if bits(xa, ya) != bits(xb, yb) {
            return Err(format!(
                "{}: resumed iterates differ from the straight run",
                solver.name()
            ));
        }
        if problem.counts() != resumed_problem.counts() {
            return Err(format!(
                "{}: oracle counts differ after resume: {:?} vs {:?}",
                solver.name(),
                problem.counts(),
                resumed_problem.counts()
            ));
        }
        if solver.iteration(&straight) != solver.iteration(&second) {
            return Err(format!("{}: iteration counters differ", solver.name()));
        }
        Ok(())
    }
}

/// Panics unless running 2N steps equals running N steps, saving the state as JSON, loading it
/// and running N more, bit for bit (iterates compared with `f64::to_bits`).
#[track_caller]
pub fn assert_resumes_bit_exact(config: &SolverConfig, problem: &Problem, steps: usize, seed: u64) {
    let check = ResumeCheck(Steps {
        problem: problem.fresh(),
        steps,
        seed,
    });
    match config.visit(check) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("{e}"),
        Err(e) => panic!("{}: cannot build: {e}", config.kind()),
    }
}

struct DeterminismCheck(Steps);

impl SolverVisitor for DeterminismCheck {
    type Output = Result<(), String>;
    fn visit<S: Solver>(self, solver: S) -> Result<(), String> {
        let Steps {
            problem,
            steps,
            seed,
        } = self.0;
        let run = |pb: &Problem| -> Result<Vec<u64>, String> {
            let (x0, y0) = pb.start();
            let mut s = solver.init(pb, x0, y0, seed).map_err(|e| e.to_string())?;
            for _ in 0..steps {
                solver.step(pb, &mut s).map_err(|e| e.to_string())?;
            }
            let (x, y) = solver.iterate(&s);
            Ok(bits(x, y))
        };
        let other = problem.fresh();
        if run(&problem)? != run(&other)? {
            return Err(format!(
                "{}: the same seed gave different iterates",
                solver.name()
            ));
        }
        Ok(())
    }
}

/// Panics unless two runs with the same seed give bit-identical iterates.
#[track_caller]
pub fn assert_deterministic(config: &SolverConfig, problem: &Problem, steps: usize, seed: u64) {
    match config.visit(DeterminismCheck(Steps {
        problem: problem.fresh(),
        steps,
        seed,
    })) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("{e}"),
        Err(e) => panic!("{}: cannot build: {e}", config.kind()),
    }
}

struct CountStep {
    steps: Steps,
    warmup: usize,
}

impl SolverVisitor for CountStep {
    type Output = Result<Counts, String>;
    fn visit<S: Solver>(self, solver: S) -> Result<Counts, String> {
        let Steps {
            problem,
            steps,
            seed,
        } = self.steps;
        let (x0, y0) = problem.start();
        let mut s = solver
            .init(&problem, x0, y0, seed)
            .map_err(|e| e.to_string())?;
        for _ in 0..self.warmup {
            solver.step(&problem, &mut s).map_err(|e| e.to_string())?;
        }
        let before = problem.counts();
        for _ in 0..steps {
            solver.step(&problem, &mut s).map_err(|e| e.to_string())?;
        }
        Ok(problem.counts().since(&before))
    }
}

/// Oracle counts of `steps` steps after `warmup` steps (counted on a fresh copy of `problem`).
pub fn counts_per_steps(
    config: &SolverConfig,
    problem: &Problem,
    warmup: usize,
    steps: usize,
    seed: u64,
) -> Counts {
    match config.visit(CountStep {
        steps: Steps {
            problem: problem.fresh(),
            steps,
            seed,
        },
        warmup,
    }) {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => panic!("{e}"),
        Err(e) => panic!("{}: cannot build: {e}", config.kind()),
    }
}

struct IterateAfter {
    steps: Steps,
}

impl SolverVisitor for IterateAfter {
    type Output = Result<(Vector, Vector), String>;
    fn visit<S: Solver>(self, solver: S) -> Result<(Vector, Vector), String> {
        let Steps {
            problem,
            steps,
            seed,
        } = self.steps;
        let (x0, y0) = problem.start();
        let mut s = solver
            .init(&problem, x0, y0, seed)
            .map_err(|e| e.to_string())?;
        for _ in 0..steps {
            solver.step(&problem, &mut s).map_err(|e| e.to_string())?;
        }
        let (x, y) = solver.iterate(&s);
        Ok((x.clone(), y.clone()))
    }
}

/// (x, y) after `steps` steps of `config` from the problem's start.
pub fn iterate_after(
    config: &SolverConfig,
    problem: &Problem,
    steps: usize,
    seed: u64,
) -> (Vector, Vector) {
    match config.visit(IterateAfter {
        steps: Steps {
            problem: problem.fresh(),
            steps,
            seed,
        },
    }) {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => panic!("{e}"),
        Err(e) => panic!("{}: cannot build: {e}", config.kind()),
    }
}
