//! Shared fixtures of the integration tests: the test problem and the table of test-sized
//! solver settings (one row per registered algorithm).
#![allow(dead_code)]

use bilevel::prelude::*;
use bilevel::problems::quadratic::QuadraticConfig;

/// The 10 × 20 quadratic of the convergence table (design.md §3.9), with enough samples that
/// minibatches of 32 are genuinely stochastic.
pub fn quadratic_10x20() -> Problem {
    QuadraticConfig {
        dim_x: 10,
        dim_y: 20,
        n_inner: 512,
        n_outer: 512,
        seed: 0,
        ..QuadraticConfig::default()
    }
    .build()
    .expect("the test quadratic builds")
}

/// One row of the convergence table.
pub struct Case {
    /// The solver with test-sized settings.
    pub config: SolverConfig,
    /// The iteration budget within which ‖∇F‖² must fall by 10³.
    pub iters: u64,
    /// The problem it runs on.
    pub problem: fn() -> Problem,
}

/// Every registered algorithm with settings that converge on its test problem.
pub fn cases() -> Vec<Case> {
    vec![
        Case {
            config: SolverConfig::AidCg(AidCgConfig {
                inner_steps: 10,
                inner_lr: 0.5,
                outer_lr: Schedule::constant(1.0),
                ..Default::default()
            }),
            iters: 200,
            problem: quadratic_10x20,
        },
        Case {
            config: SolverConfig::Soba(SobaConfig {
                inner_lr: Schedule::inv_power(0.5, 0.25),
                outer_lr: Schedule::inv_power(0.5, 0.25),
                batch_size: 32,
                ..Default::default()
            }),
            iters: 20_000,
            problem: quadratic_10x20,
        },
        Case {
            config: SolverConfig::Fsla(FslaConfig {
                inner_lr: Schedule::inv_power(0.5, 0.25),
                v_lr: Schedule::inv_power(0.5, 0.25),
                momentum: Schedule::inv_power(0.5, 0.5),
                outer_lr: Schedule::inv_power(0.5, 0.25),
                batch_size: 32,
                ..Default::default()
            }),
            iters: 20_000,
            problem: quadratic_10x20,
        },
        Case {
            config: SolverConfig::Mrbo(MrboConfig {
                step: Schedule::InvPower {
                    c: 0.5,
                    a: 1.0 / 3.0,
                    t0: 1.0,
                },
                momentum: MrboMomentum::Theory {
                    outer: 2.0,
                    inner: 2.0,
                },
                neumann: bilevel::linsolve::NeumannParams {
                    terms: 150,
                    step: 0.5,
                },
                batch_size: 32,
                ..Default::default()
            }),
            iters: 5_000,
            problem: quadratic_10x20,
        },
        Case {
            config: SolverConfig::Vrbo(VrboConfig {
                outer_lr: Schedule::constant(0.5),
                inner_lr: Schedule::constant(0.5),
                inner_steps: 3,
                large_batch: CheckpointBatch::Full,
                small_batch: 32,
                neumann: bilevel::linsolve::NeumannParams {
                    terms: 150,
                    step: 0.5,
                },
                ..Default::default()
            }),
            iters: 1_000,
            problem: quadratic_10x20,
        },
        Case {
            config: SolverConfig::Lancbio(LancbioConfig {
                inner_lr: Schedule::constant(0.5),
                outer_lr: Schedule::constant(1.0),
                ..Default::default()
            }),
            iters: 300,
            problem: quadratic_10x20,
        },
        Case {
            config: SolverConfig::Subbio(SubbioConfig {
                inner_lr: Schedule::constant(0.5),
                outer_lr: Schedule::constant(1.0),
                ..Default::default()
            }),
            iters: 300,
            problem: quadratic_10x20,
        },
    ]
}
