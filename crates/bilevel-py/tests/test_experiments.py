"""run_experiment uses the command line's engine: the same file gives the same summary.csv."""

import csv
import subprocess

import bilevel

EXPERIMENT = """
name = "py_parity"
seeds = [1, 2]

[problem]
kind = "quadratic"
dim_x = 5
dim_y = 8
n_inner = 64
n_outer = 64

[run]
max_iters = 150
eval_every = 50

[[solver]]
kind = "soba"
batch_size = 8
outer_lr = [0.05, 0.1]

[[solver]]
kind = "aid_cg"
inner_steps = 5
"""

TIMING_COLUMNS = {"solver_time_s"}


def rows(path):
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in reader]


def test_run_experiment_and_the_cli_write_the_same_summary(tmp_path, bilevel_bin):
    grid = tmp_path / "grid.toml"
    grid.write_text(EXPERIMENT)
    cli_out = tmp_path / "cli"
    subprocess.run(
        [str(bilevel_bin), "run", str(grid), "--out", str(cli_out), "--quiet", "--no-plots",
         "--jobs", "2"],
        check=True, capture_output=True, timeout=600,
    )
    report = bilevel.run_experiment(str(grid), out=str(tmp_path / "py"), jobs=2, plots=False)
    assert report["runs"] == 6 and report["not_done"] == [] and report["skipped"] == 0
    ours = rows(report["summary_csv"])
    theirs = rows(cli_out / "summary.csv")
    assert len(ours) == 6
    assert ours == theirs
    # A second call on the same folder is refused without overwrite or resume...
    try:
        bilevel.run_experiment(str(grid), out=str(tmp_path / "py"), plots=False)
    except ValueError as e:
        assert "overwrite" in str(e) or "resume" in str(e)
    else:
        raise AssertionError("a second run into the same folder must be refused")
    # ...and resuming a complete folder runs nothing.
    again = bilevel.run_experiment(resume=str(tmp_path / "py"), plots=False)
    assert again["runs"] == 0 and again["skipped"] == 6


def test_shards_mapped_from_python_and_merged_equal_the_whole_grid(tmp_path, bilevel_bin):
    grid = tmp_path / "grid.toml"
    grid.write_text(EXPERIMENT)
    whole = bilevel.run_experiment(str(grid), out=str(tmp_path / "whole"), plots=False)
    out = str(tmp_path / "sharded")
    # What a Ray or Dask user maps over: one call per shard (here in turn, shard 2 last).
    reports = [bilevel.run_experiment(str(grid), out=out, plots=False, shard=(k, 3))
               for k in (1, 3)]
    assert [r["shard"] for r in reports] == [[1, 3], [3, 3]]
    assert sum(r["runs"] for r in reports) == 4
    partial = bilevel.merge(out, plots=False)
    assert not partial["complete"] and partial["count"] == 3 and partial["running"] == []
    missing = [r for r in partial["runs"] if r["state"] == "missing"]
    assert len(missing) == 2 and {r["shard"] for r in missing} == {2}
    assert "--shard 2/3" in partial["rerun"]
    bilevel.run_experiment(str(grid), out=out, plots=False, shard=(2, 3))
    merged = bilevel.merge(out, plots=False)
    assert merged["complete"] and merged["rerun"] is None
    assert rows(merged["summary_csv"]) == rows(whole["summary_csv"])
    # The CLI's merge of the same folder agrees.
    subprocess.run([str(bilevel_bin), "merge", out, "--no-plots"], check=True,
                   capture_output=True, timeout=600)
    assert rows(merged["summary_csv"]) == rows(whole["summary_csv"])


def test_bad_shards_are_refused(tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text(EXPERIMENT)
    for bad, error in [((0, 3), ValueError), ((4, 3), ValueError), ((1,), TypeError),
                       ("1/3", TypeError), ((1.0, 3), TypeError)]:
        try:
            bilevel.run_experiment(str(grid), out=str(tmp_path / "x"), shard=bad)
        except error as e:
            assert "shard" in str(e)
        else:
            raise AssertionError(f"shard={bad!r} was accepted")
    bilevel.run_experiment(str(grid), out=str(tmp_path / "y"), plots=False, shard=(1, 2))
    try:
        bilevel.run_experiment(str(grid), out=str(tmp_path / "y"), plots=False, shard=(1, 3))
    except ValueError as e:
        assert "split into 2 shards" in str(e)
    else:
        raise AssertionError("another partition of the same folder was accepted")
