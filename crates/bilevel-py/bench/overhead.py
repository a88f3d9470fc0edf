"""What driving bilevel from Python costs: a benchmark, not a test.

    cargo build --release -p bilevel-cli
    pip install ./crates/bilevel-py          # a release wheel
    python crates/bilevel-py/bench/overhead.py [--repeats 7] [--json F.json] [--markdown F.md]

`--markdown` writes a section for BENCHMARKS.md (`bilevel bench-md ... --include F.md`).

Part 1, built-in problems: the same problem, solver, seed and iteration count run by pure Rust
(`bilevel solve --json`, whose `wall_s` times the run inside the process, after the data are
loaded) and by `bilevel.solve` from Python (timed around the call, after the problem is built:
options in, the run without the GIL, the trace and the arrays back). The two alternate, the
figures are medians over the repeats, and the final iterates must agree bit for bit, or the
script stops.

Part 2, Python objectives (`CustomProblem`): how long one call into a Python callback takes
beyond the callback's own body. Two objectives whose methods return a cached array (so their
bodies cost almost nothing, and that little is timed separately in a plain Python loop), run by
SOBA; the overhead is (wall time - calls x body time) / calls. Then the quadratic written in
numpy against the same quadratic built in, per iteration.

The binary is $BILEVEL_BIN, else target/release/bilevel.
"""

import argparse
import datetime
import json
import platform
import os
import pathlib
import statistics
import subprocess
import sys
import time

import numpy as np

import bilevel

ROOT = pathlib.Path(__file__).resolve().parents[3]
BIN = os.environ.get("BILEVEL_BIN", str(ROOT / "target" / "release" / "bilevel"))


def rust_run(problem_kind, problem_params, solver, params, iters, seed):
    """One `bilevel solve --json` run: (seconds of the run, x)."""
    cmd = [BIN, "solve", "--problem", problem_kind, "--solver", solver, "--max-iters", str(iters),
           "--eval-every", str(iters), "--seed", str(seed), "--json"]
    for key, value in problem_params.items():
        cmd += ["--problem-param", f"{key}={value}"]
    for key, value in params.items():
        cmd += ["-p", f"{key}={value}"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    report = json.loads(out)
    assert report["summary"]["iters"] == iters, report["summary"]
    return report["wall_s"], np.array(report["x"])


def python_run(problem, solver, params, iters, seed):
    """One `bilevel.solve` run: (seconds around the call, x)."""
    started = time.perf_counter()
    result = bilevel.solve(problem, solver, seed=seed, max_iters=iters, eval_every=iters, **params)
    elapsed = time.perf_counter() - started
    assert result.iters == iters, result
    return elapsed, result.x


def nested(flat):
    """{"dataset.shared": "ijcnn1"} -> {"dataset": {"shared": "ijcnn1"}} for `bilevel.builtin`."""
    out = {}
    for key, value in flat.items():
        *parents, last = key.split(".")
        slot = out
        for part in parents:
            slot = slot.setdefault(part, {})
        slot[last] = value
    return out


BUILTIN_CASES = [
    # (label, problem kind, problem parameters as `--problem-param`, solver, parameters, iters)
    ("ijcnn1 (49,990 x 22), SOBA batch 64", "logreg_hpo",
     {"dataset.shared": "ijcnn1", "validation_fraction": 0.2}, "soba", {"batch_size": 64}, 100_000),
    ("ijcnn1 (49,990 x 22), stocBiO batch 64", "logreg_hpo",
     {"dataset.shared": "ijcnn1", "validation_fraction": 0.2}, "stocbio", {"batch_size": 64}, 10_000),
    ("quadratic (default), SOBA", "quadratic", {}, "soba", {}, 100_000),
]


def part_builtin(repeats, seed=0):
    rows = []
    for label, kind, flat_params, solver, params, iters in BUILTIN_CASES:
        problem = bilevel.builtin(kind, **nested(flat_params))
        python_run(problem, solver, params, min(iters, 1000), seed)  # warm the caches
        rust_s, python_s = [], []
        for _ in range(repeats):
            seconds, x_rust = rust_run(kind, flat_params, solver, params, iters, seed)
            rust_s.append(seconds)
            seconds, x_python = python_run(problem, solver, params, iters, seed)
            python_s.append(seconds)
            if not np.array_equal(x_rust, x_python):
                sys.exit(f"{label}: the Python and Rust runs end on different iterates")
        rust_us = statistics.median(rust_s) / iters * 1e6
        python_us = statistics.median(python_s) / iters * 1e6
        rows.append({
            "case": label, "iters": iters, "rust_us_per_iter": rust_us,
            "python_us_per_iter": python_us, "overhead_pct": 100 * (python_us / rust_us - 1),
        })
    return rows


class CachedAnswers:
    """An objective whose callbacks return fixed arrays: what remains of a call is the crossing
    into Python (the GIL, x and y and the batch wrapped as numpy arrays, the answer read back)."""

    def __init__(self, dim_x, dim_y):
        self.gx, self.gy = np.zeros(dim_x), np.full(dim_y, 1e-3)
        self.calls = 0

    def value(self, x, y, batch):
        self.calls += 1
        return 0.0

    def grad_x(self, x, y, batch):
        self.calls += 1
        return self.gx

    def grad_y(self, x, y, batch):
        self.calls += 1
        return self.gy

    def hvp_yy(self, x, y, v, batch):
        self.calls += 1
        return self.gy

    def cross_xy(self, x, y, v, batch):
        self.calls += 1
        return self.gx


def body_seconds(objective, dim_x, dim_y, loops=200_000):
    """Seconds per call of the callbacks' own bodies, called from a plain Python loop."""
    x, y, v, batch = np.zeros(dim_x), np.zeros(dim_y), np.zeros(dim_y), np.arange(64)
    started = time.perf_counter()
    for _ in range(loops // 2):
        objective.grad_y(x, y, batch)
        objective.hvp_yy(x, y, v, batch)
    return (time.perf_counter() - started) / loops


def part_callbacks(repeats, seed=0):
    rows = []
    for dim_x, dim_y in [(10, 10), (1000, 1000)]:
        iters = 20_000
        per_call, per_iter, calls_per_iter = [], [], 0.0
        for _ in range(repeats):
            outer, inner = CachedAnswers(dim_x, dim_y), CachedAnswers(dim_x, dim_y)
            problem = bilevel.CustomProblem(outer, inner, dim_x, dim_y, n_outer=1000, n_inner=1000)
            started = time.perf_counter()
            result = bilevel.solve(problem, "soba", seed=seed, max_iters=iters, eval_every=iters,
                                   batch_size=64)
            elapsed = time.perf_counter() - started
            calls = outer.calls + inner.calls
            body = body_seconds(CachedAnswers(dim_x, dim_y), dim_x, dim_y)
            per_call.append((elapsed - calls * body) / calls)
            per_iter.append(elapsed / result.iters)
            calls_per_iter = calls / result.iters
        rows.append({
            "case": f"cached answers, dim x = {dim_x}, dim y = {dim_y}, SOBA batch 64",
            "callback_calls_per_iter": calls_per_iter,
            "overhead_us_per_call": statistics.median(per_call) * 1e6,
            "us_per_iter": statistics.median(per_iter) * 1e6,
        })

    # The quadratic written in numpy (as in the tests) against the same quadratic built in.
    sys.path.insert(0, str(ROOT / "crates" / "bilevel-py" / "tests"))
    from numpy_quadratic import DX, DY, NumpyQuadratic, pair  # noqa: E402

    outer, inner = pair(n_outer=1000, n_inner=1000)
    builtin = bilevel.QuadraticFromFactors(outer, inner)
    custom = bilevel.CustomProblem(NumpyQuadratic(outer), NumpyQuadratic(inner), DX, DY,
                                   n_outer=1000, n_inner=1000)
    iters = 5_000
    builtin_s, custom_s = [], []
    for _ in range(repeats):
        seconds, x_builtin = python_run(builtin, "soba", {"batch_size": 64}, iters, seed)
        builtin_s.append(seconds)
        seconds, x_custom = python_run(custom, "soba", {"batch_size": 64}, iters, seed)
        custom_s.append(seconds)
        if not np.allclose(x_builtin, x_custom, rtol=1e-9, atol=1e-12):
            sys.exit("the numpy quadratic and the built-in quadratic end on different iterates")
    rows.append({
        "case": f"quadratic in numpy vs built in (dim x = {DX}, dim y = {DY}, n = 1000), SOBA batch 64",
        "builtin_us_per_iter": statistics.median(builtin_s) / iters * 1e6,
        "custom_us_per_iter": statistics.median(custom_s) / iters * 1e6,
    })
    return rows


def markdown(builtin, callbacks, repeats):
    """The figures as a BENCHMARKS.md section, with the date, commit and machine."""
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    if dirty:
        commit += " with uncommitted changes"
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%MZ")
    lines = [
        "## Python package overhead (`crates/bilevel-py/bench/overhead.py`)",
        "",
        f"Measured {date} at commit `{commit}` on {os.cpu_count()} CPUs ({cpu}), Python "
        f"{platform.python_version()}, release wheel (`pip install ./crates/bilevel-py`) and "
        f"release binary; medians of {repeats} alternating repeats. Command: "
        f"`python crates/bilevel-py/bench/overhead.py --markdown benchmarks/python_overhead.md`.",
        "",
        "Built-in problems, pure Rust (`bilevel solve --json`, the run timed inside the process "
        "after loading) against the same run driven from Python (`bilevel.solve`, timed around "
        "the call: options in, the run without the GIL, trace and arrays out). Both end on "
        "bit-identical iterates (the script checks). Target: within 10 %.",
        "",
        "| case | iterations | Rust µs/it | Python µs/it | overhead |",
        "|---|---|---|---|---|",
    ]
    for r in builtin:
        lines.append(f"| {r['case']} | {r['iters']:,} | {r['rust_us_per_iter']:.3f} | "
                     f"{r['python_us_per_iter']:.3f} | {r['overhead_pct']:+.1f} % |")
    lines += [
        "",
        "Python objectives (`CustomProblem`): the cost of one call into a Python callback beyond "
        "the callback's own body (GIL, x, y and the batch wrapped as numpy arrays, the answer "
        "read back), from objectives whose methods return cached arrays; then a realistic "
        "objective, the quadratic written in numpy, against the same quadratic built in.",
        "",
        "| case | figure |",
        "|---|---|",
    ]
    for r in callbacks:
        if "overhead_us_per_call" in r:
            lines.append(f"| {r['case']} | {r['overhead_us_per_call']:.2f} µs per call "
                         f"({r['callback_calls_per_iter']:.1f} calls and {r['us_per_iter']:.1f} "
                         f"µs per iteration) |")
        else:
            lines.append(f"| {r['case']} | built in {r['builtin_us_per_iter']:.2f} µs per "
                         f"iteration, in numpy {r['custom_us_per_iter']:.1f} µs per iteration |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--markdown", help="also write a BENCHMARKS.md section to this file")
    args = parser.parse_args()
    if not os.path.exists(BIN):
        sys.exit(f"no bilevel binary at {BIN}: run `cargo build --release -p bilevel-cli` "
                 "or set BILEVEL_BIN")
    builtin = part_builtin(args.repeats)
    print("Built-in problems: pure Rust (`bilevel solve`) vs driven from Python (`bilevel.solve`),"
          f" median of {args.repeats}")
    print(f"{'case':<44} {'iters':>8} {'Rust us/it':>11} {'Python us/it':>13} {'overhead':>9}")
    for r in builtin:
        print(f"{r['case']:<44} {r['iters']:>8} {r['rust_us_per_iter']:>11.3f} "
              f"{r['python_us_per_iter']:>13.3f} {r['overhead_pct']:>8.1f}%")
    callbacks = part_callbacks(args.repeats)
    print("\nPython objectives (CustomProblem)")
    for r in callbacks:
        if "overhead_us_per_call" in r:
            print(f"{r['case']}: {r['overhead_us_per_call']:.2f} us per callback call beyond its "
                  f"body ({r['callback_calls_per_iter']:.1f} calls per iteration, "
                  f"{r['us_per_iter']:.1f} us per iteration)")
        else:
            print(f"{r['case']}: built in {r['builtin_us_per_iter']:.2f} us per iteration, "
                  f"in numpy {r['custom_us_per_iter']:.1f} us per iteration")
    if args.markdown:
        pathlib.Path(args.markdown).write_text(markdown(builtin, callbacks, args.repeats))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({"builtin": builtin, "callbacks": callbacks},
                                                      indent=2))


if __name__ == "__main__":
    main()
