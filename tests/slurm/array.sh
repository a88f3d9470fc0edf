#!/usr/bin/env bash
# Grids as Slurm job arrays, against a real Slurm. Run inside scripts/slurm-local.sh:
#
#   scripts/slurm-local.sh bash tests/slurm/array.sh target/debug/bilevel
#
# 1. A 6-run grid submitted by `bilevel slurm` as a 3-task array (and its merge job): the
#    merged summary equals a local `bilevel run` of the same file, timing column aside.
# 2. One task of a 3-task array is killed (scancel) while it runs: the other tasks' results are
#    intact, `bilevel merge` names the missing runs and prints the sbatch command that re-runs
#    that task; running the command completes the grid, and the other traces are unchanged.
set -euo pipefail

bilevel="$(realpath "${1:?usage: $0 PATH/TO/bilevel}")"
work="$(mktemp -d /tmp/bilevel-slurm-test.XXXXXX)"
trap 'rm -rf "$work"' EXIT
cd "$work"

fail() {
    echo "FAIL: $*" >&2
    for log in "$work"/*/slurm/*.out; do
        [ -f "$log" ] && { echo "---- $log" >&2; tail -n 20 "$log" >&2; }
    done
    exit 1
}

# Waits (at most $2 seconds) until Slurm lists no job among the ids in $1 (comma-separated).
wait_jobs() {
    local ids="$1" limit="${2:-300}" start=$SECONDS
    while [ -n "$(squeue -h -j "$ids" 2>/dev/null)" ]; do
        [ $((SECONDS - start)) -lt "$limit" ] || fail "jobs $ids still queued after ${limit}s"
        sleep 0.5
    done
}

# summary.csv without the solver_time_s column, rows sorted.
strip_time() {
    python3 - "$1" <<'EOF'
import csv, sys
rows = list(csv.reader(open(sys.argv[1], newline="")))
drop = rows[0].index("solver_time_s")
print("\n".join(sorted(",".join(c for i, c in enumerate(r) if i != drop) for r in rows)))
EOF
}

echo "== 1. a 6-run grid as a 3-task array"
cat >grid.toml <<'EOF'
name = "slurm_grid"
seeds = [1, 2, 3]
[problem]
kind = "quadratic"
dim_x = 4
dim_y = 8
n_inner = 64
n_outer = 64
[run]
max_iters = 300
eval_every = 50
[[solver]]
kind = "soba"
batch_size = 8
[[solver]]
kind = "aid_cg"
[slurm]
mem = "500M"
EOF
"$bilevel" slurm grid.toml --out array --array-size 3 --dry-run >dry.txt
grep -q '^#SBATCH --array=1-3$' dry.txt || fail "dry run: no --array=1-3 line"
grep -q '^#SBATCH --mem=500M$' dry.txt || fail "dry run: the [slurm] table's line is missing"
[ ! -e array ] || fail "--dry-run wrote the output folder"

"$bilevel" slurm grid.toml --out array --array-size 3 | tee submit.txt
array_job="$(sed -n 's/^submitted job array \([0-9]*\) .*/\1/p' submit.txt)"
merge_job="$(sed -n 's/^merge job \([0-9]*\) .*/\1/p' submit.txt)"
[ -n "$array_job" ] && [ -n "$merge_job" ] || fail "no job ids in: $(cat submit.txt)"
wait_jobs "$array_job,$merge_job" 300
grep -q "6 of 6 run(s) complete (3 shard(s))" array/slurm/merge.out \
    || fail "the merge job did not find 6 complete runs: $(cat array/slurm/merge.out)"
for k in 1 2 3; do
    grep -q "shard $k/3: 2 run(s)" "array/slurm/shard-$k.out" || fail "task $k did not run 2 runs"
done
"$bilevel" merge array --no-plots >merge.txt || fail "merge failed: $(cat merge.txt)"
"$bilevel" run grid.toml --out local --quiet --no-plots >/dev/null
diff <(strip_time array/summary.csv) <(strip_time local/summary.csv) \
    || fail "the Slurm grid's summary differs from the local run's"
[ "$(ls array/traces | wc -l)" -eq 6 ] || fail "expected 6 traces"
echo "ok: 6 runs in 3 array tasks, merged, equal to the local run"

echo "== 2. one task killed while it runs, then re-submitted"
# Runs of a few seconds each (2 per task), so that task 2 is caught running.
sed -e 's/max_iters = 300/max_iters = 1500000/' -e 's/eval_every = 50/eval_every = 500000/' \
    -e 's/name = "slurm_grid"/name = "slurm_kill"/' grid.toml >slow.toml
"$bilevel" slurm slow.toml --out killed --array-size 3 --no-merge-job | tee submit2.txt
job="$(sed -n 's/^submitted job array \([0-9]*\) .*/\1/p' submit2.txt)"
[ -n "$job" ] || fail "no job id in: $(cat submit2.txt)"
start=$SECONDS
until [ "$(squeue -h -j "${job}_2" -o %T 2>/dev/null)" = RUNNING ]; do
    [ $((SECONDS - start)) -lt 120 ] || fail "task 2 never ran"
    sleep 0.1
done
sleep 1
scancel "${job}_2"
wait_jobs "$job" 300

set +e
"$bilevel" merge killed --no-plots >merge2.txt
status=$?
set -e
cat merge2.txt
[ "$status" -eq 1 ] || fail "merge of an incomplete grid exited $status, expected 1"
missing="$(grep -c '(shard 2/3)' merge2.txt || true)"
[ "$missing" -ge 1 ] || fail "merge did not name shard 2's runs"
grep -q "run(s) missing:" merge2.txt || fail "merge did not say which runs are missing"
if grep -q '(shard [13]/3)' merge2.txt; then fail "runs of the other tasks were reported missing"; fi
complete_before="$(ls killed/traces/*.jsonl | wc -l)"
[ "$complete_before" -eq $((6 - missing)) ] || fail "expected $((6 - missing)) complete traces"
sums_before="$(cd killed/traces && md5sum *.jsonl)"
command="$(grep '^sbatch --array=2 ' merge2.txt)" || fail "no sbatch command re-running task 2"
resubmitted="$($command | sed -n 's/^Submitted batch job \([0-9]*\).*/\1/p')"
[ -n "$resubmitted" ] || fail "re-submission gave no job id"
wait_jobs "$resubmitted" 300
"$bilevel" merge killed --no-plots >merge3.txt || fail "merge after re-submission: $(cat merge3.txt)"
grep -q "6 of 6 run(s) complete" merge3.txt || fail "$(cat merge3.txt)"
(cd killed/traces && echo "$sums_before" | md5sum --quiet -c -) \
    || fail "a trace of the other tasks changed"
echo "ok: task 2 killed, $missing run(s) named missing, re-submitted with the printed command, grid complete"
