#!/usr/bin/env bash
# Upstream calls per client request, under load, against the naive design measured in the same
# run (examples/naive_baseline: every request calls both providers). topcoins should stay at
# one call per interval per provider page, whatever the load.
#   bench/upstream_calls.sh   (DURATION=20 INTERVAL=5 to change)
source "$(dirname "$0")/lib.sh"
DURATION=${DURATION:-20}
INTERVAL=${INTERVAL:-5}
build
machine
start_nats
start_sim 2000 1s
start_actors "${INTERVAL}s" 2000
start_api api
wait_http "$API/readyz"

calls() { curl -s "$SIM_URL/sim/status" | python3 -c 'import json,sys; r=json.load(sys.stdin)["requests"]; print(r["coinmarketcap"] + r["cryptocompare"] + r["coingecko"])'; }
requests() { awk '/requests in/ { print $1 }'; }

c0=$(calls)
t_req=$(wrk -t1 -c64 -d"${DURATION}s" "$API/?limit=200" | requests)
c1=$(calls)
t_calls=$((c1 - c0))
pages=$((1 + 2000 / 100))   # one CoinMarketCap page of 2,000 + twenty CryptoCompare pages of 100
expected=$(( (DURATION / INTERVAL + 1) * pages ))

port=$(free_port)
bg naive "$BIN/examples/naive_baseline" "127.0.0.1:$port" "$SIM_URL"
wait_http "http://127.0.0.1:$port/?limit=200"
c0=$(calls)
n_req=$(wrk -t1 -c64 -d"${DURATION}s" "http://127.0.0.1:$port/?limit=200" | requests)
c1=$(calls)
n_calls=$((c1 - c0))

echo
echo "| server | client requests in ${DURATION}s | upstream calls | upstream calls per client request |"
echo "|---|---|---|---|"
echo "| topcoins (interval ${INTERVAL}s) | $t_req | $t_calls (at most $expected: one per interval per page) | $(awk -v a="$t_calls" -v b="$t_req" 'BEGIN { printf "%.6f", a / b }') |"
echo "| naive baseline | $n_req | $n_calls | $(ratio "$n_calls" "$n_req") |"
echo
echo "topcoins served $(ratio "$t_req" "$n_req")x the naive baseline's requests with $(ratio "$t_calls" "$n_calls")x its upstream calls."
