//! Runs that never lose results and never resume from a checkpoint that is not theirs:
//! verified checkpoints (checksum, problem fingerprint, state), failed evaluations recorded
//! without ending the run, and no final metrics for a diverged run.

use std::sync::atomic::{AtomicUsize, Ordering};

use bilevel::core::problem::ReferencePoint;
use bilevel::prelude::*;
use bilevel::problems::quadratic::QuadraticConfig;
use bilevel::run::runner::CheckpointTarget;
use bilevel::run::{Checkpoint, InMemory};

fn quadratic(n: usize) -> Problem {
    QuadraticConfig {
        dim_x: 3,
        dim_y: 5,
        n_inner: n,
        n_outer: n,
        ..Default::default()
    }
    .build()
    .unwrap()
}

fn saba() -> SolverConfig {
    SolverConfig::Saba(SabaConfig {
        batch_size: 8,
        ..Default::default()
    })
}

/// A checkpoint of SABA after 10 iterations on `quadratic(64)`, written by the runner.
fn written_checkpoint(dir: &std::path::Path) -> (Checkpoint, std::path::PathBuf) {
    let problem = quadratic(64);
    let (x0, y0) = problem.start();
    let path = dir.join("saba.json");
    let mut runner = Runner::new(RunOptions {
        max_iters: Some(10),
        eval_every: 5,
        checkpoint_every: Some(10),
        ..Default::default()
    });
    runner.checkpoint = Some(CheckpointTarget {
        path: path.clone(),
        context: serde_json::Value::Null,
    });
    runner.run_config(&saba(), &problem, x0, y0, 3).unwrap();
    (Checkpoint::load(&path).unwrap(), path)
}

fn resume_error(checkpoint: &Checkpoint, problem: &Problem) -> String {
    let options = RunOptions {
        max_iters: Some(20),
        eval_every: 5,
        ..Default::default()
    };
    match Runner::new(options).resume_config_at(checkpoint, problem, std::path::Path::new("c.json"))
    {
        Ok(s) => panic!("resumed: {s:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_written_checkpoint_verifies_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (checkpoint, _) = written_checkpoint(dir.path());
    let summary = Runner::new(RunOptions {
        max_iters: Some(20),
        eval_every: 5,
        ..Default::default()
    })
    .resume_config(&checkpoint, &quadratic(64))
    .unwrap();
    assert_eq!((summary.status, summary.iters), (RunStatus::Done, 20));
}

#[test]
fn a_flipped_byte_is_refused_on_load() {
    let dir = tempfile::tempdir().unwrap();
    let (_, path) = written_checkpoint(dir.path());
    let bytes = std::fs::read(&path).unwrap();
    // Flip one digit in every position of the state in turn until the file still parses: each
    // such edit must be caught by the checksum (a parse error is caught anyway).
    let text = String::from_utf8(bytes).unwrap();
    let start = text.find("\"state\"").unwrap();
    let mut tried = 0;
    for (i, c) in text
        .char_indices()
        .skip(start)
        .filter(|(_, c)| c.is_ascii_digit())
    {
        let flipped = if c == '9' { '8' } else { (c as u8 + 1) as char };
        let mut edited = text.clone();
        edited.replace_range(i..i + 1, &flipped.to_string());
        std::fs::write(&path, &edited).unwrap();
        let e = Checkpoint::load(&path).unwrap_err().to_string();
        assert!(
            e.contains("checksum") || e.contains("not a valid checkpoint"),
            "{e}"
        );
        assert!(e.contains("saba.json"), "the message names the file: {e}");
        tried += 1;
        if tried == 25 {
            break;
        }
    }
    assert_eq!(tried, 25);
}

#[test]
fn edits_with_a_recomputed_checksum_are_still_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (good, _) = written_checkpoint(dir.path());
    // Another problem: n = 48 instead of 64 (samplers over other data), or other dimensions.
    let e = resume_error(&good, &quadratic(48));
    assert!(e.contains("written for problem") && e.contains("64"), "{e}");

    // An edited iteration: the state says 10.
    let mut edited = good.clone();
    edited.iter = 10_000;
    edited.seal();
    let e = resume_error(&edited, &quadratic(64));
    assert!(
        e.contains("iteration 10000") && e.contains("iteration 10"),
        "{e}"
    );

    // An edited solver kind: a SABA state continued as SOBA.
    let mut edited = good.clone();
    edited.solver = serde_json::to_value(SolverConfig::Soba(SobaConfig::default())).unwrap();
    edited.seal();
    let e = resume_error(&edited, &quadratic(64));
    assert!(e.contains("state does not match solver `soba`"), "{e}");

    // An edited time.
    let mut edited = good.clone();
    edited.solver_time_s = -3.8;
    edited.seal();
    assert!(resume_error(&edited, &quadratic(64)).contains("solver time"));

    // Edited dimensions in the fingerprint and the problem alike do not get past the state:
    // a sampler position beyond its epoch is refused, not an index out of bounds.
    let mut edited = good.clone();
    let mut found = false;
    walk(&mut edited.state, &mut |obj| {
        if obj.contains_key("pos") && obj.contains_key("batch_size") {
            obj.insert("pos".into(), serde_json::json!(1_000_000));
            found = true;
        }
    });
    assert!(found, "SABA's state holds samplers");
    edited.seal();
    let e = resume_error(&edited, &quadratic(64));
    assert!(e.contains("past the end"), "{e}");

    // A truncated iterate.
    let mut edited = good.clone();
    let x = edited.state.get_mut("x").expect("SABA's state has x");
    x.as_array_mut().unwrap().pop();
    edited.seal();
    let e = resume_error(&edited, &quadratic(64));
    assert!(
        e.contains("dim") || e.contains("state does not match"),
        "{e}"
    );
}

fn walk(
    value: &mut serde_json::Value,
    f: &mut dyn FnMut(&mut serde_json::Map<String, serde_json::Value>),
) {
    match value {
        serde_json::Value::Object(map) => {
            f(map);
            for v in map.values_mut() {
                walk(v, f);
            }
        }
        serde_json::Value::Array(items) => {
            for v in items {
                walk(v, f);
            }
        }
        _ => {}
    }
}

/// A reference that fails at every other evaluation.
struct Flaky {
    calls: AtomicUsize,
    dim_x: usize,
}

impl Reference for Flaky {
    fn evaluate(&self, _x: &Vector) -> bilevel::Result<ReferencePoint> {
        if self.calls.fetch_add(1, Ordering::Relaxed) % 2 == 1 {
            return Err(Error::NotConverged {
                what: "reference inner solve (test)".into(),
                iters: 60,
                rel_residual: 5.3e-2,
            });
        }
        Ok(ReferencePoint {
            value: 1.0,
            hypergradient: Vector::zeros(self.dim_x),
            y_star: None,
        })
    }
}

#[test]
fn a_failed_evaluation_is_recorded_and_the_run_goes_on() {
    let problem = quadratic(64).with_reference(Flaky {
        calls: AtomicUsize::new(0),
        dim_x: 3,
    });
    let (x0, y0) = problem.start();
    let records_trace = InMemory::new();
    let summary = Runner::new(RunOptions {
        max_iters: Some(40),
        eval_every: 10,
        ..Default::default()
    })
    .observe(records_trace.clone())
    .run_config(&saba(), &problem, x0, y0, 1)
    .unwrap();
    let records = records_trace.records();
    assert_eq!(summary.status, RunStatus::Done);
    assert_eq!(summary.iters, 40, "the run reached its budget");
    let iters: Vec<u64> = records.iter().map(|r| r.iter).collect();
    assert_eq!(
        iters,
        [0, 10, 20, 30, 40],
        "every evaluation point is recorded"
    );
    let failed: Vec<u64> = records
        .iter()
        .filter(|r| r.eval_error.is_some())
        .map(|r| r.iter)
        .collect();
    assert_eq!(failed, [10, 30]);
    assert!(records[1].metrics.is_empty());
    assert!(records[2].metrics.contains_key("value"));
    assert_eq!(summary.eval_failures, 2);
    assert_eq!(summary.final_metrics_iter, Some(40));
    let message = summary.message.unwrap();
    assert!(
        message.contains("2 evaluation(s) failed") && message.contains("iteration 10"),
        "{message}"
    );
}

#[test]
fn a_run_that_diverges_before_its_first_evaluation_reports_no_metrics() {
    let problem = quadratic(64);
    let (x0, y0) = problem.start();
    let config = SolverConfig::Soba(SobaConfig {
        batch_size: 8,
        outer_lr: Schedule::constant(1e8),
        inner_lr: Schedule::constant(1e8),
        ..Default::default()
    });
    let summary = Runner::new(RunOptions {
        max_iters: Some(1000),
        eval_every: 500,
        ..Default::default()
    })
    .run_config(&config, &problem, x0, y0, 1)
    .unwrap();
    assert_eq!(summary.status, RunStatus::Diverged);
    assert!(summary.iters < 500, "diverged before the first evaluation");
    assert!(
        summary.final_metrics.is_empty(),
        "the start point's metrics are not the run's result: {:?}",
        summary.final_metrics
    );
    assert_eq!(summary.final_metrics_iter, None);
}

#[test]
fn a_trace_with_non_finite_metrics_reads_back() {
    let text = r#"{"status":"diverged","stop_reason":"divergence","iters":3,"solver_time_s":0.1,"counts":{"f":{"value":0,"grad_x":0,"grad_y":0,"hvp_yy":0,"cross_xy":0,"cross_yx":0,"samples":0},"g":{"value":0,"grad_x":0,"grad_y":0,"hvp_yy":0,"cross_xy":0,"cross_yx":0,"samples":0}},"final_metrics":{"value":null,"outer_value":1.5},"message":"x is not finite"}"#;
    let summary: bilevel::run::RunSummary = serde_json::from_str(text).unwrap();
    assert!(summary.final_metrics["value"].is_nan());
    assert_eq!(summary.final_metrics["outer_value"], 1.5);
}

/// Solver time includes `init()`: SABA's full-pass memory fill is work the method does (the
/// reference benchmark times it too). Before any step, the first record already shows the
/// fill's oracle calls and a positive solver time; a runner that started its clock after
/// `init()` reports exactly 0 there.
#[test]
fn solver_time_includes_the_memory_fill_of_saba() {
    let n = 4096;
    let problem = quadratic(n);
    let (x0, y0) = problem.start();
    let records_trace = InMemory::new();
    Runner::new(RunOptions {
        max_iters: Some(1),
        eval_every: 1,
        ..Default::default()
    })
    .observe(records_trace.clone())
    .run_config(&saba(), &problem, x0, y0, 1)
    .unwrap();
    let records = records_trace.records();
    let first = &records[0];
    assert_eq!(first.iter, 0);
    assert!(
        first.counts.g.samples >= n as u64,
        "the fill touched every inner sample before the first step: {:?}",
        first.counts
    );
    assert!(
        first.solver_time_s > 0.0,
        "the fill's time is solver time (got {})",
        first.solver_time_s
    );
}
