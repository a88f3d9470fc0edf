//! One `step` makes exactly the oracle calls of each algorithm's documented table.

mod common;

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
