//! `bilevel run --shard K/N` and `bilevel merge`: shards together equal the unsharded grid; a
//! shard that never ran (a killed array task) is named by `merge`, and the command it prints
//! completes the grid. (The same against a real Slurm: `tests/slurm/array.sh`, run by `.ci/run`.)

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::{SMALL, bilevel, run_ok, run_quiet, write};

/// Every trace of `dir` by run id, its lines as JSON with the timing fields removed; the first
/// line (the header: date, host, commit) is left out.
fn traces(dir: &Path) -> BTreeMap<String, Vec<serde_json::Value>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir.join("traces")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        assert!(
            name.ends_with(".jsonl"),
            "only complete traces are left: {name}"
        );
        let lines = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                if let Some(m) = v.as_object_mut() {
                    m.remove("solver_time_s");
                    if let Some(s) = m.get_mut("summary").and_then(|s| s.as_object_mut()) {
                        s.remove("solver_time_s");
                    }
                }
                v
            })
            .collect();
        out.insert(name, lines);
    }
    out
}

/// summary.csv without its solver_time_s column.
fn summary_without_time(dir: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
    let rows: Vec<Vec<String>> = text
        .lines()
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect();
    let time = rows[0].iter().position(|h| h == "solver_time_s").unwrap();
    rows.into_iter()
        .map(|mut r| {
            r.remove(time);
            r
        })
        .collect()
}

fn merge(dir: &Path) -> std::process::Output {
    bilevel()
        .args(["merge", dir.to_str().unwrap(), "--no-plots"])
        .output()
        .unwrap()
}

#[test]
fn shards_together_equal_the_unsharded_grid() {
    let dir = tempfile::tempdir().unwrap();
    let exp = write(dir.path(), "small.toml", SMALL);
    let whole = dir.path().join("whole");
    run_quiet(&exp, &whole, &[]);
    let sharded = dir.path().join("sharded");
    let mut ran = 0;
    for k in 1..=3 {
        let out = run_quiet(&exp, &sharded, &["--shard", &format!("{k}/3")]);
        let text = String::from_utf8_lossy(&out.stdout);
        ran += text.lines().filter(|l| l.contains("-seed")).count();
        assert!(text.contains(&format!("shard {k}/3: 2 run(s)")), "{text}");
        assert!(text.contains("bilevel merge"), "{text}");
        // A shard writes no summary: that is the merge's.
        assert!(!sharded.join("summary.csv").exists());
    }
    assert_eq!(ran, 6, "each of the 6 runs ran in exactly one shard");
    let out = merge(&sharded);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("6 of 6 run(s) complete (3 shard(s))"));
    let (a, b) = (traces(&whole), traces(&sharded));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "same run ids"
    );
    assert_eq!(a, b, "bit-identical traces apart from timing");
    assert_eq!(summary_without_time(&whole), summary_without_time(&sharded));
    assert!(sharded.join("report.md").exists());

    // Running a shard again skips its complete runs.
    let out = run_quiet(&exp, &sharded, &["--shard", "2/3"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("shard 2/3: 0 run(s)")
            && String::from_utf8_lossy(&out.stdout).contains("2 already complete"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Another partition of the same folder, another experiment file, or --overwrite: refused.
    for (extra, expected) in [
        (vec!["--shard", "1/2"], "is split into 3 shards"),
        (
            vec!["--shard", "1/3", "--overwrite"],
            "would delete the other shards",
        ),
    ] {
        let mut args = vec![
            "run",
            exp.to_str().unwrap(),
            "--out",
            sharded.to_str().unwrap(),
        ];
        args.extend(extra);
        let out = bilevel().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{err}");
    }
    let other = write(
        dir.path(),
        "other.toml",
        &SMALL.replace("max_iters = 200", "max_iters = 100"),
    );
    let out = bilevel()
        .args([
            "run",
            other.to_str().unwrap(),
            "--out",
            sharded.to_str().unwrap(),
            "--shard",
            "1/3",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("another experiment file"));
    // A bad shard spec is a usage error naming the form.
    let out = bilevel()
        .args(["run", exp.to_str().unwrap(), "--shard", "4/3"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected K/N"));
}

#[test]
fn merge_names_the_runs_of_a_shard_that_did_not_run_and_its_command_completes_them() {
    let dir = tempfile::tempdir().unwrap();
    let exp = write(dir.path(), "small.toml", SMALL);
    let out_dir = dir.path().join("out");
    run_quiet(&exp, &out_dir, &["--shard", "1/3"]);
    run_quiet(&exp, &out_dir, &["--shard", "3/3"]);
    let before = traces(&out_dir);
    assert_eq!(before.len(), 4);

    let out = merge(&out_dir);
    assert_eq!(out.status.code(), Some(1), "an incomplete grid is an error");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("4 of 6 run(s) complete"), "{text}");
    assert!(text.contains("2 run(s) missing:"), "{text}");
    assert_eq!(text.matches("(shard 2/3)").count(), 2, "{text}");
    // The summary holds what is there.
    assert_eq!(summary_without_time(&out_dir).len(), 1 + 4);
    let command = text
        .lines()
        .find(|l| l.contains("--shard 2/3"))
        .unwrap_or_else(|| panic!("a command to run shard 2 again: {text}"));
    assert!(
        !text.contains("--shard 1/3") && !text.contains("--shard 3/3"),
        "{text}"
    );

    // Run the printed command (the binary, the folder's experiment copy, the folder).
    let words: Vec<&str> = command.split_whitespace().collect();
    let status = std::process::Command::new(words[0])
        .args(&words[1..])
        .arg("--quiet")
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let out = merge(&out_dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let after = traces(&out_dir);
    assert_eq!(after.len(), 6);
    for (id, lines) in &before {
        assert_eq!(&after[id], lines, "the other shards' results are intact");
    }
    let whole = dir.path().join("whole");
    run_quiet(&exp, &whole, &[]);
    assert_eq!(summary_without_time(&whole), summary_without_time(&out_dir));
    // A whole-grid resume of a sharded folder finds nothing left to do.
    let out = run_ok(&[
        "run",
        "--resume",
        out_dir.to_str().unwrap(),
        "--quiet",
        "--no-plots",
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("6 already complete"));
}
