"""Shared fixtures: the `bilevel` command-line binary the Rust-side comparisons run.

The binary is `$BILEVEL_BIN`, else `target/release/bilevel` or `target/debug/bilevel` of this
repository (CI builds the debug one with `cargo test`). A missing binary fails these tests
rather than skipping them: a comparison that silently does not run proves nothing."""

import json
import os
import pathlib
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]


def _find_binary():
    env = os.environ.get("BILEVEL_BIN")
    if env:
        return pathlib.Path(env)
    for profile in ("debug", "release"):
        candidate = REPO / "target" / profile / "bilevel"
        if candidate.exists():
            return candidate
    return None


@pytest.fixture(scope="session")
def bilevel_bin():
    path = _find_binary()
    if path is None or not path.exists():
        pytest.fail(
            "the `bilevel` binary is needed to compare with Rust runs: build it "
            "(cargo build -p bilevel-cli) or set BILEVEL_BIN"
        )
    return path


@pytest.fixture(scope="session")
def rust_solve(bilevel_bin):
    """Runs `bilevel solve --json` and returns (exit code, parsed JSON or stderr)."""

    def run(problem, solver, problem_params=(), params=(), max_iters=25, seed=0, eval_every=100):
        cmd = [str(bilevel_bin), "solve", "--problem", problem, "--solver", solver,
               "--max-iters", str(max_iters), "--seed", str(seed),
               "--eval-every", str(eval_every), "--json"]
        for key, value in problem_params:
            cmd += ["--problem-param", f"{key}={value}"]
        for key, value in params:
            cmd += ["--param", f"{key}={value}"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            return done.returncode, done.stderr
        return 0, json.loads(done.stdout)

    return run


@pytest.fixture(scope="session")
def shared_data():
    path = REPO.parent / "shared" / "data"
    return path if path.exists() else None
