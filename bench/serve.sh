#!/usr/bin/env bash
# Serving: GET / on one API node under wrk, alternated with a baseline axum server returning
# a static body of the same size from memory. Target: >= 0.9x the baseline's requests/s and
# p99 latency <= 1.5x the baseline's.
#   bench/serve.sh            (DURATION=5 ROUNDS=3 CONNECTIONS="16 64 256" to change)
source "$(dirname "$0")/lib.sh"
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-16 64 256}
build
machine

echo
echo "| request | connections | body | topcoins req/s | baseline req/s | ratio | topcoins p99 ms | baseline p99 ms | ratio | target |"
echo "|---|---|---|---|---|---|---|---|---|---|"

start_nats
start_sim 2000 0s
start_actors 1s 2000
start_api api
wait_http "$API/readyz"
curl -s "$API/?limit=200" -o "$WORK/json200"
for c in $CONNECTIONS; do
  compare "JSON limit=200, 2,000 coins" "$API/?limit=200" "$WORK/json200" application/json "$c"
done
curl -s "$API/?limit=200&format=csv" -o "$WORK/csv200"
compare "CSV limit=200" "$API/?limit=200&format=csv" "$WORK/csv200" "text/csv; charset=utf-8" 64

# A 10,000-coin universe, limit=5000.
for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
PIDS=()
rm -rf "$WORK/js"
start_nats
start_sim 10000 0s
start_actors 2s 10000
start_api api10k
wait_http "$API/readyz" 120
until [ "$(curl -s "$API/?limit=5000" | grep -o '"rank":' | wc -l)" -ge 5000 ]; do sleep 0.5; done
curl -s "$API/?limit=5000" -o "$WORK/json5000"
compare "JSON limit=5000, 10,000 coins" "$API/?limit=5000" "$WORK/json5000" application/json 64
# Compressed variants: topcoins asked with Accept-Encoding, the baseline sending the same
# compressed bytes (curl without --compressed saves them as they came).
for coding in gzip br; do
  curl -s -H "Accept-Encoding: $coding" "$API/?limit=5000" -o "$WORK/json5000.$coding"
  compare "JSON limit=5000, $coding" "$API/?limit=5000" \
    "$WORK/json5000.$coding" application/json 64 "Accept-Encoding: $coding" "$coding"
done
curl -s "$API/?limit=5000&format=csv" -o "$WORK/csv5000"
compare "CSV limit=5000, 10,000 coins" "$API/?limit=5000&format=csv" "$WORK/csv5000" "text/csv; charset=utf-8" 64
echo
echo "wrk -t1 -c<connections> -d${DURATION}s --latency, $ROUNDS alternating rounds each, medians shown."
