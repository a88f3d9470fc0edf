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
echo "no out-of-line SIMD intrinsics in $bin"
