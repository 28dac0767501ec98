#!/usr/bin/env bash
# Candles: GET /v1/coins/{symbol}/candles on one API node with a history database, per backend.
#  (a) cached: one past day at 5m (288 rows) for BTC under wrk, alternated with the static
#      baseline serving the same body. Target: >= 0.9x the baseline's requests/s.
#  (b) uncached: one day at 5m of a random coin ending at a random 5-minute mark of the filled
#      days (a wrk Lua script), so nearly every request misses the node's cache and is read
#      from the database (the miss share is printed). Target: p99 <= 5 ms.
# The database is filled first (examples/fill_candles: COINS coins, one sample per 5 minutes
# for DAYS days ending at the last UTC midnight, so every range asked for is in the past).
# PostgreSQL is started as the testkit does: initdb + pg_ctl as the postgres user, a private
# directory, a free port, fsync off; its tables are vacuumed and analysed after the fill.
#   bench/candles.sh   (DURATION=5 ROUNDS=3 CONNECTIONS=64 UNCACHED_CONNECTIONS="1 4 8" COINS=50
#                       DAYS=30 BACKENDS="sqlite postgres" to change)
source "$(dirname "$0")/lib.sh"
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-64}
UNCACHED_CONNECTIONS=${UNCACHED_CONNECTIONS:-1 4 8}
COINS=${COINS:-50}
DAYS=${DAYS:-30}
BACKENDS=${BACKENDS:-sqlite postgres}
DAY_MS=86400000

PG_DIR=""
stop_postgres() {
  [ -n "$PG_DIR" ] || return 0
  as_postgres "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$PG_DIR"
  PG_DIR=""
}
trap 'stop_postgres; cleanup' EXIT

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_postgres() {
  # Sets PG_URL. Debian keeps the binaries off PATH: pg_config --bindir names their folder.
  PG_BIN=$(pg_config --bindir 2>/dev/null || ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ]; then
    need pg_config postgresql
    PG_BIN=$(pg_config --bindir 2>/dev/null || ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  fi
  # Its own directory outside $WORK (which only we may enter), owned by postgres.
  PG_DIR=$(mktemp -d -t topcoins-bench-pg.XXXXXX)
  mkdir "$PG_DIR/sock"
  [ "$(id -u)" = 0 ] && chown -R postgres: "$PG_DIR"
  as_postgres "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 --locale=C --no-sync >/dev/null
  printf "listen_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\n" \
    "$PG_DIR/sock" | as_postgres tee -a "$PG_DIR/data/postgresql.conf" >/dev/null
  local port
  port=$(free_port)
  as_postgres "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -o "-p $port" -w start >/dev/null
  PG_URL="postgres://postgres@127.0.0.1:$port/postgres"
}

# wrk_script <url> <connections> <seconds> <lua-script>: prints "<requests/s> <p99 ms>".
wrk_script() {
  local out
  out=$(wrk -t1 -c"$2" -d"$3"s --latency -s "$4" "$1")
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

candles_metric() { metric "$API/metrics" "topcoins_api_cache_$1_total" 'cache="candles"'; }

# measure <backend> <database-url>: fills the database, starts a node on it, prints two rows.
measure() {
  local backend=$1 url=$2
  local filled
  filled=$("$BIN/examples/fill_candles" "$url" "$COINS" "$DAYS" 300)
  echo "$backend: $filled" >&2
  if [ "$backend" = postgres ]; then
    # The fill has just written every row: settle the tables as autovacuum would in time
    # (visibility map, statistics), so the reads measured are not sharing the machine with it.
    "$PG_BIN/psql" "$url" -q -c "VACUUM (ANALYZE) candles" -c "VACUUM (ANALYZE) minutes"
  fi
  local end
  end=$(echo "$filled" | awk '{ print $NF }')
  local port
  port=$(free_port)
  bg "api-$backend" "$BIN/topcoins" api --listen "127.0.0.1:$port" --database-url "$url"
  local api_pid=$LAST_PID
  API="http://127.0.0.1:$port"
  local path="/v1/coins/BTC/candles?interval=5m&from=$((end - DAY_MS))&to=$end"
  wait_http "$API$path" 60
  curl -s "$API$path" -o "$WORK/day-$backend"
  local rows
  rows=$(grep -o '"time":' "$WORK/day-$backend" | wc -l)
  [ "$rows" = 288 ] || { echo "expected 288 candles, got $rows" >&2; exit 1; }

  # (a) cached, against the static baseline, rounds alternating.
  local bport
  bport=$(free_port)
  bg "baseline-$backend" "$BIN/examples/static_baseline" "127.0.0.1:$bport" "$WORK/day-$backend" application/json
  local bpid=$LAST_PID
  wait_http "http://127.0.0.1:$bport/"
  : >"$WORK/t"; : >"$WORK/b"
  for _ in $(seq "$ROUNDS"); do
    wrk_run "$API$path" "$CONNECTIONS" "$DURATION" >>"$WORK/t"
    wrk_run "http://127.0.0.1:$bport/" "$CONNECTIONS" "$DURATION" >>"$WORK/b"
  done
  kill "$bpid"
  local trps tp99 brps bp99 rr verdict=met
  trps=$(cut -d' ' -f1 "$WORK/t" | median); tp99=$(cut -d' ' -f2 "$WORK/t" | median)
  brps=$(cut -d' ' -f1 "$WORK/b" | median); bp99=$(cut -d' ' -f2 "$WORK/b" | median)
  rr=$(ratio "$trps" "$brps")
  awk -v r="$rr" 'BEGIN { exit !(r >= 0.9) }' || verdict=MISSED
  printf '| cached: BTC 5m, one past day (288 rows, %s B) | %s | %s | %s | %s | **%s** | %s | %s | - | >= 0.9x req/s: **%s** |\n' \
    "$(stat -c %s "$WORK/day-$backend")" "$backend" "$CONNECTIONS" "$trps" "$brps" "$rr" "$tp99" "$bp99" "$verdict"

  # (b) uncached: a random coin and day each request.
  cat >"$WORK/uncached.lua" <<EOF
math.randomseed(os.time())
request = function()
  local i = math.random(0, $COINS - 1)
  local symbol = i == 0 and "BTC" or string.format("C%03d", i)
  local to = $end - math.random(0, ($DAYS - 1) * 288) * 300000
  return wrk.format("GET", string.format("/v1/coins/%s/candles?interval=5m&from=%.0f&to=%.0f", symbol, to - $DAY_MS, to))
end
EOF
  local c hits0 misses0 hits misses urps up99
  for c in $UNCACHED_CONNECTIONS; do
    hits0=$(candles_metric hits); misses0=$(candles_metric misses)
    : >"$WORK/u"
    for _ in $(seq "$ROUNDS"); do
      wrk_script "$API/" "$c" "$DURATION" "$WORK/uncached.lua" >>"$WORK/u"
    done
    hits=$(( $(candles_metric hits) - hits0 )); misses=$(( $(candles_metric misses) - misses0 ))
    urps=$(cut -d' ' -f1 "$WORK/u" | median); up99=$(cut -d' ' -f2 "$WORK/u" | median)
    verdict=met
    awk -v p="$up99" 'BEGIN { exit !(p <= 5) }' || verdict=MISSED
    printf '| uncached: random coin and day, 5m (288 rows) | %s | %s | %s | - | - | **%s** | - | %s %% | p99 <= 5 ms: **%s** |\n' \
      "$backend" "$c" "$urps" "$up99" \
      "$(awk -v m="$misses" -v h="$hits" 'BEGIN { printf "%.1f", (m + h == 0) ? 0 : 100 * m / (m + h) }')" "$verdict"
  done
  kill "$api_pid" 2>/dev/null || true
}

build
machine
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (figures are only clean near 0)"
start_nats
echo
echo "| request | backend | connections | topcoins req/s | baseline req/s | ratio | topcoins p99 ms | baseline p99 ms | cache misses | target |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for backend in $BACKENDS; do
  case $backend in
    sqlite) measure sqlite "sqlite://$WORK/history.db" ;;
    postgres) start_postgres; measure postgres "$PG_URL"; stop_postgres ;;
    *) echo "unknown backend $backend (sqlite, postgres)" >&2; exit 1 ;;
  esac
done
echo
echo "wrk -t1 -d${DURATION}s --latency, $ROUNDS rounds each (cached alternating with the baseline), medians;"
echo "$COINS coins x $DAYS days of 5-minute samples; the node has no actors (every range is in the past)."
