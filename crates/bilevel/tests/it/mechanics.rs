//! Mechanical checks for every algorithm of the table: bit-exact resume, determinism, and a
//! checkpoint written by the runner that resumes to the same final metrics.

use crate::common;
use bilevel::prelude::*;
use bilevel::run::runner::CheckpointTarget;
use bilevel::run::{Checkpoint, InMemory};
use bilevel::testing::{assert_deterministic, assert_resumes_bit_exact};

#[test]
fn every_algorithm_resumes_bit_exactly() {
    for case in common::cases() {
        let problem = (case.problem)();
        assert_resumes_bit_exact(&case.config, &problem, 7, 3);
    }
}

#[test]
fn every_algorithm_is_deterministic_for_a_seed() {
    for case in common::cases() {
        let problem = (case.problem)();
        assert_deterministic(&case.config, &problem, 9, 11);
    }
}

#[test]
fn different_seeds_give_different_stochastic_runs() {
    let case = common::cases()
        .into_iter()
        .find(|c| c.config.kind() == "soba")
        .expect("soba is in the table");
    let problem = (case.problem)();
    let (a, _) = bilevel::testing::iterate_after(&case.config, &problem, 5, 1);
    let (b, _) = bilevel::testing::iterate_after(&case.config, &problem, 5, 2);
    assert_ne!(a.as_slice(), b.as_slice());
}

/// Runs N iterations writing a checkpoint, resumes to 2N through the runner, and compares with a
/// straight 2N run: same final metrics bit for bit, same oracle counts.
#[test]
fn runner_checkpoint_resume_matches_a_straight_run() {
    let dir = tempfile::tempdir().unwrap();
    for case in common::cases() {
        let n = 6;
        let problem = (case.problem)();
        let (x0, y0) = problem.start();
        let options = |iters| RunOptions {
            max_iters: Some(iters),
            eval_every: 3,
            checkpoint_every: Some(n),
            ..Default::default()
        };
        let path = dir.path().join(format!("{}.ckpt.json", case.config.kind()));

        let mut runner = Runner::new(options(n));
        runner.checkpoint = Some(CheckpointTarget {
            path: path.clone(),
            context: serde_json::json!({"note": "test"}),
        });
        runner
            .run_config(&case.config, &problem.fresh(), x0.clone(), y0.clone(), 5)
            .unwrap();
        let checkpoint = Checkpoint::load(&path).unwrap();
        assert_eq!(checkpoint.iter, n);
        assert_eq!(checkpoint.context["note"], "test");

        let resumed_problem = problem.fresh();
        let resumed_records_trace = InMemory::new();
        let resumed = Runner::new(options(2 * n))
            .observe(resumed_records_trace.clone())
            .resume_config(&checkpoint, &resumed_problem)
            .unwrap();
        let resumed_records = resumed_records_trace.records();

        let straight_problem = problem.fresh();
        let straight_records_trace = InMemory::new();
        let straight = Runner::new(options(2 * n))
            .observe(straight_records_trace.clone())
            .run_config(&case.config, &straight_problem, x0, y0, 5)
            .unwrap();

        assert_eq!(resumed.iters, straight.iters);
        assert_eq!(resumed.counts, straight.counts, "{}", case.config.kind());
        for (name, value) in &straight.final_metrics {
            assert_eq!(
                value.to_bits(),
                resumed.final_metrics[name].to_bits(),
                "{}: metric {name} differs after resume",
                case.config.kind()
            );
        }
        // The resumed run reports only the evaluations after the checkpoint.
        let after: Vec<u64> = resumed_records.iter().map(|r| r.iter).collect();
        assert_eq!(after, vec![9, 12]);
    }
}

#[test]
fn a_diverging_step_size_ends_with_status_diverged() {
    let problem = common::quadratic_10x20();
    let config = SolverConfig::Soba(SobaConfig {
        inner_lr: Schedule::constant(50.0),
        outer_lr: Schedule::constant(50.0),
        ..Default::default()
    });
    let (x0, y0) = problem.start();
    let summary = Runner::new(RunOptions {
        max_iters: Some(10_000),
        eval_every: 10,
        ..Default::default()
    })
    .run_config(&config, &problem, x0, y0, 0)
    .unwrap();
    assert_eq!(summary.status, RunStatus::Diverged);
    assert!(summary.iters < 10_000);
    assert!(summary.message.is_some());
}

#[test]
fn a_config_typo_is_rejected_with_the_field_name() {
    let err = serde_json::from_str::<SolverConfig>(r#"{"kind": "soba", "batchsize": 32}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("batchsize"), "{err}");
    assert!(
        err.contains("batch_size"),
        "the message lists the valid fields: {err}"
    );
    let err = serde_json::from_str::<SolverConfig>(r#"{"kind": "sobaa"}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("sobaa"), "{err}");
}

#[test]
fn invalid_values_are_rejected_before_running() {
    let config = SolverConfig::AidCg(AidCgConfig {
        inner_lr: -1.0,
        ..Default::default()
    });
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("inner_lr"), "{err}");
    let err = RunOptions {
        max_iters: None,
        ..Default::default()
    }
    .validate()
    .unwrap_err()
    .to_string();
    assert!(err.contains("budget"), "{err}");
}

/// A run killed after its last checkpoint (taken at the final iteration, an evaluation point)
/// must not report that evaluation twice when resumed, and must still end with final metrics.
#[test]
fn resuming_at_the_final_evaluation_reports_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let case = &common::cases()[0];
    let problem = (case.problem)();
    let (x0, y0) = problem.start();
    let options = RunOptions {
        max_iters: Some(6),
        eval_every: 3,
        checkpoint_every: Some(6),
        ..Default::default()
    };
    let path = dir.path().join("last.ckpt.json");
    let first_records_trace = InMemory::new();
    let mut runner = Runner::new(options.clone()).observe(first_records_trace.clone());
    runner.checkpoint = Some(CheckpointTarget {
        path: path.clone(),
        context: serde_json::Value::Null,
    });
    let straight = runner
        .run_config(&case.config, &problem.fresh(), x0, y0, 5)
        .unwrap();
    drop(runner);
    let checkpoint = Checkpoint::load(&path).unwrap();
    assert_eq!(checkpoint.iter, 6);
    let records_trace = InMemory::new();
    let resumed = Runner::new(options)
        .observe(records_trace.clone())
        .resume_config(&checkpoint, &problem.fresh())
        .unwrap();
    let records = records_trace.records();
    assert!(records.is_empty(), "iteration 6 was already reported");
    assert_eq!(resumed.iters, 6);
    assert_eq!(resumed.final_metrics, straight.final_metrics);
    assert_eq!(first_records_trace.records().last().unwrap().iter, 6);
}

/// `stop_at` ends a run at the first evaluation that meets the target, as `done` with stop
/// reason `target_reached`; the evaluation before it had not met it.
#[test]
fn stop_at_ends_the_run_at_the_first_evaluation_that_meets_the_target() {
    let problem = bilevel::problems::quadratic::tiny();
    let (x0, y0) = problem.start();
    let records_trace = InMemory::new();
    let summary = Runner::new(RunOptions {
        max_iters: Some(1000),
        eval_every: 1,
        stop_at: Some(bilevel::run::StopAt {
            metric: "hypergrad_norm_sq".into(),
            value: 1e-12,
        }),
        ..Default::default()
    })
    .observe(records_trace.clone())
    .run_config(
        &SolverConfig::ExactLbfgs(ExactLbfgsConfig::default()),
        &problem,
        x0,
        y0,
        1,
    )
    .unwrap();
    let records = records_trace.records();
    assert_eq!(summary.status, RunStatus::Done);
    assert_eq!(summary.stop_reason, bilevel::run::StopReason::TargetReached);
    assert!(summary.iters < 1000, "stopped early: {}", summary.iters);
    assert!(summary.final_metrics["hypergrad_norm_sq"] <= 1e-12);
    let before = &records[records.len() - 2];
    assert!(before.metrics["hypergrad_norm_sq"] > 1e-12);
    assert_eq!(records.last().unwrap().iter, summary.iters);
}

/// `eval_every_seconds` evaluates by solver time: with a period shorter than any step, every
/// iteration is evaluated although `eval_every` alone would evaluate only the start and end.
#[test]
fn eval_every_seconds_evaluates_by_solver_time() {
    let problem = bilevel::problems::quadratic::tiny();
    let (x0, y0) = problem.start();
    let records_trace = InMemory::new();
    Runner::new(RunOptions {
        max_iters: Some(50),
        eval_every: 1_000_000,
        eval_every_seconds: Some(1e-12),
        ..Default::default()
    })
    .observe(records_trace.clone())
    .run_config(
        &SolverConfig::Soba(SobaConfig::default()),
        &problem,
        x0,
        y0,
        1,
    )
    .unwrap();
    let records = records_trace.records();
    let iters: Vec<u64> = records.iter().map(|r| r.iter).collect();
    assert_eq!(iters, (0..=50).collect::<Vec<u64>>());
    let err = RunOptions {
        max_iters: Some(10),
        eval_every_seconds: Some(0.0),
        ..Default::default()
    }
    .validate()
    .unwrap_err()
    .to_string();
    assert!(err.contains("eval_every_seconds"), "{err}");
}

/// Every run counts from zero: two solvers run one after the other on one `Problem` report the
/// same counts (and stop at the same iteration of an oracle-call budget) as each run alone on a
/// fresh copy. Before the fix the second run started from the first run's counts.
#[test]
fn each_run_counts_its_own_oracle_calls() {
    let problem = bilevel::problems::quadratic::tiny();
    let (x0, y0) = problem.start();
    let run = |p: &Problem, config: &SolverConfig| {
        let records_trace = InMemory::new();
        let summary = Runner::new(RunOptions {
            max_iters: Some(1000),
            max_oracle_calls: Some(3000),
            eval_every: 10,
            ..Default::default()
        })
        .observe(records_trace.clone())
        .run_config(config, p, x0.clone(), y0.clone(), 1)
        .unwrap();
        let records = records_trace.records();
        (summary.iters, records.last().unwrap().counts)
    };
    let aid = SolverConfig::AidCg(AidCgConfig::default());
    let soba = SolverConfig::Soba(SobaConfig::default());
    let aid_alone = run(&problem.fresh(), &aid);
    let soba_alone = run(&problem.fresh(), &soba);
    assert!(aid_alone.1.calls() > 0 && soba_alone.1.calls() > 0);
    let shared = problem.fresh();
    assert_eq!(run(&shared, &aid), aid_alone, "AID-CG first");
    assert_eq!(
        run(&shared, &soba),
        soba_alone,
        "SOBA after AID-CG on the same problem"
    );
    assert_eq!(run(&shared, &aid), aid_alone, "AID-CG again");
}

/// No hidden budget: a run with only `max_seconds` goes past 1,000 iterations (the old default
/// stopped every run there), and options with no budget at all are refused, naming the budgets.
#[test]
fn only_the_budgets_that_are_set_apply() {
    let problem = bilevel::problems::quadratic::tiny();
    let (x0, y0) = problem.start();
    let summary = Runner::new(RunOptions {
        max_seconds: Some(0.2),
        eval_every: 1_000_000,
        ..Default::default()
    })
    .run_config(
        &SolverConfig::Soba(SobaConfig::default()),
        &problem,
        x0,
        y0,
        1,
    )
    .unwrap();
    assert_eq!(summary.stop_reason, bilevel::run::StopReason::MaxSeconds);
    assert!(summary.iters > 1000, "stopped at {}", summary.iters);
    let err = RunOptions::default().validate().unwrap_err().to_string();
    assert!(err.contains("set at least one budget"), "{err}");
}
