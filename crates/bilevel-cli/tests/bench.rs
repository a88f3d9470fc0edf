//! `bilevel bench` and `bilevel bench-md` end to end, on the small quadratic and the ijcnn1 shape
//! with few iterations. No timing is asserted: only the structure of the reports, the counts
//! (oracle calls and allocations are deterministic) and that the Markdown is derived from them.

use std::process::Command;

fn bilevel() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bilevel"))
}

fn run_json(args: &[&str]) -> serde_json::Value {
    let out = bilevel().args(args).output().expect("bilevel runs");
    assert!(
        out.status.success(),
        "bilevel {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("bench --json prints JSON")
}

#[test]
fn bench_reports_counts_and_bench_md_renders_them_with_ratios() {
    let report = run_json(&[
        "bench",
        "--problem",
        "ijcnn1-shape",
        "--solvers",
        "soba,fsla,aid_cg",
        "--iters",
        "20",
        "--warmup",
        "5",
        "--repeats",
        "3",
        "--json",
    ]);
    let shape = &report["shapes"][0];
    assert_eq!(shape["shape"], "ijcnn1-shape");
    assert_eq!(shape["dims"], serde_json::json!([22, 22, 91_701, 49_990]));
    let solvers = shape["solvers"].as_array().unwrap();
    assert_eq!(solvers.len(), 3);
    for s in solvers {
        assert_eq!(s["status"], "ok", "{s}");
        assert!(s["us_per_iter_median"].as_f64().unwrap() > 0.0);
        // The single-loop solvers and AID-CG reuse their buffers: no allocation per iteration.
        assert_eq!(s["allocs_per_iter"].as_f64().unwrap(), 0.0, "{s}");
    }
    // SOBA: grad_y, hvp_yy, cross_xy on g (fused, counted as three) + grad_x, grad_y on f.
    let soba = solvers.iter().find(|s| s["solver"] == "soba").unwrap();
    assert_eq!(soba["oracle_calls_per_iter"].as_f64().unwrap(), 5.0);
    assert_eq!(soba["samples_per_iter"].as_f64().unwrap(), 5.0 * 64.0);
    // The exact evaluation is timed at new points (a cached point would take microseconds).
    let [median, min, max] = [0, 1, 2].map(|i| shape["exact_eval_ms"][i].as_f64().unwrap());
    assert!(min <= median && median <= max && min > 0.0);
    assert!(shape["exact_eval_cold_ms"].as_f64().unwrap() > 0.0);
    assert!(
        report["command"]
            .as_str()
            .unwrap()
            .starts_with("bilevel bench")
    );

    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("ijcnn1.json");
    std::fs::write(&json, serde_json::to_string(&report).unwrap()).unwrap();
    let md_path = dir.path().join("BENCHMARKS.md");
    let out = bilevel()
        .args(["bench-md", json.to_str().unwrap(), "--out"])
        .arg(&md_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = std::fs::read_to_string(&md_path).unwrap();
    let soba_us = soba["us_per_iter_median"].as_f64().unwrap();
    // The reference row of SOBA carries our median and the ratio 7 µs / ours.
    let row = md
        .lines()
        .find(|l| l.starts_with("| soba | JAX"))
        .expect("a SOBA reference row");
    assert!(row.contains(&format!("{soba_us:.2}")), "{row}");
    assert!(row.contains(&format!("{:.1}×", 7.0 / soba_us)), "{row}");
    let aid = md
        .lines()
        .find(|l| l.starts_with("| aid_cg | PyTorch"))
        .unwrap();
    assert!(aid.contains("≥ 100×"), "{aid}");
    // Solvers absent from the report are said to be absent, not given a number.
    let vrbo = md.lines().find(|l| l.starts_with("| vrbo | JAX")).unwrap();
    assert!(vrbo.contains("not in this report"), "{vrbo}");
    assert!(md.contains("| exact evaluation (F, ∇F) | jaxopt"));
    assert!(md.contains("## ijcnn1-shape"));
}

#[test]
fn bench_rejects_unknown_names_and_reports_that_are_not_json() {
    let out = bilevel()
        .args(["bench", "--problem", "nope", "--iters", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown shape `nope`"));
    let out = bilevel()
        .args(["bench", "--solvers", "sobaa", "--iters", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown solver `sobaa`"));
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{ not json").unwrap();
    let out = bilevel()
        .args(["bench-md", bad.to_str().unwrap(), "--out"])
        .arg(dir.path().join("B.md"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not a `bilevel bench --json` report")
    );
    assert!(!dir.path().join("B.md").exists());
}
