//! End-to-end tests of the `bilevel` binary.

use std::path::Path;

use crate::common::{SMALL, bilevel, run_ok, run_quiet, write};

fn summary_rows(dir: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
    text.lines()
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect()
}

#[test]
fn run_writes_traces_and_a_summary_and_a_diverging_run_does_not_stop_the_grid() {
    let dir = tempfile::tempdir().unwrap();
    let exp = write(dir.path(), "small.toml", SMALL);
    let out = dir.path().join("out");
    let output = run_ok(&[
        "run",
        exp.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--jobs",
        "2",
        "--quiet",
    ]);
    // The run table names solvers by label, with the parameters that tell their settings apart,
    // and shows the metric the report selects on (the quadratic knows F*: suboptimality).
    let stdout = String::from_utf8_lossy(&output.stdout);
    let table_header = stdout.lines().next().unwrap_or_default();
    assert!(
        table_header.starts_with("solver") && table_header.ends_with("suboptimality"),
        "{stdout}"
    );
    assert!(stdout.contains("soba (outer_lr.c=1000000"), "{stdout}");
    assert!(
        !stdout.contains("-seed1"),
        "run ids are not shown: {stdout}"
    );
    let rows = summary_rows(&out);
    let header = &rows[0];
    for col in [
        "run",
        "solver",
        "seed",
        "status",
        "iters",
        "solver_time_s",
        "hypergrad_norm_sq",
    ] {
        assert!(
            header.iter().any(|h| h == col),
            "missing column {col}: {header:?}"
        );
    }
    assert_eq!(rows.len(), 1 + 2 * 3, "2 seeds x (1 + 2) solver points");
    let status = header.iter().position(|h| h == "status").unwrap();
    let solver = header.iter().position(|h| h == "solver").unwrap();
    let statuses: Vec<(&str, &str)> = rows[1..]
        .iter()
        .map(|r| (r[solver].as_str(), r[status].as_str()))
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| s.1 == "diverged").count(),
        2,
        "the 1e6 step diverges for both seeds: {statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| s.1 == "done").count(),
        4,
        "{statuses:?}"
    );
    let traces: Vec<_> = std::fs::read_dir(out.join("traces")).unwrap().collect();
    assert_eq!(traces.len(), 6);
}

#[test]
fn a_config_typo_exits_2_with_a_one_line_message_naming_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let exp = write(
        dir.path(),
        "typo.toml",
        &SMALL.replace("batch_size", "batchsize"),
    );
    let out = bilevel()
        .args([
            "run",
            exp.to_str().unwrap(),
            "--out",
            dir.path().join("o").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("typo.toml") && stderr.contains("batchsize"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("o").exists(),
        "nothing runs on a bad config"
    );
}

#[test]
fn a_missing_file_and_a_bad_value_are_clear_errors() {
    let out = bilevel()
        .args(["run", "/nonexistent/exp.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/exp.toml"));
    let dir = tempfile::tempdir().unwrap();
    let exp = write(
        dir.path(),
        "bad.toml",
        &SMALL.replace("inner_lr = 0.1", "inner_lr = -0.1"),
    );
    let out = bilevel()
        .args(["run", exp.to_str().unwrap(), "--dry-run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("inner_lr"), "{stderr}");
}

#[test]
fn list_names_every_solver_and_problem() {
    let out = run_ok(&["list", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<&str> = json["solvers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    for kind in ["aid_cg", "soba"] {
        assert!(kinds.contains(&kind), "{kinds:?}");
    }
    assert!(
        json["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["kind"] == "quadratic")
    );
    assert_eq!(json["solvers"][0]["parameters"]["inner_steps"], 10);
    let out = run_ok(&["list"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("outer_lr"));
}

/// Every `key = value` line of `bilevel list` is valid TOML (inline tables, no JSON objects,
/// no `null`), so it can be pasted into an experiment file; unset defaults are comments.
#[test]
fn list_prints_defaults_as_valid_toml() {
    let text = String::from_utf8_lossy(&run_ok(&["list"]).stdout).to_string();
    let mut lines = 0;
    // Parameter lines are the ones indented by four spaces.
    for line in text
        .lines()
        .filter(|l| l.starts_with("    "))
        .map(str::trim)
    {
        if line.starts_with('#') || line == "(no parameters)" {
            continue;
        }
        lines += 1;
        let parsed: Result<toml::Table, _> = toml::from_str(line);
        assert!(parsed.is_ok(), "not TOML: {line}: {:?}", parsed.err());
    }
    assert!(lines > 100, "{lines} parameter lines");
    assert!(
        text.contains("cg = { max_iters = 10, rel_tol = 1e-10 }"),
        "{text}"
    );
    assert!(text.contains("# batch_size: unset by default"), "{text}");
    assert!(!text.contains("null"), "{text}");
}

#[test]
fn list_shows_the_aliases_and_the_meta_learning_kinds() {
    let out = run_ok(&["list", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let solver = |kind: &str| {
        json["solvers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["kind"] == kind)
            .unwrap_or_else(|| panic!("{kind} is not listed"))
            .clone()
    };
    assert_eq!(solver("esj")["aliases"], serde_json::json!(["pzobo"]));
    assert_eq!(solver("esj_s")["aliases"], serde_json::json!(["pzobo_s"]));
    for kind in ["ufo_blo", "maml", "fomaml", "reptile", "anil", "imaml"] {
        solver(kind);
    }
    for kind in ["ufo_toy", "meta_linear"] {
        assert!(
            json["problems"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["kind"] == kind),
            "{kind}"
        );
    }
    let text = String::from_utf8_lossy(&run_ok(&["list"]).stdout).to_string();
    assert!(text.contains("esj [alias: pzobo]"), "{text}");
    assert!(text.contains("esj_s [alias: pzobo_s]"), "{text}");
}

/// Kills a real `bilevel run` process after its first checkpoint, continues it with
/// `bilevel resume`, and compares the trace with an uninterrupted run's: identical records
/// (solver time aside), nothing truncated or duplicated.
#[test]
fn a_killed_run_resumes_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let exp_text = r#"
name = "long"
seeds = [4]
[problem]
kind = "quadratic"
dim_x = 4
dim_y = 10
n_inner = 256
n_outer = 256
[run]
max_iters = 2000000
eval_every = 100000
checkpoint_every = 5000
[[solver]]
kind = "soba"
batch_size = 4
"#;
    let exp = write(dir.path(), "long.toml", exp_text);
    let killed = dir.path().join("killed");
    let mut child = bilevel()
        .args([
            "run",
            exp.to_str().unwrap(),
            "--out",
            killed.to_str().unwrap(),
            "--quiet",
        ])
        .spawn()
        .unwrap();
    let checkpoints = killed.join("checkpoints");
    let started = std::time::Instant::now();
    let checkpoint = loop {
        let found = std::fs::read_dir(&checkpoints)
            .ok()
            .and_then(|mut d| d.find_map(|e| e.ok().map(|e| e.path())))
            .filter(|p| p.extension().is_some_and(|e| e == "json"));
        if let Some(path) = found {
            break path;
        }
        assert!(started.elapsed().as_secs() < 60, "no checkpoint appeared");
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the run was killed before finishing");
    let trace_name = checkpoint.file_stem().unwrap().to_str().unwrap().to_owned();
    assert!(
        killed
            .join("traces")
            .join(format!("{trace_name}.jsonl.partial"))
            .exists(),
        "the interrupted trace is partial"
    );
    run_ok(&["resume", checkpoint.to_str().unwrap()]);

    let straight = dir.path().join("straight");
    run_ok(&[
        "run",
        exp.to_str().unwrap(),
        "--out",
        straight.to_str().unwrap(),
        "--quiet",
    ]);
    let read = |root: &Path| -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(root.join("traces").join(format!("{trace_name}.jsonl")))
            .unwrap();
        text.lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                if let Some(m) = v.as_object_mut() {
                    m.remove("solver_time_s");
                }
                v
            })
            .collect()
    };
    let (a, b) = (read(&killed), read(&straight));
    assert_eq!(a.len(), b.len(), "same number of trace lines");
    for (la, lb) in a.iter().zip(&b).skip(1) {
        assert_eq!(la, lb);
    }
    let iters: Vec<u64> = a
        .iter()
        .filter_map(|l| l.get("iter").and_then(|i| i.as_u64()))
        .collect();
    let expected: Vec<u64> = (0..=20).map(|k| k * 100_000).collect();
    assert_eq!(iters, expected, "no record lost or duplicated");
    // The summaries agree on every column but the measured time.
    let strip_time = |rows: Vec<Vec<String>>| -> Vec<Vec<String>> {
        let time = rows[0].iter().position(|h| h == "solver_time_s").unwrap();
        rows.into_iter()
            .map(|mut r| {
                r.remove(time);
                r
            })
            .collect()
    };
    assert_eq!(
        strip_time(summary_rows(&killed)),
        strip_time(summary_rows(&straight))
    );
    assert!(
        !checkpoint.exists(),
        "a finished run's checkpoint is removed"
    );
}

fn strip_time(rows: Vec<Vec<String>>) -> Vec<Vec<String>> {
    let time = rows[0].iter().position(|h| h == "solver_time_s").unwrap();
    rows.into_iter()
        .map(|mut r| {
            r.remove(time);
            r
        })
        .collect()
}

/// Kills a whole `bilevel run` grid once its first run has completed, continues it with
/// `bilevel run --resume DIR`, and checks that the summary equals an uninterrupted run's (the
/// measured solver time aside) and that no trace is truncated or duplicated.
#[test]
fn a_killed_grid_resumes_with_run_resume() {
    let dir = tempfile::tempdir().unwrap();
    let exp_text = r#"
name = "grid"
seeds = [1, 2, 3]
[problem]
kind = "quadratic"
dim_x = 4
dim_y = 10
n_inner = 256
n_outer = 256
[run]
max_iters = 600000
eval_every = 50000
checkpoint_every = 20000
[[solver]]
kind = "soba"
batch_size = 4
outer_lr = [0.05, 0.1]
"#;
    let exp = write(dir.path(), "grid.toml", exp_text);
    let killed = dir.path().join("killed");
    let mut child = bilevel()
        .args([
            "run",
            exp.to_str().unwrap(),
            "--out",
            killed.to_str().unwrap(),
            "--quiet",
            "--jobs",
            "2",
            "--no-plots",
        ])
        .spawn()
        .unwrap();
    let traces = killed.join("traces");
    let started = std::time::Instant::now();
    loop {
        let complete = std::fs::read_dir(&traces)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .any(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
            })
            .unwrap_or(false);
        if complete {
            break;
        }
        assert!(started.elapsed().as_secs() < 120, "no run completed");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let complete_before = std::fs::read_dir(&traces)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "jsonl")
        })
        .count();
    assert!(
        complete_before < 6,
        "the grid was interrupted before finishing"
    );
    let out = run_ok(&[
        "run",
        "--resume",
        killed.to_str().unwrap(),
        "--quiet",
        "--no-plots",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("already complete"), "{stdout}");

    let straight = dir.path().join("straight");
    run_ok(&[
        "run",
        exp.to_str().unwrap(),
        "--out",
        straight.to_str().unwrap(),
        "--quiet",
        "--no-plots",
    ]);
    assert_eq!(
        strip_time(summary_rows(&killed)),
        strip_time(summary_rows(&straight))
    );
    for entry in std::fs::read_dir(&traces).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(
            path.extension().unwrap(),
            "jsonl",
            "no partial trace is left: {path:?}"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let iters: Vec<u64> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v.get("iter").and_then(|i| i.as_u64()))
            .collect();
        let expected: Vec<u64> = (0..=12).map(|k| k * 50_000).collect();
        assert_eq!(iters, expected, "{path:?}");
    }
}

#[test]
fn plots_and_report_name_every_solver() {
    let dir = tempfile::tempdir().unwrap();
    let exp = write(dir.path(), "small.toml", SMALL);
    let out = dir.path().join("out");
    run_ok(&[
        "run",
        exp.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    let plots = out.join("plots");
    let svg = std::fs::read_to_string(plots.join("p1-hypergrad_norm_sq-time.svg")).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("valid SVG (XML)");
    let texts: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text().map(|t| t.trim().to_owned()))
        .collect();
    for solver in ["aid_cg", "soba"] {
        assert!(
            texts.iter().any(|t| t == solver),
            "legend lacks {solver}: {texts:?}"
        );
    }
    assert!(
        texts.iter().any(|t| t.contains("solver time")),
        "x-axis label"
    );
    let png = std::fs::read(plots.join("p1-hypergrad_norm_sq-calls.png")).unwrap();
    assert!(png.len() > 1000);
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    assert_eq!(width, 900);
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains("| `aid_cg` |") && report.contains("| `soba` |"),
        "{report}"
    );
    // SOBA's grid has two outer steps; the diverging 1e6 step is never selected.
    assert!(report.contains("(best of 2"), "{report}");
    assert!(
        report.contains("](plots/p1-hypergrad_norm_sq-time.svg)"),
        "figures are embedded"
    );
    // Re-plotting from the directory alone works.
    run_ok(&["plot", out.to_str().unwrap()]);
}

#[test]
fn an_existing_output_directory_is_not_overwritten_silently() {
    let dir = tempfile::tempdir().unwrap();
    let exp = write(dir.path(), "small.toml", SMALL);
    let out = dir.path().join("out");
    run_quiet(&exp, &out, &[]);
    let again = bilevel()
        .args([
            "run",
            exp.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--resume"));
    run_ok(&[
        "run",
        exp.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
        "--overwrite",
        "--no-plots",
    ]);
}

/// A `label` names a solver table in the summary, the report and the trace header, so that two
/// tables of one kind (AmIGO-GD and AmIGO-CG, UFO-BLO at two q) are reported side by side.
#[test]
fn labelled_tables_of_one_kind_are_reported_separately() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"
name = "labels"
seeds = [1]
[problem]
kind = "quadratic"
dim_x = 4
dim_y = 8
n_inner = 64
n_outer = 64
[run]
max_iters = 40
eval_every = 20
[[solver]]
kind = "amigo"
label = "AmIGO-GD"
batch_size = 8
linear = { kind = "gd", steps = 5 }
[[solver]]
kind = "amigo"
label = "AmIGO-CG"
batch_size = 8
linear = { kind = "cg", max_iters = 5 }
"#;
    let exp = write(dir.path(), "labels.toml", text);
    let out = dir.path().join("out");
    run_quiet(&exp, &out, &[]);
    let rows = summary_rows(&out);
    let solver = rows[0].iter().position(|h| h == "solver").unwrap();
    let names: Vec<&str> = rows[1..].iter().map(|r| r[solver].as_str()).collect();
    assert_eq!(names, ["AmIGO-GD", "AmIGO-CG"]);
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains("| `AmIGO-GD` |") && report.contains("| `AmIGO-CG` |"),
        "{report}"
    );
    for entry in std::fs::read_dir(out.join("traces")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let header: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert!(
            header["label"].as_str().unwrap().starts_with("AmIGO-"),
            "{header}"
        );
        assert_eq!(header["solver"]["kind"], "amigo");
    }
}

/// Records of a complete trace, as (iter, draws).
fn trace_points(path: &Path) -> Vec<(u64, u64)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "record")
        .map(|v| {
            (
                v["iter"].as_u64().unwrap(),
                v["counts"]["draws"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// A solver table's `eval` spaces its own evaluations (here by drawn rows) under the
/// experiment's budget; the others keep the `[run]` table's; what the runs warn about (a batch
/// larger than the data) is printed once, naming the solvers.
#[test]
fn solvers_space_their_own_evaluations_and_warnings_are_printed() {
    let dir = tempfile::tempdir().unwrap();
    let exp = write(
        dir.path(),
        "eval.toml",
        r#"
name = "eval"
seeds = [1, 2]
[problem]
kind = "quadratic"
dim_x = 4
dim_y = 8
n_inner = 64
n_outer = 64
[run]
max_iters = 100
eval_every = 50
[[solver]]
kind = "aid_cg"
[[solver]]
kind = "soba"
batch_size = 8
eval = { eval_every = 0, eval_every_draws = 320 }
[[solver]]
kind = "stocbio"
label = "stocbio big batch"
batch_size = 100
"#,
    );
    let out = dir.path().join("out");
    let output = run_quiet(&exp, &out, &[]);
    let traces = std::fs::read_dir(out.join("traces")).unwrap();
    let mut checked = 0;
    for entry in traces {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let points = trace_points(&path);
        if name.starts_with("soba") {
            // SOBA draws 2 × 8 rows per iteration: every 320 rows is every 20 iterations.
            let iters: Vec<u64> = points.iter().map(|p| p.0).collect();
            assert_eq!(iters, [0, 20, 40, 60, 80, 100], "{name}");
            let draws: Vec<u64> = points.iter().map(|p| p.1).collect();
            assert_eq!(draws, [0, 320, 640, 960, 1280, 1600], "{name}");
            checked += 1;
        } else {
            let iters: Vec<u64> = points.iter().map(|p| p.0).collect();
            assert_eq!(iters, [0, 50, 100], "{name}");
        }
    }
    assert_eq!(checked, 2, "two SOBA seeds");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("warning"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains("(stocbio big batch)")
            && warnings[0].contains("batch_size = 100 exceeds the 64 samples"),
        "{stderr}"
    );
    // An `eval` that leaves nothing to evaluate by is refused before anything runs.
    let bad = write(
        dir.path(),
        "bad.toml",
        &std::fs::read_to_string(&exp)
            .unwrap()
            .replace("eval_every = 0, eval_every_draws = 320", "eval_every = 0"),
    );
    let output = bilevel()
        .args(["run", bad.to_str().unwrap(), "--dry-run"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("`eval`") && stderr.contains("eval_every"),
        "{stderr}"
    );
}

/// `bilevel plot` and `bilevel report` take the metric, the x-axes, the scale and the selection
/// on the command line; a metric that is not in the traces is an error, not empty figures.
#[test]
fn plot_and_report_take_their_view_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let exp = write(dir.path(), "small.toml", SMALL);
    let out = dir.path().join("out");
    run_quiet(&exp, &out, &[]);
    let dir_arg = out.to_str().unwrap();
    run_ok(&[
        "plot",
        dir_arg,
        "--metric",
        "value,hypergrad_norm_sq",
        "--axis",
        "draws",
        "--linear",
    ]);
    let mut figures: Vec<String> = std::fs::read_dir(out.join("plots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".svg"))
        .collect();
    figures.sort();
    assert_eq!(
        figures,
        ["p1-hypergrad_norm_sq-draws.svg", "p1-value-draws.svg"]
    );
    // Linear scale on request: the ‖∇F‖² axis has plain (not whole-decade) ticks.
    let svg = std::fs::read_to_string(out.join("plots/p1-hypergrad_norm_sq-draws.svg")).unwrap();
    assert!(svg.contains("rows drawn"));
    run_ok(&["report", dir_arg, "--selection", "final_median"]);
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains("lowest median over seeds of the final value"),
        "{report}"
    );
    for (args, expected) in [
        (vec!["report", dir_arg, "--metric", "vlaue"], "vlaue"),
        (vec!["plot", dir_arg, "--axis", "iterations"], "--axis"),
        (
            vec!["report", dir_arg, "--selection", "best"],
            "--selection",
        ),
    ] {
        let output = bilevel().args(&args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
