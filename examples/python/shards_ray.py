"""An experiment grid split into shards and mapped with Ray, then merged: what `bilevel slurm`
does with a job array, for anyone who schedules with Ray (or Dask, or a process pool).

    pip install ./crates/bilevel-py ray
    python examples/python/shards_ray.py [experiments/quickstart.toml] [--shards 3]

Each Ray task runs `bilevel.run_experiment(file, out=DIR, shard=(k, n))`: runs k, k+n, k+2n, ...
of the grid, into one shared folder (on a cluster: a shared filesystem), skipping runs that are
already complete, so a failed task can simply be run again. `bilevel.merge(DIR)` then writes
summary.csv, report.md and the figures, and says what is missing.
"""

import argparse
import pathlib
import tempfile

import ray

import bilevel

ROOT = pathlib.Path(__file__).resolve().parents[2]

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("experiment", nargs="?", default=str(ROOT / "experiments" / "quickstart.toml"))
parser.add_argument("--shards", type=int, default=3)
parser.add_argument("--out", help="output folder (default: a new temporary folder)")
args = parser.parse_args()
out = args.out or tempfile.mkdtemp(prefix="bilevel-ray-")


@ray.remote(num_cpus=1)
def run_shard(k: int, n: int) -> dict:
    # One run at a time per task: Ray gives each task one CPU.
    report = bilevel.run_experiment(args.experiment, out=out, jobs=1, plots=False, shard=(k, n))
    return {"shard": k, "runs": report["runs"], "skipped": report["skipped"],
            "not_done": len(report["not_done"]), "seconds": round(report["elapsed_s"], 2)}


ray.init(num_cpus=None, include_dashboard=False, log_to_driver=False)
try:
    for done in ray.get([run_shard.remote(k, args.shards) for k in range(1, args.shards + 1)]):
        print(f"shard {done['shard']}/{args.shards}: {done['runs']} run(s) in {done['seconds']} s "
              f"({done['skipped']} already complete, {done['not_done']} not done)")
finally:
    ray.shutdown()

merged = bilevel.merge(out)
states = [r["state"] for r in merged["runs"]]
print(f"merged: {states.count('complete')} of {len(states)} runs complete; "
      f"summary in {merged['summary_csv']}")
if merged["rerun"]:
    print(f"run again:\n{merged['rerun']}")
