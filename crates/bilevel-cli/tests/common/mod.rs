//! Helpers shared by the CLI integration tests (each test file uses a subset).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `bilevel` binary under test.
pub fn bilevel() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bilevel"))
}

/// Runs `bilevel ARGS` and asserts that it succeeds.
pub fn run_ok(args: &[&str]) -> Output {
    let out = bilevel().args(args).output().expect("bilevel runs");
    assert!(
        out.status.success(),
        "bilevel {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `bilevel run EXP --out OUT --quiet --no-plots EXTRA…`, which must succeed.
pub fn run_quiet(exp: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "run",
        exp.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
        "--no-plots",
    ];
    args.extend_from_slice(extra);
    run_ok(&args)
}

/// Writes `text` to `dir/name`.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A small two-solver grid on the quadratic: 200 iterations, evaluated every 50, 2 seeds; the
/// second SOBA step size (1e6) diverges.
pub const SMALL: &str = r#"
name = "small"
seeds = [1, 2]
[problem]
kind = "quadratic"
dim_x = 4
dim_y = 8
n_inner = 64
n_outer = 64
[run]
max_iters = 200
eval_every = 50
[[solver]]
kind = "aid_cg"
inner_lr = 1.0
outer_lr = 1.0
[[solver]]
kind = "soba"
batch_size = 8
outer_lr = [0.1, 1e6]
inner_lr = 0.1
"#;
