#!/usr/bin/env bash
# Footprint: API node resident memory with a 10,000-coin universe (target <= 64 MiB), and
# process start to first 200 on / when snapshots already exist (target <= 200 ms). Baseline
# in the same run: the static axum server serving the limit=5000 body.
#   bench/footprint.sh        (STARTS=5 to change)
source "$(dirname "$0")/lib.sh"
STARTS=${STARTS:-5}
build
machine
start_nats
start_sim 10000 0s
start_actors 2s 10000
start_api warm
wait_http "$API/readyz" 120
until [ "$(curl -s "$API/?limit=5000" | grep -o '"rank":' | wc -l)" -ge 5000 ]; do sleep 0.5; done
curl -s "$API/?limit=5000" -o "$WORK/body5000"
kill "$PRICE_PID" "$RANKING_PID" "$API_PID"

rss() { awk '/VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
hwm() { awk '/VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

# measure <label> <path> <command...>: median start-to-200 over $STARTS starts, then RSS after
# load. `{addr}` in the command is the address to listen on.
measure() {
  local label=$1 path=$2
  shift 2
  : >"$WORK/starts"
  local pid ms port
  for i in $(seq "$STARTS"); do
    port=$(free_port)
    read -r pid ms < <("$BIN/examples/benchtool" first-ok "http://127.0.0.1:$port$path" "$@")
    PIDS+=("$pid")
    echo "$ms" >>"$WORK/starts"
    if [ "$i" -lt "$STARTS" ]; then kill "$pid"; wait "$pid" 2>/dev/null || true; fi
  done
  wrk -t1 -c64 -d5s "http://127.0.0.1:$port$path" >/dev/null
  M_START=$(median <"$WORK/starts")
  M_RSS=$(rss "$pid")
  M_HWM=$(hwm "$pid")
  kill "$pid"
  echo "| $label | $M_START | $M_RSS | $M_HWM |"
}

echo
echo "| process | start to first 200, ms (median of $STARTS) | RSS after load, MiB | peak RSS, MiB |"
echo "|---|---|---|---|"
# The node is loaded with limit=5000, the largest responses.
measure "API node, 10,000 coins (limit=5000 load)" "/?limit=5000" "$BIN/topcoins" api --listen "{addr}"
T_START=$M_START T_RSS=$M_RSS T_HWM=$M_HWM
measure "baseline: static axum, same 5000-entry body" "/" "$BIN/examples/static_baseline" "{addr}" "$WORK/body5000" application/json
echo
echo "start to first 200: ${T_START} ms = $(ratio "$T_START" "$M_START")x baseline; target <= 200 ms: $(awk -v t="$T_START" 'BEGIN { print (t <= 200) ? "met" : "MISSED" }')"
echo "resident memory: ${T_RSS} MiB (peak ${T_HWM}) = $(ratio "$T_RSS" "$M_RSS")x baseline; target <= 64 MiB: $(awk -v t="$T_HWM" 'BEGIN { print (t <= 64) ? "met" : "MISSED" }')"
