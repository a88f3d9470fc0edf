//! One `step` makes exactly the oracle calls of each algorithm's documented table.

use crate::common;
use bilevel::core::OracleCounts;
use bilevel::linsolve::CgParams;
use bilevel::prelude::*;
use bilevel::testing::counts_per_steps;

#[test]
fn aid_cg_counts_match_its_table() {
    let problem = common::quadratic_10x20();
    let (t, k) = (7, 5);
    let config = SolverConfig::AidCg(AidCgConfig {
        inner_steps: t,
        cg: CgParams {
            max_iters: k,
            rel_tol: 0.0,
        },
        ..Default::default()
    });
    // After one warm-up step v ≠ 0, so the warm-started CG pays one residual product.
    let counts = counts_per_steps(&config, &problem, 1, 1, 0);
    let n_g = problem.g().n_samples() as u64;
    let n_f = problem.f().n_samples() as u64;
    let (t, k) = (t as u64, k as u64);
    assert_eq!(
        counts.g,
        OracleCounts {
            grad_y: t,
            hvp_yy: k + 1,
            cross_xy: 1,
            samples: (t + k + 2) * n_g,
            ..Default::default()
        }
    );
    assert_eq!(
        counts.f,
        OracleCounts {
            grad_x: 1,
            grad_y: 1,
            samples: 2 * n_f,
            ..Default::default()
        }
    );
    // From v = 0 (the first step) CG skips the residual product.
    let first = counts_per_steps(&config, &problem, 0, 1, 0);
    assert_eq!(first.g.hvp_yy, k);
}

#[test]
fn soba_counts_match_its_table() {
    let problem = common::quadratic_10x20();
    let bs = 16;
    let config = SolverConfig::Soba(SobaConfig {
        batch_size: bs,
        ..Default::default()
    });
    let counts = counts_per_steps(&config, &problem, 3, 1, 0);
    let bs = bs as u64;
    assert_eq!(
        counts.g,
        OracleCounts {
            grad_y: 1,
            hvp_yy: 1,
            cross_xy: 1,
            samples: 3 * bs,
            ..Default::default()
        }
    );
    assert_eq!(
        counts.f,
        OracleCounts {
            grad_x: 1,
            grad_y: 1,
            samples: 2 * bs,
            ..Default::default()
        }
    );
}

#[test]
fn fsla_counts_match_its_table() {
    let problem = common::quadratic_10x20();
    let bs = 16;
    let config = |outer_direction| {
        SolverConfig::Fsla(FslaConfig {
            batch_size: bs,
            outer_direction,
            ..Default::default()
        })
    };
    let bs = bs as u64;
    // STORM after the first step: h at the new and at the old point.
    let counts = counts_per_steps(&config(OuterDirection::Storm), &problem, 3, 1, 0);
    assert_eq!(
        counts.g,
        OracleCounts {
            grad_y: 1,
            hvp_yy: 1,
            cross_xy: 2,
            samples: 4 * bs,
            ..Default::default()
        }
    );
    assert_eq!(
        counts.f,
        OracleCounts {
            grad_x: 2,
            grad_y: 1,
            samples: 3 * bs,
            ..Default::default()
        }
    );
    // The first STORM step, and every EMA or plain step: the new point only.
    for (direction, warmup) in [
        (OuterDirection::Storm, 0),
        (OuterDirection::Ema, 3),
        (OuterDirection::Plain, 3),
    ] {
        let counts = counts_per_steps(&config(direction), &problem, warmup, 1, 0);
        assert_eq!(
            counts.g,
            OracleCounts {
                grad_y: 1,
                hvp_yy: 1,
                cross_xy: 1,
                samples: 3 * bs,
                ..Default::default()
            },
            "{direction:?}"
        );
        assert_eq!(
            counts.f,
            OracleCounts {
                grad_x: 1,
                grad_y: 1,
                samples: 2 * bs,
                ..Default::default()
            },
            "{direction:?}"
        );
    }
}

#[test]
fn mrbo_counts_match_its_table() {
    let problem = common::quadratic_10x20();
    let (bs, q) = (8, 4);
    let config = SolverConfig::Mrbo(MrboConfig {
        batch_size: bs,
        neumann: bilevel::linsolve::NeumannParams {
            terms: q,
            step: 0.1,
        },
        ..Default::default()
    });
    let (bs, q) = (bs as u64, q as u64);
    // Steady state: Φ̂ and ∇ᵧg at two points.
    let counts = counts_per_steps(&config, &problem, 2, 1, 0);
    assert_eq!(
        counts.g,
        OracleCounts {
            grad_y: 2,
            hvp_yy: 2 * q,
            cross_xy: 2,
            samples: 2 * (q + 2) * bs,
            ..Default::default()
        }
    );
    assert_eq!(
        counts.f,
        OracleCounts {
            grad_x: 2,
            grad_y: 2,
            samples: 4 * bs,
            ..Default::default()
        }
    );
    // The first step also computes u₀ and v₀.
    let first = counts_per_steps(&config, &problem, 0, 1, 0);
    assert_eq!(
        first.g,
        OracleCounts {
            grad_y: 3,
            hvp_yy: 3 * q,
            cross_xy: 3,
            samples: 3 * (q + 2) * bs,
            ..Default::default()
        }
    );
    assert_eq!((first.f.grad_x, first.f.grad_y), (3, 3));
}

#[test]
fn vrbo_counts_match_its_table() {
    let problem = common::quadratic_10x20();
    let (s1, s2, q, m) = (40_usize, 8_usize, 2_usize, 3_usize);
    let config = |large_batch, correct_last_inner_step| {
        SolverConfig::Vrbo(VrboConfig {
            large_batch,
            small_batch: s2,
            inner_steps: m,
            period: 3,
            neumann: bilevel::linsolve::NeumannParams {
                terms: q,
                step: 0.5,
            },
            correct_last_inner_step,
            ..Default::default()
        })
    };
    let (s1, s2, q, m) = (s1 as u64, s2 as u64, q as u64, m as u64);
    let n_g = problem.g().n_samples() as u64;
    let n_f = problem.f().n_samples() as u64;
    // One checkpoint on `large` samples (g, f) plus `c` corrections on S₂.
    let expected = |large_g: u64, large_f: u64, checkpoints: u64, c: u64| {
        (
            OracleCounts {
                grad_y: checkpoints + 2 * c,
                hvp_yy: (checkpoints + 2 * c) * q,
                cross_xy: checkpoints + 2 * c,
                samples: checkpoints * (q + 2) * large_g + c * 2 * (q + 2) * s2,
                ..Default::default()
            },
            OracleCounts {
                grad_x: checkpoints + 2 * c,
                grad_y: checkpoints + 2 * c,
                samples: checkpoints * 2 * large_f + c * 4 * s2,
                ..Default::default()
            },
        )
    };
    let check = |config: &SolverConfig, warmup, (g, f): (OracleCounts, OracleCounts)| {
        let counts = counts_per_steps(config, &problem, warmup, 1, 0);
        assert_eq!(counts.g, g, "warmup {warmup}");
        assert_eq!(counts.f, f, "warmup {warmup}");
    };
    let fixed = config(CheckpointBatch::Size(s1 as usize), true);
    // k = 0 (checkpoint): m + 1 corrections; k = 1, 2: m + 2 (with the `elif` correction);
    // k = 3: a checkpoint again.
    check(&fixed, 0, expected(s1, s1, 1, m + 1));
    check(&fixed, 1, expected(s1, s1, 0, m + 2));
    check(&fixed, 2, expected(s1, s1, 0, m + 2));
    check(&fixed, 3, expected(s1, s1, 1, m + 1));
    // Official code: no `elif` correction.
    let official = config(CheckpointBatch::Size(s1 as usize), false);
    check(&official, 1, expected(s1, s1, 0, m + 1));
    // Full-batch checkpoint (benchopt).
    let full = config(CheckpointBatch::Full, true);
    check(&full, 0, expected(n_g, n_f, 1, m + 1));
}

#[test]
fn lancbio_counts_match_its_table() {
    let problem = common::quadratic_10x20();
    let t = 4;
    let config = |batch_size| {
        SolverConfig::Lancbio(LancbioConfig {
            inner_steps: t,
            restart_period: 3,
            restart_growth: 1.0,
            batch_size,
            ..Default::default()
        })
    };
    let t = t as u64;
    let n_g = problem.g().n_samples() as u64;
    let n_f = problem.f().n_samples() as u64;
    // Restarts at k = 1 and k = 4 (k mod 3 = 1) cost one more HVP.
    for (warmup, hvps) in [(0, 2), (1, 1), (2, 1), (3, 2)] {
        let counts = counts_per_steps(&config(None), &problem, warmup, 1, 0);
        assert_eq!(
            counts.g,
            OracleCounts {
                grad_y: t,
                hvp_yy: hvps,
                cross_xy: 1,
                samples: (t + hvps + 1) * n_g,
                ..Default::default()
            },
            "k = {}",
            warmup + 1
        );
        assert_eq!(
            counts.f,
            OracleCounts {
                grad_x: 1,
                grad_y: 1,
                samples: 2 * n_f,
                ..Default::default()
            }
        );
    }
    // Minibatch variant: the same calls on batches.
    let bs = 16;
    let counts = counts_per_steps(&config(Some(bs)), &problem, 1, 1, 0);
    let bs = bs as u64;
    assert_eq!(counts.g.samples, (t + 2) * bs);
    assert_eq!(counts.f.samples, 2 * bs);
}

#[test]
fn subbio_counts_match_its_table() {
    let problem = common::quadratic_10x20();
    let t = 3;
    let config = SolverConfig::Subbio(SubbioConfig {
        inner_steps: t,
        ..Default::default()
    });
    let t = t as u64;
    let n_g = problem.g().n_samples() as u64;
    let n_f = problem.f().n_samples() as u64;
    // From v = 0 (the first step) w₂ = 0 is parallel to b: the 1-D fallback skips A e₂.
    for (warmup, hvps) in [(0, 2), (2, 3)] {
        let counts = counts_per_steps(&config, &problem, warmup, 1, 0);
        assert_eq!(
            counts.g,
            OracleCounts {
                grad_y: t,
                hvp_yy: hvps,
                cross_xy: 1,
                samples: (t + hvps + 1) * n_g,
                ..Default::default()
            }
        );
        assert_eq!(
            counts.f,
            OracleCounts {
                grad_x: 1,
                grad_y: 1,
                samples: 2 * n_f,
                ..Default::default()
            }
        );
    }
}

#[test]
fn esj_counts_match_its_table() {
    let problem = common::quadratic_10x20();
    let (t, q) = (4, 3);
    let config = SolverConfig::Esj(EsjConfig {
        inner_steps: t,
        directions: q,
        ..Default::default()
    });
    let counts = counts_per_steps(&config, &problem, 1, 1, 0);
    let n_g = problem.g().n_samples() as u64;
    let n_f = problem.f().n_samples() as u64;
    let (t, q) = (t as u64, q as u64);
    assert_eq!(
        counts.g,
        OracleCounts {
            grad_y: (q + 1) * t,
            samples: (q + 1) * t * n_g,
            ..Default::default()
        }
    );
    assert_eq!(
        counts.f,
        OracleCounts {
            grad_x: 1,
            grad_y: 1,
            samples: 2 * n_f,
            ..Default::default()
        }
    );
    // The alias runs the same solver.
    let alias: SolverConfig =
        serde_json::from_str(r#"{"kind": "pzobo", "inner_steps": 4, "directions": 3}"#).unwrap();
    assert_eq!(counts_per_steps(&alias, &problem, 1, 1, 0), counts);
}

#[test]
fn esj_s_counts_match_its_table() {
    let problem = common::quadratic_10x20();
    let (t, q, bs) = (4, 3, 16);
    let config = SolverConfig::EsjS(EsjSConfig {
        inner_steps: t,
        directions: q,
        batch_size: bs,
        ..Default::default()
    });
    let counts = counts_per_steps(&config, &problem, 2, 1, 0);
    let (t, q, bs) = (t as u64, q as u64, bs as u64);
    assert_eq!(
        counts.g,
        OracleCounts {
            grad_y: (q + 1) * t,
            samples: (q + 1) * t * bs,
            ..Default::default()
        }
    );
    assert_eq!(
        counts.f,
        OracleCounts {
            grad_x: 1,
            grad_y: 1,
            samples: 2 * bs,
            ..Default::default()
        }
    );
}

/// The counts of one meta-step with meta-batch m on `problem` (r from its unrolled spec).
fn meta_counts(config: &SolverConfig, problem: &Problem) -> bilevel::core::Counts {
    counts_per_steps(config, problem, 2, 1, 0)
}

#[test]
fn maml_and_anil_counts_match_their_tables() {
    let problem = common::meta_linear();
    let r = problem.unrolled().unwrap().steps as u64;
    let m = 3;
    for config in [
        SolverConfig::Maml(MamlConfig {
            meta_batch: m,
            ..Default::default()
        }),
        SolverConfig::Anil(AnilConfig {
            meta_batch: m,
            ..Default::default()
        }),
    ] {
        let counts = meta_counts(&config, &problem);
        let m = m as u64;
        // One task per call: every call touches one sample.
        assert_eq!(
            counts.g,
            OracleCounts {
                grad_y: m * r,
                hvp_yy: m * r,
                samples: 2 * m * r,
                ..Default::default()
            },
            "{}",
            config.kind()
        );
        assert_eq!(
            counts.f,
            OracleCounts {
                grad_y: m,
                samples: m,
                ..Default::default()
            },
            "{}",
            config.kind()
        );
    }
}

#[test]
fn fomaml_and_reptile_counts_match_their_tables() {
    let problem = common::meta_linear();
    let r = problem.unrolled().unwrap().steps as u64;
    let m = 3;
    let fomaml = meta_counts(
        &SolverConfig::Fomaml(FomamlConfig {
            meta_batch: m,
            ..Default::default()
        }),
        &problem,
    );
    let m = m as u64;
    assert_eq!(
        fomaml.g,
        OracleCounts {
            grad_y: m * r,
            samples: m * r,
            ..Default::default()
        }
    );
    assert_eq!(
        fomaml.f,
        OracleCounts {
            grad_y: m,
            samples: m,
            ..Default::default()
        }
    );
    let reptile = meta_counts(
        &SolverConfig::Reptile(ReptileConfig {
            meta_batch: m as usize,
            ..Default::default()
        }),
        &problem,
    );
    assert_eq!(reptile.g, fomaml.g);
    assert_eq!(reptile.f, OracleCounts::default());
}

#[test]
fn imaml_counts_match_its_table() {
    let problem = common::meta_linear();
    let (m, t, k) = (3u64, 7u64, 4u64);
    let counts = meta_counts(
        &SolverConfig::Imaml(ImamlConfig {
            meta_batch: m as usize,
            inner_steps: Some(t as usize),
            // λ = 100 makes I + ∇²l/λ positive definite on this (non-convex) problem (and the
            // inner step must then stay below 2/(L + λ)); rel_tol 0 runs exactly K CG
            // iterations per task (no early stop).
            lambda: 100.0,
            inner_lr: Some(0.005),
            cg: CgParams {
                max_iters: k as usize,
                rel_tol: 0.0,
            },
            ..Default::default()
        }),
        &problem,
    );
    assert_eq!(
        counts.g,
        OracleCounts {
            grad_y: m * t,
            hvp_yy: m * k,
            samples: m * (t + k),
            ..Default::default()
        }
    );
    assert_eq!(
        counts.f,
        OracleCounts {
            grad_y: m,
            samples: m,
            ..Default::default()
        }
    );
}

#[test]
fn ufo_blo_counts_match_its_table() {
    let problem = common::meta_linear();
    let r = problem.unrolled().unwrap().steps as u64;
    let m = 4;
    let config = |q: f64| {
        SolverConfig::UfoBlo(UfoBloConfig {
            exact_prob: ExactProb::Fixed(q),
            meta_batch: m,
            ..Default::default()
        })
    };
    let m = m as u64;
    // q = 0: the first-order branch only; q = 1: the exact branch on every task.
    for (q, fired) in [(0.0, 0), (1.0, m)] {
        let counts = meta_counts(&config(q), &problem);
        assert_eq!(
            counts.g,
            OracleCounts {
                grad_y: m * r,
                hvp_yy: fired * r,
                samples: m * r + fired * r,
                ..Default::default()
            },
            "q = {q}"
        );
        assert_eq!(
            counts.f,
            OracleCounts {
                grad_y: m,
                samples: m,
                ..Default::default()
            }
        );
    }
    // 0 < q < 1: r HVPs per task on the exact branch, over many steps about q·m·r per step.
    let steps = 400;
    let counts = counts_per_steps(&config(0.25), &problem, 0, steps, 0);
    let steps = steps as u64;
    assert_eq!(counts.g.grad_y, steps * m * r);
    assert_eq!(counts.g.hvp_yy % r, 0);
    let fired = (counts.g.hvp_yy / r) as f64;
    let expected = 0.25 * (steps * m) as f64;
    // Binomial(1600, 0.25): standard deviation √(1600·0.25·0.75) ≈ 17.3; allow 5σ.
    assert!(
        (fired - expected).abs() < 5.0 * 17.33,
        "{fired} exact branches, expected ≈ {expected}"
    );
}

// ---- Baselines (algorithms.md §8): each test mirrors the table in the solver's file doc. ----

use bilevel::core::Diagnostics;
use bilevel::hypergrad::NeumannEstimator;
use bilevel::linsolve::{GdParams, HiaParams, NeumannParams};

/// Sizes of the test problem: n samples per level, dims (p, q).
fn sizes(problem: &Problem) -> (u64, u64, u64, u64) {
    let (p, q) = problem.dims();
    (
        problem.g().n_samples() as u64,
        problem.f().n_samples() as u64,
        p as u64,
        q as u64,
    )
}

/// Oracle counts of the step after `warmup` steps, and that step's diagnostics.
fn counted_step<S: Solver>(solver: &S, problem: &Problem, warmup: usize) -> (Counts, Diagnostics) {
    let problem = problem.fresh();
    let (x0, y0) = problem.start();
    let mut state = solver.init(&problem, x0, y0, 0).unwrap();
    for _ in 0..warmup {
        solver.step(&problem, &mut state).unwrap();
    }
    let before = problem.counts();
    let diagnostics = solver.step(&problem, &mut state).unwrap();
    (problem.counts().since(&before), diagnostics)
}

/// f-side counts of one fused gradient pair on batches of `b` samples, `k` times.
fn f_pairs(k: u64, b: u64) -> OracleCounts {
    OracleCounts {
        grad_x: k,
        grad_y: k,
        samples: 2 * k * b,
        ..Default::default()
    }
}

#[test]
fn aid_neumann_counts_match_its_table() {
    let problem = common::quadratic_10x20();
    let (n_g, n_f, _, _) = sizes(&problem);
    let (t, k) = (7, 5);
    for form in [NeumannForm::Series, NeumannForm::FixedPoint] {
        let config = SolverConfig::AidNeumann(AidNeumannConfig {
            inner_steps: t,
            terms: k,
            form,
            ..Default::default()
        });
        let counts = counts_per_steps(&config, &problem, 1, 1, 0);
        let (t, k) = (t as u64, k as u64);
        assert_eq!(
            counts.g,
            OracleCounts {
                grad_y: t,
                hvp_yy: k,
                cross_xy: 1,
                samples: (t + k + 1) * n_g,
                ..Default::default()
            },
            "{form:?}"
        );
        assert_eq!(counts.f, f_pairs(1, n_f));
    }
}

#[test]
fn stocbio_counts_match_its_table() {
    let problem = common::quadratic_10x20();
    let (bs, t, q) = (16, 7, 5);
    let config = SolverConfig::Stocbio(StocbioConfig {
        inner_steps: t,
        neumann: NeumannParams {
            terms: q,
            step: 0.1,
        },
        batch_size: bs,
        ..Default::default()
    });
    let counts = counts_per_steps(&config, &problem, 1, 1, 0);
    let (bs, t, q) = (bs as u64, t as u64, q as u64);
    assert_eq!(
        counts.g,
        OracleCounts {
            grad_y: t,
            hvp_yy: q,
            cross_xy: 1,
            samples: (t + q + 1) * bs,
            ..Default::default()
        }
    );
    assert_eq!(counts.f, f_pairs(1, bs));
}

#[test]
fn amigo_counts_match_its_table() {
    let problem = common::quadratic_10x20();
    let (bs, t, k) = (16, 7, 5);
    let gd = SolverConfig::Amigo(AmigoConfig {
        inner_steps: t,
        linear: AmigoLinearSystem::Gd(GdParams {
            steps: k,
            step: 0.1,
            rel_tol: 0.0,
        }),
        batch_size: bs,
        ..Default::default()
    });
    let counts = counts_per_steps(&gd, &problem, 1, 1, 0);
    let (bs, t, k) = (bs as u64, t as u64, k as u64);
    assert_eq!(
        counts.g,
        OracleCounts {
            grad_y: t,
            hvp_yy: k,
            cross_xy: 1,
            samples: (t + k + 1) * bs,
            ..Default::default()
        }
    );
    assert_eq!(counts.f, f_pairs(1, bs));
    // CG: K iterations plus the warm-start residual once v ≠ 0, all on one Hessian batch.
    let cg = SolverConfig::Amigo(AmigoConfig {
        inner_steps: t as usize,
        linear: AmigoLinearSystem::Cg(CgParams {
            max_iters: k as usize,
            rel_tol: 0.0,
        }),
        batch_size: bs as usize,
        ..Default::default()
    });
    let counts = counts_per_steps(&cg, &problem, 1, 1, 0);
    assert_eq!(counts.g.hvp_yy, k + 1);
    assert_eq!(counts.g.samples, (t + k + 2) * bs);
    assert_eq!(counts_per_steps(&cg, &problem, 0, 1, 0).g.hvp_yy, k);
}

#[test]
fn bsa_counts_match_its_table() {
    let problem = common::quadratic_10x20();
    let (bs, t) = (16u64, 7u64);
    let make = |max_terms| BsaConfig {
        inner_steps: t as usize,
        hia: HiaParams {
            max_terms,
            step: 0.1,
        },
        batch_size: bs as usize,
        ..Default::default()
    };
    // N = 1 forces P = 0: no Hessian product at all.
    let counts = counts_per_steps(&SolverConfig::Bsa(make(1)), &problem, 1, 1, 0);
    assert_eq!(
        counts.g,
        OracleCounts {
            grad_y: t,
            cross_xy: 1,
            samples: (t + 1) * bs,
            ..Default::default()
        }
    );
    assert_eq!(counts.f, f_pairs(1, bs));
    // N = 6: P products, P < N, as reported by the step.
    let solver = make(6).build().unwrap();
    let mut seen = Vec::new();
    for warmup in 0..8 {
        let (counts, diagnostics) = counted_step(&solver, &problem, warmup);
        let p = diagnostics.get("linsolve_matvecs").unwrap() as u64;
        assert!(p < 6);
        assert_eq!(counts.g.hvp_yy, p);
        seen.push(p);
    }
    assert!(seen.iter().any(|&p| p != seen[0]), "P is random: {seen:?}");
}

#[test]
fn hoag_counts_match_its_table() {
    let problem = common::quadratic_10x20();
    let (n_g, n_f, _, _) = sizes(&problem);
    let solver = HoagConfig {
        inner_lr: 1.0,
        ..Default::default()
    }
    .build()
    .unwrap();
    for warmup in [0, 3] {
        let (counts, diagnostics) = counted_step(&solver, &problem, warmup);
        let steps = diagnostics.get("inner_steps").unwrap() as u64;
        let matvecs = diagnostics.get("linsolve_matvecs").unwrap() as u64;
        assert!(steps > 0 && matvecs > 0);
        assert!(
            diagnostics.get("inner_grad_norm").unwrap() <= diagnostics.get("tolerance").unwrap()
        );
        assert_eq!(
            counts.g,
            OracleCounts {
                grad_y: steps + 1,
                hvp_yy: matvecs,
                cross_xy: 1,
                samples: (steps + 1 + matvecs + 1) * n_g,
                ..Default::default()
            }
        );
        assert_eq!(counts.f, f_pairs(1, n_f));
    }
}

#[test]
fn itd_and_truncated_itd_counts_match_their_tables() {
    let problem = common::quadratic_10x20();
    let (n_g, n_f, _, _) = sizes(&problem);
    let (t, k) = (7u64, 3u64);
    let full = SolverConfig::Itd(ItdConfig {
        inner_steps: t as usize,
        ..Default::default()
    });
    let counts = counts_per_steps(&full, &problem, 1, 1, 0);
    assert_eq!(
        counts.g,
        OracleCounts {
            grad_y: t,
            hvp_yy: t,
            cross_xy: t,
            samples: 3 * t * n_g,
            ..Default::default()
        }
    );
    assert_eq!(counts.f, f_pairs(1, n_f));
    let bs = 16u64;
    let truncated = SolverConfig::ItdTruncated(ItdTruncatedConfig {
        inner_steps: t as usize,
        backprop_steps: k as usize,
        batch_size: Some(bs as usize),
        ..Default::default()
    });
    let counts = counts_per_steps(&truncated, &problem, 1, 1, 0);
    assert_eq!(
        counts.g,
        OracleCounts {
            grad_y: t,
            hvp_yy: k,
            cross_xy: k,
            samples: (t + 2 * k) * bs,
            ..Default::default()
        }
    );
    assert_eq!(counts.f, f_pairs(1, bs));
}

#[test]
fn saba_counts_match_its_table() {
    let problem = common::quadratic_10x20();
    let (n_g, n_f, _, _) = sizes(&problem);
    let bs = 16u64;
    let config = SolverConfig::Saba(SabaConfig {
        batch_size: bs as usize,
        ..Default::default()
    });
    // Per-sample calls: b of each kind, one sample each.
    let counts = counts_per_steps(&config, &problem, 2, 1, 0);
    assert_eq!(
        counts.g,
        OracleCounts {
            grad_y: bs,
            hvp_yy: bs,
            cross_xy: bs,
            samples: 3 * bs,
            ..Default::default()
        }
    );
    assert_eq!(counts.f, f_pairs(bs, 1));
    // `init` makes one pass over both levels (the gradient memories).
    let fresh = problem.fresh();
    let (x0, y0) = fresh.start();
    let solver = SabaConfig::default().build().unwrap();
    solver.init(&fresh, x0, y0, 0).unwrap();
    let init = fresh.counts();
    assert_eq!(
        init.g,
        OracleCounts {
            grad_y: n_g,
            samples: n_g,
            ..Default::default()
        }
    );
    assert_eq!(init.f, f_pairs(n_f, 1));
}

#[test]
fn srba_counts_match_its_table() {
    let problem = common::quadratic_10x20();
    let (n_g, n_f, _, _) = sizes(&problem);
    let bs = 16u64;
    let config = SolverConfig::Srba(SrbaConfig {
        batch_size: bs as usize,
        ..Default::default()
    });
    let one_each = |k: u64, b: u64| OracleCounts {
        grad_y: k,
        hvp_yy: k,
        cross_xy: k,
        samples: 3 * k * b,
        ..Default::default()
    };
    // t = 0 is a full pass; the default period is (512 + 512) / (2 · 16) = 32.
    let full = counts_per_steps(&config, &problem, 0, 1, 0);
    assert_eq!(full.g, one_each(1, n_g));
    assert_eq!(full.f, f_pairs(1, n_f));
    let sarah = counts_per_steps(&config, &problem, 1, 1, 0);
    assert_eq!(sarah.g, one_each(2, bs));
    assert_eq!(sarah.f, f_pairs(2, bs));
    let again = counts_per_steps(&config, &problem, 32, 1, 0);
    assert_eq!(again.g, one_each(1, n_g), "the next full pass is at t = 32");
}

#[test]
fn ttsa_counts_match_its_table() {
    let problem = common::quadratic_10x20();
    let bs = 16u64;
    let solver = TtsaConfig {
        batch_size: bs as usize,
        hia: HiaParams {
            max_terms: 6,
            step: 0.1,
        },
        ..Default::default()
    }
    .build()
    .unwrap();
    for warmup in 0..5 {
        let (counts, diagnostics) = counted_step(&solver, &problem, warmup);
        let p = diagnostics.get("hia_terms").unwrap() as u64;
        assert!(p < 6);
        assert_eq!(
            counts.g,
            OracleCounts {
                grad_y: 1,
                hvp_yy: p,
                cross_xy: 1,
                samples: (2 + p) * bs,
                ..Default::default()
            }
        );
        assert_eq!(counts.f, f_pairs(1, bs));
    }
}

#[test]
fn sustain_counts_match_its_table() {
    let problem = common::quadratic_10x20();
    let bs = 16u64;
    let solver = SustainConfig {
        batch_size: bs as usize,
        hia: HiaParams {
            max_terms: 6,
            step: 0.1,
        },
        ..Default::default()
    }
    .build()
    .unwrap();
    for warmup in 1..5 {
        let (counts, diagnostics) = counted_step(&solver, &problem, warmup);
        let p = diagnostics.get("hia_terms").unwrap() as u64;
        assert!(p < 6);
        assert_eq!(
            counts.g,
            OracleCounts {
                grad_y: 2,
                hvp_yy: 2 * p,
                cross_xy: 2,
                samples: (4 + 2 * p) * bs,
                ..Default::default()
            }
        );
        assert_eq!(counts.f, f_pairs(2, bs));
    }
    // The first step adds the initialisation (with N = 1, P = 0 everywhere).
    let first = counts_per_steps(
        &SolverConfig::Sustain(SustainConfig {
            batch_size: bs as usize,
            hia: HiaParams {
                max_terms: 1,
                step: 0.1,
            },
            ..Default::default()
        }),
        &problem,
        0,
        1,
        0,
    );
    assert_eq!(
        first.g,
        OracleCounts {
            grad_y: 3,
            cross_xy: 3,
            samples: 6 * bs,
            ..Default::default()
        }
    );
    assert_eq!(first.f, f_pairs(3, bs));
}

#[test]
fn mstsa_counts_match_its_table() {
    let problem = common::quadratic_10x20();
    let (bs, q) = (16u64, 4u64);
    let config = SolverConfig::Mstsa(MstsaConfig {
        batch_size: bs as usize,
        neumann: NeumannEstimator::Shia(NeumannParams {
            terms: q as usize,
            step: 0.1,
        }),
        ..Default::default()
    });
    let counts = counts_per_steps(&config, &problem, 1, 1, 0);
    assert_eq!(
        counts.g,
        OracleCounts {
            grad_y: 1,
            hvp_yy: 2 * q,
            cross_xy: 2,
            samples: (3 + 2 * q) * bs,
            ..Default::default()
        }
    );
    assert_eq!(counts.f, f_pairs(2, bs));
    let first = counts_per_steps(&config, &problem, 0, 1, 0);
    assert_eq!((first.g.hvp_yy, first.g.cross_xy), (q, 1));
    assert_eq!(first.f, f_pairs(1, bs));
}

#[test]
fn stable_counts_match_its_table() {
    let problem = common::quadratic_10x20();
    let (_, _, _, q) = sizes(&problem);
    let bs = 16u64;
    let config = SolverConfig::Stable(StableConfig {
        batch_size: bs as usize,
        ..Default::default()
    });
    let counts = counts_per_steps(&config, &problem, 1, 1, 0);
    assert_eq!(
        counts.g,
        OracleCounts {
            grad_y: 1,
            hvp_yy: 2 * q,
            cross_xy: 2 * q,
            samples: (1 + 4 * q) * bs,
            ..Default::default()
        }
    );
    assert_eq!(counts.f, f_pairs(1, bs));
    let first = counts_per_steps(&config, &problem, 0, 1, 0);
    assert_eq!((first.g.hvp_yy, first.g.cross_xy), (q, q));
}

#[test]
fn f2sa_counts_match_its_table() {
    let problem = common::quadratic_10x20();
    let (bs, t) = (16u64, 7u64);
    let config = SolverConfig::F2sa(F2saConfig {
        inner_steps: t as usize,
        batch_size: bs as usize,
        ..Default::default()
    });
    let counts = counts_per_steps(&config, &problem, 1, 1, 0);
    assert_eq!(
        counts.g,
        OracleCounts {
            grad_y: 2 * t,
            grad_x: 2,
            samples: (2 * t + 2) * bs,
            ..Default::default()
        }
    );
    assert_eq!(
        counts.f,
        OracleCounts {
            grad_y: t,
            grad_x: 1,
            samples: (t + 1) * bs,
            ..Default::default()
        }
    );
}

#[test]
fn bome_counts_match_its_table() {
    let problem = common::quadratic_10x20();
    let (bs, t) = (16u64, 7u64);
    let config = SolverConfig::Bome(BomeConfig {
        inner_steps: t as usize,
        batch_size: bs as usize,
        ..Default::default()
    });
    let counts = counts_per_steps(&config, &problem, 1, 1, 0);
    assert_eq!(
        counts.g,
        OracleCounts {
            grad_y: t + 1,
            grad_x: 2,
            samples: (t + 3) * bs,
            ..Default::default()
        }
    );
    assert_eq!(counts.f, f_pairs(1, bs));
}

#[test]
fn saba_per_batch_counts_match_its_table() {
    let problem = common::quadratic_10x20();
    let (n_g, n_f, _, _) = sizes(&problem);
    let bs = 16u64;
    let config = SolverConfig::Saba(SabaConfig {
        batch_size: bs as usize,
        sampling: SamplingMode::Contiguous,
        memory: SabaMemoryLayout::PerBatch,
        ..Default::default()
    });
    // One call per term on the block, as SOBA.
    let counts = counts_per_steps(&config, &problem, 2, 1, 0);
    assert_eq!(
        counts.g,
        OracleCounts {
            grad_y: 1,
            hvp_yy: 1,
            cross_xy: 1,
            samples: 3 * bs,
            ..Default::default()
        }
    );
    assert_eq!(counts.f, f_pairs(1, bs));
    // `init`: one call per block, ⌈n/b⌉ blocks of b samples.
    let fresh = problem.fresh();
    let (x0, y0) = fresh.start();
    let solver = SabaConfig {
        batch_size: bs as usize,
        sampling: SamplingMode::Contiguous,
        memory: SabaMemoryLayout::PerBatch,
        ..Default::default()
    }
    .build()
    .unwrap();
    solver.init(&fresh, x0, y0, 0).unwrap();
    let init = fresh.counts();
    assert_eq!(
        init.g,
        OracleCounts {
            grad_y: n_g / bs,
            samples: n_g,
            ..Default::default()
        }
    );
    assert_eq!(init.f, f_pairs(n_f / bs, bs));
}
