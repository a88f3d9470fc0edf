#!/usr/bin/env bash
# Fails if a release binary holds out-of-line copies of SIMD intrinsics (the sign that a kernel
# was compiled as a closure of its own, without the target features of the SIMD dispatch: every
# arithmetic instruction then costs a call, and the kernel runs several times slower; see
# benchmarks/NOTES.md). CPU-feature detection (xgetbv, cpuid) is expected and allowed.
# Usage: benchmarks/check-inlining.sh [path to the binary, default target/release/bilevel]
set -euo pipefail
bin="${1:-target/release/bilevel}"
test -x "$bin" || { echo "no binary at $bin (cargo build --release -p bilevel-cli)" >&2; exit 2; }
found=$(nm -C "$bin" | grep -E 'core::core_arch::x86::' | grep -vE '_xgetbv|__cpuid' || true)
if [ -n "$found" ]; then
  echo "out-of-line SIMD intrinsics in $bin:" >&2
  echo "$found" >&2
  exit 1
fi
# The kernels of a pass are #[inline(always)]; a standalone copy of one (or of a closure inside
# one, as when a buffer was borrowed inside the dispatch) ran 5x slower, as plain SSE2 code.
kernels=$(nm -C "$bin" | grep -E '^[0-9a-f]+ [tT] bilevel::problems::logistic::LogisticData::(multi_native|multi_block|multi_sparse|multi_dense|pass_with|binary_pass|binary_block|hess_block)' || true)
if [ -n "$kernels" ]; then
  echo "out-of-line pass kernels in $bin:" >&2
  echo "$kernels" | cut -c1-200 >&2
  exit 1
fi
echo "no out-of-line SIMD intrinsics or pass kernels in $bin"
