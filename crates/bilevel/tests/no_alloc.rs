//! The steady-state step of the single-loop solvers allocates nothing (design.md §3.4): a
//! counting global allocator (`stats_alloc` wrapping `System`) sees zero allocations, frees and
//! reallocations over N steps after a short warm-up (which creates the scratch buffers and fills
//! the minibatch buffers).
//!
//! This file holds a single test on purpose: the allocator counts process-wide, and another test
//! running on a parallel thread would be counted too.

mod common;

use bilevel::data::DatasetSpec;
use bilevel::data::synthetic::Twin;
use bilevel::prelude::*;
use bilevel::problems::ProblemConfig;
use bilevel::problems::common::ReferenceConfig;
use bilevel::problems::logreg_hpo::{LogregHpoConfig, Penalty};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

/// Steps before counting: the first step creates scratch buffers (and MRBO's first step also
/// evaluates u₀, v₀); a few more cover every code path of the steady state.
const WARMUP: usize = 3;
/// Steps counted. With batch 32 of 512 samples an epoch of the samplers lasts 16 draws, so the
/// window includes several epoch refreshes of the permutation (done in place).
const STEPS: usize = 200;

struct AllocationsPerSteps<'a>(&'a Problem);

impl SolverVisitor for AllocationsPerSteps<'_> {
    type Output = stats_alloc::Stats;
    fn visit<S: Solver>(self, solver: S) -> stats_alloc::Stats {
        let problem = self.0.fresh();
        let (x0, y0) = problem.start();
        let mut state = solver.init(&problem, x0, y0, 0).expect("init");
        for _ in 0..WARMUP {
            solver.step(&problem, &mut state).expect("step");
        }
        let region = Region::new(GLOBAL);
        for _ in 0..STEPS {
            // The diagnostics are a fixed-capacity array: dropping them frees nothing.
            std::hint::black_box(solver.step(&problem, &mut state).expect("step"));
        }
        region.change()
    }
}

#[test]
fn single_loop_steps_do_not_allocate() {
    let configs = [
        SolverConfig::Soba(SobaConfig {
            batch_size: 32,
            ..Default::default()
        }),
        SolverConfig::Fsla(FslaConfig {
            batch_size: 32,
            ..Default::default()
        }),
        SolverConfig::Fsla(FslaConfig {
            batch_size: 32,
            outer_direction: OuterDirection::Ema,
            ..Default::default()
        }),
        SolverConfig::Fsla(FslaConfig {
            batch_size: 32,
            sampling: SamplingMode::WithReplacement,
            ..Default::default()
        }),
        SolverConfig::Mrbo(MrboConfig {
            batch_size: 32,
            ..Default::default()
        }),
        SolverConfig::Mrbo(MrboConfig {
            batch_size: 32,
            sampling: SamplingMode::Contiguous,
            ..Default::default()
        }),
    ];
    let mut failures = Vec::new();
    let quadratic = common::quadratic_10x20();
    for config in &configs {
        let stats = config
            .visit(AllocationsPerSteps(&quadratic))
            .expect("build");
        if stats.allocations + stats.reallocations + stats.deallocations != 0 {
            failures.push(format!("quadratic, {}: {stats:?}", config.kind()));
        }
    }
    // The performance issue's shape: per-feature L2 logistic regression on the real ijcnn1
    // (49,990 × 22 train, 91,701 × 22 validation), batch 64, through the fused data kernels.
    let ijcnn1 = ProblemConfig::LogregHpo(LogregHpoConfig::default())
        .build()
        .expect("the shipped ijcnn1 loads");
    for sampling in [SamplingMode::Contiguous, SamplingMode::Shuffled] {
        let configs = [
            SolverConfig::Soba(SobaConfig {
                batch_size: 64,
                sampling,
                ..Default::default()
            }),
            SolverConfig::Fsla(FslaConfig {
                batch_size: 64,
                sampling,
                ..Default::default()
            }),
            SolverConfig::Mrbo(MrboConfig {
                batch_size: 64,
                sampling,
                ..Default::default()
            }),
        ];
        for config in &configs {
            let stats = config.visit(AllocationsPerSteps(&ijcnn1)).expect("build");
            if stats.allocations + stats.reallocations + stats.deallocations != 0 {
                failures.push(format!("ijcnn1 {sampling:?}, {}: {stats:?}", config.kind()));
            }
        }
    }
    // Multiclass, sparse CSR rows, one hyperparameter per class (the covtype shape, small).
    let covtype = ProblemConfig::LogregHpo(LogregHpoConfig {
        dataset: DatasetSpec::twin(Twin::Covtype, 0.005),
        validation_fraction: 0.16,
        test_fraction: 0.2,
        penalty: Penalty::PerClass,
        reference: ReferenceConfig {
            enabled: false,
            ..Default::default()
        },
        ..Default::default()
    })
    .build()
    .expect("covtype twin");
    for config in [
        SolverConfig::Soba(SobaConfig::default()),
        SolverConfig::Fsla(FslaConfig::default()),
        SolverConfig::Mrbo(MrboConfig::default()),
    ] {
        let stats = config.visit(AllocationsPerSteps(&covtype)).expect("build");
        if stats.allocations + stats.reallocations + stats.deallocations != 0 {
            failures.push(format!("covtype, {}: {stats:?}", config.kind()));
        }
    }
    // The counter works: a step that must allocate is seen.
    let region = Region::new(GLOBAL);
    std::hint::black_box(vec![0.0_f64; 16]);
    assert!(
        region.change().allocations > 0,
        "the allocator does not count"
    );
    assert!(
        failures.is_empty(),
        "steady-state allocations: {failures:#?}"
    );
}
