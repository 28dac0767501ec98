#!/usr/bin/env bash
# Soak: two API nodes under high concurrency for DURATION seconds while the simulated market
# moves every second (every poll announces new snapshots). Passes when no request failed and
# resident memory stayed flat; prints RSS at start and end of the load.
#   bench/soak.sh            (DURATION=300 CONNECTIONS=128 to change)
source "$(dirname "$0")/lib.sh"
DURATION=${DURATION:-300}
CONNECTIONS=${CONNECTIONS:-128}
build
machine
start_nats
start_sim 2000 1s
start_actors 1s 2000
start_api a; A=$API; A_PID=$API_PID
start_api b; B=$API; B_PID=$API_PID
for n in "$A" "$B"; do wait_http "$n/readyz"; done
rss() { awk '/VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
# Warm up so the start figure is the working set, not an empty process.
wrk -t1 -c"$CONNECTIONS" -d5s "$A/?limit=200" >/dev/null
wrk -t1 -c"$CONNECTIONS" -d5s "$B/?limit=200" >/dev/null
a0=$(rss "$A_PID"); b0=$(rss "$B_PID")
fetches0=$(metric "$A/metrics" topcoins_api_snapshot_fetches_total)
wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" "$A/?limit=200" >"$WORK/wrk-a" &
wa=$!
wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" "$B/?limit=500&format=csv" >"$WORK/wrk-b" &
wb=$!
wait "$wa" "$wb"
a1=$(rss "$A_PID"); b1=$(rss "$B_PID")
fetches1=$(metric "$A/metrics" topcoins_api_snapshot_fetches_total)
errors() { awk '/Socket errors/ { gsub(",", ""); e = $4 + $6 + $8 + $10 } /Non-2xx/ { n = $NF } END { print e + n }' "$1"; }
requests() { awk '/requests in/ { print $1 }' "$1"; }
ea=$(errors "$WORK/wrk-a"); eb=$(errors "$WORK/wrk-b")
echo
echo "| node | requests in ${DURATION}s | errors | RSS at start, MiB | RSS at end, MiB |"
echo "|---|---|---|---|---|"
echo "| a (JSON limit=200) | $(requests "$WORK/wrk-a") | $ea | $a0 | $a1 |"
echo "| b (CSV limit=500) | $(requests "$WORK/wrk-b") | $eb | $b0 | $b1 |"
echo
echo "snapshots taken in by node a during the soak: $((fetches1 - fetches0))"
verdict=passed
[ "$((ea + eb))" -eq 0 ] || verdict=FAILED
awk -v s="$a0" -v e="$a1" -v s2="$b0" -v e2="$b1" 'BEGIN { exit !(e <= s * 1.25 + 4 && e2 <= s2 * 1.25 + 4) }' || verdict="FAILED (memory grew)"
echo "soak: $verdict"
[ "$verdict" = passed ]
