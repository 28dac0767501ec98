# Shared by the bench scripts: builds, tools, process bookkeeping, wrk parsing.
# Every process a script starts is stopped on exit; all traffic goes to 127.0.0.1.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
WORK=$(mktemp -d -t topcoins-bench.XXXXXX)
export RUST_LOG=${RUST_LOG:-warn}
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

need() {
  # need <command> <debian-package>
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing $2..." >&2
    (apt-get install -y -qq "$2" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "$2"; }) >&2
  else
    echo "$1 is needed: sudo apt-get install $2" >&2
    exit 1
  fi
}

build() {
  echo "building release binaries..." >&2
  (cd "$ROOT" && cargo build --release --locked -q -p topcoins -p topcoins-api --bins --examples)
  NATS_SERVER_BIN=$("$ROOT/scripts/ensure-nats-server")
  export NATS_SERVER_BIN
  need wrk wrk
  need curl curl
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# bg <name> <command...>: runs in the background, logs to $WORK/<name>.log, remembers the pid.
bg() {
  local name=$1
  shift
  "$@" >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
  LAST_PID=$!
}

wait_http() {
  # wait_http <url> [seconds]: until it answers 200.
  local deadline=$((SECONDS + ${2:-60}))
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" = 200 ]; do
    [ $SECONDS -lt $deadline ] || { echo "timed out waiting for $1" >&2; exit 1; }
    sleep 0.1
  done
}

start_nats() {
  # start_nats [extra args]: sets NATS_URL and NATS_MONITOR.
  local port mport
  port=$(free_port)
  mport=$(free_port)
  bg nats "$NATS_SERVER_BIN" -a 127.0.0.1 -p "$port" -m "$mport" -js -sd "$WORK/js" "$@"
  NATS_URL="nats://127.0.0.1:$port"
  NATS_MONITOR="http://127.0.0.1:$mport"
  export NATS_URL
  wait_http "$NATS_MONITOR/healthz"
}

start_sim() {
  # start_sim <coins> <tick> [extra args]: sets SIM_URL.
  local port coins=$1 tick=$2
  shift 2
  port=$(free_port)
  bg sim "$BIN/topcoins" sim --listen "127.0.0.1:$port" --sim-coins "$coins" --sim-tick "$tick" "$@"
  SIM_URL="http://127.0.0.1:$port"
  wait_http "$SIM_URL/sim/status"
}

start_actors() {
  # start_actors <interval> <universe>: price and ranking against $SIM_URL, metrics on
  # $PRICE_METRICS and $RANKING_METRICS.
  local pm rm
  pm=$(free_port)
  rm=$(free_port)
  bg price "$BIN/topcoins" price --cmc-url "$SIM_URL" --coingecko-url "$SIM_URL" \
    --price-interval "$1" --price-universe "$2" --metrics-listen "127.0.0.1:$pm"
  PRICE_PID=$LAST_PID
  bg ranking "$BIN/topcoins" ranking --cryptocompare-url "$SIM_URL" \
    --ranking-interval "$1" --ranking-universe "$2" --metrics-listen "127.0.0.1:$rm"
  RANKING_PID=$LAST_PID
  PRICE_METRICS="http://127.0.0.1:$pm/metrics"
  RANKING_METRICS="http://127.0.0.1:$rm/metrics"
}

start_api() {
  # start_api <name>: an API node; sets API (its base URL) and API_PID. (Not called in $(…):
  # a subshell's bookkeeping would be lost and the node never stopped.)
  local port
  port=$(free_port)
  bg "$1" "$BIN/topcoins" api --listen "127.0.0.1:$port"
  API="http://127.0.0.1:$port"
  API_PID=$LAST_PID
}

# metric <url> <name> [label-filter-regex]: sum of the samples of a metric.
metric() {
  curl -s "$1" | awk -v name="$2" -v filter="${3:-}" '
    $1 ~ "^"name"({|$)" && (filter == "" || $1 ~ filter) { sum += $NF } END { printf "%.0f\n", sum }'
}

# wrk_run <url> <connections> <seconds> [extra header]: prints "<requests/s> <p99 ms>".
wrk_run() {
  local out
  if [ -n "${4:-}" ]; then
    out=$(wrk -t1 -c"$2" -d"$3"s --latency -H "$4" "$1")
  else
    out=$(wrk -t1 -c"$2" -d"$3"s --latency "$1")
  fi
  if echo "$out" | grep -q "Non-2xx"; then
    echo "wrk saw non-2xx answers from $1:" >&2
    echo "$out" >&2
    exit 1
  fi
  echo "$out" | awk '
    /Requests\/sec/ { rps = $2 }
    $1 == "99%" { v = $2; unit = v; sub(/[0-9.]+/, "", unit); sub(/[a-z]+$/, "", v)
                  ms = (unit == "us") ? v / 1000 : (unit == "s") ? v * 1000 : v }
    END { printf "%.0f %.3f\n", rps, ms }'
}

median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b == 0) ? 0 : a / b }'; }

machine() {
  echo "machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
}

# compare <label> <topcoins-url> <body-file> <content-type> <connections> [header] [coding]: wrk on
# the URL alternated ROUNDS times with a static baseline serving <body-file>; prints a table row
# (ratio target: >= 0.9x the baseline's requests/s, p99 <= 1.5x).
compare() {
  local label=$1 url=$2 body=$3 ctype=$4 c=$5 header=${6:-} coding=${7:-}
  local bport
  bport=$(free_port)
  bg "baseline-$bport" "$BIN/examples/static_baseline" "127.0.0.1:$bport" "$body" "$ctype" $coding
  local bpid=$LAST_PID
  wait_http "http://127.0.0.1:$bport/"
  : >"$WORK/t" ; : >"$WORK/b"
  for _ in $(seq "$ROUNDS"); do
    wrk_run "$url" "$c" "$DURATION" "$header" >>"$WORK/t"
    wrk_run "http://127.0.0.1:$bport/" "$c" "$DURATION" >>"$WORK/b"
  done
  kill "$bpid"
  local trps tp99 brps bp99
  trps=$(cut -d' ' -f1 "$WORK/t" | median); tp99=$(cut -d' ' -f2 "$WORK/t" | median)
  brps=$(cut -d' ' -f1 "$WORK/b" | median); bp99=$(cut -d' ' -f2 "$WORK/b" | median)
  local rr pr
  rr=$(ratio "$trps" "$brps"); pr=$(ratio "$tp99" "$bp99")
  local verdict=met
  awk -v r="$rr" -v p="$pr" 'BEGIN { exit !(r >= 0.9 && p <= 1.5) }' || verdict=MISSED
  printf '| %s | %s | %s B | %s | %s | **%s** | %s | %s | **%s** | %s |\n' \
    "$label" "$c" "$(stat -c %s "$body")" "$trps" "$brps" "$rr" "$tp99" "$bp99" "$pr" "$verdict"
}
