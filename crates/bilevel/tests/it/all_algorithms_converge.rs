//! The table-driven convergence test: every registered algorithm cuts ‖∇F‖² by at least 10³ on
//! its test problem within a fixed budget and seed (design.md §3.9).

use crate::common;
use bilevel::prelude::*;
use bilevel::run::InMemory;

/// Required reduction of ‖∇F‖² from the start to the end of the budget.
const REDUCTION: f64 = 1e3;
/// The one seed of the table: a stochastic method must pass on it, and its margin is printed so
/// that a change that makes a method marginal is visible.
const SEED: u64 = 7;

#[test]
fn every_algorithm_cuts_the_hypergradient_norm_by_1e3() {
    let mut failures = Vec::new();
    for case in common::cases() {
        let problem = (case.problem)();
        let options = RunOptions {
            max_iters: Some(case.iters),
            eval_every: case.iters,
            ..Default::default()
        };
        let records_trace = InMemory::new();
        let (x0, y0) = problem.start();
        let summary = Runner::new(options)
            .observe(records_trace.clone())
            .run_config(&case.config, &problem, x0, y0, SEED)
            .expect("run");
        let records = records_trace.records();
        let first = records[0].metrics["hypergrad_norm_sq"];
        let last = summary.final_metrics["hypergrad_norm_sq"];
        let reduction = first / last;
        println!(
            "{:>12}: {first:.3e} -> {last:.3e} (reduction {reduction:.2e}) in {} iterations",
            case.config.kind(),
            case.iters
        );
        if summary.status != RunStatus::Done || reduction.is_nan() || reduction < REDUCTION {
            failures.push(format!(
                "{}: status {:?}, reduction {reduction:.3e}",
                case.config.kind(),
                summary.status
            ));
        }
    }
    assert!(failures.is_empty(), "not converged: {failures:#?}");
}

#[test]
fn the_table_covers_every_registered_algorithm() {
    let in_table: Vec<&str> = common::cases().iter().map(|c| c.config.kind()).collect();
    for config in SolverConfig::all_defaults() {
        assert!(
            in_table.contains(&config.kind()),
            "`{}` is registered but missing from tests/common/mod.rs::cases()",
            config.kind()
        );
    }
}

#[test]
fn every_alias_selects_a_registered_algorithm_of_the_table() {
    let in_table: Vec<&str> = common::cases().iter().map(|c| c.config.kind()).collect();
    for (alias, kind) in bilevel::algorithms::ALIASES {
        // The serde alias on the variant and the ALIASES table must agree.
        let config: SolverConfig = serde_json::from_str(&format!(r#"{{"kind": "{alias}"}}"#))
            .unwrap_or_else(|e| panic!("alias `{alias}` does not deserialize: {e}"));
        assert_eq!(config.kind(), *kind, "alias `{alias}`");
        assert!(config.aliases().contains(alias));
        assert!(
            in_table.contains(kind),
            "`{kind}` (alias `{alias}`) is not in the table"
        );
    }
    // And an alias keeps rejecting unknown fields like its canonical kind.
    let err = serde_json::from_str::<SolverConfig>(r#"{"kind": "pzobo", "directionz": 3}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("directionz"), "{err}");
}
