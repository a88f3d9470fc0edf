//! Shared fixtures of the integration tests: the test problem and the table of test-sized
//! solver settings (one row per registered algorithm).
#![allow(dead_code)]

use bilevel::hypergrad::NeumannEstimator;
use bilevel::linsolve::{GdParams, HiaParams, NeumannParams};
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
        // ---- Baselines (algorithms.md §8). Stochastic rows use minibatches of 32. ----
        Case {
            config: SolverConfig::AidNeumann(AidNeumannConfig {
                inner_steps: 10,
                inner_lr: 1.0,
                terms: 100,
                outer_lr: Schedule::constant(1.0),
                ..Default::default()
            }),
            iters: 200,
            problem: quadratic_10x20,
        },
        Case {
            config: SolverConfig::Stocbio(StocbioConfig {
                inner_lr: 0.5,
                neumann: NeumannParams {
                    terms: 100,
                    step: 0.5,
                },
                outer_lr: Schedule::inv_power(0.5, 0.5),
                batch_size: 32,
                ..Default::default()
            }),
            iters: 3000,
            problem: quadratic_10x20,
        },
        Case {
            config: SolverConfig::Amigo(AmigoConfig {
                inner_lr: 0.5,
                linear: AmigoLinearSystem::Gd(GdParams {
                    steps: 10,
                    step: 0.5,
                    rel_tol: 0.0,
                }),
                outer_lr: Schedule::inv_power(0.5, 0.5),
                batch_size: 32,
                ..Default::default()
            }),
            iters: 3000,
            problem: quadratic_10x20,
        },
        Case {
            config: SolverConfig::Bsa(BsaConfig {
                inner_lr: Schedule::inv_power(0.5, 0.25),
                hia: HiaParams {
                    max_terms: 50,
                    step: 0.5,
                },
                outer_lr: Schedule::inv_power(0.5, 0.5),
                batch_size: 32,
                ..Default::default()
            }),
            iters: 3000,
            problem: quadratic_10x20,
        },
        Case {
            config: SolverConfig::Hoag(HoagConfig {
                inner_lr: 1.0,
                outer_lr: Schedule::constant(1.0),
                ..Default::default()
            }),
            iters: 200,
            problem: quadratic_10x20,
        },
        Case {
            config: SolverConfig::Itd(ItdConfig {
                inner_steps: 30,
                inner_lr: 1.0,
                outer_lr: Schedule::constant(1.0),
                ..Default::default()
            }),
            iters: 200,
            problem: quadratic_10x20,
        },
        Case {
            config: SolverConfig::ItdTruncated(ItdTruncatedConfig {
                inner_steps: 100,
                backprop_steps: 20,
                inner_lr: 1.0,
                outer_lr: Schedule::constant(1.0),
                ..Default::default()
            }),
            iters: 200,
            problem: quadratic_10x20,
        },
        Case {
            config: SolverConfig::Saba(SabaConfig {
                inner_lr: Schedule::constant(0.3),
                outer_lr: Schedule::constant(0.2),
                batch_size: 32,
                ..Default::default()
            }),
            iters: 3000,
            problem: quadratic_10x20,
        },
        Case {
            config: SolverConfig::Srba(SrbaConfig {
                inner_lr: Schedule::constant(0.3),
                outer_lr: Schedule::constant(0.2),
                batch_size: 32,
                ..Default::default()
            }),
            iters: 3000,
            problem: quadratic_10x20,
        },
        Case {
            config: SolverConfig::Ttsa(TtsaConfig {
                inner_lr: Schedule::inv_power(0.5, 0.4),
                outer_lr: Schedule::inv_power(0.5, 0.6),
                hia: HiaParams {
                    max_terms: 50,
                    step: 0.5,
                },
                batch_size: 32,
                ..Default::default()
            }),
            iters: 20_000,
            problem: quadratic_10x20,
        },
        Case {
            config: SolverConfig::Sustain(SustainConfig {
                inner_lr: Schedule::inv_power(0.2, 1.0 / 3.0),
                outer_lr: Schedule::inv_power(0.2, 1.0 / 3.0),
                hia: HiaParams {
                    max_terms: 50,
                    step: 0.5,
                },
                batch_size: 32,
                ..Default::default()
            }),
            iters: 10_000,
            problem: quadratic_10x20,
        },
        Case {
            config: SolverConfig::Mstsa(MstsaConfig {
                inner_lr: Schedule::inv_power(0.5, 0.5),
                outer_lr: Schedule::inv_power(0.5, 0.5),
                neumann: NeumannEstimator::Shia(NeumannParams {
                    terms: 50,
                    step: 0.5,
                }),
                batch_size: 32,
                ..Default::default()
            }),
            iters: 20_000,
            problem: quadratic_10x20,
        },
        Case {
            config: SolverConfig::Stable(StableConfig {
                inner_lr: Schedule::constant(0.3),
                outer_lr: Schedule::inv_power(0.5, 0.5),
                momentum: Schedule::inv_power(1.0, 0.5),
                batch_size: 32,
                ..Default::default()
            }),
            iters: 5000,
            problem: quadratic_10x20,
        },
        // F2SA converges to an O(1/λ) neighbourhood: λ is held at 100 (λ₀ = λ_max = 100),
        // which puts the neighbourhood below the 10³ reduction; ρʸ < 2/(L_f + λ L_g).
        Case {
            config: SolverConfig::F2sa(F2saConfig {
                inner_steps: 10,
                inner_lr: Schedule::constant(0.005),
                z_lr: Schedule::constant(0.5),
                outer_lr: Schedule::inv_power(0.2, 0.5),
                penalty: 100.0,
                max_penalty: Some(100.0),
                batch_size: 32,
                ..Default::default()
            }),
            iters: 5000,
            problem: quadratic_10x20,
        },
        // BOME's neighbourhood is set by the accuracy of ŷ (T = 30 steps of 1.0) and by the
        // minibatch noise in ∇q, which biases the multiplier: the row uses full batches (512 = n).
        Case {
            config: SolverConfig::Bome(BomeConfig {
                inner_steps: 30,
                inner_lr: 1.0,
                outer_lr: Schedule::inv_power(0.2, 0.25),
                batch_size: 512,
                ..Default::default()
            }),
            iters: 2000,
            problem: quadratic_10x20,
        },
    ]
}
