#!/usr/bin/env bash
# A/B of GET / serving: this checkout's API node against an API node built from another commit,
# and the static baseline, on the same NATS and actors, rounds alternating among the three.
# For telling a regression of the request path from machine noise.
#   OLD_BIN=/path/to/other/target/release bench/serve_ab.sh   (CONNECTIONS="16 64" ROUNDS=5 DURATION=5)
source "$(dirname "$0")/lib.sh"
: "${OLD_BIN:?set OLD_BIN to the release folder of the other build (its topcoins binary)}"
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-5}
CONNECTIONS=${CONNECTIONS:-16 64}
build
machine
start_nats
start_sim 2000 0s
start_actors 1s 2000
start_api new; NEW=$API
port=$(free_port)
bg old "$OLD_BIN/topcoins" api --listen "127.0.0.1:$port"
OLD="http://127.0.0.1:$port"
wait_http "$NEW/readyz"; wait_http "$OLD/readyz"
curl -s "$NEW/?limit=200" -o "$WORK/json200"
bport=$(free_port)
bg baseline "$BIN/examples/static_baseline" "127.0.0.1:$bport" "$WORK/json200" application/json
wait_http "http://127.0.0.1:$bport/"
echo
echo "| connections | this node req/s | other node req/s | baseline req/s | this/baseline | other/baseline | this/other |"
echo "|---|---|---|---|---|---|---|"
for c in $CONNECTIONS; do
  : >"$WORK/n"; : >"$WORK/o"; : >"$WORK/b"
  for _ in $(seq "$ROUNDS"); do
    wrk_run "$NEW/?limit=200" "$c" "$DURATION" >>"$WORK/n"
    wrk_run "$OLD/?limit=200" "$c" "$DURATION" >>"$WORK/o"
    wrk_run "http://127.0.0.1:$bport/" "$c" "$DURATION" >>"$WORK/b"
  done
  n=$(cut -d' ' -f1 "$WORK/n" | median); o=$(cut -d' ' -f1 "$WORK/o" | median); b=$(cut -d' ' -f1 "$WORK/b" | median)
  echo "| $c | $n | $o | $b | **$(ratio "$n" "$b")** | $(ratio "$o" "$b") | **$(ratio "$n" "$o")** |"
done
echo
echo "JSON limit=200, 2,000 coins; wrk -t1 -d${DURATION}s, $ROUNDS rounds per node alternating, medians."
