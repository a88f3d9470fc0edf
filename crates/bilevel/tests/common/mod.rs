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

/// The UFO-BLO counter-example (algorithms.md §7.5) with its defaults.
pub fn ufo_toy() -> Problem {
    bilevel::problems::ufo_toy::UfoToyConfig::default()
        .build()
        .expect("the toy builds")
}

/// Few-shot linear regression (8 tasks, head/body), reference = MAML's M.
pub fn meta_linear() -> Problem {
    bilevel::problems::meta_linear::MetaLinearConfig::default()
        .build()
        .expect("meta_linear builds")
}

/// The same tasks with the reference measuring ANIL's M (head-only inner loop).
pub fn meta_linear_head() -> Problem {
    use bilevel::problems::meta_linear::{Adapted, MetaLinearConfig};
    MetaLinearConfig {
        reference_adapts: Adapted::Head,
        ..MetaLinearConfig::default()
    }
    .build()
    .expect("meta_linear builds")
}

/// One task whose query set is its support set: the instance on which the biased first-order
/// methods (FO-MAML, Reptile) have their fixed points at stationary points of M. FO-MAML stops
/// where ∇l(θ_r) = 0, so ∇M = Π(I − αH_k)∇l(θ_r) = 0; Reptile stops where θ_r = φ, i.e. (GD
/// with α < 2/L strictly decreases l unless ∇l(φ) = 0) where ∇l(φ) = 0, so again ∇M = 0. With
/// several tasks (or a separate query set) their fixed points are not stationary for M in
/// general, and the 10³ rule could not be met.
pub fn meta_linear_one_task() -> Problem {
    use bilevel::problems::meta_linear::MetaLinearConfig;
    MetaLinearConfig {
        tasks: 1,
        query_is_support: true,
        ..MetaLinearConfig::default()
    }
    .build()
    .expect("meta_linear builds")
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
        // ESJ: on the quadratic y_T(x) is affine in x, so the ES Jacobian is unbiased for every μ
        // (the default 0.1 is kept). T = 30 steps of size 1 keep the truncation bias
        // (1 − αμ)^T of J_T well below the 10³ target; the ES noise (∝ ‖∇ᵧf‖ ≠ 0 at the
        // solution) needs a decaying step.
        Case {
            config: SolverConfig::Esj(EsjConfig {
                inner_steps: 30,
                inner_lr: 1.0,
                outer_lr: Schedule::inv_power(1.0, 0.5),
                ..Default::default()
            }),
            iters: 1000,
            problem: quadratic_10x20,
        },
        Case {
            config: SolverConfig::EsjS(EsjSConfig {
                inner_steps: 30,
                inner_lr: 1.0,
                batch_size: 32,
                outer_lr: Schedule::inv_power(1.0, 0.5),
                ..Default::default()
            }),
            iters: 2000,
            problem: quadratic_10x20,
        },
        // UFO-BLO on its own counter-example, with the §7.5 settings (q = 0.1, step 10/(k+1),
        // both tasks per meta-step). Expected ‖∇M‖² after k steps ≈ 60 λ²/k with λ ≈ 0.119 (see
        // tests/it/meta_estimators.rs), i.e. ≈ 1.7e-5 at 50 000: a 1.3e4 cut from 0.216.
        Case {
            config: SolverConfig::UfoBlo(UfoBloConfig {
                meta_batch: 2,
                outer_lr: Schedule::InvPower {
                    c: 10.0,
                    a: 1.0,
                    t0: 1.0,
                },
                ..Default::default()
            }),
            iters: 50_000,
            problem: ufo_toy,
        },
        Case {
            config: SolverConfig::Maml(MamlConfig {
                meta_batch: 8,
                outer_lr: Schedule::constant(0.3),
                ..Default::default()
            }),
            iters: 600,
            problem: meta_linear,
        },
        // FO-MAML and Reptile are biased: they run on the one-task instance where their fixed
        // points are stationary points of M (see `meta_linear_one_task`).
        Case {
            config: SolverConfig::Fomaml(FomamlConfig {
                outer_lr: Schedule::constant(0.3),
                ..Default::default()
            }),
            iters: 800,
            problem: meta_linear_one_task,
        },
        // iMAML's fixed points on this instance: ∇l(θ*) = 0 with θ* the proximal solution,
        // so λ(θ* − φ) = 0, θ* = φ and ∇l(φ) = 0, a stationary point of M. Its proximal
        // problems are solved nearly exactly (100 steps: contraction 1 − α(μ + λ) ≤ 0.9).
        Case {
            config: SolverConfig::Imaml(ImamlConfig {
                inner_steps: Some(100),
                outer_lr: Schedule::constant(0.3),
                ..Default::default()
            }),
            iters: 800,
            problem: meta_linear_one_task,
        },
        Case {
            config: SolverConfig::Reptile(ReptileConfig {
                outer_lr: Schedule::constant(1.0),
                ..Default::default()
            }),
            iters: 400,
            problem: meta_linear_one_task,
        },
        // ANIL's reference is ANIL's own meta-objective (head-only inner loop).
        Case {
            config: SolverConfig::Anil(AnilConfig {
                meta_batch: 8,
                outer_lr: Schedule::constant(0.3),
                ..Default::default()
            }),
            iters: 400,
            problem: meta_linear_head,
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
            config: SolverConfig::ExactLbfgs(ExactLbfgsConfig::default()),
            iters: 30,
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

/// Checks that the mean of `draws` estimates of `estimator` at φ equals `truth` within 5
/// standard errors per coordinate (plus `slack` for rounding): the mean of n i.i.d. draws lies
/// there with probability 1 − 6e-7 per coordinate (CLT). Returns how many coordinates varied
/// (a check of a constant estimator would be vacuous).
pub fn assert_unbiased<H: bilevel::hypergrad::Hypergradient>(
    estimator: &H,
    problem: &Problem,
    phi: &Vector,
    truth: &Vector,
    draws: usize,
    seed: u64,
    slack: f64,
) -> usize {
    let mut rng = bilevel::core::linalg::rng_from_seed(seed, 0);
    let mut state = estimator.init(problem, phi.clone(), &mut rng).unwrap();
    let dim = phi.nrows();
    let (mut sum, mut sum_sq) = (vec![0.0; dim], vec![0.0; dim]);
    let mut out = Vector::zeros(dim);
    for _ in 0..draws {
        estimator
            .estimate(problem, phi, &mut state, &mut rng, &mut out)
            .unwrap();
        for (i, &g) in out.as_slice().iter().enumerate() {
            sum[i] += g;
            sum_sq[i] += g * g;
        }
    }
    let mut varied = 0;
    for i in 0..dim {
        let mean = sum[i] / draws as f64;
        let std = (sum_sq[i] / draws as f64 - mean * mean).max(0.0).sqrt();
        let bound = 5.0 * std / (draws as f64).sqrt() + slack;
        assert!(
            (mean - truth[i]).abs() <= bound,
            "coordinate {i}: mean {mean:.6e}, truth {:.6e}, bound {bound:.3e}",
            truth[i]
        );
        if std > 0.0 {
            varied += 1;
        }
    }
    varied
}
