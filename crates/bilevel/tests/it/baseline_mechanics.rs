//! Mechanical properties of the baselines beyond the shared table: with minibatches that are the
//! whole sample set, the variance-reduced and momentum recursions must reproduce their plain
//! (full-batch) counterparts (algorithms.md §10: "SPIDER differences telescope"); and invalid
//! configurations are rejected with the field's name.

use bilevel::hypergrad::{NeumannEstimator, PhiHat, PhiHatDraw, PhiHatWork};
use bilevel::linsolve::{HiaParams, NeumannParams};
use bilevel::prelude::*;
use bilevel::problems::quadratic::{QuadraticConfig, tiny};

/// Minibatches of 3 are the whole set on the tiny problem (3 samples in g, 2 in f; larger
/// batches are clipped to n), so "stochastic" estimates equal full-batch ones up to summation
/// order.
const WHOLE: usize = 3;
/// Rounding budget of a few hundred steps of recursions on O(1) quantities.
const ROUNDING: f64 = 1e-10;

fn close(a: &Vector, b: &Vector) -> bool {
    (a - b).norm() <= ROUNDING * (1.0 + b.norm())
}

fn run<S: Solver>(solver: &S, problem: &Problem, steps: usize) -> S::State {
    let (x0, y0) = problem.start();
    let mut state = solver.init(problem, x0, y0, 1).unwrap();
    for _ in 0..steps {
        solver.step(problem, &mut state).unwrap();
    }
    state
}

#[test]
fn saba_and_srba_with_whole_batches_follow_soba_with_full_batches() {
    // SAGA with memories refreshed on every sample is the exact gradient; SARAH differences on
    // the whole set telescope to the exact gradient. Both then are full-batch SOBA.
    let problem = tiny();
    let (rho, gamma) = (Schedule::constant(0.3), Schedule::constant(0.2));
    let soba = SobaConfig {
        inner_lr: rho,
        outer_lr: gamma,
        batch_size: WHOLE,
        ..Default::default()
    }
    .build()
    .unwrap();
    let saba = SabaConfig {
        inner_lr: rho,
        outer_lr: gamma,
        batch_size: WHOLE,
        ..Default::default()
    }
    .build()
    .unwrap();
    let srba = SrbaConfig {
        inner_lr: rho,
        outer_lr: gamma,
        period: Some(7),
        batch_size: WHOLE,
        ..Default::default()
    }
    .build()
    .unwrap();
    for steps in [1, 5, 60] {
        let a = run(&soba, &problem, steps);
        let b = run(&saba, &problem, steps);
        let c = run(&srba, &problem, steps);
        for (name, x, y, v) in [("saba", &b.x, &b.y, &b.v), ("srba", &c.x, &c.y, &c.v)] {
            assert!(
                close(x, &a.x) && close(y, &a.y) && close(v, &a.v),
                "{name} after {steps}"
            );
        }
    }
}

#[test]
fn sustain_and_mstsa_recursions_reduce_to_the_plain_estimate() {
    // With whole batches and a deterministic Φ̂ (HIA with N = 1, i.e. P = 0; or SHIA), the
    // STORM recursions reproduce Φ̂ at the current point: d_t = Φ̂(x_t, y_t) for SUSTAIN,
    // h_k = Φ̂(x_k, y_{k+1}) for MSTSA.
    let problem = tiny();
    let hia = NeumannEstimator::Hia(HiaParams {
        max_terms: 1,
        step: 0.5,
    });
    let phi = |neumann| PhiHat {
        neumann,
        batch_size: WHOLE,
        sampling: SamplingMode::Shuffled,
    };
    let fresh = |neumann, x: &Vector, y: &Vector| {
        let mut out = Vector::zeros(x.nrows());
        let terms = match neumann {
            NeumannEstimator::Shia(p) => p.terms,
            NeumannEstimator::Hia(_) => 0,
        };
        phi(neumann).evaluate(
            &problem,
            x,
            y,
            &PhiHatDraw::full(terms),
            &mut out,
            &mut PhiHatWork::default(),
        );
        out
    };
    let sustain = SustainConfig {
        inner_lr: Schedule::constant(0.2),
        outer_lr: Schedule::constant(0.2),
        hia: HiaParams {
            max_terms: 1,
            step: 0.5,
        },
        batch_size: WHOLE,
        ..Default::default()
    }
    .build()
    .unwrap();
    let s = run(&sustain, &problem, 40);
    assert!(close(&s.d, &fresh(hia, &s.x, &s.y)), "SUSTAIN d_t");

    let shia = NeumannEstimator::Shia(NeumannParams {
        terms: 4,
        step: 0.5,
    });
    let mstsa = MstsaConfig {
        neumann: shia,
        batch_size: WHOLE,
        ..Default::default()
    }
    .build()
    .unwrap();
    let m = run(&mstsa, &problem, 40);
    // h_k was evaluated at (x_k, y_{k+1}) = (x_prev, y) after the step.
    assert!(close(&m.h, &fresh(shia, &m.x_prev, &m.y)), "MSTSA h_k");
}

#[test]
fn stable_with_whole_batches_recovers_the_exact_hessians() {
    // On a quadratic the sample Hessians do not depend on (x, y), so with whole batches the
    // recursion keeps H_yy = ∇²ᵧᵧg and H_xy = ∇²ₓᵧg exactly.
    let problem = tiny();
    let solver = StableConfig {
        batch_size: WHOLE,
        ..Default::default()
    }
    .build()
    .unwrap();
    let s = run(&solver, &problem, 10);
    let (p, q) = problem.dims();
    let mut column = Vector::zeros(q);
    let mut cross = Vector::zeros(p);
    for j in 0..q {
        let e = Vector::from_fn(q, |i| if i == j { 1.0 } else { 0.0 });
        problem.g().hvp_yy(&s.x, &s.y, &e, Batch::Full, &mut column);
        problem
            .g()
            .cross_xy(&s.x, &s.y, &e, Batch::Full, &mut cross);
        for i in 0..q {
            assert!((s.h_yy[i * q + j] - column[i]).abs() < ROUNDING);
        }
        for i in 0..p {
            assert!((s.h_xy[i * q + j] - cross[i]).abs() < ROUNDING);
        }
    }
}

#[test]
fn stable_rejects_a_large_inner_dimension_by_name() {
    let problem = QuadraticConfig {
        dim_x: 2,
        dim_y: 30,
        n_inner: 64,
        n_outer: 64,
        ..Default::default()
    }
    .build()
    .unwrap();
    let solver = StableConfig {
        max_dim_y: 20,
        ..Default::default()
    }
    .build()
    .unwrap();
    let (x0, y0) = problem.start();
    let err = solver.init(&problem, x0, y0, 0).unwrap_err().to_string();
    assert!(err.contains("max_dim_y") && err.contains("30"), "{err}");
}

#[test]
fn invalid_baseline_configs_name_their_field() {
    let cases: Vec<(SolverConfig, &str)> = vec![
        (
            SolverConfig::ItdTruncated(ItdTruncatedConfig {
                inner_steps: 5,
                backprop_steps: 6,
                ..Default::default()
            }),
            "backprop_steps",
        ),
        (
            SolverConfig::Hoag(HoagConfig {
                tolerance: ToleranceSchedule::Power { c: 0.1, a: 1.0 },
                ..Default::default()
            }),
            "tolerance.a",
        ),
        (
            SolverConfig::Hoag(HoagConfig {
                tolerance: ToleranceSchedule::Geometric { c: 0.1, rate: 1.0 },
                ..Default::default()
            }),
            "tolerance.rate",
        ),
        (
            SolverConfig::F2sa(F2saConfig {
                penalty: 10.0,
                max_penalty: Some(5.0),
                ..Default::default()
            }),
            "max_penalty",
        ),
        (
            SolverConfig::Sustain(SustainConfig {
                momentum: Schedule::constant(1.5),
                ..Default::default()
            }),
            "momentum",
        ),
        (
            SolverConfig::Mstsa(MstsaConfig {
                momentum: 0.0,
                ..Default::default()
            }),
            "momentum",
        ),
        (
            SolverConfig::Stable(StableConfig {
                inverse: StableInverse::Exact {
                    min_eigenvalue: 0.0,
                },
                ..Default::default()
            }),
            "inverse.min_eigenvalue",
        ),
        (
            SolverConfig::AidNeumann(AidNeumannConfig {
                rel_tol: 1e-6,
                ..Default::default()
            }),
            "rel_tol",
        ),
        (
            SolverConfig::Bsa(BsaConfig {
                hia: HiaParams {
                    max_terms: 0,
                    step: 0.1,
                },
                ..Default::default()
            }),
            "hia.max_terms",
        ),
        (
            SolverConfig::Srba(SrbaConfig {
                period: Some(0),
                ..Default::default()
            }),
            "period",
        ),
    ];
    for (config, field) in cases {
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains(&format!("`{field}`")),
            "{}: {err}",
            config.kind()
        );
    }
    // Every default configuration is valid.
    for config in SolverConfig::all_defaults() {
        config
            .validate()
            .unwrap_or_else(|e| panic!("{}: {e}", config.kind()));
    }
}

#[test]
fn saba_per_batch_memory_converges_to_the_exact_solution() {
    // With b dividing n the contiguous blocks partition the samples, SAGA over blocks is
    // unbiased for the full sums, and SABA converges linearly to the exact bilevel solution
    // (constant steps): ‖∇F‖² reaches rounding level, far below any stochastic noise floor.
    let problem = QuadraticConfig {
        dim_x: 10,
        dim_y: 20,
        n_inner: 512,
        n_outer: 512,
        ..Default::default()
    }
    .build()
    .unwrap();
    let solver = SabaConfig {
        inner_lr: Schedule::constant(0.3),
        outer_lr: Schedule::constant(0.2),
        batch_size: 32,
        sampling: SamplingMode::Contiguous,
        memory: SabaMemoryLayout::PerBatch,
        init_memory: SabaInitMemory::FullPass,
    }
    .build()
    .unwrap();
    let s = run(&solver, &problem, 3000);
    let truth = problem.reference().unwrap().evaluate(&s.x).unwrap();
    let start = problem
        .reference()
        .unwrap()
        .evaluate(&problem.start().0)
        .unwrap();
    let (first, last) = (start.hypergradient.norm_sq(), truth.hypergradient.norm_sq());
    assert!(last < 1e-12 * first, "‖∇F‖²: {first:.3e} -> {last:.3e}");
    // The layout needs fixed blocks.
    let err = SabaConfig {
        memory: SabaMemoryLayout::PerBatch,
        ..Default::default()
    }
    .validate()
    .unwrap_err()
    .to_string();
    assert!(err.contains("`sampling`"), "{err}");
}

#[test]
fn resume_is_bit_exact_across_periods_and_warm_starts() {
    // The shared table resumes after 3 steps; here the split points fall after SRBA's full
    // passes (period 4), after HOAG's tolerance has moved, and after several momentum updates.
    let problem = QuadraticConfig {
        dim_x: 4,
        dim_y: 6,
        n_inner: 48,
        n_outer: 40,
        ..Default::default()
    }
    .build()
    .unwrap();
    let configs = [
        SolverConfig::Srba(SrbaConfig {
            period: Some(4),
            batch_size: 8,
            ..Default::default()
        }),
        SolverConfig::Saba(SabaConfig {
            batch_size: 8,
            sampling: SamplingMode::Contiguous,
            memory: SabaMemoryLayout::PerBatch,
            ..Default::default()
        }),
        SolverConfig::Hoag(HoagConfig::default()),
        SolverConfig::Stable(StableConfig {
            batch_size: 8,
            ..Default::default()
        }),
        SolverConfig::Sustain(SustainConfig {
            batch_size: 8,
            ..Default::default()
        }),
        SolverConfig::Mstsa(MstsaConfig {
            batch_size: 8,
            ..Default::default()
        }),
        SolverConfig::ItdTruncated(ItdTruncatedConfig {
            batch_size: Some(8),
            ..Default::default()
        }),
    ];
    for config in &configs {
        bilevel::testing::assert_resumes_bit_exact(config, &problem, 10, 4);
    }
}
