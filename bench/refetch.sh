#!/usr/bin/env bash
# Refetch efficiency: snapshot fetches per node against distinct hashes announced (the
# baseline: one fetch per announced hash is the least possible), and bytes on the bus while
# the upstream does not change.
#   bench/refetch.sh          (TICKS=10 QUIET=20 to change)
source "$(dirname "$0")/lib.sh"
TICKS=${TICKS:-10}
QUIET=${QUIET:-20}
build
machine
start_nats
start_sim 2000 0s
start_actors 1s 2000
start_api a; A=$API
start_api b; B=$API
start_api c; C=$API
for n in "$A" "$B" "$C"; do wait_http "$n/readyz"; done
for _ in $(seq "$TICKS"); do
  curl -s -X POST "$SIM_URL/sim/tick" >/dev/null
  sleep 1.5
done
sleep 3
announced=$(( $(metric "$PRICE_METRICS" topcoins_notices_published_total) + $(metric "$RANKING_METRICS" topcoins_notices_published_total) ))
echo
echo "| node | snapshots taken in (fetched + pushed) | distinct hashes announced | per hash |"
echo "|---|---|---|---|"
for n in "$A" "$B" "$C"; do
  f=$(( $(metric "$n/metrics" topcoins_api_snapshot_fetches_total) + $(metric "$n/metrics" topcoins_api_snapshots_pushed_total) ))
  echo "| $n | $f | $announced | **$(ratio "$f" "$announced")** |"
done

varz() { curl -s "$NATS_MONITOR/varz" | python3 -c 'import json,sys; v=json.load(sys.stdin); print(v["in_msgs"], v["in_bytes"], v["out_msgs"], v["out_bytes"])'; }
read -r im0 ib0 om0 ob0 < <(varz)
cycles0=$(( $(metric "$PRICE_METRICS" topcoins_poll_cycles_total 'outcome="unchanged"') + $(metric "$RANKING_METRICS" topcoins_poll_cycles_total 'outcome="unchanged"') ))
sleep "$QUIET"
read -r im1 ib1 om1 ob1 < <(varz)
cycles1=$(( $(metric "$PRICE_METRICS" topcoins_poll_cycles_total 'outcome="unchanged"') + $(metric "$RANKING_METRICS" topcoins_poll_cycles_total 'outcome="unchanged"') ))
polls=$((cycles1 - cycles0))
echo
echo "unchanged upstream for ${QUIET}s: $polls polls that changed nothing; NATS saw $((im1 - im0)) messages / $((ib1 - ib0)) bytes in, $((om1 - om0)) messages / $((ob1 - ob0)) bytes out"
echo "bytes on the bus per unchanged poll: $(ratio $((ib1 - ib0 + ob1 - ob0)) "$polls")"
