//! The library as a new user meets it (issue 19): `solve`, observers that see the iterate, the
//! counts that make methods comparable (finite-difference products, drawn rows), budgets and
//! targets that do what they say, and warnings instead of silent fixes.

use bilevel::core::{Fused, ReferencePoint, linalg};
use bilevel::prelude::*;
use bilevel::problems::quadratic::QuadraticConfig;
use bilevel::run::{LiveStatus, StopAt, StopReason};
use std::sync::Arc;

/// The benchmark quadratic at a small size: 200 samples in g and in f.
fn quadratic() -> Problem {
    QuadraticConfig {
        dim_x: 5,
        dim_y: 8,
        n_inner: 200,
        n_outer: 200,
        ..Default::default()
    }
    .build()
    .unwrap()
}

fn soba(batch_size: usize) -> SolverConfig {
    SolverConfig::Soba(SobaConfig {
        batch_size,
        ..Default::default()
    })
}

#[test]
fn solve_returns_the_iterate_the_last_record_describes() {
    let problem = quadratic();
    let config = soba(16);
    let options = RunOptions {
        max_iters: Some(300),
        eval_every: 100,
        ..Default::default()
    };
    // The iterate shown to an observer at the last record, kept by a closure.
    let mut last: Option<(u64, Vector, Vector)> = None;
    let (x0, y0) = problem.start();
    let observed = Runner::new(options.clone())
        .observe(|record: &Record, at: Iterate<'_>| {
            last = Some((record.iter, at.x.clone(), at.y.clone()));
            Ok(())
        })
        .solve_config(&config, &problem, x0, y0, 0)
        .unwrap();
    let (iter, x, y) = last.unwrap();
    assert_eq!(iter, observed.summary.iters);
    assert_eq!(bits(&x), bits(&observed.x));
    assert_eq!(bits(&y), bits(&observed.y));
    // `solve` (default start, seed 0) gives the same run.
    let solution = bilevel::solve(&problem, &config, options).unwrap();
    assert_eq!(bits(&solution.x), bits(&observed.x));
    assert_eq!(solution.summary.status, RunStatus::Done);
    assert_eq!(solution.summary.final_metrics_iter, Some(300));
    // The final metrics are those of the returned iterate; SOBA keeps v, and it comes back.
    let v = solution.v.as_ref().expect("SOBA keeps an adjoint");
    let metrics = problem.metrics(&solution.x, &solution.y, Some(v)).unwrap();
    assert_eq!(metrics, solution.summary.final_metrics);
}

fn bits(v: &Vector) -> Vec<u64> {
    v.as_slice().iter().map(|x| x.to_bits()).collect()
}

/// g(x, y) = ½‖y − x‖² and f = ½‖y − 1‖² on 4 "samples" each (identical), with only the required
/// oracles: the second-order products fall back to finite differences.
struct Shift;
struct Target;

impl Objective for Shift {
    fn dims(&self) -> (usize, usize) {
        (3, 3)
    }
    fn n_samples(&self) -> usize {
        4
    }
    fn value(&self, x: &Vector, y: &Vector, _: Batch<'_>) -> f64 {
        0.5 * (y - x).norm_sq()
    }
    fn grad_x(&self, x: &Vector, y: &Vector, _: Batch<'_>, out: &mut Vector) {
        *out = x - y;
    }
    fn grad_y(&self, x: &Vector, y: &Vector, _: Batch<'_>, out: &mut Vector) {
        *out = y - x;
    }
}

impl Objective for Target {
    fn dims(&self) -> (usize, usize) {
        (3, 3)
    }
    fn n_samples(&self) -> usize {
        4
    }
    fn value(&self, _: &Vector, y: &Vector, _: Batch<'_>) -> f64 {
        0.5 * (y - linalg::constant(3, 1.0)).norm_sq()
    }
    fn grad_x(&self, _: &Vector, _: &Vector, _: Batch<'_>, out: &mut Vector) {
        out.set_zero();
    }
    fn grad_y(&self, _: &Vector, y: &Vector, _: Batch<'_>, out: &mut Vector) {
        *out = y - linalg::constant(3, 1.0);
    }
}

#[test]
fn finite_difference_products_count_the_gradients_they_make() {
    let problem = Problem::new("shift", Target, Shift).unwrap();
    let (x, y) = (linalg::constant(3, 0.5), linalg::constant(3, -1.0));
    let v = linalg::constant(3, 1.0);
    let mut out = Vector::zeros(3);
    problem
        .g()
        .hvp_yy(&x, &y, &v, Batch::Indices(&[0, 1, 2]), &mut out);
    // ∇²ᵧᵧg = I: the product is v (to finite-difference accuracy).
    assert!((&out - &v).norm() < 1e-6);
    let g = problem.counts().g;
    assert_eq!((g.hvp_yy, g.grad_y, g.fd_products, g.samples), (0, 2, 1, 6));
    problem.g().cross_xy(&x, &y, &v, Batch::Full, &mut out);
    let g = problem.counts().g;
    assert_eq!(
        (g.cross_xy, g.grad_x, g.fd_products, g.samples),
        (0, 2, 2, 14)
    );
    // In a fused call the products fall back too, and are counted the same way.
    let (mut gy, mut hv) = (Vector::zeros(3), Vector::zeros(3));
    problem.g().fused(
        &x,
        &y,
        Some(&v),
        Batch::Indices(&[3]),
        Fused {
            grad_y: Some(&mut gy),
            hvp_yy: Some(&mut hv),
            ..Fused::default()
        },
    );
    let g = problem.counts().g;
    assert_eq!((g.grad_y, g.hvp_yy, g.fd_products), (2 + 1 + 2, 0, 3));
    // A built-in objective with exact products counts them as products.
    let exact = quadratic();
    let (x, y) = exact.start();
    let mut out = Vector::zeros(8);
    exact
        .g()
        .hvp_yy(&x, &y, &linalg::constant(8, 1.0), Batch::Full, &mut out);
    let g = exact.counts().g;
    assert_eq!((g.hvp_yy, g.grad_y, g.fd_products), (1, 0, 0));
}

#[test]
fn draws_count_minibatch_rows_once_and_full_passes_per_point() {
    // SOBA draws one batch from g and one from f per iteration, whatever it computes on them.
    let problem = quadratic();
    let summary = bilevel::solve(
        &problem,
        &soba(16),
        RunOptions {
            max_iters: Some(50),
            ..Default::default()
        },
    )
    .unwrap()
    .summary;
    assert_eq!(summary.counts.draws, 50 * 2 * 16);
    assert_eq!(summary.counts.samples(), 50 * 5 * 16);
    // Full-batch calls: n per new point; several oracles at one point read the rows once.
    let problem = quadratic();
    let (x, y) = problem.start();
    let (mut gy, mut hv) = (Vector::zeros(8), Vector::zeros(8));
    problem.g().grad_y(&x, &y, Batch::Full, &mut gy);
    problem.g().hvp_yy(&x, &y, &gy, Batch::Full, &mut hv);
    assert_eq!(problem.counts().draws, 200);
    problem
        .g()
        .grad_y(&x, &linalg::constant(8, 0.5), Batch::Full, &mut gy);
    assert_eq!(problem.counts().draws, 400);
    // A budget in draws stops there, and evaluation can be spaced in draws.
    let trace = InMemory::new();
    let summary = Runner::new(RunOptions {
        max_draws: Some(3200),
        eval_every: 0,
        eval_every_draws: Some(800),
        ..Default::default()
    })
    .observe(trace.clone())
    .run_config(&soba(16), &problem, x, y, 0)
    .unwrap();
    assert_eq!(summary.stop_reason, StopReason::MaxDraws);
    assert_eq!(summary.iters, 100);
    let draws: Vec<u64> = trace.records().iter().map(|r| r.counts.draws).collect();
    assert_eq!(draws, [0, 800, 1600, 2400, 3200]);
}

#[test]
fn tol_stops_on_the_hypergradient_and_targets_must_exist() {
    let problem = quadratic();
    let config = SolverConfig::AidCg(AidCgConfig::default());
    let summary = bilevel::solve(
        &problem,
        &config,
        RunOptions {
            max_iters: Some(100_000),
            tol: Some(1e-6),
            eval_every: 1,
            ..Default::default()
        },
    )
    .unwrap()
    .summary;
    assert_eq!(summary.stop_reason, StopReason::TargetReached);
    assert!(summary.final_metrics["hypergrad_norm_sq"] <= 1e-6);
    assert!(summary.iters < 100_000);
    // Without a reference there is no ‖∇F‖²: refused, naming what the problem has.
    let no_reference = Problem::new("shift", Target, Shift).unwrap();
    let err = bilevel::solve(
        &no_reference,
        &config,
        RunOptions {
            max_iters: Some(10),
            tol: Some(1e-6),
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("tol") && err.contains("outer_value"), "{err}");
    // A stop_at metric the problem does not report would never stop the run: refused.
    let err = bilevel::solve(
        &problem,
        &config,
        RunOptions {
            max_iters: Some(10),
            stop_at: Some(StopAt {
                metric: "vlaue".into(),
                value: 0.1,
            }),
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("vlaue") && err.contains("hypergrad_norm_sq"),
        "{err}"
    );
    // A problem with a hand-written reference has the metric too.
    struct Closed;
    impl Reference for Closed {
        fn evaluate(&self, x: &Vector) -> bilevel::Result<ReferencePoint> {
            let hypergradient = x - linalg::constant(3, 1.0);
            Ok(ReferencePoint {
                value: 0.5 * hypergradient.norm_sq(),
                hypergradient,
                y_star: Some(x.clone()),
            })
        }
    }
    let with_reference = Problem::new("shift", Target, Shift)
        .unwrap()
        .with_reference(Closed);
    let solution = bilevel::solve(
        &with_reference,
        &config,
        RunOptions {
            max_iters: Some(1000),
            tol: Some(1e-10),
            eval_every: 1,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(solution.summary.stop_reason, StopReason::TargetReached);
    assert!((&solution.x - &linalg::constant(3, 1.0)).norm() < 1e-4);
}

#[test]
fn clipped_batches_and_short_runs_are_warned_about() {
    // 500 > 200 samples: clipped, and the summary says so.
    let summary = bilevel::solve(
        &quadratic(),
        &soba(500),
        RunOptions {
            max_iters: Some(5),
            eval_every: 100,
            ..Default::default()
        },
    )
    .unwrap()
    .summary;
    assert!(
        summary
            .warnings
            .iter()
            .any(|w| w.contains("batch_size = 500") && w.contains("200 samples")),
        "{:?}",
        summary.warnings
    );
    // 5 iterations with eval_every = 100: evaluated at the start and the end only.
    assert!(
        summary
            .warnings
            .iter()
            .any(|w| w.contains("fewer than eval_every = 100")),
        "{:?}",
        summary.warnings
    );
    // A batch that fits and a period that divides the run: no warning.
    let summary = bilevel::solve(
        &quadratic(),
        &soba(16),
        RunOptions {
            max_iters: Some(20),
            eval_every: 10,
            ..Default::default()
        },
    )
    .unwrap()
    .summary;
    assert!(summary.warnings.is_empty(), "{:?}", summary.warnings);
    // eval_every = 0 alone would never evaluate: refused.
    let err = RunOptions {
        max_iters: Some(10),
        eval_every: 0,
        ..Default::default()
    }
    .validate()
    .unwrap_err()
    .to_string();
    assert!(err.contains("eval_every_draws"), "{err}");
}

#[test]
fn live_status_follows_the_run() {
    let problem = quadratic();
    let status = Arc::new(LiveStatus::default());
    let (x0, y0) = problem.start();
    let summary = Runner::new(RunOptions {
        max_iters: Some(40),
        eval_every: 10,
        ..Default::default()
    })
    .live(status.clone())
    .run_config(&soba(16), &problem, x0, y0, 0)
    .unwrap();
    assert_eq!(status.iter(), summary.iters);
    assert_eq!(status.budget_fraction(), 1.0);
    let (name, value) = status.metric().unwrap();
    assert_eq!(name, "hypergrad_norm_sq");
    assert_eq!(value, summary.final_metrics["hypergrad_norm_sq"]);
}
