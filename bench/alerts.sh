#!/usr/bin/env bash
# Alerts (issue 13):
#  1. evaluation of 10,000 metrics per cycle: `alerts_bench evaluate` runs the evaluator on
#     one snapshot of 10,000 metrics (1,429 Binance pairs x 7) against one rule each
#     (above_average over 1 h, each window full: 360 samples). Target: <= 10 ms a cycle.
#  2. value arrival -> webhook received with 1,000 rules: `alerts_bench latency` runs the
#     alerts process on SQLite against a real nats-server, 1,000 price_above rules on 1,000
#     metrics, and a webhook receiver; each iteration publishes a snapshot of the 1,000
#     metrics in which one more crosses its threshold. Target: p99 <= 500 ms.
#   bench/alerts.sh            (METRICS=10000 CYCLES=200 RULES=1000 ITERATIONS=200 to change)
source "$(dirname "$0")/lib.sh"
METRICS=${METRICS:-10000}
CYCLES=${CYCLES:-200}
RULES=${RULES:-1000}
ITERATIONS=${ITERATIONS:-200}
build
machine

echo
echo "## evaluation, $METRICS metrics a cycle (target <= 10 ms)"
"$BIN/examples/alerts_bench" evaluate "$METRICS" "$CYCLES"

start_nats
echo
echo "## value arrival -> webhook received, $RULES rules (target p99 <= 500 ms)"
"$BIN/examples/alerts_bench" latency "$RULES" "$ITERATIONS"
