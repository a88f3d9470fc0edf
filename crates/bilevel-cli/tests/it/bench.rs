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

/// `bilevel bench-md <json> [--peers …] [--include …] --out <out>`.
fn bench_md(
    json: &std::path::Path,
    peers: &[&std::path::Path],
    includes: &[&std::path::Path],
    out: &std::path::Path,
) -> std::process::Output {
    let mut command = bilevel();
    command.arg("bench-md").arg(json);
    if !peers.is_empty() {
        command.arg("--peers").args(peers);
    }
    if !includes.is_empty() {
        command.arg("--include").args(includes);
    }
    command.arg("--out").arg(out).output().unwrap()
}

#[test]
fn bench_reports_counts_and_bench_md_renders_them_with_peer_ratios() {
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
    // Without a peer file: no ratio at all (no figure "measured elsewhere").
    let out = bench_md(&json, &[], &[], &md_path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = std::fs::read_to_string(&md_path).unwrap();
    assert!(md.contains("states no ratio to a peer"), "{md}");
    assert!(!md.contains("ratio per round"), "{md}");
    // With a peer file of the same sitting (jax_timing.py's format): the ratio, round by round.
    let peer = dir.path().join("jax_ijcnn1_1.txt");
    std::fs::write(
        &peer,
        "# date: 2026-12-03T21:00Z\n# round: 1\nshape ijcnn1; jax 0.10.2; 3 x 1024 iterations \
         after compilation\nSEED = 1\nsoba     median       7.0 us/it  [min 6.9, max 7.2]  \
         (setup+compile 1.7 s)\nvrbo     median     410.0 us/it  [min 400.0, max 420.0]  \
         (setup+compile 1.7 s)\n",
    )
    .unwrap();
    let out = bench_md(&json, &[&peer], &[], &md_path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = std::fs::read_to_string(&md_path).unwrap();
    let soba_us = soba["us_per_iter_median"].as_f64().unwrap();
    let row = md
        .lines()
        .find(|l| l.starts_with("| soba | 7.0 |"))
        .expect("a SOBA peer row");
    assert!(row.contains(&format!("{soba_us:.1}")), "{row}");
    assert!(row.contains(&format!("{:.2}×", 7.0 / soba_us)), "{row}");
    assert!(row.contains("≥ 4×"), "{row}");
    // Solvers absent from the report are said to be absent, not given a number.
    let vrbo = md.lines().find(|l| l.starts_with("| vrbo |")).unwrap();
    assert!(vrbo.contains("not in the reports"), "{vrbo}");
    assert!(md.contains("date: 2026-12-03T21:00Z"), "{md}");
    assert!(md.contains(&format!("--peers {}", peer.display())), "{md}");
    // A peer file that is not one: a clear error, nothing written.
    let bad_peer = dir.path().join("notes.txt");
    std::fs::write(&bad_peer, "hello\n").unwrap();
    let other = dir.path().join("B2.md");
    let out = bench_md(&json, &[&bad_peer], &[], &other);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a peer timing file"));
    assert!(!other.exists());
    assert!(md.contains("## ijcnn1-shape"));
    // A section of another benchmark script, appended verbatim and named in the command.
    let section = dir.path().join("python_overhead.md");
    std::fs::write(
        &section,
        "## Python overhead\n\n| case | overhead |\n|---|---|\n| x | 1.1% |\n",
    )
    .unwrap();
    let out = bench_md(&json, &[], &[&section], &md_path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = std::fs::read_to_string(&md_path).unwrap();
    assert!(
        md.contains("## Python overhead\n\n| case | overhead |\n|---|---|\n| x | 1.1% |\n"),
        "{md}"
    );
    assert!(
        md.contains(&format!("--include {}", section.display())),
        "{md}"
    );
    // A file that is not a Markdown section: refused, nothing written.
    std::fs::write(&section, "overhead 1.1%\n").unwrap();
    let out = bench_md(&json, &[], &[&section], &other);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected a Markdown section"));
    assert!(!other.exists());
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

/// `--precision f32` (alias `--storage f32`) stores the data-backed shapes' designs in f32:
/// the report says so, a pass streams fewer bytes (the oracle counts are the same), and
/// `bench-md` shows the f64 and f32 reports of one sitting as separate ratio tables, with the
/// f32 target. An unknown precision is refused by name.
#[test]
fn bench_precision_f32_is_reported_and_rendered_beside_f64() {
    let args = |precision_flag: &'static str, precision: &'static str| {
        [
            "bench",
            "--problem",
            "ijcnn1-shape",
            "--solvers",
            "soba",
            "--iters",
            "20",
            "--warmup",
            "5",
            "--repeats",
            "2",
            precision_flag,
            precision,
            "--json",
        ]
    };
    let f64_report = run_json(&args("--precision", "f64"));
    let f32_report = run_json(&args("--storage", "f32"));
    assert_eq!(f64_report["precision"], "f64");
    assert_eq!(f32_report["precision"], "f32");
    let soba = |r: &serde_json::Value| r["shapes"][0]["solvers"][0].clone();
    let (a, b) = (soba(&f64_report), soba(&f32_report));
    assert_eq!(a["oracle_calls_per_iter"], b["oracle_calls_per_iter"]);
    // 22 features pad to 24 values: 192 bytes in f64, 96 in f32, plus an 8-byte label.
    let (kb64, kb32) = (
        a["data_kb_per_iter"].as_f64().unwrap(),
        b["data_kb_per_iter"].as_f64().unwrap(),
    );
    assert!(
        (kb32 / kb64 - 104.0 / 200.0).abs() < 1e-9,
        "{kb32} / {kb64}"
    );
    let dir = tempfile::tempdir().unwrap();
    let (j64, j32) = (dir.path().join("f64.json"), dir.path().join("f32.json"));
    std::fs::write(&j64, serde_json::to_string(&f64_report).unwrap()).unwrap();
    std::fs::write(&j32, serde_json::to_string(&f32_report).unwrap()).unwrap();
    let peer = dir.path().join("jax_ijcnn1_1.txt");
    std::fs::write(
        &peer,
        "# round: 1\nshape ijcnn1; jax 0.10.2; 3 x 1024 iterations after compilation\n\
         soba     median       7.0 us/it  [min 6.9, max 7.2]  (setup+compile 1.7 s)\n",
    )
    .unwrap();
    let md_path = dir.path().join("BENCHMARKS.md");
    let out = bilevel()
        .arg("bench-md")
        .args([&j64, &j32])
        .arg("--peers")
        .arg(&peer)
        .arg("--out")
        .arg(&md_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = std::fs::read_to_string(&md_path).unwrap();
    for (precision, goal) in [("f64", "≥ 4×"), ("f32", "≥ 5×")] {
        let heading = format!(
            "### ijcnn1-shape, bilevel with {precision} storage: 1 peer round(s), 1 bilevel report(s)"
        );
        let at = md
            .find(&heading)
            .unwrap_or_else(|| panic!("{heading}\n{md}"));
        let row = md[at..]
            .lines()
            .find(|l| l.starts_with("| soba | 7.0 |"))
            .unwrap();
        assert!(row.contains(goal), "{row}");
    }
    assert!(md.contains("## ijcnn1-shape, f32 storage"), "{md}");
    let out = bilevel()
        .args(["bench", "--problem", "quadratic", "--precision", "f16"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown precision `f16`"));
}
