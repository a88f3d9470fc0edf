//! Runs that never lose results and never write outside their folder, tried as a careless or
//! hostile user would: two processes on one folder, names and checkpoints that point elsewhere,
//! edited checkpoints, a broken pipe, and random mutations of the shipped experiment files.

use crate::common;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::{bilevel, run_ok, run_quiet, write};

/// A grid whose runs take a few seconds each and write checkpoints.
const LONG: &str = r#"
name = "long"
seeds = [1, 2]
[problem]
kind = "quadratic"
dim_x = 4
dim_y = 10
n_inner = 256
n_outer = 256
[run]
max_iters = 600000
eval_every = 100000
checkpoint_every = 20000
[[solver]]
kind = "soba"
batch_size = 4
"#;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every file below `root` with its contents (the `skip` folders left out).
fn snapshot(root: &Path, skip: &[PathBuf]) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        if skip.iter().any(|s| dir.starts_with(s)) {
            continue;
        }
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.file_name().is_some_and(|n| n == ".bilevel.lock") {
                continue; // holds the pid of the last process that took the lock
            }
            if path.is_dir() {
                out.insert(path.clone(), Vec::new());
                stack.push(path);
            } else {
                out.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

#[test]
fn a_second_process_on_the_folder_is_refused_and_the_first_finishes_intact() {
    let dir = tempfile::tempdir().unwrap();
    let exp = write(dir.path(), "long.toml", LONG);
    let out = dir.path().join("out");
    let mut first = bilevel()
        .args(["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .args(["--quiet", "--no-plots"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the first holds the lock (its pid is in the lock file).
    let lock = out.join(".bilevel.lock");
    let started = std::time::Instant::now();
    while std::fs::read_to_string(&lock).map_or(true, |s| s.trim().is_empty()) {
        assert!(
            started.elapsed().as_secs() < 60,
            "the first run never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let pid = first.id().to_string();
    for args in [
        vec!["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap()],
        vec!["run", "--resume", out.to_str().unwrap()],
        vec![
            "run",
            exp.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--overwrite",
        ],
        vec!["report", out.to_str().unwrap()],
    ] {
        let second = bilevel().args(&args).output().unwrap();
        assert_eq!(
            second.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&second)
        );
        assert!(
            stderr(&second).contains(&format!("in use by process {pid}")),
            "the message names the holder: {}",
            stderr(&second)
        );
    }
    assert!(first.wait().unwrap().success());
    let csv = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    let done = csv.lines().filter(|l| l.contains(",done,")).count();
    assert_eq!(done, 2, "both runs of the first process are done:\n{csv}");
    assert_eq!(std::fs::read_dir(out.join("traces")).unwrap().count(), 2);
}

#[test]
fn nothing_is_written_or_deleted_outside_the_output_folder() {
    let root = tempfile::tempdir().unwrap();
    let work = root.path().join("work");
    std::fs::create_dir_all(work.join("results")).unwrap();
    // What a careless user has lying around: files a bilevel run would write, in the current
    // folder and its parent.
    for (name, text) in [
        ("summary.csv", "mine"),
        ("report.md", "mine"),
        ("experiment.toml", "mine"),
    ] {
        write(&work, name, text);
        write(root.path(), name, text);
    }
    std::fs::create_dir_all(work.join("traces")).unwrap();
    write(&work.join("traces"), "keep.jsonl", "mine");
    let small = common::SMALL.replace("name = \"small\"", "");
    let cases = [
        ("dotdot.toml", format!("name = \"..\"\n{small}")),
        ("dot.toml", format!("name = \".\"\n{small}")),
        ("...toml", small.clone()),
        ("slash.toml", format!("name = \"a/../../x\"\n{small}")),
    ];
    let before = snapshot(root.path(), &[]);
    for (file, text) in &cases {
        write(&work, file, text);
        for extra in [&[][..], &["--overwrite"][..]] {
            let out = bilevel()
                .current_dir(&work)
                .args(["run", file, "--quiet", "--no-plots"])
                .args(extra)
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(2), "{file}: {}", stderr(&out));
            assert!(stderr(&out).contains("name"), "{file}: {}", stderr(&out));
        }
        std::fs::remove_file(work.join(file)).unwrap();
    }
    // --overwrite on a folder bilevel did not make: refused, nothing deleted.
    let exp = write(root.path(), "small.toml", common::SMALL);
    let out = bilevel()
        .args([
            "run",
            exp.to_str().unwrap(),
            "--out",
            work.to_str().unwrap(),
        ])
        .args(["--quiet", "--no-plots", "--overwrite"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("did not write"), "{}", stderr(&out));
    std::fs::remove_file(&exp).unwrap();

    // A checkpoint crafted to write elsewhere: its run id climbs out of the folder.
    let exp = write(root.path(), "long.toml", LONG);
    let results = work.join("results").join("long");
    interrupted_run(&exp, &results);
    let checkpoint = first_checkpoint(&results);
    let mut value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&checkpoint).unwrap()).unwrap();
    value["context"]["spec"]["id"] = serde_json::json!("../../../victim-0123456789abcdef-seed1");
    value["context"]["out_dir"] = serde_json::json!(root.path());
    let crafted = results.join("checkpoints").join("crafted.json");
    std::fs::write(&crafted, value.to_string()).unwrap();
    let outside = root.path().join("elsewhere.json");
    std::fs::write(&outside, value.to_string()).unwrap();
    let in_place = checkpoint.clone();
    std::fs::write(&in_place, value.to_string()).unwrap();
    for path in [&crafted, &outside, &in_place] {
        let out = bilevel()
            .args(["resume", path.to_str().unwrap()])
            .output()
            .unwrap();
        assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    }
    std::fs::remove_file(&crafted).unwrap();
    std::fs::remove_file(&outside).unwrap();
    std::fs::remove_file(&exp).unwrap();

    let after = snapshot(root.path(), std::slice::from_ref(&results));
    let mut expected = before;
    expected.insert(work.join("results").join("long"), Vec::new());
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "no file appeared or vanished outside the output folder"
    );
    assert_eq!(after, expected, "no file outside the output folder changed");
}

/// Starts `bilevel run EXP --out OUT`, waits for its first checkpoint and kills it.
fn interrupted_run(exp: &Path, out: &Path) -> std::process::ExitStatus {
    let mut child = bilevel()
        .args(["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .args(["--quiet", "--no-plots", "--jobs", "1"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while std::fs::read_dir(out.join("checkpoints")).map_or(true, |d| {
        !d.flatten()
            .any(|e| e.path().extension().is_some_and(|x| x == "json"))
    }) {
        assert!(started.elapsed().as_secs() < 120, "no checkpoint appeared");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap()
}

fn first_checkpoint(out: &Path) -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir(out.join("checkpoints"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    found.sort();
    found.remove(0)
}

#[test]
fn an_edited_checkpoint_is_refused_with_a_clear_message_and_nothing_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    let exp = write(dir.path(), "long.toml", LONG);
    let out = dir.path().join("out");
    interrupted_run(&exp, &out);
    let checkpoint = first_checkpoint(&out);
    let original = std::fs::read_to_string(&checkpoint).unwrap();
    let value: serde_json::Value = serde_json::from_str(&original).unwrap();
    let edits: Vec<(&str, serde_json::Value)> = vec![
        ("iter", {
            let mut v = value.clone();
            v["iter"] = serde_json::json!(v["iter"].as_u64().unwrap() + 10_000);
            v
        }),
        ("kind", {
            let mut v = value.clone();
            v["solver"]["kind"] = serde_json::json!("saba");
            v
        }),
        ("dimensions", {
            let mut v = value.clone();
            v["problem"]["dim_y"] = serde_json::json!(11);
            v
        }),
        ("time", {
            let mut v = value.clone();
            v["solver_time_s"] = serde_json::json!(-3.8);
            v
        }),
    ];
    let flipped = {
        let at = original.find("\"state\"").unwrap() + 30;
        let (i, c) = original[at..]
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit())
            .unwrap();
        let mut text = original.clone();
        let new = if c == '1' { "2" } else { "1" };
        text.replace_range(at + i..at + i + 1, new);
        text
    };
    let mut texts: Vec<(&str, String)> = edits
        .into_iter()
        .map(|(what, v)| (what, v.to_string()))
        .collect();
    texts.push(("flipped byte", flipped));
    for (what, text) in texts {
        std::fs::write(&checkpoint, &text).unwrap();
        let before = snapshot(&out, &[]);
        for args in [
            vec!["resume", checkpoint.to_str().unwrap()],
            vec!["run", "--resume", out.to_str().unwrap(), "--quiet"],
        ] {
            let result = bilevel().args(&args).output().unwrap();
            assert!(!result.status.success(), "{what}: {args:?} resumed");
            let message = stderr(&result);
            assert!(
                message.contains("checksum") && message.contains(checkpoint.to_str().unwrap()),
                "{what}: {message}"
            );
            assert!(!message.contains("panicked"), "{what}: {message}");
        }
        assert_eq!(
            snapshot(&out, &[]),
            before,
            "{what}: a refused resume writes nothing"
        );
    }
    // The original still resumes, and the grid completes.
    std::fs::write(&checkpoint, &original).unwrap();
    run_ok(&[
        "run",
        "--resume",
        out.to_str().unwrap(),
        "--quiet",
        "--no-plots",
    ]);
    let csv = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    assert_eq!(
        csv.lines().filter(|l| l.contains(",done,")).count(),
        2,
        "{csv}"
    );
}

#[test]
fn a_closed_pipe_is_a_normal_exit() {
    let dir = tempfile::tempdir().unwrap();
    let exp = write(dir.path(), "small.toml", common::SMALL);
    for args in [
        vec!["run", exp.to_str().unwrap(), "--dry-run"],
        vec!["list"],
    ] {
        let mut child = bilevel()
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Read one line, then close the pipe (as `| head -1` does).
        {
            use std::io::BufRead;
            let stdout = child.stdout.take().unwrap();
            let mut line = String::new();
            std::io::BufReader::new(stdout)
                .read_line(&mut line)
                .unwrap();
            assert!(!line.is_empty());
        }
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    }
}

#[test]
fn a_dry_run_builds_every_solver_on_its_problem() {
    let dir = tempfile::tempdir().unwrap();
    for (problem, solver, needle) in [
        ("kind = \"quadratic_tiny\"", "kind = \"maml\"", "maml"),
        ("kind = \"ufo_toy\"", "kind = \"anil\"", "anil"),
        (
            "kind = \"quadratic\"\ndim_y = 50",
            "kind = \"stable\"\nmax_dim_y = 10",
            "stable",
        ),
    ] {
        let text = format!(
            "name = \"x\"\n[problem]\n{problem}\n[run]\nmax_iters = 5\n[[solver]]\n{solver}\n"
        );
        let exp = write(dir.path(), "x.toml", &text);
        let out = bilevel()
            .args(["run", exp.to_str().unwrap(), "--dry-run"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{text}: {}", stdout(&out));
        assert!(
            stderr(&out).contains(needle) && stderr(&out).contains("cannot run"),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn report_metrics_must_exist() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}\n[report]\nselection_metric = \"valeu\"\n",
        common::SMALL
    );
    let exp = write(dir.path(), "r.toml", &text);
    let out = bilevel()
        .args(["run", exp.to_str().unwrap(), "--dry-run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("selection_metric") && stderr(&out).contains("valeu"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_non_finite_metric_does_not_break_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    // log λ = 400 overflows exp: the start point's metrics are not finite.
    let text = r#"
name = "nan"
[problem]
kind = "logreg_hpo"
dataset = { twin = "ijcnn1", scale = 0.002 }
validation_fraction = 0.3
[start]
x = 800
[run]
max_iters = 20
eval_every = 10
[[solver]]
kind = "soba"
batch_size = 8
"#;
    let exp = write(dir.path(), "nan.toml", text);
    let out = dir.path().join("out");
    run_quiet(&exp, &out, &[]);
    let csv = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    assert_eq!(csv.lines().count(), 2, "{csv}");
    run_ok(&["report", out.to_str().unwrap()]);
}

/// A tiny deterministic generator (no dependency): xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Random mutations of the shipped experiment files that run on built-in data: every run either
/// completes or is recorded with a reason, a bad file is a one-line error with status 2, and
/// nothing panics.
#[test]
fn mutated_experiment_files_never_panic_and_every_run_is_accounted_for() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments");
    let files = [
        "quickstart.toml",
        "baselines.toml",
        "ufo_toy.toml",
        "esj_quadratic.toml",
        "seed_algorithms.toml",
        "lancbio_synthetic.toml",
    ];
    let replacements = [
        "0",
        "-1",
        "1",
        "2",
        "0.5",
        "1e300",
        "-1e-300",
        "\"64\"",
        "nan",
        "inf",
        "[]",
        "true",
        "[1, 2]",
        "\"..\"",
        "{ kind = \"constant\" }",
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let (mut ran, mut refused) = (0, 0);
    for case in 0..36 {
        let file = files[case % files.len()];
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        let candidates: Vec<usize> = (0..lines.len())
            .filter(|&i| {
                let l = lines[i].trim();
                !l.is_empty() && !l.starts_with('#')
            })
            .collect();
        let i = candidates[rng.below(candidates.len())];
        let mutation = rng.below(4);
        match mutation {
            0 => {
                lines.remove(i);
            }
            1 => {
                let line = lines[i].clone();
                lines.insert(i, line);
            }
            2 => {
                if let Some((key, _)) = lines[i].split_once('=') {
                    let value = replacements[rng.below(replacements.len())];
                    lines[i] = format!("{key}= {value}");
                } else {
                    lines[i] = format!("{}x", lines[i]);
                }
            }
            _ => {
                let cut = rng.below(lines.len().max(1));
                lines.truncate(cut);
            }
        }
        let mutated = lines.join("\n");
        let exp = write(dir.path(), &format!("m{case}.toml"), &mutated);
        let out = dir.path().join(format!("out{case}"));
        let result = bilevel()
            .args(["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap()])
            .args(["--quiet", "--no-plots", "--max-iters", "3", "--jobs", "2"])
            .output()
            .unwrap();
        let message = stderr(&result);
        let context = format!(
            "case {case} ({file}, mutation {mutation} of line {}):\n{mutated}\n{message}",
            i + 1
        );
        assert!(!message.contains("panicked"), "{context}");
        match result.status.code() {
            Some(0) => {
                ran += 1;
                // "N run(s) in T s (…)": every run of the grid was attempted.
                let printed = stdout(&result);
                let expected: usize = printed
                    .lines()
                    .find_map(|l| l.split_once(" run(s) in "))
                    .and_then(|(n, _)| n.trim().parse().ok())
                    .unwrap_or_else(|| panic!("no run count: {printed}\n{context}"));
                let csv = std::fs::read_to_string(out.join("summary.csv")).unwrap();
                let rows: Vec<&str> = csv.lines().skip(1).collect();
                assert_eq!(rows.len(), expected, "{context}\n{csv}");
                for row in rows {
                    let done = row.contains(",done,");
                    let reason = !row.ends_with(',');
                    assert!(done || reason, "a run not done says why: {row}\n{context}");
                }
            }
            Some(1 | 2) => {
                refused += 1;
                assert!(message.starts_with("error: "), "{context}");
            }
            other => panic!("exit {other:?}: {context}"),
        }
    }
    assert!(
        ran >= 5 && refused >= 5,
        "the mutations exercise both paths: {ran} ran, {refused} refused"
    );
}
