#!/usr/bin/env bash
# Exchange metrics (issue 12) with 10,000 tracked metrics (1,430 pairs on Kraken and Binance
# in the simulator, 7 metrics each):
#  1. rank recomputation: `benchtool ranks` times `Samples::ranks` over 10,000 metrics with a
#     full day of samples each (1,440, one poll a minute), as the ranks actor runs it; and the
#     ranks actor's whole cycle (compute, encode, store, announce) in the running system
#     (topcoins_poll_cycle_duration_seconds{kind="ranks"});
#  2. GET /v1/metrics/{id} on an API node holding the 10,000 metrics, under wrk, alternated
#     with the static baseline serving the same body. Target: >= 0.9x its requests/s.
#   bench/metrics.sh            (DURATION=5 ROUNDS=3 CONNECTIONS="16 64" to change)
source "$(dirname "$0")/lib.sh"
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-16 64}
PAIRS_EACH=${PAIRS_EACH:-715}
build
machine

echo
echo "## rank recomputation, 10,000 metrics"
"$BIN/examples/benchtool" ranks 10000 1440 20

start_nats
start_sim 2000 0s --sim-pairs 1500

# The pairs each exchange lists, from a first run of the exchange actors and an API node.
start_api api
bg exchanges-probe "$BIN/topcoins" exchanges --exchanges kraken,binance --kraken-url "$SIM_URL" \
  --binance-url "$SIM_URL" --exchange-interval 1s
PROBE_PID=$LAST_PID
until curl -s "$API/v1/exchanges" | grep -q '"binance"' && curl -s "$API/v1/exchanges" | grep -q '"kraken"'; do sleep 0.2; done
PAIRS=$(curl -s "$API/v1/exchanges" | python3 -c '
import json, sys
n = int(sys.argv[1])
data = {e["id"]: e["pairs"] for e in json.load(sys.stdin)["data"]}
print(",".join(f"{ex}:{p}" for ex in ("kraken", "binance") for p in data[ex][:n]))' "$PAIRS_EACH")
kill "$PROBE_PID"
TRACKED=$(( $(echo "$PAIRS" | tr ',' '\n' | wc -l) * 7 ))
echo
echo "tracked: $TRACKED metrics"

mport=$(free_port)
bg exchanges "$BIN/topcoins" exchanges --exchanges kraken,binance --kraken-url "$SIM_URL" \
  --binance-url "$SIM_URL" --exchange-interval 1s --pairs "$PAIRS" --metrics-listen "127.0.0.1:$mport"
EX_METRICS="http://127.0.0.1:$mport/metrics"
ID="kraken:btc-usd:volume"
until [ "$(curl -s "$API/v1/metrics?limit=1000&metric=price" | grep -o '"id"' | wc -l)" -ge 1000 ]; do sleep 0.5; done
until curl -s "$API/v1/metrics/$ID" | grep -q '"position"'; do sleep 0.5; done
# Let the ranks actor run some cycles with every metric in.
sleep 20
echo
echo "## the ranks actor's cycle in the running system (1 s polls, samples since start)"
curl -s "$EX_METRICS" | awk '
  /^topcoins_poll_cycle_duration_seconds_sum\{kind="ranks"\}/ { sum = $NF }
  /^topcoins_poll_cycle_duration_seconds_count\{kind="ranks"\}/ { n = $NF }
  END { printf "ranks cycles: %d, mean %.1f ms\n", n, (n ? sum / n * 1000 : 0) }'
echo "metrics listed by the node: $(curl -s "$API/v1/metrics?limit=1000" | python3 -c 'import json,sys; print(json.load(sys.stdin)["meta"]["count"])') on the first page"

echo
echo "| request | connections | body | topcoins req/s | baseline req/s | ratio | topcoins p99 ms | baseline p99 ms | ratio | target |"
echo "|---|---|---|---|---|---|---|---|---|---|"
curl -s "$API/v1/metrics/$ID" -o "$WORK/metric"
for c in $CONNECTIONS; do
  compare "GET /v1/metrics/{id}, $TRACKED metrics" "$API/v1/metrics/$ID" "$WORK/metric" application/json "$c"
done
echo
echo "wrk -t1 -c<connections> -d${DURATION}s --latency, $ROUNDS alternating rounds each, medians shown."
