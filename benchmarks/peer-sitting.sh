#!/usr/bin/env bash
# One side-by-side sitting against the reference benchmark's JAX solvers: peer and bilevel timed
# back to back on the three shapes, alternating round by round, then BENCHMARKS.md regenerated
# from these files (bench-md --peers) and the full-solver reports kept in benchmarks/. Set-up of the peer: ../shared/peers/README.md.
#
# Usage: BB=<unpacked benchmark_bilevel> VENV=<venv with jax> benchmarks/peer-sitting.sh [rounds=2] [out=benchmarks/sitting]
# Needs a release build (cargo build --release -p bilevel-cli). Takes about 3.5 min a round on
# 2 cores; run nothing else meanwhile.
set -euo pipefail
: "${BB:?set BB to the unpacked snapshot of benchopt/benchmark_bilevel}"
: "${VENV:?set VENV to the venv of ../shared/peers/README.md}"
rounds="${1:-2}"
out="${2:-benchmarks/sitting}"
bin=target/release/bilevel
peers_dir="$(cd "$(dirname "$0")/../../shared/peers" && pwd)"
data="$(cd "$(dirname "$0")/../../shared/data/libsvm" && pwd)"
test -x "$bin" || { echo "no release build at $bin" >&2; exit 2; }
mkdir -p "$out"
rm -f "$out"/jax_*.txt "$out"/bilevel_*.json
# The commit the binary was built from (as its reports will name it).
commit="$("$bin" bench --problem quadratic --solvers soba --iters 1 --warmup 0 --repeats 1 --json \
  | sed -n 's/.*"git_commit": *"\([^"]*\)".*/\1/p' | head -1)"
bb_commit="$(cat "$BB/../bb_commit.txt" 2>/dev/null || echo unknown)"
solvers_ijcnn1="soba fsla srba saba mrbo stocbio amigo"
solvers_wide="soba fsla saba stocbio mrbo amigo"
for r in $(seq 1 "$rounds"); do
  for shape in ijcnn1 covtype hyperclean; do
    case $shape in
      ijcnn1) extra=(--data "$data"); list=$solvers_ijcnn1 ;;
      covtype) extra=(--chunk 256); list=$solvers_wide ;;
      hyperclean) extra=(--chunk 64); list=$solvers_wide ;;
    esac
    {
      echo "# date: $(date -u +%Y-%m-%dT%H:%MZ)"
      echo "# round: $r"
      echo "# bilevel commit: $commit"
      echo "# benchmark commit: $bb_commit"
      # shellcheck disable=SC2086
      "$VENV/bin/python" "$peers_dir/jax_timing.py" --bb "$BB" --shape "$shape" "${extra[@]}" $list
    } > "$out/jax_${shape}_$r.txt"
  done
  # Both storage precisions of ours against the same peer round (bench-md pairs round i of
  # the peer with the i-th report of each precision).
  for precision in f64 f32; do
    "$bin" bench --problem ijcnn1-shape,covtype-shape,hyperclean-shape \
      --solvers soba,fsla,srba,saba,mrbo,stocbio,amigo --iters 300 --repeats 3 \
      --precision "$precision" --json > "$out/bilevel_${precision}_$r.json"
  done
done
# The sitting's reports, then the full-solver reports kept in benchmarks/ (each names its commit).
reports=("$out"/bilevel_f64_*.json "$out"/bilevel_f32_*.json)
for extra in benchmarks/ijcnn1.json benchmarks/shapes.json benchmarks/scaling.json; do
  if [ -f "$extra" ]; then reports+=("$extra"); fi
done
peers=()
for r in $(seq 1 "$rounds"); do
  for shape in ijcnn1 covtype hyperclean; do peers+=("$out/jax_${shape}_$r.txt"); done
done
# Sections of other benchmark scripts, kept (crates/bilevel-py/bench/overhead.py --markdown).
sections=()
for f in benchmarks/python_overhead.md benchmarks/nn_cost.md benchmarks/maml_conv4_torch.md; do
  [ -f "$f" ] && sections+=("$f")
done
includes=()
[ "${#sections[@]}" -gt 0 ] && includes=(--include "${sections[@]}")
"$bin" bench-md "${reports[@]}" --peers "${peers[@]}" "${includes[@]}" --out BENCHMARKS.md
