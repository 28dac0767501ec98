#!/usr/bin/env bash
# A/B of GET / serving: this checkout's API node against an API node built from another commit,
# and the static baseline, on the same NATS and actors, rounds alternating among the three.
# For telling a regression of the request path from machine noise.
#   OLD_BIN=/path/to/other/target/release bench/serve_ab.sh   (CONNECTIONS="16 64" ROUNDS=5 DURATION=5)
# Another request: QUERY (default "limit=200") on a universe of COINS (default 2000), e.g.
#   COINS=10000 QUERY="limit=5000&format=csv" CONNECTIONS=64 OLD_BIN=… bench/serve_ab.sh
source "$(dirname "$0")/lib.sh"
: "${OLD_BIN:?set OLD_BIN to the release folder of the other build (its topcoins binary)}"
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-5}
CONNECTIONS=${CONNECTIONS:-16 64}
COINS=${COINS:-2000}
QUERY=${QUERY:-limit=200}
case "$QUERY" in *format=csv*) CTYPE="text/csv; charset=utf-8" ;; *) CTYPE=application/json ;; esac
LIMIT=$(echo "$QUERY" | sed -n 's/.*limit=\([0-9]*\).*/\1/p')
build
machine
start_nats
start_sim "$COINS" 0s
if [ "$COINS" -gt 2000 ]; then start_actors 2s "$COINS"; else start_actors 1s "$COINS"; fi
start_api new; NEW=$API
port=$(free_port)
bg old "$OLD_BIN/topcoins" api --listen "127.0.0.1:$port"
OLD="http://127.0.0.1:$port"
wait_http "$NEW/readyz" 120; wait_http "$OLD/readyz" 120
# Both nodes serve the whole answer (a large universe takes a few polls to fill).
for url in "$NEW" "$OLD"; do
  until [ "$(curl -s "$url/?limit=${LIMIT:-200}" | grep -o '"rank":' | wc -l)" -ge "${LIMIT:-200}" ]; do sleep 0.5; done
done
curl -s "$NEW/?$QUERY" -o "$WORK/body"
bport=$(free_port)
bg baseline "$BIN/examples/static_baseline" "127.0.0.1:$bport" "$WORK/body" "$CTYPE"
wait_http "http://127.0.0.1:$bport/"
echo
echo "| connections | this node req/s | other node req/s | baseline req/s | this/baseline | other/baseline | this/other |"
echo "|---|---|---|---|---|---|---|"
for c in $CONNECTIONS; do
  : >"$WORK/n"; : >"$WORK/o"; : >"$WORK/b"
  for _ in $(seq "$ROUNDS"); do
    wrk_run "$NEW/?$QUERY" "$c" "$DURATION" >>"$WORK/n"
    wrk_run "$OLD/?$QUERY" "$c" "$DURATION" >>"$WORK/o"
    wrk_run "http://127.0.0.1:$bport/" "$c" "$DURATION" >>"$WORK/b"
  done
  n=$(cut -d' ' -f1 "$WORK/n" | median); o=$(cut -d' ' -f1 "$WORK/o" | median); b=$(cut -d' ' -f1 "$WORK/b" | median)
  echo "| $c | $n | $o | $b | **$(ratio "$n" "$b")** | $(ratio "$o" "$b") | **$(ratio "$n" "$o")** |"
done
echo
echo "GET /?$QUERY, $COINS coins ($(stat -c %s "$WORK/body") B); wrk -t1 -d${DURATION}s, $ROUNDS rounds per node alternating, medians."
