#!/usr/bin/env bash
# Every benchmark, one after another on a quiet machine; the output is what bench/RESULTS.md
# records. Takes about a quarter of an hour.
#   bench/run-all.sh | tee bench/last-run.txt
set -euo pipefail
cd "$(dirname "$0")/.."
echo "# topcoins benchmarks, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD)"
for script in serve propagation refetch upstream_calls footprint; do
  echo
  echo "## bench/$script.sh"
  "bench/$script.sh"
done
echo
echo "## cargo bench (criterion)"
cargo bench --locked -q -p topcoins-schemas -p topcoins-api 2>&1 | grep -E '^[a-zA-Z].*time:|^ +time:|^[a-zA-Z]' | grep -v '^Benchmarking\|^Found\|^Gnuplot\|outlier'
