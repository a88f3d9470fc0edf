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
