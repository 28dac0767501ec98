#!/usr/bin/env bash
# Propagation: time from a hash notice being published to every one of three API nodes
# serving the new ETag. Target: p99 <= 5 ms on loopback. Baseline in the same run: a bare
# NATS publish -> subscribe round on the same server.
#   bench/propagation.sh      (ROUNDS=300 to change)
source "$(dirname "$0")/lib.sh"
ROUNDS=${ROUNDS:-300}
build
machine
start_nats
start_sim 2000 0s
start_actors 1s 2000
start_api a; A=$API
start_api b; B=$API
start_api c; C=$API
for n in "$A" "$B" "$C"; do wait_http "$n/readyz"; done
# From here on only benchtool announces (the actors would only repeat the frozen market).
kill "$PRICE_PID" "$RANKING_PID"
"$BIN/examples/benchtool" propagation "$NATS_URL" "$ROUNDS" "$A" "$B" "$C"
echo "(each round stores a changed price snapshot, then times notice -> new ETag on all three nodes, polled over HTTP with If-None-Match)"
