//! `bilevel run FILE --max-iters N --max-seconds S` (a reduced budget in place of the file's)
//! and `--fail-on-not-done`.

use std::path::{Path, PathBuf};

use crate::common::{SMALL, bilevel, run_ok, run_quiet, write};

/// Every run of SMALL converges.
fn stable() -> String {
    SMALL.replace("outer_lr = [0.1, 1e6]", "outer_lr = 0.1")
}

/// (header, rows) of `summary.csv`.
fn summary(dir: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
    let mut lines = text
        .lines()
        .map(|l| l.split(',').map(str::to_owned).collect());
    let header: Vec<String> = lines.next().unwrap();
    (header, lines.collect())
}

fn column(header: &[String], name: &str) -> usize {
    header
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name}: {header:?}"))
}

fn trace_header(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(text.lines().next().unwrap()).unwrap()
}

/// The number of evaluation records of a trace (lines between the header and the summary).
fn evaluations(path: &Path) -> usize {
    std::fs::read_to_string(path).unwrap().lines().count() - 2
}

fn traces(out: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(out.join("traces"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

#[test]
fn max_iters_replaces_the_files_budget_clamps_eval_every_and_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let exp = write(dir.path(), "small.toml", &stable());
    let out = dir.path().join("out");
    run_quiet(&exp, &out, &["--max-iters", "30"]);
    let (header, rows) = summary(&out);
    assert_eq!(rows.len(), 4, "2 solvers x 2 seeds");
    let (iters, status) = (column(&header, "iters"), column(&header, "status"));
    for row in &rows {
        assert_eq!(row[iters], "30", "the command-line budget decides: {row:?}");
        assert_eq!(row[status], "done", "{row:?}");
    }
    for trace in traces(&out) {
        let h = trace_header(&trace);
        assert_eq!(h["budget_override"]["max_iters"], 30, "{h}");
        assert!(h["budget_override"].get("max_seconds").is_none(), "{h}");
        assert_eq!(h["options"]["max_iters"], 30, "{h}");
        // eval_every 50 > 30 is clamped: evaluations at 0 and 30 only.
        assert_eq!(h["options"]["eval_every"], 30, "{h}");
        assert_eq!(evaluations(&trace), 2, "{}", trace.display());
    }

    // `--resume` continues under the same budget: a run whose trace is lost runs again with
    // 30 iterations, not the file's 200.
    let lost = traces(&out).remove(0);
    std::fs::remove_file(&lost).unwrap();
    run_ok(&[
        "run",
        "--resume",
        out.to_str().unwrap(),
        "--quiet",
        "--no-plots",
    ]);
    let h = trace_header(&lost);
    assert_eq!(h["options"]["max_iters"], 30, "{h}");
    let (_, rows) = summary(&out);
    assert!(rows.iter().all(|r| r[iters] == "30"), "{rows:?}");

    // A later run of the same directory without the flag uses the file's budget again.
    run_quiet(&exp, &out, &["--overwrite"]);
    let (_, rows) = summary(&out);
    assert!(rows.iter().all(|r| r[iters] == "200"), "{rows:?}");
    for trace in traces(&out) {
        let h = trace_header(&trace);
        assert!(h.get("budget_override").is_none(), "{h}");
        assert_eq!(evaluations(&trace), 5, "0, 50, 100, 150, 200");
    }
}

#[test]
fn max_seconds_adds_a_time_budget_and_a_larger_max_iters_keeps_eval_every() {
    let dir = tempfile::tempdir().unwrap();
    let exp = write(dir.path(), "small.toml", &stable());
    let out = dir.path().join("out");
    // 1e-9 s of solver time: the solver's initialisation is solver time and already spends
    // it, so every run stops before its first step.
    run_quiet(&exp, &out, &["--max-seconds", "1e-9", "--max-iters", "500"]);
    let (header, rows) = summary(&out);
    let (iters, reason) = (column(&header, "iters"), column(&header, "stop_reason"));
    for row in &rows {
        assert_eq!(row[iters], "0", "{row:?}");
        assert_eq!(row[reason], "max_seconds", "{row:?}");
    }
    let h = trace_header(&traces(&out)[0]);
    assert_eq!(h["budget_override"]["max_seconds"], 1e-9, "{h}");
    assert_eq!(h["options"]["max_iters"], 500, "{h}");
    assert_eq!(h["options"]["eval_every"], 50, "not clamped: 50 <= 500");
}

#[test]
fn a_bad_budget_is_a_configuration_error_and_dry_run_shows_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let exp = write(dir.path(), "small.toml", SMALL);
    for arg in [
        "--max-iters=0",
        "--max-iters=-3",
        "--max-iters=many",
        "--max-seconds=0",
        "--max-seconds=-1",
        "--max-seconds=inf",
        "--max-seconds=NaN",
    ] {
        let out = bilevel()
            .args(["run", exp.to_str().unwrap(), "--dry-run", arg])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{arg}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let flag = arg.split('=').next().unwrap();
        assert!(stderr.contains(flag), "{arg}: {stderr}");
    }
    let out = run_ok(&[
        "run",
        exp.to_str().unwrap(),
        "--dry-run",
        "--max-iters",
        "7",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("max_iters = 7, eval_every = 7 (command-line budget)"),
        "{stdout}"
    );
    let out = run_ok(&["run", exp.to_str().unwrap(), "--dry-run"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("max_iters = 200, eval_every = 50)"),
        "{stdout}"
    );
    // The override cannot be combined with --resume (the directory keeps its own budget).
    let out = bilevel()
        .args(["run", "--resume", "somewhere", "--max-iters", "3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn fail_on_not_done_exits_1_and_names_the_runs() {
    let dir = tempfile::tempdir().unwrap();
    let exp = write(dir.path(), "small.toml", SMALL);
    let out = dir.path().join("out");
    let result = bilevel()
        .args([
            "run",
            exp.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--quiet",
            "--no-plots",
            "--max-iters",
            "50",
            "--fail-on-not-done",
        ])
        .output()
        .unwrap();
    assert_eq!(result.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("2 run(s) not done"), "{stderr}");
    assert!(
        stderr.contains("soba-") && stderr.contains("(diverged)"),
        "{stderr}"
    );
    // The results are written all the same.
    assert!(out.join("summary.csv").exists());
    // A grid that ends with every run done passes.
    let good = write(dir.path(), "good.toml", &stable());
    run_ok(&[
        "run",
        good.to_str().unwrap(),
        "--out",
        dir.path().join("good").to_str().unwrap(),
        "--quiet",
        "--no-plots",
        "--max-iters",
        "20",
        "--fail-on-not-done",
    ]);
}
