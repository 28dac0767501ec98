#!/usr/bin/env bash
# The record's benchmarks (issue 11): ingest of one 10,000-coin snapshot into all six intervals
# on SQLite and PostgreSQL (the first apply, all rows new, is the same-run insert baseline),
# database bytes per coin per day, and the recorder's lag behind one 10,000-coin snapshot a
# second on each backend. PostgreSQL is a private durable cluster (fsync on) started by the
# examples through topcoins-testkit; run as root, as the tests do (initdb runs as `postgres`).
#
#   bench/recorder.sh [coins] [seconds]      defaults 10000 150
#
# The lag runs roll up every minute of recorded time (TOPCOINS_ROLLUP_EVERY, default here
# 1m; the recorder's own default is 5m), so a run holds two roll-ups or more.
source "$(dirname "$0")/lib.sh"
COINS=${1:-10000}
SECONDS_RUN=${2:-150}
export TOPCOINS_ROLLUP_EVERY=${TOPCOINS_ROLLUP_EVERY:-1m}
echo "building release examples..." >&2
(cd "$ROOT" && cargo build --release --locked -q -p topcoins-recorder --examples)
NATS_SERVER_BIN=$("$ROOT/scripts/ensure-nats-server")
export NATS_SERVER_BIN
EX="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples"
echo "== machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), commit $(git -C "$ROOT" rev-parse --short HEAD)"
echo "== ingest: $COINS coins, 30 snapshots per backend"
"$EX/ingest" "$COINS" 30
for backend in sqlite postgresql; do
  echo "== lag: $backend, $COINS coins, one snapshot a second for ${SECONDS_RUN}s"
  "$EX/lag" "$backend" "$COINS" "$SECONDS_RUN"
done
