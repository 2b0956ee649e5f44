#!/bin/sh
# Builds native/bench/roofline.cc and runs it `rounds` times on 1 and on all threads: the fp32 and
# bf16 GEMM peaks of this machine as oneDNN reaches them (see native/README.md, "bf16").
#   sh scripts/roofline.sh [rounds=3]
set -e
cd "$(dirname "$0")/.."
out="${TMPDIR:-/tmp}/dcd-roofline"
g++ -O2 -std=c++17 native/bench/roofline.cc -ldnnl -fopenmp -o "$out"
nproc="$(nproc)"
for r in $(seq "${1:-3}"); do
  "$out" 1 10
  "$out" "$nproc" 10
done
