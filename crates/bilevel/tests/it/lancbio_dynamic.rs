//! LancBiO on problems whose Hessian changes between iterations (the *dynamic* process the paper
//! is about), and its stochastic variant on minibatch oracles (algorithms.md §3.4–§3.6).
//!
//! On a changing problem the new Lanczos vector is not orthogonal to q_{j−1} by construction; a
//! guard that restarts on any overlap above 1e-8 turned LancBiO into a restart-every-two method
//! (subspace ≤ 2, ~1.5 HVPs per iteration). These tests pin the paper's process: the subspace
//! reaches m and the HVPs per iteration stay at 1 + 1/m, with the guard off (the official code's
//! default) and on.

use bilevel::prelude::*;
use bilevel::problems::logreg_hpo::LogregHpoConfig;
use bilevel::problems::quadratic::QuadraticConfig;
use bilevel::problems::ridge_hpo::RidgeHpoConfig;

/// Runs `iters` LancBiO steps with a fixed period m; returns (largest subspace, mean subspace,
/// HVPs per iteration).
fn process_stats(problem: &Problem, config: LancbioConfig, iters: u64) -> (usize, f64, f64) {
    let solver = config.build().unwrap();
    let (x0, y0) = problem.start();
    let before = problem.counts().g.hvp_yy;
    let mut state = solver.init(problem, x0, y0, 0).unwrap();
    let (mut largest, mut sum) = (0usize, 0.0);
    for _ in 0..iters {
        let d = solver.step(problem, &mut state).unwrap();
        let j = d.get("subspace_dim").unwrap_or(0.0);
        largest = largest.max(j as usize);
        sum += j;
        assert!(
            d.get("orthogonality_restart").is_none(),
            "a drift restart at iteration {}",
            state.t
        );
    }
    let hvps = (problem.counts().g.hvp_yy - before) as f64 / iters as f64;
    (largest, sum / iters as f64, hvps)
}

fn fixed_period(m: usize, guard: bool) -> LancbioConfig {
    LancbioConfig {
        restart_period: m,
        restart_period_max: m,
        restart_growth: 1.0,
        orthogonality_guard: guard,
        ..Default::default()
    }
}

/// A full cycle 1..m has mean (m + 1) / 2; restarts every m iterations cost one more HVP each.
fn assert_paper_process(name: &str, (largest, mean, hvps): (usize, f64, f64), m: usize) {
    eprintln!("{name}: largest subspace {largest}, mean {mean:.2}, {hvps:.3} HVPs per iteration");
    assert_eq!(largest, m, "{name}: the subspace reaches m");
    assert!(
        mean >= (m as f64 + 1.0) / 2.0 - 0.1,
        "{name}: mean subspace {mean}"
    );
    assert!(
        hvps <= 1.0 + 1.0 / m as f64 + 0.05,
        "{name}: {hvps} HVPs per iteration"
    );
}

#[test]
fn on_ridge_hpo_the_subspace_reaches_m_at_one_plus_one_over_m_hvps() {
    let m = 10;
    for guard in [false, true] {
        let problem = RidgeHpoConfig::default().build().unwrap();
        let config = LancbioConfig {
            inner_lr: Schedule::constant(0.002),
            outer_lr: Schedule::constant(0.05),
            ..fixed_period(m, guard)
        };
        let stats = process_stats(&problem, config, 300);
        assert_paper_process(&format!("ridge_hpo, guard {guard}"), stats, m);
    }
}

#[test]
fn on_real_ijcnn1_the_subspace_reaches_m_at_one_plus_one_over_m_hvps() {
    let m = 10;
    let problem = ProblemConfig::LogregHpo(LogregHpoConfig::default())
        .build()
        .expect("the shipped ijcnn1 loads");
    for guard in [false, true] {
        let config = LancbioConfig {
            inner_lr: Schedule::constant(0.5),
            outer_lr: Schedule::constant(1.0),
            ..fixed_period(m, guard)
        };
        let stats = process_stats(&problem.fresh(), config, 60);
        assert_paper_process(&format!("ijcnn1, guard {guard}"), stats, m);
    }
}

/// The stochastic variant (§3.5) on minibatch oracles: one HVP per iteration, and ‖∇F‖² cut by
/// at least 10² within 3,000 iterations on the benchmark quadratic with batch 64 and the
/// official stochastic script's m schedule (×1.3 every 50, at most 30), for three seeds.
/// ‖∇F(x₀)‖² ≈ 1.2e2; the runs end at 0.59, 1.06 and 0.97 (measured: the floor of the bias of
/// minibatch Hessian solves, still falling slowly), i.e. 116–209× lower. The runs are
/// deterministic for a seed, so the margin is not eaten by noise; a change that moves the floor
/// above 1.2 fails here.
#[test]
fn the_stochastic_variant_converges_on_minibatches() {
    let problem = QuadraticConfig::default().build().unwrap();
    for seed in [1, 2, 3] {
        let config = LancbioConfig {
            batch_size: Some(64),
            inner_steps: 3,
            inner_lr: Schedule::InvPower {
                c: 1.0,
                a: 0.5,
                t0: 1.0,
            },
            outer_lr: Schedule::InvPower {
                c: 0.5,
                a: 0.5,
                t0: 1.0,
            },
            restart_growth: 1.3,
            restart_growth_every: 50,
            restart_period_max: 30,
            variant: LancbioVariant::Stochastic,
            ..Default::default()
        };
        let solver = config.build().unwrap();
        let p = problem.fresh();
        let (x0, y0) = p.start();
        let start = p.metrics(&x0, &y0, None).unwrap()["hypergrad_norm_sq"];
        let mut state = solver.init(&p, x0, y0, seed).unwrap();
        let iters = 3000;
        for _ in 0..iters {
            solver.step(&p, &mut state).unwrap();
        }
        let end = p.metrics(&state.x, &state.y, None).unwrap()["hypergrad_norm_sq"];
        let hvps = p.counts().g.hvp_yy as f64 / iters as f64;
        eprintln!("seed {seed}: ‖∇F‖² {start:.3e} → {end:.3e}, {hvps} HVPs per iteration");
        assert!(end <= start / 100.0, "seed {seed}: {start:e} → {end:e}");
        assert_eq!(hvps, 1.0, "one HVP per iteration");
    }
}

#[test]
fn the_stochastic_settings_of_the_official_script() {
    let c = LancbioConfig::stochastic_hyperclean();
    assert_eq!(c.variant, LancbioVariant::Stochastic);
    assert_eq!(c.batch_size, Some(256));
    assert_eq!((c.inner_steps, c.restart_period_max), (3, 30));
    c.validate().unwrap();
}
