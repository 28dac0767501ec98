#!/usr/bin/env bash
# The live stream: 1,000 streams of /v1/stream open on one API node while the simulated market
# moves every second (2,000 coins). Measures
#  - the time from a prices notice (as a NATS subscriber sees it) to its `top` event on every
#    stream, p99 over every (notice, stream) pair; target p99 <= 50 ms;
#  - the node's resident memory per open stream (VmRSS before and after opening them);
#    target <= 32 KiB;
#  - GET /?limit=200 with the streams open, against the static baseline; target >= 0.9x.
# Each stream asks for the prices of 100 coins (`symbols=`), as a dashboard showing 100 rows
# does; STREAM_QUERY=- for unfiltered streams (every coin's price, ~130 KB a change each).
#   bench/stream.sh            (STREAMS=1000 NOTICES=60 DURATION=5 ROUNDS=3 to change)
source "$(dirname "$0")/lib.sh"
STREAMS=${STREAMS:-1000}
NOTICES=${NOTICES:-60}
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
build
machine
# Each stream is a socket here and one on the node.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
start_nats
start_sim 2000 1s
start_actors 500ms 2000
start_api api
wait_http "$API/readyz"
until [ "$(curl -s "$API/?limit=200" | grep -o '"rank":' | wc -l)" -ge 200 ]; do sleep 0.5; done
if [ -z "${STREAM_QUERY:-}" ]; then
  symbols=$(curl -s "$API/?limit=100&format=csv" | tail -n +2 | cut -d, -f2 | paste -sd, -)
  STREAM_QUERY="symbols=$symbols"
fi
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$API_PID/status"; }
sleep 2
before=$(rss)
hold=$(( ROUNDS * DURATION * 2 + 15 ))
"$BIN/examples/stream_bench" "$API" "$NATS_URL" "$STREAMS" "$NOTICES" "$STREAM_QUERY" "$hold" \
  >"$WORK/stream.out" 2>"$WORK/stream.err" &
BENCH_PID=$!
until grep -q '^ready' "$WORK/stream.err" 2>/dev/null; do
  kill -0 "$BENCH_PID" 2>/dev/null || { cat "$WORK/stream.err" >&2; exit 1; }
  sleep 0.2
done
sleep 2
after=$(rss)
until grep -q '^streams' "$WORK/stream.out"; do
  kill -0 "$BENCH_PID" 2>/dev/null || { cat "$WORK/stream.err" >&2; exit 1; }
  sleep 0.5
done
read -r _ streams _ notices _ deliveries _ missing _ p50 _ p90 _ p99 _ max _ events _ bytes <"$WORK/stream.out"
per=$(awk -v a="$after" -v b="$before" -v n="$streams" 'BEGIN { printf "%.1f", (a - b) / n }')
echo
echo "| measure | value | target |"
echo "|---|---|---|"
echo "| notice to \`top\` event on every stream, $streams streams, $notices notices: p50 / p90 / p99 / max | $p50 / $p90 / **$p99** / $max ms | p99 <= 50 ms: $(awk -v p="$p99" 'BEGIN { print (p <= 50) ? "met" : "MISSED" }') |"
echo "| deliveries (missing) | $deliveries ($missing) | 0 missing |"
echo "| node RSS before / after opening the streams | $before / $after KiB | |"
echo "| node memory per open stream | **$per KiB** | <= 32 KiB: $(awk -v p="$per" 'BEGIN { print (p <= 32) ? "met" : "MISSED" }') |"
echo "| events / bytes the streams took in | $events / $bytes | |"
echo
echo "GET / with the $streams streams open (and the market moving):"
echo
echo "| request | connections | body | topcoins req/s | baseline req/s | ratio | topcoins p99 ms | baseline p99 ms | ratio | target |"
echo "|---|---|---|---|---|---|---|---|---|---|"
curl -s "$API/?limit=200" -o "$WORK/json200"
compare "JSON limit=200, $streams streams open" "$API/?limit=200" "$WORK/json200" application/json 64
kill "$BENCH_PID" 2>/dev/null || true
echo
echo "stream query: ${STREAM_QUERY:0:60}…; wrk -t1 -c64 -d${DURATION}s --latency, $ROUNDS alternating rounds, medians."
